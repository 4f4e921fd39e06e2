"""The Python API the CLI and the service are thin layers over.

``Dealsync(project)`` owns the state store and one adapter per portal (the vendor
portal's adapter is shared by every partner connection, so its rate limiter sees the
whole program's traffic).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connector.adapters.base import CRMAdapter
from connector.adapters.naming import Naming
from connector.adapters.registry import BuildContext, PortalUnusable, kind_of
from connector.config import ConfigError as ConfigError  # re-exported for the CLI
from connector.config import Problem as Problem
from connector.config import Project, config_path_from, load_project
from connector.config import check_project as check_project
from connector.config import shown as shown
from connector.config.check import errors_of as errors_of
from connector.config.check import missing_credentials, partner_token_env
from connector.config.models import PartnerConfig, PortalConfig
from connector.engine.effects import summary as effect_summary  # noqa: F401  (the CLI prints it)
from connector.engine.hooks import Hook, PassContext
from connector.engine.plan import Associate as Associate  # the CLI prints them
from connector.engine.plan import Plan
from connector.engine.plan import Update as Update  # resync prints what it wrote
from connector.engine.reconcile import FieldPlan
from connector.engine.run import EXIT_FAILED as EXIT_FAILED  # the CLI's exit codes
from connector.engine.run import EXIT_FATAL as EXIT_FATAL
from connector.engine.sync import (
    PassResult,
    Progress,
    apply_update,
    required_properties,
    run_pass,
)
from connector.engine.values import ValueError_, canonical
from connector.mail.outbox import Delivery, Outbox, OutboxBusy
from connector.mail.transport import Transport, transport_from_env
from connector.program.decide import Person, Submission
from connector.records import PropertySpec, Side, utcnow
from connector.state import StateStore
from connector.state.leads import set_subscription
from connector.state.outbox import OutboxError
from connector.state.registry import Registry
from connector.state.store import LockHeld as LockHeld  # the CLI reports it as an error line
from connector.state.tables import (
    Commission,
    ConflictRow,
    MappingVersion,
    OutboxMessage,
    PartnerSubscription,
    Registration,
    Run,
    RunRecord,
)
from connector.state.tokens import TokenInfo, parse_expiry


class DealsyncError(Exception):
    """A problem the user must fix; the CLI prints it as one line and exits 3."""


class ConnectionUnusable(DealsyncError):
    """One partner's connection cannot run with this environment (its token variable
    is not set, say): that connection fails, the others run. The message names the
    variable and says what to do."""

    def __init__(self, connection: str, reason: str) -> None:
        super().__init__(f"connection {connection!r} cannot run: {reason}")
        self.connection, self.reason = connection, reason


UNUSABLE = "unusable"
"""The :attr:`PassResult.status` of a connection :meth:`Dealsync.sync_all` could not
run (no run is recorded; :attr:`PassResult.error` says why)."""


class DeliveryBusy(DealsyncError):
    """Another process is delivering the outbox (``outbox send`` says so, exit 3)."""


log = logging.getLogger("dealsync.api")

AdapterFactory = Callable[[str, PortalConfig], CRMAdapter]

LOCK_TTL_ENV = "DEALSYNC_LOCK_TTL_SECONDS"


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
    from connector.hooks.notifications import NotificationHook
    from connector.hooks.registration import RegistrationHook

    rules, mappings = project.rules, project.mappings
    return [
        RegistrationHook(rules, mappings),
        CommissionHook(rules, mappings),
        ConsentHook(rules, mappings),
        NotificationHook(rules, mappings),
    ]


def default_adapter_factory(project: Project, env: Mapping[str, str]) -> AdapterFactory:
    """Build each portal's adapter with its kind's registry entry
    (:mod:`connector.adapters.registry`): a new CRM needs no change here."""
    ctx = BuildContext(env=env, resolve=project.resolve)

    def build(name: str, portal: PortalConfig) -> CRMAdapter:
        try:
            return kind_of(portal.adapter).build(name, portal.settings, ctx)
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


class Dealsync:
    """One configured program: its state store, its portals, its connections."""

    def __init__(
        self,
        project: Project,
        *,
        env: Mapping[str, str] | None = None,
        adapter_factory: AdapterFactory | None = None,
        hooks: list[Hook] | None = None,
    ) -> None:
        self.project = project
        self.env = dict(os.environ if env is None else env)
        self._factory = adapter_factory or default_adapter_factory(project, self.env)
        self._adapters: dict[str, CRMAdapter] = {}
        self._store: StateStore | None = None
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

    def _needed_properties(self) -> list[tuple[str, Side, CRMAdapter, list[PropertySpec]]]:
        """Per portal (key, side, adapter): the custom properties the engine (its
        markers as this CRM spells them) and the hooks need there. The hooks are asked
        per partner, with that pair's names: a partner's specs go to its portal, the
        vendor's to the vendor's."""
        portals: list[tuple[str, Side, CRMAdapter]] = [("vendor", "vendor", self.vendor())]
        portals += [(p.id, "partner", self.partner_crm(p.id)) for p in self.project.config.partners]
        extra: dict[str, list[PropertySpec]] = {key: [] for key, _, _ in portals}
        for key, _, crm in portals[1:]:
            names: dict[Side, Naming] = {"vendor": self.vendor().naming, "partner": crm.naming}
            for hook in self.hooks:
                for side, spec in hook.required_properties(names):
                    extra["vendor" if side == "vendor" else key].append(spec)
        out: list[tuple[str, Side, CRMAdapter, list[PropertySpec]]] = []
        for key, side, crm in portals:
            needed = required_properties(self.project.mappings, {side: crm.naming})[side]
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

    def check_online(self, config_file: str | Path | None = None) -> list[Problem]:
        """``dealsync check --online``: the mappings and rules against every portal's
        real properties and pipelines (:mod:`connector.config.online`); ``config_file``
        is the config's path as the admin named it (files are named like that)."""
        from connector.config.online import check_online

        installable: dict[Side, list[tuple[str, str]]] = {"vendor": [], "partner": []}
        for _, side, _, specs in self._needed_properties():
            installable[side] += [(spec.object_type, spec.name) for spec in specs]
        partners = {p.id: self.partner_crm(p.id) for p in self.project.config.partners}
        return check_online(
            self.project, self.vendor(), partners, installable, config_file=config_file
        )

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
    ) -> PassResult:
        """A pass of one connection. ``full`` (``sync --full``): every linked pair is
        also re-read by id on both sides and reconciled, so drift detection did not
        see (an edit under an old modified time) is merged by the fields' rules;
        ``only``: just these records (:meth:`resync`)."""
        settings = self.project.config.sync
        result = run_pass(
            partner=self.partner(partner_id),
            partner_crm=self.partner_crm(partner_id),
            vendor_crm=self.vendor(),
            mappings=self.project.mappings,
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
        )
        if not dry_run and result.status != "fatal" and self.transport() is not None:
            self._deliver_after_pass(now, crash_at)
        return result

    def _deliver_after_pass(
        self, now: datetime | None, crash_at: Callable[[str], None] | None
    ) -> None:
        """A pass delivers what is due, unless another delivery is running (it sends
        the same due messages; sending them here too would send them twice)."""
        try:
            self.send_outbox(now=now, crash_at=crash_at)
        except DeliveryBusy:
            log.info("outbox not delivered after this pass: another delivery is running")

    def transport(self) -> Transport | None:
        """The configured mail transport (``DEALSYNC_MAIL_SINK`` or ``DEALSYNC_SMTP_*``)."""
        try:
            return transport_from_env(self.env)
        except ValueError as exc:
            raise DealsyncError(str(exc)) from None

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.store, sender=self.env.get("DEALSYNC_MAIL_FROM") or "dealsync@localhost")

    def send_outbox(
        self, now: datetime | None = None, crash_at: Callable[[str], None] | None = None
    ) -> list[Delivery]:
        transport = self.transport()
        if transport is None:
            raise DealsyncError(
                "no mail transport configured: set DEALSYNC_SMTP_HOST (and DEALSYNC_SMTP_PORT, "
                "DEALSYNC_SMTP_SECURITY, DEALSYNC_SMTP_USER, DEALSYNC_SMTP_PASSWORD) or DEALSYNC_MAIL_SINK"
            )
        try:
            return self.outbox.deliver(transport, now=now, crash_at=crash_at)
        except OutboxBusy as exc:
            raise DeliveryBusy(f"{exc}; try again when it is done") from None

    def release_email(self, message_id: int, *, by: str = "cli") -> OutboxMessage:
        """Let a held e-mail go: queued, sent by the next delivery (audited in its row)."""
        try:
            return self.outbox.release(message_id, by=by)
        except OutboxError as exc:
            raise DealsyncError(str(exc)) from None

    def cancel_email(self, message_id: int, *, by: str = "cli") -> OutboxMessage:
        """Never send this e-mail (held, queued or failed); the row stays, audited."""
        try:
            return self.outbox.cancel(message_id, by=by)
        except OutboxError as exc:
            raise DealsyncError(str(exc)) from None

    def settle_email(self, message_id: int, action: str, *, by: str) -> OutboxMessage:
        """``release`` or ``cancel`` an e-mail: the admin page's and the CLI's one call."""
        if action == "release":
            return self.release_email(message_id, by=by)
        if action == "cancel":
            return self.cancel_email(message_id, by=by)
        raise DealsyncError(f"{action!r}: an e-mail is released or cancelled")

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

    def sync_all(self, partners: Sequence[str] | None = None, **kwargs: Any) -> list[PassResult]:
        """A pass of each of these connections (None: every partner's), in order. A
        connection that cannot run (:class:`ConnectionUnusable`) does not stop the
        others: its result has status :data:`UNUSABLE`, the reason as its error and
        no run (its exit code is fatal)."""
        ids = partners if partners is not None else [p.id for p in self.project.config.partners]
        results = []
        for pid in ids:
            try:
                results.append(self.sync(pid, **kwargs))
            except ConnectionUnusable as exc:
                log.error("%s", exc)
                results.append(
                    PassResult(
                        pid,
                        None,
                        Plan(),
                        status=UNUSABLE,
                        error=exc.reason,
                        dry_run=bool(kwargs.get("dry_run")),
                    )
                )
        return results

    @property
    def registry(self) -> Registry:
        return self.store.registry

    # ------------------------------------------------------------------ reading the state

    def conflicts(
        self, connection: str | None = None, *, open_only: bool = True
    ) -> list[ConflictRow]:
        return self.store.conflicts(connection, "open" if open_only else None)

    def conflict(self, conflict_id: int) -> ConflictRow:
        row = self.store.conflict(conflict_id)
        if row is None:
            raise DealsyncError(f"no conflict #{conflict_id}")
        return row

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

    def registrations(
        self, partner: str | None = None, status: str | None = None, kind: str | None = None
    ) -> list[Registration]:
        return self.store.registry.registrations(partner, status, kind)

    def commissions(self, partner: str | None = None, kind: str | None = None) -> list[Commission]:
        return self.store.registry.commissions(partner, kind)

    def emails(self, status: str | None = None, kind: str | None = None) -> list[OutboxMessage]:
        return self.store.outbox.messages(status, kind)

    def email(self, message_id: int) -> OutboxMessage:
        row = self.store.outbox.get(message_id)
        if row is None:
            raise DealsyncError(f"no outbox message #{message_id}")
        return row

    def retry_emails(self, ids: Sequence[int] = ()) -> int:
        """Queue failed e-mails again (all of them, or these ids); how many were."""
        return self.store.outbox.retry(list(ids) or None)

    # ------------------------------------------------------------------ partner settings

    def set_notifications(
        self, partner: str, email: str | None, enabled: bool
    ) -> PartnerSubscription:
        """Subscribe a partner to lead notifications, or unsubscribe it."""
        cfg = self.partner(partner)
        try:
            return set_subscription(self.store, partner, email, enabled, default=cfg.notify_email)
        except ValueError as exc:
            raise DealsyncError(str(exc)) from None

    def create_token(
        self, partner: str, label: str = "", *, expires: str | None = None
    ) -> tuple[TokenInfo, str]:
        """A new API token for a partner (``expires``: 90d, 12h or an ISO date); the
        token itself is returned once and stored only as a hash."""
        self.partner(partner)
        try:
            expires_at = parse_expiry(expires) if expires is not None else None
        except ValueError as exc:
            raise DealsyncError(str(exc)) from None
        return self.store.tokens.create(partner, label, expires_at=expires_at)

    def tokens(self, partner: str | None = None) -> list[TokenInfo]:
        return self.store.tokens.list(partner)

    def revoke_token(self, partner: str, token_id: int) -> TokenInfo:
        info = self.store.tokens.revoke(token_id, partner)
        if info is None:
            raise DealsyncError(f"no token #{token_id} for partner {partner!r}")
        return info

    def status(self, now: datetime | None = None) -> list[ConnectionStatus]:
        now = now or utcnow()
        self.store.interrupt_orphaned_runs()  # a killed pass's run is not "running"
        out = []
        held: dict[str | None, int] = {}
        for (partner, _kind, status), n in self.outbox.counts().items():
            if status == "held":
                held[partner] = held.get(partner, 0) + n
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
                )
            )
        return out

    def resolve_conflict(
        self, conflict_id: int, *, take: Side | None = None, value: str | None = None
    ) -> ConflictRow:
        """Settle a manual conflict now: write the chosen value to the side(s) that
        lack it and move the base, so the next pass sees agreement.

        ``take`` keeps one side's *current* value; ``value`` sets both sides to a
        value given in the partner's terms (mapped through the field's value_map).
        """
        if (take is None) == (value is None):
            raise DealsyncError("give exactly one of --take partner|vendor or --value VALUE")
        row = self.store.conflict(conflict_id)
        if row is None:
            raise DealsyncError(f"no conflict #{conflict_id}")
        if row.status != "open":
            raise DealsyncError(f"conflict #{conflict_id} is already {row.status}")
        mapping = self.project.object(row.object)
        compiled = FieldPlan(mapping)
        fm = next(((f, m) for f, m in compiled.fields if f.key == row.field), None)
        if fm is None:
            raise DealsyncError(f"field {row.field} is no longer in mapping {mapping.name}")
        field, mapper = fm
        partner_crm, vendor_crm = self.partner_crm(row.connection), self.vendor()
        p_rec = partner_crm.read(mapping.partner_object, [row.partner_id], [field.partner]).get(
            row.partner_id
        )
        v_rec = vendor_crm.read(mapping.vendor_object, [row.vendor_id], [field.vendor]).get(
            row.vendor_id
        )
        if p_rec is None or v_rec is None:
            raise DealsyncError("one of the two records no longer exists; run a sync first")
        try:
            p_now = canonical(field.transform, p_rec.properties.get(field.partner))
            v_now = canonical(field.transform, v_rec.properties.get(field.vendor))
            if take == "partner":
                p_val, v_val = p_now, mapper.to_vendor(p_now)
            elif take == "vendor":
                p_val, v_val = mapper.to_partner(v_now), v_now
            else:
                p_val = canonical(field.transform, value)
                v_val = mapper.to_vendor(p_val)
        except ValueError_ as exc:
            raise DealsyncError(f"cannot resolve: {exc}") from None
        link = self.store.link(row.link_id)
        base: dict[str, Any] = dict(link.base) if link is not None else {}
        base[row.field] = [p_val, v_val]
        how = f"took {take}" if take else f"set to {value!r}"
        update = Update(
            mapping.name,
            row.link_id,
            row.partner_id,
            row.vendor_id,
            {field.partner: p_val or ""} if p_val != p_now else {},
            {field.vendor: v_val or ""} if v_val != v_now else {},
            base,
            (f"conflict #{conflict_id} resolved: {how}",),
        )
        ctx = PassContext(
            partner=self.partner(row.connection),
            partner_crm=partner_crm,
            vendor_crm=vendor_crm,
            store=self.store,
            now=utcnow(),
            dry_run=False,
            run_id=None,
        )
        # the open conflicts of the pair (this one too) stay as they are: this one is
        # closed below with how it was resolved, the others wait for their own turn
        errors = apply_update(ctx, mapping, update, keep_open=base)
        if errors:
            raise DealsyncError(f"cannot resolve: {errors[0].message}")
        self.store.close_conflict(conflict_id, how)
        resolved = self.store.conflict(conflict_id)
        assert resolved is not None
        return resolved


def check_config(config: str | Path | None, *, online: bool = False) -> list[Problem]:
    """Every problem of the project at ``config`` (errors, warnings, notes), in reading
    order; with ``online`` and no errors offline, also the problems found against each
    portal's real properties and pipelines (``dealsync check --online``)."""
    problems = check_project(config)
    if not online or errors_of(problems):
        return problems
    quiet = logging.getLogger("dealsync.config")  # its warnings are already in ``problems``
    quiet.disabled = True
    try:
        project = load_project(config)
    finally:
        quiet.disabled = False
    app = Dealsync(project)
    try:
        return problems + app.check_online(config_path_from(config))
    finally:
        app.close()


def register_lead(
    app: Dealsync,
    *,
    partner: str,
    domain: str,
    first: str,
    last: str,
    email: str,
    company: str | None = None,
    country: str | None = None,
    now: datetime | None = None,
) -> Registration:
    """Submit a lead on a partner's behalf (``dealsync register lead``): the same checks
    as a lead flagged in the partner's CRM; an accepted lead's company and contact are
    written to the vendor CRM at once."""
    from connector.engine.hooks import PassContext
    from connector.hooks.registration_crm import decide_submissions, write_vendor_ownership

    cfg = app.partner(partner)
    moment = now or utcnow()
    sub = Submission(
        partner=partner,
        kind="lead",
        partner_object="cli",
        partner_record_id=f"cli:{email.strip().lower()}",
        domain_text=domain,
        company_name=company or domain,
        contacts=(
            Person(
                email=email.strip(),
                first_name=first.strip(),
                last_name=last.strip(),
                country=country,
            ),
        ),
    )
    ctx = PassContext(
        partner=cfg,
        partner_crm=app.vendor(),
        vendor_crm=app.vendor(),
        store=app.store,
        now=moment,
        dry_run=False,
        run_id=None,
    )
    registry = app.registry
    existing = registry.find(partner, "lead", sub.partner_record_id)
    if existing is not None and existing.status == "accepted":
        return existing
    [(_, decision)] = decide_submissions(ctx, registry, app.project.rules, [sub])
    reg = registry.record(sub, decision, now=moment)
    company_mapping = next(
        (m for m in app.project.mappings if m.partner_object == "companies"), None
    )
    contact_mapping = next(
        (m for m in app.project.mappings if m.partner_object == "contacts"), None
    )
    write_vendor_ownership(ctx, registry, app.project.rules, company_mapping, contact_mapping)
    assert reg.id is not None
    registry.mark([reg.id], written_back=True)
    final = registry.get(reg.id)
    assert final is not None
    return final
