"""A pass as a run: take the lock, record the run, run :class:`SyncPass`, sum it up.

:func:`run_pass` is the one entry point the API, CLI and service use. It owns what
surrounds the engine: the connection's lock (checked at every named step), the run
row and its outcome log, the API-call counts, and the status and exit code
(:class:`PassResult`). The named points a pass reaches (:func:`crash_points`) are here
too, since tests and ``scripts/chaos.py`` kill runs at them.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connector.adapters.base import AdapterError, CRMAdapter
from connector.config.models import ObjectMapping, PartnerConfig
from connector.engine import effects as program_effects
from connector.engine.collect import fewer_collections
from connector.engine.cycle import ProgramCycle
from connector.engine.effects import Done
from connector.engine.exits import EXIT_CONFLICTS as EXIT_CONFLICTS
from connector.engine.exits import EXIT_FAILED as EXIT_FAILED
from connector.engine.exits import EXIT_FATAL as EXIT_FATAL
from connector.engine.exits import EXIT_OK as EXIT_OK
from connector.engine.hooks import Hook, PassContext
from connector.engine.plan import Plan, RecordError
from connector.logs import bind, unbind
from connector.records import Side, utcnow
from connector.state.store import LockLease, LockLost, StateStore

log = logging.getLogger("dealsync.engine")

Progress = Callable[[str, int, int], None]


# a pass's counts that are not records written (summary's ``records.written``)
_NOT_WRITES = {"failed", "conflicts opened", "conflicts still open", "full_checked"}


def crash_points(objects: Sequence[str]) -> list[str]:
    """The named points of a pass (``crash_at``) for mappings with these names, in the
    order a pass reaches them. Tests and ``scripts/chaos.py`` kill passes at them."""
    per_object = [
        f"{step}:{o}" for o in objects for step in ("after_plan", "after_intent", "after_write")
    ]
    return ["after_detect", *per_object, "before_cursor", "after_cursor"]


class PassAborted(Exception):
    """Raised (in tests) to simulate a crash at a named point of a pass."""


@dataclass
class PassResult:
    connection: str
    run_id: int | None
    plan: Plan
    status: str = "ok"  # ok | conflicts | failed | fatal | interrupted (lost its lock)
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[RecordError] = field(default_factory=list)
    open_conflicts: int = 0
    api_calls: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    dry_run: bool = False
    # the program's effects (decisions, e-mails, commissions, ownership writes), in order
    effects: list[Done] = field(default_factory=list)
    # the mapping migration this pass planned or ran (engine/migrate.py), one line each
    mapping_changes: list[str] = field(default_factory=list)
    # per object whose share condition changed: what it measured (migrate.ShareCounts)
    mapping_share: dict[str, dict[str, int]] = field(default_factory=dict)
    # the outbox delivery right after the pass (every connection's due e-mails):
    # {"sent": n, "failed": n}; None when there was none (dry run, no transport, busy)
    delivered: dict[str, int] | None = None

    def summary(self) -> dict[str, Any]:
        """The whole pass in one object (``sync --json``'s ``summary``): records written
        and failed, the registrations decided (by status and code), the e-mails queued
        or held (by kind) and sent after the pass, the commissions earned (with their
        total per currency), and the conflicts it opened and left open."""
        out = program_effects.pass_summary(self.effects)
        out["records"] = {
            "written": sum(
                n for k, n in self.counts.items() if k not in _NOT_WRITES and isinstance(n, int)
            ),
            "failed": len(self.errors),
        }
        out["emails"]["sent"] = (self.delivered or {}).get("sent", 0)
        out["emails"]["send_failed"] = (self.delivered or {}).get("failed", 0)
        out["conflicts"] = {
            "opened": int(self.counts.get("conflicts opened", 0)),
            "open": self.open_conflicts,
        }
        return out

    def effect_counts(self) -> Counter[str]:
        """The program's effects by kind: carried out, or (dry run) that would be."""
        return program_effects.counts(self.effects)

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "conflicts": EXIT_CONFLICTS, "failed": EXIT_FAILED}.get(
            self.status, EXIT_FATAL
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "run_id": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "plan": dict(self.plan.counts()),
            "program": dict(self.effect_counts()),
            "counts": dict(self.counts),
            "errors": [str(e) for e in self.errors],
            "open_conflicts": self.open_conflicts,
            "api_calls": self.api_calls,
            "error": self.error,
            "mapping_changes": self.mapping_changes,
            "mapping_share": self.mapping_share,
            "summary": self.summary(),
        }


def run_pass(
    *,
    partner: PartnerConfig,
    partner_crm: CRMAdapter,
    vendor_crm: CRMAdapter,
    mappings: Sequence[ObjectMapping],
    store: StateStore,
    dry_run: bool = False,
    now: datetime | None = None,
    hooks: Iterable[Hook] = (),
    overlap: timedelta = timedelta(minutes=5),
    batch_size: int = 100,
    progress: Progress | None = None,
    trigger: str = "cli",
    crash_at: Callable[[str], None] | None = None,
    lock: bool = True,
    full: bool = False,
    only: Mapping[str, Mapping[Side, Collection[str]]] | None = None,
    cycle: ProgramCycle | None = None,
) -> PassResult:
    """Run one pass of one connection and record it as a run. Never raises for a
    record's problem; an adapter failure that stops the pass is returned as
    ``status == "fatal"`` with the run logged.

    The pass holds the connection's lock (renewed while it runs) from before its run
    is created until after it is finished, so a ``running`` run whose lock is gone
    belongs to a dead process. At each named step the pass checks it still holds the
    lock; if not, it stops there with ``status == "interrupted"``.

    ``full`` (``sync --full``) re-reads every linked pair by id and reconciles it;
    ``only`` (``resync``) runs just those records ({mapping: {side: ids}}), without
    detection; ``cycle``: the program-wide vendor reads this pass shares with the
    other passes of a ``sync --all`` or service cycle (:mod:`connector.engine.cycle`)."""
    # every line logged during the pass names its connection, then its run (logs.py)
    context = bind(connection=partner.id)
    lease = None
    try:
        # the lock first: a refused pass (LockHeld) must not leave a run stuck "running"
        lease = store.lease(partner.id) if (lock and not dry_run) else None
        if lease is None:  # taking the lock marks them; a dry run looks for itself
            store.interrupt_orphaned_runs(partner.id)
        run_id = store.start_run(
            partner.id, dry_run=dry_run, trigger=trigger, owner=lease.owner if lease else None
        )
        context |= bind(run_id=run_id)
        log.info("pass started (trigger %s%s)", trigger, ", dry run" if dry_run else "")
        with fewer_collections():  # a third of a large pass's CPU was the collector's
            result = _run_recorded(
                run_id,
                lease,
                partner=partner,
                partner_crm=partner_crm,
                vendor_crm=vendor_crm,
                mappings=mappings,
                store=store,
                dry_run=dry_run,
                now=now,
                hooks=hooks,
                overlap=overlap,
                batch_size=batch_size,
                progress=progress,
                trigger=trigger,
                crash_at=crash_at,
                full=full,
                only=only,
                cycle=cycle,
            )
        log.info(
            "pass finished: %s (%d record error(s), %d open conflict(s))",
            result.status,
            len(result.errors),
            result.open_conflicts,
        )
        return result
    finally:
        if lease is not None:
            lease.release()
        unbind(context)


def _checked(
    lease: LockLease | None, crash_at: Callable[[str], None] | None
) -> Callable[[str], None] | None:
    """The pass's named-step hook: a test's ``crash_at``, then the lock check."""
    if lease is None:
        return crash_at

    def step(point: str) -> None:
        if crash_at is not None:
            crash_at(point)
        lease.check()

    return step


def _run_recorded(
    run_id: int,
    lease: LockLease | None,
    *,
    partner: PartnerConfig,
    partner_crm: CRMAdapter,
    vendor_crm: CRMAdapter,
    mappings: Sequence[ObjectMapping],
    store: StateStore,
    dry_run: bool,
    now: datetime | None,
    hooks: Iterable[Hook],
    overlap: timedelta,
    batch_size: int,
    progress: Progress | None,
    trigger: str,
    crash_at: Callable[[str], None] | None,
    full: bool = False,
    only: Mapping[str, Mapping[Side, Collection[str]]] | None = None,
    cycle: ProgramCycle | None = None,
) -> PassResult:
    # here, not at the top: the engine's orchestration imports this module's types
    from connector.engine.sync import SyncPass

    crash_at = _checked(lease, crash_at)
    ctx = PassContext(
        partner=partner,
        partner_crm=partner_crm,
        vendor_crm=vendor_crm,
        store=store,
        now=now or utcnow(),
        dry_run=dry_run,
        run_id=run_id,
        crash_at=crash_at,
        cycle=cycle,
    )
    result = PassResult(partner.id, run_id, Plan(), dry_run=dry_run)
    calls_before = {side: dict(ctx.crm(side).api_calls()) for side in ("partner", "vendor")}
    sync = SyncPass(
        mappings=mappings,
        store=store,
        ctx=ctx,
        hooks=list(hooks),
        overlap=overlap,
        batch_size=batch_size,
        progress=progress,
        crash_at=crash_at,
        full=full,
        only=only,
    )
    try:
        sync.run()
        # in a dry run too: the hooks plan their effects, ctx.apply only records them
        for hook in sync.hooks:
            hook.after_pass(ctx)
    except AdapterError as exc:
        result.status = "fatal"
        result.error = str(exc)
        log.error("pass of %s stopped: %s", partner.id, exc)
    except LockLost as exc:
        result.status = "interrupted"
        result.error = str(exc)
    except BaseException as exc:
        # not a record's problem (a full disk, Ctrl-C): say so in the run, then stop
        with contextlib.suppress(Exception):
            sync.flush_outcomes()
            store.finish_run(
                run_id,
                status="interrupted",
                counts=dict(sync.counts),
                api_calls={},
                error=f"stopped by {type(exc).__name__}: {exc}",
            )
        raise
    finally:
        ctx.close()  # the pass's background writer (PassContext.apply_soon), if any
        sync.flush_outcomes()
    result.plan = sync.plan
    result.effects = ctx.effects
    result.mapping_changes = sync.migration.lines
    result.mapping_share = {k: v.as_dict() for k, v in sync.migration.share.items()}
    result.counts = sync.counts
    result.errors = sync.errors
    result.open_conflicts = len(store.conflicts(partner.id))
    calls: dict[str, Any] = {}
    for side in ("partner", "vendor"):
        s: Side = side
        before = calls_before[s]
        for kind, n in ctx.crm(s).api_calls().items():
            delta = n - before.get(kind, 0)
            if delta:
                calls[f"{side}.{kind}"] = delta
    result.api_calls = calls
    if result.status not in ("fatal", "interrupted"):
        if result.errors:
            result.status = "failed"
        elif result.open_conflicts:
            result.status = "conflicts"
    recorded: dict[str, Any] = dict(result.counts) | {"plan": dict(sync.plan.counts())}
    if program := result.effect_counts():
        recorded["program"] = dict(program)
    store.finish_run(
        run_id,
        status=result.status,
        counts=recorded,
        api_calls=calls,
        error=result.error,
    )
    return result
