"""The commission hook: commission and MRR credit, exactly once per vendor deal.

Every vendor deal that reaches a won stage credits the partner that owned its domain
when the deal closed (:func:`connector.program.commission.credit`), with its kind:

* ``shared``: a shared deal whose vendor-side stage is won (found among the deals the
  pass detected; the registration's domain);
* ``vendor_led`` / ``self_serve``: any other won vendor deal (the vendor's sales team
  won it, or it was bought without sales interaction) — read in one search window per
  won stage since the last pass, with the companies' domains in batch, never a call
  per deal.

A win outside every ownership window credits no one and is kept with the reason
(``dealsync commissions`` lists it; the pass summary counts it). The commission row
(unique per vendor deal) is the exactly-once guard; the write-back to the partner's
deal is idempotent and retried until marked done, so a crash between the two writes
neither loses nor doubles anything. All of it is effects handed to ``ctx.apply``
(:mod:`connector.engine.effects`): a dry run lists them.

Deals and markers are named as each side's CRM names them (its adapter's ``naming``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.cycle import shared_window
from connector.engine.effects import EarnCommission, Effect, Keep, NotCredited, WriteProperties
from connector.engine.hooks import BaseHook, Chunk, ObjectRecords, PassContext
from connector.engine.reconcile import matches
from connector.hooks.objects import program_mappings
from connector.program.commission import (
    WHY,
    Kind,
    Verdict,
    closed_at,
    credit,
    deal_properties,
    earning,
    sale_kind,
)
from connector.program.domains import DomainError, registrable_domain
from connector.records import PropertySpec, Record, Side
from connector.state.registry import Registry
from connector.state.tables import Commission, UncreditedWin

log = logging.getLogger("dealsync.commission")


def _aware(moment: datetime) -> datetime:
    """A record's time as UTC-aware (a CRM may hand a naive UTC one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


COMMISSION = "dealsync_commission"
COMMISSION_CURRENCY = "dealsync_commission_currency"
COMMISSION_STATUS = "dealsync_commission_status"
# the won-deals window's cursor; named for what it read first (self-serve deals only),
# kept so an upgrade goes on from where the last pass stopped instead of crediting
# every deal ever won
WON_CURSOR = "@self_serve"
LINK_PAGE = 1000
"""Detected deals whose links ``after_pass`` reads at a time (no CRM call depends on it)."""


@dataclass
class SeenDeals:
    """The deals detected in this pass (``after_detect``, ``decide_chunk``), for
    ``after_pass``."""

    partner: set[str] = field(default_factory=set)
    vendor: set[str] = field(default_factory=set)
    # detected vendor deals already at a won stage: candidates even while their link's
    # base still has the old stage (a dry run, which moves no base, then lists the
    # commission the real pass earns)
    won: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class WonDeal:
    """A won vendor deal to decide: its kind, domains and close time."""

    deal: Record
    kind: Kind
    domains: tuple[str, ...]
    closed: datetime
    partner_deal_id: str | None = None
    shared_by: str | None = None


class CommissionHook(BaseHook):
    name = "commission"

    def __init__(self, rules: RulesFile, mappings: Sequence[ObjectMapping]) -> None:
        self.rules = rules
        self.mappings = tuple(mappings)

    def deal_mapping(self, partner: Naming) -> ObjectMapping | None:
        """The registered deals' mapping, as the partner CRM names its deals."""
        return program_mappings(self.mappings, partner).deals

    def required_properties(
        self, names: Mapping[Side, Naming]
    ) -> Sequence[tuple[Side, PropertySpec]]:
        signals = self.rules.vendor_signals
        deals, vendor_deals = names["partner"].deals, names["vendor"].deals
        custom = names["partner"].custom  # the partner CRM's custom-field names
        out: list[tuple[Side, PropertySpec]] = [
            (
                "partner",
                PropertySpec(deals, custom(COMMISSION), "Commission earned", type="number"),
            ),
            ("partner", PropertySpec(deals, custom(COMMISSION_CURRENCY), "Commission currency")),
            ("partner", PropertySpec(deals, custom(COMMISSION_STATUS), "Commission status")),
        ]
        out += [
            ("vendor", PropertySpec(vendor_deals, c.property, c.property))
            for c in signals.self_serve
        ]
        return out

    def after_detect(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        deal_mapping = self.deal_mapping(ctx.partner_crm.naming)
        if deal_mapping is not None and deal_mapping.name in seen:
            ctx.notes[SeenDeals] = SeenDeals()
            self._seen(ctx, seen[deal_mapping.name])

    def decide_chunk(
        self, ctx: PassContext, chunk: Chunk, seen: Mapping[str, ObjectRecords]
    ) -> None:
        """The deals stream: each chunk's ids join those ``after_detect`` noted."""
        if chunk.mapping is self.deal_mapping(ctx.partner_crm.naming):
            self._seen(ctx, chunk.records)

    def _seen(self, ctx: PassContext, recs: ObjectRecords) -> None:
        won_stages = set(self.rules.vendor_signals.won_stages)
        noted = ctx.note(SeenDeals)
        noted.partner.update(recs.partner)
        noted.vendor.update(recs.vendor)
        noted.won.update(
            vid
            for vid, rec in recs.vendor.items()
            if rec.get("dealstage") in won_stages and not rec.archived
        )

    def after_pass(self, ctx: PassContext) -> None:
        registry = ctx.store.registry
        deal_mapping = self.deal_mapping(ctx.partner_crm.naming)
        if deal_mapping is not None:
            self._shared_deals(ctx, registry, deal_mapping)
        self._won_deals(ctx, registry)
        self._write_back(ctx, registry)

    # ------------------------------------------------------------------ shared deals

    def _shared_deals(
        self, ctx: PassContext, registry: Registry, deal_mapping: ObjectMapping
    ) -> None:
        seen = ctx.note(SeenDeals)
        partner_ids, vendor_ids = seen.partner, seen.vendor
        if not partner_ids and not vendor_ids:
            return
        name = deal_mapping.name
        stage_key = next((f.key for f in deal_mapping.fields if f.vendor == "dealstage"), None)
        won = set(self.rules.vendor_signals.won_stages)
        candidates: dict[str, str] = {}  # vendor id → partner id
        # the detected deals' links a page at a time, as plain tuples: a first sync of
        # N deals holds one page of links and their bases here, not N (issue 17)
        side: Side
        for side, ids in (("partner", sorted(partner_ids)), ("vendor", sorted(vendor_ids))):
            for i in range(0, len(ids), LINK_PAGE):
                page = ctx.store.link_refs(ctx.connection, name, side, ids[i : i + LINK_PAGE])
                for link in page.values():
                    if link.status != "active" or not link.vendor_id or not link.partner_id:
                        continue
                    base = link.base.get(stage_key) if stage_key else None
                    stage = (base or [None, None])[1]
                    if stage_key is None or stage in won or link.vendor_id in seen.won:
                        candidates[link.vendor_id] = link.partner_id
        done = registry.commissioned(candidates)
        candidates = {v: p for v, p in candidates.items() if v not in done}
        if not candidates:
            return
        naming = ctx.vendor_crm.naming
        deals = ctx.vendor_crm.read(
            naming.deals, sorted(candidates), deal_properties(self.rules, naming.partner_id)
        )
        regs = registry.find_many(ctx.connection, "deal", candidates.values())
        wins = []
        for vid, deal in deals.items():
            if deal.get("dealstage") not in won:
                continue
            pid = candidates[vid]
            reg = regs.get(pid)
            domain = reg.domain if reg else ""
            wins.append(
                WonDeal(
                    deal,
                    "shared",
                    (domain,),
                    closed_at(deal.properties, ctx.now),
                    partner_deal_id=pid,
                    shared_by=ctx.connection,
                )
            )
        self._decide(ctx, registry, wins)

    # ------------------------------------------------------------------ every other win

    def _won_deals(self, ctx: PassContext, registry: Registry) -> None:
        """The vendor deals won since the last pass that are not shared deals: one
        search window per won stage (the stage a server-side filter), the companies'
        domains in one batch read — once per ``sync --all`` / service cycle
        (:mod:`connector.engine.cycle`), each partner's pass taking what its cursor has
        not seen."""
        signals = self.rules.vendor_signals
        naming = ctx.vendor_crm.naming
        window = shared_window(
            ctx, ("won deals", WON_CURSOR), WON_CURSOR, lambda since: self._read_won(ctx, since)
        )
        since, high_water = ctx.store.cursor(ctx.connection, "vendor", WON_CURSOR), window.until
        deals, companies = window.data
        found = {
            k: r
            for k, r in deals.items()
            if since is None or window.since == since or _aware(r.updated_at) >= since
        }
        done = registry.commissioned(found)
        found = {k: r for k, r in found.items() if k not in done}
        wins = []
        for deal in found.values():
            domains: list[str] = []
            for cid in deal.associations.get(naming.companies, ()):
                comp = companies.get(cid)
                try:
                    domain = registrable_domain(comp.get("domain") or "") if comp else ""
                except DomainError:
                    continue
                if domain and domain not in domains:
                    domains.append(domain)
            kind = sale_kind(
                deal.properties,
                self.rules,
                shared=False,
                signalled=matches(signals.self_serve, deal.properties),
            )
            wins.append(WonDeal(deal, kind, tuple(domains), closed_at(deal.properties, ctx.now)))
        self._decide(ctx, registry, wins)
        ctx.apply(
            [
                Keep(
                    "won-deals cursor",
                    lambda: ctx.store.set_cursors(
                        ctx.connection, {("vendor", WON_CURSOR): high_water}
                    ),
                )
            ]
        )

    def _read_won(
        self, ctx: PassContext, since: datetime | None
    ) -> tuple[datetime, tuple[dict[str, Record], dict[str, Record]]]:
        """The won vendor deals of ``[since, now]`` not commissioned yet, and their
        companies (with the domain): the high-water mark and both."""
        signals = self.rules.vendor_signals
        naming = ctx.vendor_crm.naming
        high_water = ctx.vendor_crm.now()
        props = deal_properties(self.rules, naming.partner_id)
        found: dict[str, Record] = {}
        for stage in dict.fromkeys(signals.won_stages):
            for r in ctx.vendor_crm.changed_since(
                naming.deals,
                since,
                props,
                where={"dealstage": stage},
                until=high_water,
                associations=[naming.companies],
                # an archived deal is never credited: the recycle bin (HubSpot: a
                # listing per stage and cycle) is not read (issue 17)
                live=True,
            ):
                # a shared deal (it carries its partner) is its partner's pass's to credit
                shared = bool((r.get(naming.partner_id) or "").strip())
                if not r.archived and not shared and r.get("dealstage") in signals.won_stages:
                    found[r.id] = r
        done = ctx.store.registry.commissioned(found)
        found = {k: r for k, r in found.items() if k not in done}
        company_ids = sorted(
            {c for r in found.values() for c in r.associations.get(naming.companies, ())}
        )
        companies = (
            ctx.vendor_crm.read(naming.companies, company_ids, ["domain"]) if company_ids else {}
        )
        return high_water, (found, companies)

    # ------------------------------------------------------------------ deciding

    def _decide(self, ctx: PassContext, registry: Registry, wins: Sequence[WonDeal]) -> None:
        """Credit each win to the partner that owned its domain when it closed — in
        this partner's pass only its own (another partner's pass credits that one) —
        or keep why it credits no one."""
        if not wins:
            return
        windows = registry.ownership_windows(d for w in wins for d in w.domains)
        effects: list[Effect] = []
        credited: list[str] = []
        for win in wins:
            verdict = credit(win.domains, win.closed, windows, shared_by=win.shared_by)
            if verdict.credited:
                if verdict.partner != ctx.connection:
                    continue
                effects.append(EarnCommission(self._row(ctx, win, verdict)))
                credited.append(win.deal.id)
                continue
            log.info("vendor deal %s won: %s", win.deal.id, verdict.reason)
            effects.append(NotCredited(self._refusal(ctx, win, verdict), WHY[verdict.code]))
        if not effects:
            return
        results = ctx.apply(effects)
        for effect, added in zip(effects, results, strict=True):
            if isinstance(effect, EarnCommission) and added is not None:
                row = effect.row
                log.info(
                    "%s earned %s %s on vendor deal %s (%s)",
                    ctx.connection,
                    row.commission,
                    row.currency or "",
                    row.vendor_deal_id,
                    row.kind,
                )
        if credited:
            ctx.apply([Keep("credited refusals", lambda: registry.clear_uncredited(credited))])

    def _row(self, ctx: PassContext, win: WonDeal, verdict: Verdict) -> Commission:
        props = win.deal.properties
        earned = earning(props, self.rules)
        return Commission(
            partner=ctx.connection,
            kind=win.kind,
            vendor_deal_id=win.deal.id,
            partner_deal_id=win.partner_deal_id,
            domain=verdict.domain,
            registration_id=verdict.registration_id,
            amount=str(earned.amount),
            currency=props.get("deal_currency_code"),
            rate=str(earned.rate),
            commission=str(earned.commission),
            mrr=str(earned.mrr),
            earned_at=ctx.now,
        )

    def _refusal(self, ctx: PassContext, win: WonDeal, verdict: Verdict) -> UncreditedWin:
        props = win.deal.properties
        return UncreditedWin(
            vendor_deal_id=win.deal.id,
            partner=verdict.partner if verdict.code != "owned_by_other" else win.shared_by,
            kind=win.kind,
            domain=verdict.domain,
            code=verdict.code,
            reason=verdict.reason,
            amount=str(earning(props, self.rules).amount),
            currency=props.get("deal_currency_code"),
            closed_at=win.closed,
            decided_at=ctx.now,
        )

    # ------------------------------------------------------------------ write-back

    def _write_back(self, ctx: PassContext, registry: Registry) -> None:
        pending = registry.commissions_to_write_back(ctx.connection)
        if not pending:
            return
        # the commission rows are committed; the partner write-back is not done yet
        ctx.crash_point("while_writing_commission")
        custom = ctx.partner_crm.naming.custom  # the partner CRM's custom-field names
        items = [
            (
                c.partner_deal_id or "",
                {
                    custom(COMMISSION): c.commission,
                    custom(COMMISSION_CURRENCY): c.currency or "",
                    custom(COMMISSION_STATUS): "earned",
                },
            )
            for c in pending
        ]
        results = ctx.apply(
            [
                WriteProperties("partner", ctx.partner_crm.naming.deals, rid, p, "commission")
                for rid, p in items
            ]
        )
        answered = [r for r in results if r is not None]
        ok = {r.key for r in answered if r.ok}
        # the partner deal is gone (or refuses the value for good): the commission row
        # stands; repeating the write-back on every pass cannot help
        for r in answered:
            if not r.ok and not r.retriable:
                log.warning("commission write-back to partner deal %s given up: %s", r.key, r.error)
                ok.add(r.key)
        written = [c.id for c in pending if c.partner_deal_id in ok and c.id is not None]
        if written:
            ctx.apply([Keep("commissions written", lambda: registry.mark_commissions(written))])
