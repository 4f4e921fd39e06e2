"""The registration hook: lead and deal registration on every pass.

Where the program's §2.1 rules meet the sync engine:

* ``after_detect`` — expire registrations whose window has ended;
* ``decide_chunk`` — per chunk of the pass's deals (the pass streams them): decide new
  deal registrations (registered partner deals not shared yet) and withdrawals (flag
  removed), each deal on its company and contacts, detected before the deals;
* ``after_stream`` — once every deal was decided: lead registrations (partner
  contacts flagged as leads) and their withdrawals;
* ``before_apply`` — only accepted deals, and the companies and contacts hanging on
  accepted or already-shared deals, are created at the vendor; the rest is vetoed
  (the pass applies a chunk's companies and contacts right after it, with the
  decisions made so far, and offers one vetoed then again with the later ones);
* ``after_pass`` — the vendor CRM gets the authoritative ownership (company
  properties), and each partner record gets its registration's status and reason —
  those of the streamed deals mostly written already: once every page of deals was
  read (from the chunk decided then on, else at ``after_stream``), their
  registrations' statuses go to the partner CRM from the pass's background writer
  while the vendor's writes go on
  (:func:`~connector.hooks.registration_crm.write_back_soon`).

The hook decides; it does not write. Endings, decisions and writes are effects
(:mod:`connector.engine.effects`) handed to ``ctx.apply``: the engine records them
(decisions durable before anything is written) and carries them out, or in a dry run
only lists them. Every write is idempotent and retried until marked done, so a crash
anywhere neither loses a decision nor writes one twice.

Objects, markers and the contact's language are named as each side's CRM names them
(``ctx.partner_crm.naming``, ``ctx.vendor_crm.naming``); which mapping holds the deals,
contacts and companies is read off those names (:mod:`connector.hooks.objects`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.effects import Decide, EndRegistrations, QueueEmail
from connector.engine.hooks import BaseHook, Chunk, ObjectRecords, PassContext, Planned
from connector.engine.plan import Action, Create
from connector.engine.reconcile import matches
from connector.hooks.objects import (
    PartnerFields,
    ProgramMappings,
    partner_fields,
    program_mappings,
)
from connector.hooks.registration_crm import (
    OWNED_UNTIL,
    OWNER,
    REG_CODE,
    REG_ID,
    REG_REASON,
    REG_STATUS,
    REG_UNTIL,
    PassLookups,
    WriteBacks,
    decide_submissions,
    ownership_on_creates,
    take_write_backs,
    write_back,
    write_back_soon,
    write_vendor_ownership,
)
from connector.mail.render import render
from connector.program.decide import (
    Person,
    Submission,
)
from connector.program.review import reminder_context
from connector.records import PropertySpec, Record, Side
from connector.state.registry import Registry
from connector.state.tables import Registration

log = logging.getLogger("dealsync.registration")


@dataclass
class PassDecisions:
    """What the hook decided in this pass, for ``before_apply``."""

    deals: dict[str, str] = field(default_factory=dict)  # partner deal id → status
    allowed_children: dict[str, set[str]] = field(default_factory=dict)  # object → ids


class RegistrationHook(BaseHook):
    name = "registration"

    def __init__(self, rules: RulesFile, mappings: Sequence[ObjectMapping]) -> None:
        self.rules = rules
        self.mappings = tuple(mappings)

    def objects(self, partner: Naming) -> ProgramMappings:
        """The deal, contact and company mappings, as the partner CRM names its objects."""
        return program_mappings(self.mappings, partner)

    def fields(self, partner: Naming) -> PartnerFields:
        """What a registration reads of the partner's records, as the partner CRM and
        its mappings name it (Salesforce: ``Email``, ``Website``...)."""
        reg = self.rules.registration
        return partner_fields(
            self.objects(partner),
            partner,
            lead_flag=reg.lead_flag,
            lead_domain=reg.lead_domain_property,
            company_domain=reg.company_domain_property,
        )

    # ------------------------------------------------------------------ setup

    def properties(self, mapping: ObjectMapping, side: Side, naming: Naming) -> Sequence[str]:
        if side != "partner":
            return ()
        objects = self.objects(naming)
        names = self.fields(naming)
        if mapping is objects.contacts:
            lead = (names.lead_flag, *([names.lead_domain] if names.lead_domain else []))
            return (*lead, *names.contact)
        if mapping is objects.companies:
            # detected companies then serve the deals' submissions without a re-read
            return names.company
        return ()

    def detect_anyway(self, mapping: ObjectMapping, naming: Naming) -> Mapping[str, str] | None:
        """Contacts read with their deals (a first sync): the ones flagged as leads are
        detected all the same — a lead needs no deal (``after_stream``)."""
        if mapping is self.objects(naming).contacts:
            return {self.fields(naming).lead_flag: "true"}
        return None

    def required_properties(
        self, names: Mapping[Side, Naming]
    ) -> Sequence[tuple[Side, PropertySpec]]:
        partner, vendor = names["partner"], names["vendor"]
        out: list[tuple[Side, PropertySpec]] = []
        for obj in (partner.deals, partner.contacts):
            for name, label in (
                (REG_STATUS, "Registration status"),
                (REG_CODE, "Registration code"),
                (REG_REASON, "Registration reason"),
                (REG_UNTIL, "Domain owned until"),
            ):
                out.append(("partner", PropertySpec(obj, partner.custom(name), label)))
        out.append(
            (
                "partner",
                PropertySpec(
                    partner.contacts,
                    partner.custom(self.rules.registration.lead_flag),
                    "Register as lead",
                ),
            )
        )
        if partner.language.startswith("dealsync_"):
            # a CRM without a contact language of its own (Salesforce) reads dealsync's
            out.append(("partner", PropertySpec(partner.contacts, partner.language, "Language")))
        for name, label in (
            (OWNER, "Registered by partner"),
            (OWNED_UNTIL, "Partner owns domain until"),
            (REG_ID, "dealsync registration"),
        ):
            out.append(("vendor", PropertySpec(vendor.companies, name, label)))
        # leads become vendor contacts by an upsert on e-mail: it must be a unique-value
        # property (built in at HubSpot, where this is skipped as existing)
        out.append(("vendor", PropertySpec(vendor.contacts, "email", "Email", unique=True)))
        return out

    # ------------------------------------------------------------------ decide

    def after_detect(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        registry = ctx.store.registry
        decisions = ctx.notes[PassDecisions] = PassDecisions()
        due = registry.due_to_expire(ctx.connection, ctx.now)
        if due:
            ctx.apply([EndRegistrations(tuple(r.id for r in due if r.id is not None), "expired")])
        objects = self.objects(ctx.partner_crm.naming)
        if objects.deals is not None and objects.deals.name in seen:
            # streamed (the pass's default), the deals come to decide_chunk instead
            deals = seen[objects.deals.name].partner
            if deals:
                self._deals(ctx, registry, deals, decisions, seen)
        if objects.contacts is not None and objects.contacts.name in seen:
            self._note_emails(ctx, seen[objects.contacts.name].partner)

    def _note_emails(self, ctx: PassContext, contacts: Mapping[str, Record]) -> None:
        """The partner contacts by e-mail (``None``: two share it), for ``after_pass``
        to find the registrations' contacts by their links rather than by searching."""
        by_email = ctx.note(PassLookups).partner_contacts
        email_property = self.fields(ctx.partner_crm.naming).email
        for rid, rec in contacts.items():
            email = (rec.get(email_property) if email_property else None) or ""
            email = email.strip().lower()
            if email and not rec.archived:
                by_email[email] = rid if by_email.get(email, rid) == rid else None

    def decide_chunk(
        self, ctx: PassContext, chunk: Chunk, seen: Mapping[str, ObjectRecords]
    ) -> None:
        """A chunk of the pass's deals: each decided on its company and contacts, which
        the pass detected (held in ``seen``) or, missing there, reads by id."""
        objects = self.objects(ctx.partner_crm.naming)
        decisions = ctx.noted(PassDecisions)
        if chunk.mapping is not objects.deals or decisions is None or not chunk.records.partner:
            return
        self._deals(ctx, ctx.store.registry, chunk.records.partner, decisions, seen)
        # their statuses are written back once every page of deals was read: from this
        # chunk on if it says so, else at ``after_stream`` (a deal written while the
        # search pages on would shift its pages)
        ctx.note(WriteBacks).due.extend(chunk.records.partner)
        if chunk.detected_all:
            write_back_soon(ctx, ctx.store.registry)

    def after_stream(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        """Leads after the pass's deals (a deal registers its domain first). Every
        chunk of deals was detected and applied: the registrations' statuses not yet
        on their way (``decide_chunk`` sets going those of the chunks decided once
        every page of deals was read) go to the partner CRM while the companies and
        contacts are applied."""
        write_back_soon(ctx, ctx.store.registry)
        objects = self.objects(ctx.partner_crm.naming)
        if objects.contacts is not None and objects.contacts.name in seen:
            self._leads(ctx, ctx.store.registry, seen[objects.contacts.name].partner)

    def _deals(
        self,
        ctx: PassContext,
        registry: Registry,
        deals: Mapping[str, Record],
        decisions: PassDecisions,
        seen: Mapping[str, ObjectRecords],
    ) -> None:
        naming = ctx.partner_crm.naming
        objects = self.objects(naming)
        assert objects.deals is not None
        mapping = objects.deals
        # plain tuples without their bases: only the status is read (issue 17)
        links = ctx.store.link_refs(ctx.connection, mapping.name, "partner", deals, base=False)
        linked = [rid for rid in deals if (link := links.get(rid)) and link.status == "active"]
        regs = registry.find_many(ctx.connection, "deal", linked)
        candidates: list[Record] = []
        withdrawn: list[int] = []
        unflagged: list[str] = []  # not linked, not (or no longer) registered
        for rid, rec in deals.items():
            link = links.get(rid)
            # a deal the connector wrote (its marker set) is the vendor's, never registered
            flagged = matches(mapping.share.partner, rec.properties) and not rec.get(
                naming.source_id
            )
            if link is not None and link.status == "active":
                decisions.deals[rid] = "linked"
                self._allow_children(objects, decisions, rec)
                reg = regs.get(rid)
                if reg is not None and reg.status == "accepted" and not flagged:
                    assert reg.id is not None
                    withdrawn.append(reg.id)
                continue
            if flagged and not rec.archived:
                candidates.append(rec)
            else:
                unflagged.append(rid)
        # a registration waiting for review whose deal is no longer flagged (or is gone)
        # is withdrawn too: it frees the domain it reserved
        waiting = registry.find_many(ctx.connection, "deal", unflagged) if unflagged else {}
        withdrawn += [r.id for r in waiting.values() if r.status == "pending" and r.id is not None]
        if withdrawn:  # before deciding: a withdrawal frees its domain
            ctx.apply([EndRegistrations(tuple(withdrawn), "withdrawn")])
        if not candidates:
            return
        known = ctx.note(PassLookups)
        for rec in candidates:
            known.deal_companies[rec.id] = tuple(rec.associations.get(naming.companies, ()))
        subs = self._deal_submissions(ctx, candidates, seen)
        self._decide_all(ctx, registry, subs, decisions)
        for rec in candidates:
            if decisions.deals.get(rec.id) == "accepted":
                self._allow_children(objects, decisions, rec)

    @staticmethod
    def _allow_children(objects: ProgramMappings, decisions: PassDecisions, deal: Record) -> None:
        for child in objects.children:
            decisions.allowed_children.setdefault(child.name, set()).update(
                deal.associations.get(child.partner_object, ())
            )

    def _deal_submissions(
        self, ctx: PassContext, deals: list[Record], seen: Mapping[str, ObjectRecords]
    ) -> list[Submission]:
        naming = ctx.partner_crm.naming
        objects = self.objects(naming)
        names = self.fields(naming)
        company_ids = sorted({i for d in deals for i in d.associations.get(naming.companies, ())})
        contact_ids = sorted({i for d in deals for i in d.associations.get(naming.contacts, ())})
        companies = self._partner_records(
            ctx,
            seen,
            objects.companies,
            naming.companies,
            company_ids,
            list(names.company),
        )
        contacts = self._partner_records(
            ctx, seen, objects.contacts, naming.contacts, contact_ids, list(names.contact)
        )
        # a first sync reads the contacts with their deals: after_detect saw few of them
        self._note_emails(ctx, contacts)
        subs = []
        for deal in sorted(
            deals, key=lambda d: (d.updated_at, int(d.id) if d.id.isdigit() else 0, d.id)
        ):
            comp = next(
                (
                    companies[i]
                    for i in deal.associations.get(naming.companies, ())
                    if i in companies
                ),
                None,
            )
            people = tuple(
                _person(contacts[i], names)
                for i in deal.associations.get(naming.contacts, ())
                if i in contacts
            )
            missing = [] if comp is not None else ["an associated company"]
            subs.append(
                Submission(
                    partner=ctx.connection,
                    kind="deal",
                    partner_object=naming.deals,
                    partner_record_id=deal.id,
                    domain_text=_get(comp, names.company_domain),
                    company_name=_get(comp, names.company_name) or "",
                    contacts=people,
                    missing=tuple(missing),
                )
            )
        return subs

    @staticmethod
    def _partner_records(
        ctx: PassContext,
        seen: Mapping[str, ObjectRecords],
        mapping: ObjectMapping | None,
        object_type: str,
        ids: Sequence[str],
        props: Sequence[str],
    ) -> dict[str, Record]:
        """Partner records by id: those this pass detected (read moments ago, with
        these properties) as they are, the rest read in batches."""
        detected = seen[mapping.name].partner if mapping and mapping.name in seen else {}
        out: dict[str, Record] = {}
        for i in ids:
            rec = detected.get(i)
            if rec is not None and not rec.archived and all(p in rec.properties for p in props):
                out[i] = rec
        missing = [i for i in ids if i not in out]
        if missing:
            out.update(ctx.partner_crm.read(object_type, missing, props))
        return out

    def _leads(self, ctx: PassContext, registry: Registry, contacts: Mapping[str, Record]) -> None:
        naming = ctx.partner_crm.naming
        names = self.fields(naming)
        subs: list[Submission] = []
        withdrawn: list[int] = []
        flags = {
            rid: (rec.get(names.lead_flag) or "").lower() == "true" for rid, rec in contacts.items()
        }
        # only an unflagged contact's registration matters here (it may be withdrawn);
        # the flagged ones' are looked up by _decide_all
        regs = registry.find_many(ctx.connection, "lead", [r for r, f in flags.items() if not f])
        accounts = self._lead_companies(
            ctx, [r for r, f in flags.items() if f and not contacts[r].archived], names
        )
        for rid, rec in sorted(contacts.items(), key=lambda kv: (kv[1].updated_at, kv[0])):
            if not flags[rid]:
                existing = regs.get(rid)
                if existing is not None and existing.status in ("accepted", "pending"):
                    assert existing.id is not None
                    withdrawn.append(existing.id)
                continue
            if rec.archived:
                continue
            person = _person(rec, names)
            account = accounts.get(rid)
            domain_text = (
                _get(rec, names.lead_domain)
                or _get(account, names.company_domain)
                or (person.email if "@" in person.email else None)
            )
            company = _get(rec, names.contact_company) or _get(account, names.company_name)
            subs.append(
                Submission(
                    partner=ctx.connection,
                    kind="lead",
                    partner_object=naming.contacts,
                    partner_record_id=rid,
                    domain_text=domain_text,
                    company_name=company or "",
                    contacts=(person,),
                )
            )
        if withdrawn:  # before deciding: a withdrawal frees its domain
            ctx.apply([EndRegistrations(tuple(withdrawn), "withdrawn")])
        if subs:
            self._decide_all(ctx, registry, subs, PassDecisions())

    @staticmethod
    def _lead_companies(
        ctx: PassContext, lead_ids: Sequence[str], names: PartnerFields
    ) -> dict[str, Record]:
        """Lead id → the partner company it belongs to, for a partner CRM whose
        contacts carry no company name of their own (a Salesforce Contact has its
        Account): the lead's company is then that company's name, and its domain that
        company's when the lead has none. Read only for such a CRM."""
        if names.contact_company is not None or not lead_ids:
            return {}
        naming = ctx.partner_crm.naming
        leads = ctx.partner_crm.read(
            naming.contacts, list(lead_ids), [naming.source_id], associations=[naming.companies]
        )
        first = {
            rid: ids[0]
            for rid, rec in leads.items()
            if (ids := rec.associations.get(naming.companies))
        }
        found = (
            ctx.partner_crm.read(naming.companies, sorted(set(first.values())), list(names.company))
            if first
            else {}
        )
        return {rid: found[cid] for rid, cid in first.items() if cid in found}

    def _decide_all(
        self, ctx: PassContext, registry: Registry, subs: list[Submission], decisions: PassDecisions
    ) -> None:
        todo: list[Submission] = []
        regs: dict[tuple[str, str], Registration] = {}
        for kind in sorted({sub.kind for sub in subs}):
            found = registry.find_many(
                ctx.connection, kind, [s.partner_record_id for s in subs if s.kind == kind]
            )
            regs.update({(kind, rid): reg for rid, reg in found.items()})
        for sub in subs:
            existing = regs.get((sub.kind, sub.partner_record_id))
            if existing is not None and (
                existing.status in ("accepted", "expired", "withdrawn")
                or existing.fingerprint == sub.fingerprint()
            ):
                if sub.kind == "deal":
                    decisions.deals[sub.partner_record_id] = existing.status
                continue
            todo.append(sub)
        if not todo:
            return
        decided = decide_submissions(ctx, registry, self.rules, todo)
        # recorded in order, a few transactions for all (the claim rows still arbitrate);
        # the statuses are the recorded ones (a dry run: the decisions' own)
        statuses: list[str] = ctx.apply([Decide(sub, d) for sub, d in decided])
        for (sub, decision), status in zip(decided, statuses, strict=True):
            if sub.kind == "deal":
                decisions.deals[sub.partner_record_id] = status
            log.info(
                "%s registration %s %s: %s",
                sub.kind,
                sub.partner_record_id,
                status,
                decision.reason,
            )

    # ------------------------------------------------------------------ veto

    def before_apply(self, ctx: PassContext, planned: Planned) -> list[Action]:
        mapping, actions = planned.mapping, planned.actions
        decisions = ctx.noted(PassDecisions)
        if decisions is None:
            return actions
        creates = [a.source_id for a in actions if isinstance(a, Create) and a.target == "vendor"]
        if not creates:
            return actions
        # a create interrupted by a crash was allowed when its intent was recorded:
        # finish it, whatever this pass saw of its deal
        pending = {
            rid
            for rid, link in ctx.store.link_refs(
                ctx.connection, mapping.name, "partner", creates, base=False
            ).items()
            if link.status == "pending"
        }
        objects = self.objects(ctx.partner_crm.naming)
        if mapping is objects.deals:
            allowed = {d for d, status in decisions.deals.items() if status == "accepted"}
        elif mapping in objects.children:
            allowed = decisions.allowed_children.get(mapping.name, set())
        else:
            return actions
        kept = [
            a
            for a in actions
            if not (
                isinstance(a, Create)
                and a.target == "vendor"
                and a.source_id not in allowed
                and a.source_id not in pending
            )
        ]
        if mapping is not objects.companies:
            return kept
        return _with_ownership(ctx, kept)

    # ------------------------------------------------------------------ write

    def after_pass(self, ctx: PassContext) -> None:
        registry = ctx.store.registry
        objects = self.objects(ctx.partner_crm.naming)
        write_vendor_ownership(ctx, registry, self.rules, objects.companies, objects.contacts)
        # what the stream set going first (its failures raised here, as write_back's)
        take_write_backs(ctx, registry, wait=True)
        write_back(ctx, registry)
        remind_overdue_reviews(ctx, registry, self.rules)


def _with_ownership(ctx: PassContext, actions: list[Action]) -> list[Action]:
    """The vendor company creates with the ownership of the accepted registration they
    belong to (:func:`ownership_on_creates`): one upsert instead of an upsert and an
    update per 100 companies."""
    creates = [a.source_id for a in actions if isinstance(a, Create) and a.target == "vendor"]
    ride = ownership_on_creates(ctx, ctx.store.registry, creates)
    if not ride:
        return actions
    return [
        replace(a, properties={**a.properties, **ride[a.source_id]})
        if isinstance(a, Create) and a.target == "vendor" and a.source_id in ride
        else a
        for a in actions
    ]


def _get(rec: Record | None, name: str | None) -> str | None:
    """``rec``'s value of ``name``; None without a record or a property to read."""
    return rec.get(name) if rec is not None and name else None


def _person(rec: Record, names: PartnerFields) -> Person:
    """The person a partner contact is, each detail under the partner CRM's name."""
    return Person(
        email=(_get(rec, names.email) or "").strip(),
        first_name=(_get(rec, names.first_name) or "").strip(),
        last_name=(_get(rec, names.last_name) or "").strip(),
        country=_get(rec, names.country),
        language=_get(rec, names.language),
        record_id=rec.id,
    )


def remind_overdue_reviews(ctx: PassContext, registry: Registry, rules: RulesFile) -> None:
    """A registration pending longer than ``review.sla_hours`` reminds the program's
    address once (the outbox row's key is the registration's). Without an address
    (the rules changed while it waited) the reminder cannot go: logged, and the pending
    registration stays on ``registrations --status pending`` and the admin page."""
    cutoff = ctx.now - timedelta(hours=rules.review.sla_hours)
    overdue = registry.overdue_pending(ctx.connection, cutoff)
    if not overdue:
        return
    address = rules.review.notify_email
    if not address:
        log.warning(
            "%d registration(s) pending longer than %dh and no review.notify_email to remind",
            len(overdue),
            rules.review.sla_hours,
        )
        return
    ctx.apply(
        [
            QueueEmail(
                dedupe_key=f"review_reminder:{reg.id}",
                kind="review_reminder",
                recipient=address,
                rendered=render(
                    "review_reminder",
                    "en",
                    reminder_context(
                        registration_id=reg.id,
                        kind=reg.kind,
                        partner=reg.partner,
                        company=reg.company_name,
                        domain=reg.domain,
                        since=reg.decided_at or reg.submitted_at,
                        note=reg.review_note,
                        rules=rules.review,
                    ),
                ),
                partner=ctx.connection,
                registration_id=None,  # not cancelled when the registration changes
                status="queued",
                detail=None,
            )
            for reg in overdue
        ]
    )
