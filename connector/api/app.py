"""The program object behind :mod:`connector.api` (which exposes these names lazily, so
that ``dealsync check`` and ``--help`` do not load the engine, the store or the HubSpot
client: issue 17).

``Dealsync(project)`` owns the state store and one adapter per portal (the vendor
portal's adapter is shared by every partner connection, so its rate limiter sees the
whole program's traffic). Its commands are grouped by concern: the passes, setup and
status here; e-mail in :mod:`connector.api.mail`; registrations, commissions, partner
settings and tokens in :mod:`connector.api.program`; conflicts in
:mod:`connector.api.conflicts`; the lead's rights (source and erasure requests) in
:mod:`connector.api.privacy`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connector.adapters.base import (
    AdapterError,
    CRMAdapter,
    PortalUnreachable,
)
from connector.adapters.naming import Naming
from connector.adapters.ratelimit import use_store
from connector.adapters.registry import BuildContext, PortalUnusable, kind_of
from connector.api.check import check_config as check_config
from connector.api.conflicts import ConflictCommands
from connector.api.errors import UNUSABLE as UNUSABLE
from connector.api.errors import ConnectionUnusable as ConnectionUnusable
from connector.api.errors import DealsyncError as DealsyncError
from connector.api.errors import DeliveryBusy as DeliveryBusy
from connector.api.lifecycle import LifecycleCommands
from connector.api.lifecycle import RegistrationRefused as RegistrationRefused
from connector.api.lifecycle import Withdrawal as Withdrawal
from connector.api.mail import MailCommands
from connector.api.privacy import PrivacyCommands
from connector.api.privacy import default_requester as default_requester
from connector.api.privacy import no_record as no_record
from connector.api.program import ProgramCommands
from connector.api.program import consent_outlook as consent_outlook
from connector.api.program import register_lead as register_lead
from connector.api.program import registration_emails as registration_emails
from connector.api.review import REJECT_CODES as REJECT_CODES  # the CLI's help lists them
from connector.api.review import ReviewCommands
from connector.config import ConfigError as ConfigError  # re-exported for the CLI
from connector.config import Problem as Problem
from connector.config import Project, load_project
from connector.config import check_project as check_project
from connector.config import shown as shown
from connector.config.check import errors_of as errors_of
from connector.config.check import missing_credentials, partner_token_env
from connector.config.models import PartnerConfig, PortalConfig
from connector.config.online import OnlineCheck, config_problem
from connector.engine.cycle import ProgramCycle, RoundCycle
from connector.engine.effects import summary as effect_summary  # noqa: F401  (the CLI prints it)
from connector.engine.hooks import Hook
from connector.engine.plan import Associate as Associate  # the CLI prints them
from connector.engine.plan import Plan
from connector.engine.plan import Update as Update  # resync prints what it wrote
from connector.engine.run import EXIT_FAILED as EXIT_FAILED  # the CLI's exit codes
from connector.engine.run import EXIT_FATAL as EXIT_FATAL
from connector.engine.sync import (
    PassResult,
    Progress,
    required_properties,
    run_pass,
)
from connector.logs import LOG_FORMATS as LOG_FORMATS  # the CLI's --log-format choices
from connector.logs import LOG_LEVELS as LOG_LEVELS
from connector.logs import configure_logging as configure_logging
from connector.records import PropertySpec, Side, utcnow
from connector.scale.budget import store_url
from connector.state import StateStore
from connector.state.store import LockHeld as LockHeld  # the CLI reports it as an error line
from connector.state.tables import (
    MappingVersion,
    Run,
    RunRecord,
)

log = logging.getLogger("dealsync.api")

AdapterFactory = Callable[[str, PortalConfig], CRMAdapter]

LOCK_TTL_ENV = "DEALSYNC_LOCK_TTL_SECONDS"

# passes at once in `sync --all` (issue 17); 1: one after another
DEFAULT_CONCURRENCY = 4
ALL_STAGE = "connections synced"
"""The progress stage :meth:`Dealsync.sync_all` reports when passes run at once: one
update as each connection's pass ends (done of all), instead of the passes' stages."""


def lock_ttl_from(env: Mapping[str, str]) -> timedelta | None:
    """The pass lock's TTL from ``DEALSYNC_LOCK_TTL_SECONDS`` (unset: 30 minutes). A
    running pass renews its lock every third of it; a holder on another host that
    stopped is taken over once it expires."""
    text = (env.get(LOCK_TTL_ENV) or "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 7 * 24 * 3600:
        raise DealsyncError(
            f"{LOCK_TTL_ENV}={text!r}: give whole seconds between 1 and 604800 "
            "(or leave it unset for 1800)"
        )
    return timedelta(seconds=int(text))


def default_hooks(project: Project) -> list[Hook]:
    """The program's rules, in the order they run at each hook point."""
    from connector.hooks.commission import CommissionHook
    from connector.hooks.consent import ConsentHook
    from connector.hooks.expiry import ExpiryHook
    from connector.hooks.notifications import NotificationHook
    from connector.hooks.registration import RegistrationHook

    rules, mappings = project.rules, project.mappings
    return [
        RegistrationHook(rules, mappings),
        CommissionHook(rules, mappings),
        ConsentHook(rules, mappings),
        NotificationHook(rules, mappings),
        ExpiryHook(rules, mappings),
    ]


def default_adapter_factory(project: Project, env: Mapping[str, str]) -> AdapterFactory:
    """Build each portal's adapter with its kind's registry entry
    (:mod:`connector.adapters.registry`): a new CRM needs no change here."""
    ctx = BuildContext(env=env, resolve=project.resolve)

    def build(name: str, portal: PortalConfig) -> CRMAdapter:
        label = (
            f"partner {name}"
            if isinstance(portal, PartnerConfig)
            else ("vendor" if name == "vendor" else f"vendor {name}")
        )
        try:
            return kind_of(portal.adapter).build(name, portal.settings, replace(ctx, portal=label))
        except KeyError as exc:
            raise DealsyncError(f"portal {name!r}: {exc.args[0]}") from None
        except PortalUnusable as exc:
            raise DealsyncError(str(exc)) from exc

    return build


@dataclass
class ConnectionStatus:
    partner: str
    name: str
    links: dict[str, dict[str, int]]
    open_conflicts: int
    failing_records: int
    last_run: dict[str, Any] | None
    unusable: str | None = None  # why this connection cannot run now (its credentials)
    tier: str = ""
    credited_mrr: str = "0"
    active_registrations: int = 0
    capacity: int = 0
    held_emails: int = 0  # outbox messages a privacy check held: release or cancel them
    # commissions earned by kind of sale (shared, vendor_led, self_serve), and the won
    # deals that missed this partner's ownership window (``dealsync commissions``)
    commissions: dict[str, int] = field(default_factory=dict)
    not_credited: int = 0
    pending_review: int = 0  # registrations waiting for review: approve or reject them


def credentials_of(portal: PortalConfig) -> str:
    """Where a portal's secrets and address come from, for messages: the token's
    variable and the host (never the token itself), as far as its kind has them."""
    try:
        settings = portal.settings
    except Exception:  # the loader refused the file already
        return ""
    parts = []
    if token_env := getattr(settings, "token_env", None):
        parts.append(f"token from {token_env}")
    if host := getattr(settings, "host", None):
        parts.append(f"host {host}")
    return ", ".join(parts)


@dataclass
class SetupReport:
    """What ``dealsync setup`` did per portal ("vendor" or the partner's id): the
    properties it created, the portals it could not set up (with why and what to do;
    the others were set up), and the online check's problems afterwards."""

    installed: dict[str, list[str]]
    failed: dict[str, str]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.failed and not errors_of(self.problems)


class Dealsync(
    MailCommands,
    ProgramCommands,
    ConflictCommands,
    ReviewCommands,
    PrivacyCommands,
    LifecycleCommands,
):
    """One configured program: its state store, its portals, its connections."""

    def __init__(
        self,
        project: Project,
        *,
        env: Mapping[str, str] | None = None,
        adapter_factory: AdapterFactory | None = None,
        hooks: list[Hook] | None = None,
        store: StateStore | None = None,
    ) -> None:
        """``store``: an open state store to share (the service's connections, the
        threads of :meth:`sync_all`); None: opened from the project on first use."""
        self.project = project
        self.env = dict(os.environ if env is None else env)
        # one rate budget per portal across processes: in the state's PostgreSQL (or
        # DEALSYNC_LIMITS_URL); none on the embedded SQLite (docs/scale-out.md)
        use_store(store_url(self.state_url, self.env))
        self._factory = adapter_factory or default_adapter_factory(project, self.env)
        self._adapters: dict[str, CRMAdapter] = {}
        self._store: StateStore | None = store
        self._default_hooks = hooks is None
        self.hooks = list(hooks) if hooks is not None else default_hooks(project)

    @classmethod
    def open(cls, config: str | None, *, check_env: bool = True) -> Dealsync:
        """The program configured at ``config`` (None: ``$DEALSYNC_CONFIG`` or
        ``./dealsync.yaml``): what every CLI command starts from. A partner's missing
        credentials do not refuse the program: only that connection cannot run
        (:meth:`unusable`); the vendor's, shared by every connection, do."""
        return cls(load_project(config, check_env=check_env, partner_env=False))

    # ------------------------------------------------------------------ plumbing

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.state_url, lock_ttl=lock_ttl_from(self.env))
        return self._store

    @property
    def state_url(self) -> str:
        url = self.project.config.state_url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///") :]
            if rel and rel != ":memory:":
                return "sqlite:///" + str(self.project.resolve(rel))
        return url

    def vendor(self) -> CRMAdapter:
        cfg = self.project.config.vendor
        if "@vendor" not in self._adapters:
            self._adapters["@vendor"] = self._factory(cfg.name, cfg)
        return self._adapters["@vendor"]

    def unusable(self, partner_id: str) -> str | None:
        """Why this partner's connection cannot run with this environment (its kind's
        secrets, e.g. a token variable that is not set, named), or None. Read from
        the config and the environment each time: no CRM is called."""
        partners = self.project.config.partners
        index = next((i for i, p in enumerate(partners) if p.id == partner_id), None)
        if index is None:
            return None
        reasons = missing_credentials(
            partners[index],
            self.env,
            at=f"partners[{index}]",
            suggested_env=partner_token_env(partner_id),
        )
        return "; ".join(reasons) or None

    def partner_crm(self, partner_id: str) -> CRMAdapter:
        """The partner's adapter; :class:`ConnectionUnusable` (naming the variable)
        when its credentials are missing, so that connection alone fails."""
        reason = self.unusable(partner_id)
        if reason is not None:
            raise ConnectionUnusable(partner_id, reason)
        if partner_id not in self._adapters:
            self._adapters[partner_id] = self._factory(partner_id, self.partner(partner_id))
        return self._adapters[partner_id]

    def partner(self, partner_id: str) -> PartnerConfig:
        try:
            return self.project.config.partner(partner_id)
        except KeyError as exc:
            raise DealsyncError(str(exc.args[0])) from None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ commands

    def _usable_partners(self) -> tuple[dict[str, CRMAdapter], dict[str, str]]:
        """Every partner's adapter that can be built, and why each other one cannot
        (its credentials, named): ``setup`` and ``check --online`` go on without it."""
        usable: dict[str, CRMAdapter] = {}
        broken: dict[str, str] = {}
        for p in self.project.config.partners:
            try:
                usable[p.id] = self.partner_crm(p.id)
            except ConnectionUnusable as exc:
                broken[p.id] = exc.reason
            except DealsyncError as exc:
                broken[p.id] = str(exc)
        return usable, broken

    def _needed_properties(
        self, partners: Mapping[str, CRMAdapter] | None = None
    ) -> list[tuple[str, Side, CRMAdapter, list[PropertySpec]]]:
        """Per portal (key, side, adapter): the custom properties the engine (its
        markers as this CRM spells them) and the hooks need there. The hooks are asked
        per partner, with that pair's names: a partner's specs go to its portal, the
        vendor's to the vendor's. ``partners``: only these (default: every partner's,
        raising :class:`ConnectionUnusable` for one that cannot run)."""
        portals: list[tuple[str, Side, CRMAdapter]] = [("vendor", "vendor", self.vendor())]
        if partners is None:
            partners = {p.id: self.partner_crm(p.id) for p in self.project.config.partners}
        portals += [(pid, "partner", crm) for pid, crm in partners.items()]
        extra: dict[str, list[PropertySpec]] = {key: [] for key, _, _ in portals}
        for key, _, crm in portals[1:]:
            names: dict[Side, Naming] = {"vendor": self.vendor().naming, "partner": crm.naming}
            for hook in self.hooks:
                for side, spec in hook.required_properties(names):
                    extra["vendor" if side == "vendor" else key].append(spec)
        out: list[tuple[str, Side, CRMAdapter, list[PropertySpec]]] = []
        for key, side, crm in portals:
            mappings = self.project.mappings if side == "vendor" else self.project.mappings_for(key)
            needed = required_properties(mappings, {side: crm.naming})[side]
            for spec in extra[key]:  # the vendor's: once, whatever the number of partners
                if spec not in needed:
                    needed.append(spec)
            out.append((key, side, crm, needed))
        return out

    def setup(self) -> dict[str, list[str]]:
        """Install the custom properties the engine needs in every portal (idempotent)."""
        return {
            key: crm.ensure_properties(needed) for key, _, crm, needed in self._needed_properties()
        }

    def setup_checked(self, config_file: str | Path | None = None) -> SetupReport:
        """``dealsync setup``: install the custom properties in every portal that can
        be reached, then run the online check (:meth:`online_check`) against them —
        dealsync's own properties are there now, so a missing one is an error. A
        portal that cannot be set up (a partner's token variable not set, a token the
        portal refuses, a host that does not answer) is reported with its variable
        and host and what to do; the others are still set up and checked."""
        partners, broken = self._usable_partners()
        failed = {
            pid: f"{reason}; then run `dealsync setup` again" for pid, reason in broken.items()
        }
        installed: dict[str, list[str]] = {}
        names = {p.id: p for p in self.project.config.partners}
        for key, _, crm, needed in self._needed_properties(partners):
            try:
                installed[key] = crm.ensure_properties(needed)
            except PortalUnreachable as exc:
                failed[key] = f"{exc}; then run `dealsync setup` again"  # says what to try
            except (AdapterError, DealsyncError) as exc:
                portal = self.project.config.vendor if key == "vendor" else names[key]
                where = credentials_of(portal)
                failed[key] = (
                    f"could not install its properties{f' ({where})' if where else ''}: {exc}; "
                    "check that the token is the portal's (its private app needs the "
                    "crm.schemas.*.write scopes) and that the host answers, then run "
                    "`dealsync setup` again"
                )
        online = self.online_check(
            config_file, skip=set(failed), installable=False, report_unusable=False
        )
        return SetupReport(installed, failed, online.problems)

    def check_online(self, config_file: str | Path | None = None) -> list[Problem]:
        """``dealsync check --online``: the mappings and rules against every portal's
        real properties and pipelines (:mod:`connector.config.online`); ``config_file``
        is the config's path as the admin named it (files are named like that)."""
        return self.online_check(config_file).problems

    def online_check(
        self,
        config_file: str | Path | None = None,
        *,
        timeout: float | None = None,
        tolerate: Sequence[str] | set[str] = (),
        skip: set[str] | None = None,
        installable: bool = True,
        report_unusable: bool = True,
    ) -> OnlineCheck:
        """The online check of every portal that can be reached; a partner whose
        credentials are missing is one error naming the variable (a warning when
        tolerated; none with ``report_unusable=False``, its caller said so already)
        and the others are checked. ``skip``: portal keys ("vendor", partner ids) not
        to read; ``timeout``, ``tolerate``: as in
        :func:`connector.config.online.run_online_check` (the service's reload);
        ``installable``: properties ``setup`` creates are a warning when missing."""
        from connector.config.online import run_online_check

        skip = skip or set()
        partners, broken = self._usable_partners()
        setup: dict[Side, list[tuple[str, str]]] = {"vendor": [], "partner": []}
        if installable:
            for _, side, _, specs in self._needed_properties(partners):
                setup[side] += [(spec.object_type, spec.name) for spec in specs]
        creds = {"vendor": credentials_of(self.project.config.vendor)}
        creds |= {p.id: credentials_of(p) for p in self.project.config.partners}
        result = run_online_check(
            self.project,
            None if "vendor" in skip else self.vendor(),
            {pid: crm for pid, crm in partners.items() if pid not in skip},
            setup,
            config_file=config_file,
            timeout=timeout,
            tolerate=set(tolerate),
            credentials=creds,
        )
        if report_unusable:
            index = {p.id: i for i, p in enumerate(self.project.config.partners)}
            for pid, reason in broken.items():
                result.problems.append(
                    config_problem(
                        self.project,
                        ("partners", index[pid]),
                        f"partner {pid!r} was not checked online: {reason}",
                        "the other portals were checked; set the variable, then run "
                        "the check again",
                        config_file=config_file,
                        warning=pid in tolerate,
                    )
                )
                result.unreadable.setdefault(pid, reason)
        return result

    def sync(
        self,
        partner_id: str,
        *,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: Progress | None = None,
        trigger: str = "cli",
        crash_at: Callable[[str], None] | None = None,
        full: bool = False,
        only: Mapping[str, Mapping[Side, Sequence[str]]] | None = None,
        cycle: ProgramCycle | None = None,
    ) -> PassResult:
        """A pass of one connection. ``full`` (``sync --full``): every linked pair is
        also re-read by id on both sides and reconciled, so drift detection did not
        see (an edit under an old modified time) is merged by the fields' rules;
        ``only``: just these records (:meth:`resync`); ``cycle``: the program-wide
        vendor reads shared with the other passes of a cycle (:meth:`sync_all`, the
        service; None: this pass reads its own)."""
        settings = self.project.config.sync
        result = run_pass(
            partner=self.partner(partner_id),
            partner_crm=self.partner_crm(partner_id),
            vendor_crm=self.vendor(),
            mappings=self.project.mappings_for(partner_id),
            store=self.store,
            dry_run=dry_run,
            now=now,
            hooks=self.hooks,
            overlap=timedelta(seconds=settings.overlap_seconds),
            batch_size=settings.batch_size,
            progress=progress,
            trigger=trigger,
            crash_at=crash_at,
            full=full,
            only=only,
            cycle=cycle,
        )
        if not dry_run and result.status != "fatal" and self.transport() is not None:
            deliveries = self._deliver_after_pass(now, crash_at)
            if deliveries is not None:  # the pass's summary tells what was sent
                sent = sum(1 for d in deliveries if d.ok)
                result.delivered = {"sent": sent, "failed": len(deliveries) - sent}
        return result

    def resync(
        self,
        obj: str,
        record_id: str,
        *,
        side: Side = "partner",
        connection: str | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> PassResult:
        """Re-read one linked pair (``record_id`` on ``side``) by id on both sides and
        merge it as ``sync --full`` would, writing only differences; nothing else is
        detected or written, and the cursors do not move. The connection is the one
        given, else the one partner whose link holds the record (a partner-side id
        may be linked in several partners' portals: then ``connection`` is needed)."""
        try:
            mapping = self.project.object(obj)
        except KeyError as exc:
            raise DealsyncError(str(exc.args[0])) from None
        partners = [connection] if connection else [p.id for p in self.project.config.partners]
        if connection:
            self.partner(connection)  # an unknown partner id is named
        found = []
        for pid in partners:
            link = self.store.link_refs(pid, mapping.name, side, [record_id], base=False).get(
                record_id
            )
            if link is not None and link.status == "active" and link.partner_id and link.vendor_id:
                found.append((pid, link))
        where = f"connection {connection}" if connection else "any connection"
        if not found:
            raise DealsyncError(
                f"{mapping.name} {record_id} ({side} id) is not linked in {where}: "
                "nothing to resync (check the id and --side; `dealsync status` lists links)"
            )
        if len(found) > 1:
            names = ", ".join(pid for pid, _ in found)
            raise DealsyncError(
                f"{mapping.name} {record_id} ({side} id) is linked in several connections "
                f"({names}): give --connection"
            )
        pid, link = found[0]
        assert link.partner_id is not None and link.vendor_id is not None
        return self.sync(
            pid,
            dry_run=dry_run,
            now=now,
            trigger="resync",
            only={mapping.name: {"partner": [link.partner_id], "vendor": [link.vendor_id]}},
        )

    def round_cycle(self, round_id: str, partners: Sequence[str]) -> RoundCycle:
        """The program's cycle of one job of an enqueued round (``dealsync worker``):
        its program-wide vendor reads kept in this program's state store, shared with
        the round's other jobs (:class:`~connector.engine.cycle.RoundCycle`)."""
        from connector.state.round_windows import RoundWindows

        return RoundCycle(tuple(partners), round_id=round_id, shared=RoundWindows(self.store))

    def sync_all(
        self,
        partners: Sequence[str] | None = None,
        *,
        concurrency: int | None = None,
        **kwargs: Any,
    ) -> list[PassResult]:
        """A pass of each of these connections (None: every partner's); results in
        the partners' order. ``concurrency``: up to that many passes at once, in
        threads (1: one after another, in order), so that while one pass reads its
        partner's portal the vendor portal's budget serves another (issue 17). A
        connection that cannot run (:class:`ConnectionUnusable`) does not stop the
        others: its result has status :data:`UNUSABLE`, the reason as its error and
        no run (its exit code is fatal). The passes share one :class:`ProgramCycle`:
        the program-wide vendor data (won deals, web events) is read once for all of
        them, not once per partner (issue 17). Each worker thread has its own vendor
        adapter (a pass's API call counts are its own, as in the service); the
        portal's rate limiter is one per portal in the process, shared by them all.
        ``concurrency`` None: :data:`DEFAULT_CONCURRENCY`. Passes run at once only when
        the vendor's adapter may be called from several threads (``thread_safe``:
        HubSpot); otherwise (an embedded CRM file) one after another — said in the
        log, as a warning when more than 1 was asked for. ``progress`` with passes at
        once: one update as each connection's pass ends (stage :data:`ALL_STAGE`, done
        of all), not the passes' own stages, which would take the one display in turns."""
        asked = concurrency
        concurrency = DEFAULT_CONCURRENCY if concurrency is None else concurrency
        if concurrency < 1:
            raise DealsyncError(f"concurrency must be at least 1, got {concurrency!r}")
        ids = (
            list(partners) if partners is not None else [p.id for p in self.project.config.partners]
        )
        kwargs.setdefault("cycle", ProgramCycle(tuple(ids)))
        if concurrency > 1 and len(ids) > 1:
            vendor = self.vendor()
            if getattr(type(vendor), "thread_safe", False) is not True:
                (log.warning if asked is not None else log.info)(
                    "sync --all: the passes run one after another, not %d at once: the "
                    "vendor portal's adapter (%s) cannot be called from several passes "
                    "at once (a HubSpot vendor portal can)",
                    concurrency,
                    type(vendor).__name__,
                )
                concurrency = 1
        if concurrency == 1 or len(ids) < 2:
            return [self._pass_of(self, pid, kwargs) for pid in ids]
        # passes at once cannot share one display of their stages (each would restart
        # it in turn): the display counts the connections whose pass has ended
        progress = kwargs.pop("progress", None)
        shown_lock = threading.Lock()
        ended = 0
        store = self.store  # opened once here, shared by every thread's program object
        local = threading.local()
        built = threading.Lock()

        def run(pid: str) -> PassResult:
            app = getattr(local, "app", None)
            if app is None:
                app = local.app = self._sibling(store)
            try:
                with built:  # the partner's adapter is built once, in this object
                    app._adapters[pid] = self.partner_crm(pid)
            except ConnectionUnusable as exc:
                show_ended()
                return self._unusable_result(pid, exc, kwargs)
            try:
                return self._pass_of(app, pid, kwargs)
            finally:
                show_ended()

        def show_ended() -> None:
            nonlocal ended
            with shown_lock:
                ended += 1
                if progress is not None:
                    progress(ALL_STAGE, ended, len(ids))

        workers = min(concurrency, len(ids))
        with ThreadPoolExecutor(workers, thread_name_prefix="dealsync-all") as pool:
            return list(pool.map(run, ids))

    def _sibling(self, store: StateStore) -> Dealsync:
        """A program object for one worker thread of :meth:`sync_all`: the same
        project, environment, adapter factory and state store; its own vendor adapter
        (and hooks, when they are the defaults)."""
        return type(self)(
            self.project,
            env=self.env,
            adapter_factory=self._factory,
            hooks=None if self._default_hooks else list(self.hooks),
            store=store,
        )

    @staticmethod
    def _pass_of(app: Dealsync, pid: str, kwargs: Mapping[str, Any]) -> PassResult:
        try:
            return app.sync(pid, **kwargs)
        except ConnectionUnusable as exc:
            return Dealsync._unusable_result(pid, exc, kwargs)

    @staticmethod
    def _unusable_result(
        pid: str, exc: ConnectionUnusable, kwargs: Mapping[str, Any]
    ) -> PassResult:
        log.error("%s", exc)
        return PassResult(
            pid,
            None,
            Plan(),
            status=UNUSABLE,
            error=exc.reason,
            dry_run=bool(kwargs.get("dry_run")),
        )

    # ------------------------------------------------------------------ reading the state

    def mapping_history(self, connection: str | None = None) -> list[MappingVersion]:
        """The mapping versions each connection synced with, oldest first: when each
        was recorded and which fields it added, removed or changed (mapping
        migrations, :mod:`connector.engine.migrate`). An unknown partner is an error,
        not an empty list."""
        if connection:
            self.partner(connection)
        return self.store.mapping_versions(connection)

    def runs(self, connection: str | None = None, limit: int = 20) -> list[Run]:
        """Run history, newest first; a killed pass's run is marked interrupted first."""
        self.store.interrupt_orphaned_runs(connection)
        return self.store.runs(connection, limit)

    def run(
        self, run_id: int, *, failed_only: bool = False, connection: str | None = None
    ) -> tuple[Run, list[RunRecord]]:
        """One run and its per-record outcomes (only the failed ones with ``failed_only``);
        the orphaned runs of ``connection`` (all when None) are marked interrupted first."""
        self.store.interrupt_orphaned_runs(connection)
        run = self.store.run(run_id)
        if run is None:
            raise DealsyncError(f"no run #{run_id}")
        return run, self.store.run_records(run_id, "failed" if failed_only else None)

    def failures(
        self, connection: str | None = None, limit: int = 20
    ) -> list[tuple[Run, RunRecord | None]]:
        """What failed in the newest ``limit`` runs (of ``connection``, all when None),
        newest first: each failed record with its run, and a run that failed as a
        whole (fatal, interrupted, stopped) with no record to blame as ``(run, None)``
        — ``dealsync runs --failed`` without a run id."""
        runs = self.runs(connection, limit)
        records: dict[int, list[RunRecord]] = {}
        for rec in self.store.failed_run_records([r.id for r in runs if r.id is not None]):
            records.setdefault(rec.run_id, []).append(rec)
        out: list[tuple[Run, RunRecord | None]] = []
        for run in runs:
            mine = records.get(run.id or 0, [])
            out.extend((run, rec) for rec in mine)
            if not mine and (run.error or run.status in ("failed", "fatal", "interrupted")):
                out.append((run, None))
        return out

    def status(self, now: datetime | None = None) -> list[ConnectionStatus]:
        now = now or utcnow()
        self.store.interrupt_orphaned_runs()  # a killed pass's run is not "running"
        out = []
        held: dict[str | None, int] = {}
        for (partner, _kind, status), n in self.outbox.counts().items():
            if status == "held":
                held[partner] = held.get(partner, 0) + n
        earned = self.registry.commission_counts()
        missed = self.registry.uncredited_counts()
        reviewing = {
            partner: n
            for (partner, status), n in self.registry.status_counts().items()
            if status == "pending"
        }
        for p in self.project.config.partners:
            runs = self.store.runs(p.id, limit=1)
            last = None
            if runs:
                r = runs[0]
                last = {
                    "id": r.id,
                    "status": r.status,
                    "started_at": r.started_at.isoformat(),
                    "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                    "dry_run": r.dry_run,
                }
            tier, capacity, credited = self.registry.tier(p.id, self.project.rules, now, p.tier)
            out.append(
                ConnectionStatus(
                    partner=p.id,
                    name=p.name,
                    links=self.store.link_counts(p.id),
                    open_conflicts=len(self.store.conflicts(p.id)),
                    failing_records=self.store.retry_count(p.id),
                    last_run=last,
                    unusable=self.unusable(p.id),
                    tier=tier,
                    credited_mrr=str(credited),
                    active_registrations=self.registry.active_count(p.id, now),
                    capacity=capacity,
                    held_emails=held.get(p.id, 0),
                    commissions={k: n for (pid, k), n in sorted(earned.items()) if pid == p.id},
                    not_credited=missed.get(p.id, 0),
                    pending_review=reviewing.get(p.id, 0),
                )
            )
        return out
