"""Registration in the two CRMs: what the vendor's CRM says about a domain, and the
write-backs of a decision — the authoritative ownership on the vendor's company, the
status and reason on the partner's record.

The rules that decide are :mod:`connector.program.decide` (pure); their records are
:mod:`connector.state.registry`; the hook that runs all this on every pass is
:mod:`connector.hooks.registration`. Every write here is idempotent and retried until the
registry marks it done, so a crash anywhere neither loses a decision nor writes it twice.
The writes and the marks are effects handed to ``ctx.apply`` (a dry run lists them).

Objects and markers are named as each side's CRM names them (its adapter's ``naming``):
the vendor's companies, contacts and deals under the vendor's names, the partner's
deals under the partner's.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.adapters.base import CRMAdapter
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.effects import Keep, WriteProperties
from connector.engine.hooks import PassContext, Soon
from connector.engine.reconcile import matches
from connector.mail.privacy import redact_addresses
from connector.program.decide import (
    Decision,
    Holder,
    Submission,
    VendorFacts,
    decide,
    normalise_domain,
)
from connector.program.domains import DomainError, registrable_domain
from connector.program.review import review
from connector.records import Record
from connector.state.registry import Registry, VendorWrite, WriteBack
from connector.state.tables import Registration

log = logging.getLogger("dealsync.registration")

# written to the partner's registered record
REG_STATUS = "dealsync_registration_status"
REG_CODE = "dealsync_registration_code"
REG_REASON = "dealsync_registration_reason"
REG_UNTIL = "dealsync_owned_until"
# written to the vendor's company: the authoritative ownership
OWNER = "dealsync_owner_partner"
OWNED_UNTIL = "dealsync_owned_until"
REG_ID = "dealsync_registration_id"


def _iso(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z") if moment else ""


@dataclass
class PassLookups:
    """What ``after_detect`` learned, so ``after_pass`` need not ask the CRMs again: the
    vendor's companies by domain, and the detected partner records of the deals'
    companies and contacts."""

    searched: set[str] = field(default_factory=set)  # registrable domains looked up
    found: dict[str, Record] = field(default_factory=dict)  # domain → first company
    # partner deal id → its partner companies, as detected when its submission was made
    deal_companies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # e-mail (lower case) → the detected partner contact with it (None: more than one)
    partner_contacts: dict[str, str | None] = field(default_factory=dict)
    # partner company id → the ownership its vendor create carried (``before_apply``):
    # ``after_pass`` need not write it again once the company's link is complete
    # (as :func:`_rode_key`: a tuple, not a dict, since a first sync holds N of them)
    rode: dict[str, tuple[str, str, str]] = field(default_factory=dict)


@dataclass
class PassTally:
    """What this pass's decisions have taken so far, for its later batches (the pass
    decides its deals chunk by chunk, then its leads): the domains accepted, and the
    partner's active registrations counted against its tier — the registry's count
    when the pass first decided, plus each acceptance since. A dry run records
    nothing, so without this its later batches would not see its earlier acceptances
    and its plan would differ from the real pass's."""

    held: dict[str, Holder] = field(default_factory=dict)
    active: int | None = None


class VendorLookup:
    """Reads what the vendor CRM says about domains (customer, worked by sales)."""

    def __init__(
        self, vendor: CRMAdapter, rules: RulesFile, known: PassLookups | None = None
    ) -> None:
        self.vendor = vendor
        self.rules = rules
        self.known = known  # records what the searches found, for later in the pass

    def companies(self, domains: Sequence[str]) -> dict[str, Record]:
        """Vendor companies by registrable domain (the first one found per domain)."""
        if not domains:
            return {}
        signals = self.rules.vendor_signals
        naming = self.vendor.naming
        props = sorted(
            {
                "name",
                "domain",
                signals.sales_owner_property,
                OWNER,
                OWNED_UNTIL,
                naming.source_id,
                *(c.property for c in signals.customer),
            }
        )
        values = sorted({v for d in domains for v in (d, f"www.{d}")})
        found = self.vendor.find_by_property(naming.companies, "domain", values, props)
        out: dict[str, Record] = {}
        for value, rec in sorted(found.items()):
            try:
                key = registrable_domain(value)
            except DomainError:
                continue
            out.setdefault(key, rec)
        if self.known is not None:
            self.known.searched.update(domains)
            for key, rec in out.items():
                self.known.found.setdefault(key, rec)
        return out

    def facts(self, domains: Sequence[str]) -> dict[str, VendorFacts]:
        signals = self.rules.vendor_signals
        naming = self.vendor.naming
        companies = self.companies(domains)
        owned = {d: c for d, c in companies.items() if c.get(signals.sales_owner_property)}
        open_deals: set[str] = set()
        if owned:
            with_deals = self.vendor.read(
                naming.companies,
                [c.id for c in owned.values()],
                ["domain"],
                associations=[naming.deals],
            )
            deal_ids = sorted(
                {i for c in with_deals.values() for i in c.associations.get(naming.deals, ())}
            )
            deals = (
                self.vendor.read(naming.deals, deal_ids, ["dealstage", naming.partner_id])
                if deal_ids
                else {}
            )
            for cid, comp in with_deals.items():
                for did in comp.associations.get(naming.deals, ()):
                    deal = deals.get(did)
                    if (
                        deal
                        and not deal.get(naming.partner_id)
                        and deal.get("dealstage") not in signals.closed_stages
                    ):
                        open_deals.add(cid)
        out = {}
        for d in domains:
            found = companies.get(d)
            if found is None:
                out[d] = VendorFacts()
                continue
            out[d] = VendorFacts(
                company_id=found.id,
                is_customer=matches(signals.customer, found.properties),
                worked_by_sales=found.id in open_deals,
            )
        return out


def decide_submissions(
    ctx: PassContext, registry: Registry, rules: RulesFile, subs: Sequence[Submission]
) -> list[tuple[Submission, Decision]]:
    """Decide in order; a domain accepted earlier in the same batch, or in an earlier
    batch of the pass (:class:`PassTally`), counts as held.
    The vendor's companies found here are kept in the pass context for the rest of the
    pass (:class:`PassLookups`)."""
    domains = sorted({d for s in subs if (d := normalise_domain(s))})
    facts = VendorLookup(ctx.vendor_crm, rules, ctx.note(PassLookups)).facts(domains)
    floor = ctx.partner.tier
    tier_name, capacity, _ = registry.tier(ctx.connection, rules, ctx.now, floor)
    tally = ctx.note(PassTally)
    if tally.active is None:
        tally.active = registry.active_count(ctx.connection, ctx.now)
    active = tally.active
    # nothing is recorded while deciding, so the holders can be read once up front
    holders = registry.holders(domains)
    # review (issue 16 item 5): pending registrations reserve their domains; the fuzzy
    # check compares with the other partners' active registrations
    reserved = registry.reservations(domains)
    rivals = registry.rivals(ctx.connection, ctx.now) if rules.review.manual_when_uncertain else ()
    held = tally.held
    out = []
    for sub in subs:
        domain = normalise_domain(sub) or ""
        holder = held.get(domain) or (holders.get(domain) if domain else None)
        decision = decide(
            sub,
            facts=facts.get(domain, VendorFacts()),
            holder=holder,
            active=active,
            tier_name=tier_name,
            capacity=capacity,
            rules=rules,
            now=ctx.now,
            reserved_by=reserved.get(domain) if domain not in held else None,
        )
        owned = (
            holder is not None and holder.partner == sub.partner and holder.owned_until > ctx.now
        )
        # (one batch is one partner's: its own pending decisions reserve nothing from it)
        decision = review(sub, decision, rules.review, rivals, already_owned=owned)
        if (
            decision.status == "accepted"
            and decision.owned_until
            and (holder is None or holder.partner != sub.partner or holder.owned_until <= ctx.now)
        ):
            active += 1
            held[domain] = Holder(sub.partner, decision.owned_until)
        out.append((sub, decision))
    tally.active = active
    return out


def ownership(reg: Registration | VendorWrite) -> dict[str, str]:
    """The properties that say on the vendor's company who owns it, and until when."""
    return {OWNER: reg.partner, OWNED_UNTIL: _iso(reg.owned_until), REG_ID: str(reg.id)}


def ownership_on_creates(
    ctx: PassContext, registry: Registry, creating: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Partner company id → the ownership its vendor create should carry, for the
    companies being created in this pass (``creating``) that :func:`write_vendor_ownership`
    would pick for an accepted deal registration: the deal's first company as this pass
    detected it, when the vendor had no company of the domain. Riding on the create
    saves one update per 100 companies; ``after_pass`` still writes any whose company
    turned out otherwise (it compares what rode with what it would write)."""
    known = ctx.noted(PassLookups)
    if known is None or not creating:
        return {}
    wanted = set(creating)
    # the deals whose first company is being created: only their registrations
    deals = [d for d, firsts in known.deal_companies.items() if firsts and firsts[0] in wanted]
    out: dict[str, dict[str, str]] = {}
    for reg in registry.pending_vendor_writes_of(ctx.connection, "deal", deals):
        if (
            reg.status != "accepted"
            or reg.vendor_company_id
            or reg.domain in known.found
            or reg.domain not in known.searched
        ):
            continue
        first = next(iter(known.deal_companies.get(reg.partner_record_id, ())), None)
        if first is not None and first in wanted:
            out.setdefault(first, ownership(reg))
    known.rode.update((pid, _rode_key(p)) for pid, p in out.items())
    return out


def _rode_key(props: Mapping[str, str]) -> tuple[str, str, str]:
    """What :class:`PassLookups` keeps of the ownership a create carried: its three
    values (the end date interned: the registrations a pass accepts share it)."""
    return (props[OWNER], sys.intern(props[OWNED_UNTIL]), props[REG_ID])


def _rode_vendor(
    ctx: PassContext, company_mapping: ObjectMapping | None, known: PassLookups
) -> dict[str, tuple[str, str, str]]:
    """Vendor company id → the ownership its create carried in this pass (its link is
    complete, so the create was written, with those properties)."""
    if company_mapping is None or not known.rode:
        return {}
    # plain tuples without their bases: only the status and the vendor id are read
    links = ctx.store.link_refs(
        ctx.connection, company_mapping.name, "partner", known.rode, base=False
    )
    return {
        link.vendor_id: known.rode[pid]
        for pid, link in links.items()
        if link.status == "active" and link.vendor_id
    }


def write_vendor_ownership(
    ctx: PassContext,
    registry: Registry,
    rules: RulesFile,
    company_mapping: ObjectMapping | None,
    contact_mapping: ObjectMapping | None,
) -> None:
    """Ownership lives on the vendor's company: set it for accepted registrations,
    clear it for ended ones (only if this partner still holds it). Batched: one
    lookup of companies by domain, one read of the registered deals, one update per
    100 companies and one search per 100 contact e-mails, whatever the number of
    registrations.

    The company of an accepted registration is the one it names already, else the
    one ``after_detect`` found for its domain in this pass (:class:`PassLookups`);
    for a deal whose domain found nothing then, the one the sync has just created for
    the deal's company (its link). Only what is still unknown is searched. An ended
    registration's company is always searched: whether this partner still holds it
    must be read now, not taken from earlier in the pass.

    A page of :data:`OWNERSHIP_PAGE` registrations at a time (a multiple of the
    searches' 250 domains and the writes' 100 companies, so paging costs a call only
    where a page's rest is short): at N = 50,000 the whole list and its lookups were
    the pass's peak of memory, at its end (issue 17). What one page wrote or searched
    a later page does not write or search again (:class:`_OwnershipDone`)."""
    lookup = VendorLookup(ctx.vendor_crm, rules)
    known = ctx.noted(PassLookups) or PassLookups()
    rode: dict[str, tuple[str, str, str]] | None = None
    done = _OwnershipDone()
    for pending in registry.pending_vendor_write_pages(ctx.connection, OWNERSHIP_PAGE):
        if rode is None:
            rode = _rode_vendor(ctx, company_mapping, known)
        _ownership_page(
            ctx, registry, lookup, known, rode, done, pending, company_mapping, contact_mapping
        )


OWNERSHIP_PAGE = 5000
"""Registrations :func:`write_vendor_ownership` reads and writes at a time."""


@dataclass
class _OwnershipDone:
    """What earlier pages of one :func:`write_vendor_ownership` did: the vendor
    companies whose ownership was written (or carried by the create) and the domains
    searched, with what was found — two registrations of one domain in two pages get
    one write and one search, as in one page."""

    named: set[str] = field(default_factory=set)
    cleared: set[str] = field(default_factory=set)
    searched: dict[str, Record | None] = field(default_factory=dict)

    def companies(self, lookup: VendorLookup, domains: Sequence[str]) -> dict[str, Record]:
        """``lookup.companies`` of the domains no earlier page searched, with theirs."""
        fresh = [d for d in domains if d not in self.searched]
        found = lookup.companies(fresh)
        for d in fresh:
            self.searched[d] = found.get(d)
        return {d: rec for d in domains if (rec := self.searched.get(d)) is not None}


def _ownership_page(
    ctx: PassContext,
    registry: Registry,
    lookup: VendorLookup,
    known: PassLookups,
    rode: dict[str, tuple[str, str, str]],
    seen: _OwnershipDone,
    pending: Sequence[VendorWrite],
    company_mapping: ObjectMapping | None,
    contact_mapping: ObjectMapping | None,
) -> None:
    """One page of :func:`write_vendor_ownership`."""
    accepted = [r for r in pending if r.status == "accepted"]
    ended = [r for r in pending if r.status != "accepted"]
    company_of: dict[int, str] = {}
    unknown: list[VendorWrite] = []
    for reg in accepted:
        assert reg.id is not None
        found = known.found.get(reg.domain)
        cid = reg.vendor_company_id or (found.id if found is not None else None)
        if cid is not None:
            company_of[reg.id] = cid
        else:
            unknown.append(reg)
    linked: set[int] = set()
    if company_mapping is not None:
        created = [r for r in unknown if r.kind == "deal" and r.domain in known.searched]
        if created:
            company_of.update(
                _linked_vendor_companies(ctx, created, company_mapping, known.deal_companies)
            )
            linked = {r.id for r in created if r.id is not None}
        unknown = [r for r in unknown if r.id not in company_of]
    companies = seen.companies(lookup, sorted({r.domain for r in (*unknown, *ended) if r.domain}))
    need_link: list[VendorWrite] = []
    for reg in unknown:
        assert reg.id is not None
        cid = companies[reg.domain].id if reg.domain in companies else None
        if cid is not None:
            company_of[reg.id] = cid
        elif reg.kind == "deal" and company_mapping is not None:
            if reg.id not in linked:
                need_link.append(reg)
        elif reg.kind == "lead":
            made = _create_vendor_company(ctx, reg)
            if made is not None:
                company_of[reg.id] = made
                rode.setdefault(made, _rode_key(ownership(reg)))
    if need_link and company_mapping is not None:
        company_of.update(
            _linked_vendor_companies(ctx, need_link, company_mapping, known.deal_companies)
        )
    # one write per company (two registrations of one domain share it: the first names it)
    # the company's create carried exactly that ownership: written already (not held
    # as a write: a first sync's N companies carried theirs)
    writes: dict[str, dict[str, str]] = {}
    carried: set[str] = set()
    earlier: set[str] = set()
    for reg in accepted:
        assert reg.id is not None
        cid = company_of.get(reg.id)
        if cid is None or cid in writes or cid in carried:
            continue
        if cid in seen.named:  # an earlier page's registration of its domain wrote it
            earlier.add(cid)
            continue
        p = ownership(reg)
        if rode.get(cid) == _rode_key(p):
            carried.add(cid)
        else:
            writes[cid] = p
    if carried:
        log.info("ownership of %d vendor companies written with their create", len(carried))
    companies_type = ctx.vendor_crm.naming.companies
    results = ctx.apply(
        [
            WriteProperties("vendor", companies_type, cid, p, "ownership")
            for cid, p in writes.items()
        ]
    )
    written = carried | {
        cid for cid, r in zip(writes, results, strict=True) if r is not None and r.ok
    }
    seen.named.update(written)
    written |= earlier
    for cid, r in zip(writes, results, strict=True):
        if r is not None and not r.ok:
            log.warning("vendor company %s: ownership not written: %s", cid, r.error)
    ready = [reg for reg in accepted if reg.id is not None and company_of.get(reg.id) in written]
    contacts_ok = _vendor_contacts(ctx, registry, ready, contact_mapping)
    done = [reg.id for reg in ready if reg.id is not None and reg.id in contacts_ok]
    if done:
        named = {rid: {"vendor_company_id": company_of[rid]} for rid in done}
        ctx.apply([Keep("vendor company of registrations", lambda: registry.mark_each(named))])
    clear = []
    for reg in ended:
        assert reg.id is not None
        comp = companies.get(reg.domain)
        if (
            comp is not None
            and comp.get(OWNER) == reg.partner
            and comp.get(REG_ID) in (None, str(reg.id))
        ):
            clear.append((reg.id, comp.id))
        else:
            done.append(reg.id)
    if clear:
        # a company an earlier page cleared is not written again
        cids = list(dict.fromkeys(cid for _, cid in clear if cid not in seen.cleared))
        cleared = ctx.apply(
            [
                WriteProperties(
                    "vendor",
                    companies_type,
                    cid,
                    {OWNER: "", OWNED_UNTIL: "", REG_ID: ""},
                    "ownership",
                )
                for cid in cids
            ]
        )
        ok = {cid for cid, r in zip(cids, cleared, strict=True) if r is not None and r.ok}
        seen.cleared |= ok
        ok |= {cid for _, cid in clear if cid in seen.cleared}
        done += [rid for rid, cid in clear if cid in ok]
    if done:
        ctx.apply(
            [Keep("vendor ownership written", lambda: registry.mark(done, vendor_written=True))]
        )


def _linked_vendor_companies(
    ctx: PassContext,
    regs: Sequence[VendorWrite],
    company_mapping: ObjectMapping,
    detected: Mapping[str, Sequence[str]],
) -> dict[int, str]:
    """Registration id → the vendor company linked to its deal's partner company. The
    deal's companies are those this pass detected when it decided the deal
    (``detected``); other deals are read."""
    companies_of: dict[str, Sequence[str]] = {
        r.partner_record_id: detected[r.partner_record_id]
        for r in regs
        if r.partner_record_id in detected
    }
    unread = [r.partner_record_id for r in regs if r.partner_record_id not in companies_of]
    if unread:
        naming = ctx.partner_crm.naming
        # only the associations are wanted; the marker is a property every CRM has
        deals = ctx.partner_crm.read(
            naming.deals, unread, [naming.source_id], associations=[naming.companies]
        )
        for rid, rec in deals.items():
            companies_of[rid] = rec.associations.get(naming.companies, ())
    partner_ids = sorted({i for ids in companies_of.values() for i in ids})
    links = ctx.store.link_refs(
        ctx.connection, company_mapping.name, "partner", partner_ids, base=False
    )
    out: dict[int, str] = {}
    for reg in regs:
        ids = companies_of.get(reg.partner_record_id)
        if ids is None or reg.id is None:
            continue
        for i in ids:
            link = links.get(i)
            if link is not None and link.status == "active" and link.vendor_id:
                out[reg.id] = link.vendor_id
                break
    return out


def _create_vendor_company(ctx: PassContext, reg: VendorWrite) -> str | None:
    key = f"{ctx.connection}:lead:{reg.domain}"
    naming = ctx.vendor_crm.naming
    # the ownership rides on the create (an upsert: a rerun writes it again)
    props = {
        "name": reg.company_name or reg.domain,
        "domain": reg.domain,
        naming.partner_id: ctx.connection,
        **ownership(reg),
    }
    [res] = ctx.apply(
        [WriteProperties("vendor", naming.companies, key, props, "lead", naming.source_id)]
    )
    if res is None:  # not carried out (a dry run)
        return None
    if res.ok and res.record is not None:
        return str(res.record.id)
    log.warning("registration %s: creating the vendor company failed: %s", reg.id, res.error)
    return None


def _vendor_contacts(
    ctx: PassContext,
    registry: Registry,
    regs: Sequence[VendorWrite],
    contact_mapping: ObjectMapping | None,
) -> set[int]:
    """Leads: the lead becomes a vendor contact (upsert by e-mail). Deal
    registrations: the contacts were created by the sync; remember their ids.
    Returns the registrations whose contacts are done."""
    done: set[int] = set()
    naming = ctx.vendor_crm.naming
    # leads' people whole (they become vendor contacts); of a deal registration's, the
    # e-mail is all that is read: a first sync of N deals reads N addresses, not N rows
    people = registry.contacts_of(reg.id for reg in regs if reg.kind == "lead" and reg.id)
    vendor_ids: list[tuple[int, str, str]] = []  # registration, e-mail, vendor contact
    for reg in regs:
        if reg.kind != "lead" or reg.id is None:
            continue
        items = [
            (
                p.email,
                {
                    "email": p.email,
                    "firstname": p.first_name,
                    "lastname": p.last_name,
                    "country": p.country or "",
                    naming.partner_id: ctx.connection,
                },
            )
            for p in people[reg.id]
        ]
        results = ctx.apply(
            [
                WriteProperties("vendor", naming.contacts, e, props, "lead", "email")
                for e, props in items
            ]
        )
        ok = True
        for p, res in zip(people[reg.id], results, strict=True):
            if res is None:  # not carried out (a dry run)
                ok = False
                continue
            if not res.ok or res.record is None:
                # ids only: the contact's address stays out of the logs (issue 12)
                log.warning(
                    "registration %s: vendor contact (registration contact #%s): %s",
                    reg.id,
                    p.id,
                    redact_addresses(res.error or ""),
                )
                ok = False
                continue
            vendor_ids.append((reg.id, p.email, res.record.id))
        if ok:
            done.add(reg.id)
    deal_regs = [r for r in regs if r.kind != "lead" and r.id is not None]
    if contact_mapping is None or not deal_regs:
        _keep_contact_ids(ctx, registry, vendor_ids)
        return done | {r.id for r in deal_regs if r.id is not None}
    emails_of = registry.contact_emails_of(r.id for r in deal_regs if r.id is not None)
    emails = sorted({e for r in deal_regs for e in emails_of.get(r.id or 0, [])})
    # the sync created these contacts: their links name the vendor contact, so only
    # e-mails no detected, linked partner contact accounts for are searched
    partner_of = ctx.note(PassLookups).partner_contacts
    wanted = {e: partner_of.get(e.lower()) for e in emails}
    links = ctx.store.link_refs(
        ctx.connection,
        contact_mapping.name,
        "partner",
        [p for p in wanted.values() if p],
        base=False,
    )
    vendor_of: dict[str, str] = {}
    for email, pid in wanted.items():
        link = links.get(pid or "")
        if link is not None and link.status == "active" and link.vendor_id:
            vendor_of[email.lower()] = link.vendor_id
    rest = [e for e in emails if e.lower() not in vendor_of]
    found = (
        ctx.vendor_crm.find_by_property(naming.contacts, "email", rest, ["email"]) if rest else {}
    )
    vendor_of.update({k.lower(): v.id for k, v in found.items()})
    for reg in deal_regs:
        assert reg.id is not None
        for email in emails_of[reg.id]:
            vid = vendor_of.get(email.lower())
            if vid is not None:
                vendor_ids.append((reg.id, email, vid))
        done.add(reg.id)
    _keep_contact_ids(ctx, registry, vendor_ids)
    return done


def _keep_contact_ids(
    ctx: PassContext, registry: Registry, vendor_ids: list[tuple[int, str, str]]
) -> None:
    """Remember the registration contacts' vendor contacts (bookkeeping, via the pass)."""
    if vendor_ids:
        ctx.apply([Keep("vendor contacts", lambda: registry.set_contact_vendor_ids(vendor_ids))])


WRITE_BACK_PAGE = 1000
"""Registrations :func:`write_back` reads, writes and marks at a time: a multiple of the
CRMs' batch of 100, so paging costs no call (each object's pages are its own)."""

WRITE_BACK_BATCH = 100
"""The CRMs' batch of record updates: while the pass streams, a chunk's write-backs go
in whole batches (:func:`write_back_soon`), the rest with ``after_pass``'s pages, so
writing early costs no call."""


@dataclass
class WriteBacks:
    """The partner write-backs of the deals this pass streamed: their ids, gathered
    chunk by chunk, and once every chunk was detected and applied (``after_stream``)
    their registrations' statuses set going from the pass's background writer
    (:func:`write_back_soon`) while the companies and contacts are applied (issue
    17); their outcomes are taken, and the registrations marked, in the pass's thread
    (:func:`take_write_backs`). Not sooner: a partner deal written while detection
    still pages through the partner's deals would leave the search's window (its
    modification time moves past the frozen high-water mark) and shift the pages
    after it, so deals not handed over yet would be skipped."""

    due: list[str] = field(default_factory=list)  # the streamed partner deal ids
    # registration id → what this pass wrote of it (:func:`_written`): ``after_pass``
    # does not write it again (a failed write stays pending for the next pass, as a
    # failed write of ``after_pass``'s own does; a dry run lists it once)
    sent: dict[int, int] = field(default_factory=dict)
    going: list[tuple[Soon, list[WriteBack]]] = field(default_factory=list)
    # an error that stopped a write (the portal unreachable): raised by ``after_pass``,
    # where the write-back would have raised it; nothing more is set going meanwhile
    error: Exception | None = None


def _written(reg: Registration | WriteBack) -> int:
    """What a write-back writes of a registration, to tell whether it changed since."""
    return hash((reg.status, reg.code, reg.reason, reg.owned_until))


def write_back_soon(ctx: PassContext, registry: Registry) -> None:
    """The streamed deals (:attr:`WriteBacks.due`): their registrations still to write
    back go to the partner CRM now, a page of deals at a time in whole batches
    (:data:`WRITE_BACK_BATCH`; the rest goes with ``after_pass``'s pages, so no call is
    added), from the pass's background writer (``ctx.apply_soon``). Called once every
    page of the partner's deals was read — at each chunk decided from then on
    (``Chunk.detected_all``), and at ``after_stream`` — never while the search still
    pages: a deal written then would shift the pages still to read. Writing from the
    chunk on, not at the stream's end, uses the partner's budget while the vendor's
    writes of the last chunks go on (issue 17: at N = 10,000 the last write-backs
    otherwise waited out a 10-s window after the vendor's writes had ended)."""
    wb = ctx.note(WriteBacks)
    take_write_backs(ctx, registry, wait=False)
    due, wb.due = wb.due, []
    if wb.error is not None:
        return
    for start in range(0, len(due), WRITE_BACK_PAGE):
        page = registry.pending_write_backs_of(
            ctx.connection, "deal", due[start : start + WRITE_BACK_PAGE]
        )
        by_object: dict[str, list[WriteBack]] = {}
        for reg in page:
            if not reg.partner_record_id.startswith("cli:") and wb.sent.get(reg.id) != _written(
                reg
            ):
                by_object.setdefault(reg.partner_object, []).append(reg)
        for obj, regs in by_object.items():
            batch = regs[: len(regs) - len(regs) % WRITE_BACK_BATCH]
            if not batch:
                continue
            wb.sent.update((r.id, _written(r)) for r in batch)
            wb.going.append((ctx.apply_soon(_status_writes(ctx, obj, batch)), batch))


def take_write_backs(ctx: PassContext, registry: Registry, *, wait: bool) -> None:
    """The outcomes of the write-backs :func:`write_back_soon` set going — those done,
    or (``wait``) all — and the registrations written marked (in this thread). With
    ``wait`` (``after_pass``), an error that stopped one is raised once the others
    were taken."""
    wb = ctx.noted(WriteBacks)
    if wb is None:
        return
    done: list[Registration | WriteBack] = []
    while wb.going and (wait or wb.going[0][0].done()):
        soon, regs = wb.going.pop(0)
        try:
            results = soon.outcomes()
        except Exception as exc:  # the pass goes on; its after_pass raises it
            wb.error = wb.error or exc
            continue
        done += _settled(regs[0].partner_object, regs, results)
        if len(done) >= WRITE_BACK_PAGE:
            # marked a page at a time: a first sync sets its N write-backs going at
            # once, and marking them in one statement held N rows of parameters
            _mark_written(ctx, registry, done)
            done = []
    _mark_written(ctx, registry, done)
    if wait and wb.error is not None:
        error, wb.error = wb.error, None
        raise error


def _mark_written(
    ctx: PassContext, registry: Registry, done: list[Registration | WriteBack]
) -> None:
    if done:
        ctx.apply([Keep("registration status written", lambda: registry.mark_written_back(done))])


def write_back(ctx: PassContext, registry: Registry) -> None:
    """Each partner record shows its registration's latest status and reason. A page of
    registrations at a time (:data:`WRITE_BACK_PAGE`), each page marked once written: a
    first sync that decided N registrations holds one page of rows, writes and CRM
    answers, not N (issue 17). What the pass wrote already while it streamed
    (:class:`WriteBacks`) is not written again."""
    sent = wb.sent if (wb := ctx.noted(WriteBacks)) is not None else {}
    for page in registry.pending_write_back_pages(ctx.connection, WRITE_BACK_PAGE):
        if sent:
            page = [r for r in page if r.id is None or sent.get(r.id) != _written(r)]
        if page:
            _write_back_page(ctx, registry, page)


def _status_writes(
    ctx: PassContext, obj: str, regs: Sequence[Registration | WriteBack]
) -> list[WriteProperties]:
    """The partner record of each registration gets its status, code, reason and end.
    Registrations decided alike share one dictionary of properties (nothing changes an
    effect's): a first sync sets its N write-backs going at once, most of them the
    same acceptance with the same end date."""
    custom = ctx.partner_crm.naming.custom  # the status fields as the partner CRM names them
    alike: dict[tuple[object, ...], dict[str, str]] = {}

    def props(r: Registration | WriteBack) -> dict[str, str]:
        key = (r.status, r.code, r.reason, r.owned_until)
        found = alike.get(key)
        if found is None:
            found = alike[key] = {
                custom(REG_STATUS): r.status,
                custom(REG_CODE): r.code or "",
                custom(REG_REASON): r.reason or "",
                custom(REG_UNTIL): _iso(r.owned_until) if r.status == "accepted" else "",
            }
        return found

    return [
        WriteProperties("partner", obj, r.partner_record_id, props(r), "registration status")
        for r in regs
    ]


def _settled(
    obj: str, regs: Sequence[Registration | WriteBack], results: Sequence[Any]
) -> list[Registration | WriteBack]:
    """The registrations whose write-back is done: written, or refused for good (logged:
    not retried). The others (failed, logged; a dry run's) stay pending."""
    answered = [res for res in results if res is not None]
    ok = {res.key for res in answered if res.ok}
    # a refusal that no retry can fix (the record is gone, the value is refused):
    # give up on that write-back instead of repeating it on every pass
    hopeless = {res.key: res.error for res in answered if not res.ok and not res.retriable}
    answer = {r.partner_record_id: res for r, res in zip(regs, results, strict=True)}
    done: list[Registration | WriteBack] = []
    for r in regs:
        if r.partner_record_id in ok:
            done.append(r)
        elif r.partner_record_id in hopeless:
            done.append(r)
            log.warning(
                "registration %s: partner %s %s refused the write-back for good (%s); not retried",
                r.id,
                obj,
                r.partner_record_id,
                hopeless[r.partner_record_id],
            )
        elif answer[r.partner_record_id] is not None:  # None: not carried out (dry)
            log.warning(
                "registration %s: write-back to partner %s %s failed",
                r.id,
                obj,
                r.partner_record_id,
            )
    return done


def _write_back_page(ctx: PassContext, registry: Registry, pending: list[Registration]) -> None:
    by_object: dict[str, list[Registration]] = {}
    done: list[Registration | WriteBack] = []
    for reg in pending:
        assert reg.id is not None
        if reg.partner_record_id.startswith("cli:"):
            done.append(reg)  # submitted on the command line: no partner record
            continue
        by_object.setdefault(reg.partner_object, []).append(reg)
    for obj, regs in by_object.items():
        results = ctx.apply(_status_writes(ctx, obj, regs))
        done += _settled(obj, regs, results)
    _mark_written(ctx, registry, done)
