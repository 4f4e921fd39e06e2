"""The commission hook: commission and MRR credit, exactly once per vendor deal.

* A shared deal whose vendor-side stage is won, while its domain is owned by the
  partner, earns ``commission_rate`` × amount (currency kept) and its MRR as credit.
* A won vendor deal bought self-serve (the rules' signal) on a domain a partner owns
  credits that partner automatically.

The commission row (unique per vendor deal) is the exactly-once guard; the write-back
to the partner's deal is idempotent and retried until marked done, so a crash between
the two writes neither loses nor doubles anything. Both are effects handed to
``ctx.apply`` (:mod:`connector.engine.effects`): a dry run lists them.

Deals and markers are named as each side's CRM names them (its adapter's ``naming``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.effects import EarnCommission, Keep, WriteProperties
from connector.engine.hooks import BaseHook, ObjectRecords, PassContext
from connector.engine.reconcile import matches
from connector.hooks.objects import program_mappings
from connector.program.commission import earning
from connector.program.domains import DomainError, registrable_domain
from connector.records import PropertySpec, Side
from connector.state.registry import Registry
from connector.state.tables import Commission

log = logging.getLogger("dealsync.commission")

COMMISSION = "dealsync_commission"
COMMISSION_CURRENCY = "dealsync_commission_currency"
COMMISSION_STATUS = "dealsync_commission_status"
SELF_SERVE_CURSOR = "@self_serve"


@dataclass
class SeenDeals:
    """The deals detected in this pass (``after_detect``), for ``after_pass``."""

    partner: set[str] = field(default_factory=set)
    vendor: set[str] = field(default_factory=set)
    # detected vendor deals already at a won stage: candidates even while their link's
    # base still has the old stage (a dry run, which moves no base, then lists the
    # commission the real pass earns)
    won: set[str] = field(default_factory=set)


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
        out: list[tuple[Side, PropertySpec]] = [
            ("partner", PropertySpec(deals, COMMISSION, "Commission earned", type="number")),
            ("partner", PropertySpec(deals, COMMISSION_CURRENCY, "Commission currency")),
            ("partner", PropertySpec(deals, COMMISSION_STATUS, "Commission status")),
        ]
        out += [
            ("vendor", PropertySpec(vendor_deals, c.property, c.property))
            for c in signals.self_serve
        ]
        return out

    def after_detect(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        deal_mapping = self.deal_mapping(ctx.partner_crm.naming)
        if deal_mapping is not None and deal_mapping.name in seen:
            recs = seen[deal_mapping.name]
            won_stages = set(self.rules.vendor_signals.won_stages)
            won = {
                vid
                for vid, rec in recs.vendor.items()
                if rec.get("dealstage") in won_stages and not rec.archived
            }
            ctx.notes[SeenDeals] = SeenDeals(set(recs.partner), set(recs.vendor), won)

    def after_pass(self, ctx: PassContext) -> None:
        registry = ctx.store.registry
        deal_mapping = self.deal_mapping(ctx.partner_crm.naming)
        if deal_mapping is not None:
            self._shared_deals(ctx, registry, deal_mapping)
        self._self_serve(ctx, registry)
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
        links = list(ctx.store.links_by_ids(ctx.connection, name, "partner", partner_ids).values())
        links += list(ctx.store.links_by_ids(ctx.connection, name, "vendor", vendor_ids).values())
        stage_key = next((f.key for f in deal_mapping.fields if f.vendor == "dealstage"), None)
        won = set(self.rules.vendor_signals.won_stages)
        candidates: dict[str, str] = {}  # vendor id → partner id
        for link in links:
            if link.status != "active" or not link.vendor_id or not link.partner_id:
                continue
            stage = (link.base.get(stage_key) or [None, None])[1] if stage_key else None
            if stage_key is None or stage in won or link.vendor_id in seen.won:
                candidates[link.vendor_id] = link.partner_id
        candidates = {v: p for v, p in candidates.items() if registry.commission_for(v) is None}
        if not candidates:
            return
        signals = self.rules.vendor_signals
        deals = ctx.vendor_crm.read(
            ctx.vendor_crm.naming.deals,
            sorted(candidates),
            ["dealstage", "amount", "deal_currency_code", signals.mrr_property],
        )
        for vid, deal in deals.items():
            if deal.get("dealstage") not in won:
                continue
            pid = candidates[vid]
            reg = registry.find(ctx.connection, "deal", pid)
            domain = reg.domain if reg else ""
            holder = registry.holder(domain) if domain else None
            if holder is None or holder.partner != ctx.connection or holder.owned_until <= ctx.now:
                log.info(
                    "deal %s won but %s is not owned by %s: no commission",
                    vid,
                    domain or "its domain",
                    ctx.connection,
                )
                continue
            self._earn(
                ctx, registry, "deal", vid, pid, domain, reg.id if reg else None, deal.properties
            )

    # ------------------------------------------------------------------ self-serve

    def _self_serve(self, ctx: PassContext, registry: Registry) -> None:
        signals = self.rules.vendor_signals
        naming = ctx.vendor_crm.naming
        since = ctx.store.cursor(ctx.connection, "vendor", SELF_SERVE_CURSOR)
        high_water = ctx.vendor_crm.now()
        where = {c.property: c.equals for c in signals.self_serve if c.equals is not None}
        props = sorted(
            {
                "dealstage",
                "amount",
                "deal_currency_code",
                signals.mrr_property,
                naming.partner_id,
                *(c.property for c in signals.self_serve),
            }
        )
        found = [
            r
            for r in ctx.vendor_crm.changed_since(
                naming.deals,
                since,
                props,
                where=where,
                until=high_water,
                associations=[naming.companies],
            )
            if not r.archived
            and matches(signals.self_serve, r.properties)
            and r.get("dealstage") in signals.won_stages
            and registry.commission_for(r.id) is None
        ]
        company_ids = sorted({c for r in found for c in r.associations.get(naming.companies, ())})
        companies = (
            ctx.vendor_crm.read(naming.companies, company_ids, ["domain"]) if company_ids else {}
        )
        for deal in found:
            for cid in deal.associations.get(naming.companies, ()):
                comp = companies.get(cid)
                try:
                    domain = registrable_domain(comp.get("domain") or "") if comp else ""
                except DomainError:
                    continue
                holder = registry.holder(domain) if domain else None
                if (
                    holder is None
                    or holder.partner != ctx.connection
                    or holder.owned_until <= ctx.now
                ):
                    continue
                reg = registry.accepted_for_domain(ctx.connection, domain)
                self._earn(
                    ctx,
                    registry,
                    "self_serve",
                    deal.id,
                    None,
                    domain,
                    reg.id if reg else None,
                    deal.properties,
                )
                break
        ctx.apply(
            [
                Keep(
                    "self-serve cursor",
                    lambda: ctx.store.set_cursors(
                        ctx.connection, {("vendor", SELF_SERVE_CURSOR): high_water}
                    ),
                )
            ]
        )

    # ------------------------------------------------------------------ shared

    def _earn(
        self,
        ctx: PassContext,
        registry: Registry,
        kind: str,
        vendor_id: str,
        partner_id: str | None,
        domain: str,
        reg_id: int | None,
        props: Mapping[str, str | None],
    ) -> None:
        earned = earning(props, self.rules)
        row = Commission(
            partner=ctx.connection,
            kind=kind,
            vendor_deal_id=vendor_id,
            partner_deal_id=partner_id,
            domain=domain,
            registration_id=reg_id,
            amount=str(earned.amount),
            currency=props.get("deal_currency_code"),
            rate=str(earned.rate),
            commission=str(earned.commission),
            mrr=str(earned.mrr),
            earned_at=ctx.now,
        )
        [added] = ctx.apply([EarnCommission(row)])
        if added is not None:
            log.info(
                "%s earned %s %s on vendor deal %s (%s)",
                ctx.connection,
                row.commission,
                row.currency or "",
                vendor_id,
                kind,
            )

    def _write_back(self, ctx: PassContext, registry: Registry) -> None:
        pending = registry.commissions_to_write_back(ctx.connection)
        if not pending:
            return
        # the commission rows are committed; the partner write-back is not done yet
        ctx.crash_point("while_writing_commission")
        items = [
            (
                c.partner_deal_id or "",
                {
                    COMMISSION: c.commission,
                    COMMISSION_CURRENCY: c.currency or "",
                    COMMISSION_STATUS: "earned",
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
