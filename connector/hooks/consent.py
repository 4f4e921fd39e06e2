"""The consent hook: privacy-law e-mails for the contacts of accepted registrations.

Per contact, by where it is — its own country, else its company's at the vendor,
else unknown (DESIGN §2.2, issue 16):

* DACH — a consent request when the registration is accepted, unless already opted
  in to the vendor's communications;
* other EU (with the EEA and the UK by default), or country unknown — a notice
  ``notice_after_days`` (or, with ``notice_period: 1 month``, a calendar month) after
  acceptance, unless by the window's end the contact opted in or, within it,
  engaged (privacy policy view, content download, form fill: web events named in
  the rules). An opt-in counts by its time (the subscription status change), not by
  the state when the pass runs: an opt-in on day 40 does not suppress the day-30
  notice;
* known country outside the EU — nothing.

Each decision is one outbox row keyed ``<kind>:<e-mail>`` — queued, suppressed with
its reason, or held (rendered, but it would name the partner: an admin releases or
cancels it) — so an e-mail exists at most once per contact and kind, across
reruns and crashes. Each row is a :class:`~connector.engine.effects.QueueEmail` handed
to ``ctx.apply``: the engine queues it, or a dry run lists it. Only accepted
registrations are considered, and the sender drops a queued consent e-mail whose
registration ended before delivery. A registration accepted outside a pass
(``dealsync register lead``) is decided at once by :func:`decide_consent` for it alone.

The hook also keeps the vendor's consent strict: a sync write may never move a
protected vendor contact property away from its strict value (an opt-out wins).

The vendor's contacts are named as the vendor's CRM names them (``ctx.vendor_crm.naming``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connector.adapters.base import (
    EPOCH,
    CRMAdapter,
    SupportsEngagement,
    SupportsPropertyHistory,
)
from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.effects import Keep, QueueEmail
from connector.engine.hooks import BaseHook, PassContext, Planned
from connector.engine.plan import Action, Update
from connector.engine.reconcile import matches
from connector.hooks.objects import vendor_mapping
from connector.mail.privacy import PrivacyViolation, assert_clean
from connector.mail.render import Rendered, render
from connector.program.consent import (
    LANGUAGE_BY_COUNTRY,
    lead_country,
    notice_due,
    opted_in_by,
    region,
)
from connector.program.countries import country_code
from connector.records import PropertySpec, Record, Side
from connector.state.outbox import OutboxRows
from connector.state.tables import Registration, RegistrationContact

log = logging.getLogger("dealsync.consent")

CONSENT_KINDS = ("consent_request", "data_notice")


def partner_identity(ctx: PassContext) -> list[str]:
    """What would let a lead infer the partner: its id, its name, its notification
    addresses (the configured one and a subscription's) and their domains. Matched as
    whole words by :func:`~connector.mail.privacy.assert_clean`: ``orbit`` does not match
    "Orbital Kitchens"."""
    from connector.state.leads import subscription

    p = ctx.partner
    items = [p.id, p.name]
    for address in {p.notify_email, subscription(ctx.store, p.id, None)}:
        if address:
            items.append(address)
            items.append(address.rsplit("@", 1)[-1])
    return [i for i in items if i]


class ConsentHook(BaseHook):
    name = "consent"

    def __init__(self, rules: RulesFile, mappings: Sequence[ObjectMapping]) -> None:
        self.rules = rules
        self.mappings = tuple(mappings)

    def required_properties(
        self, names: Mapping[Side, Naming]
    ) -> Sequence[tuple[Side, PropertySpec]]:
        contacts = names["vendor"].contacts
        return [
            ("vendor", PropertySpec(contacts, c.property, c.property))
            for c in self.rules.consent.opted_in_properties
        ]

    def before_apply(self, ctx: PassContext, planned: Planned) -> list[Action]:
        """Drop writes that would loosen a protected vendor contact property."""
        mapping, actions, records = planned.mapping, planned.actions, planned.records
        protected = self.rules.consent.protected_properties
        contact_mapping = vendor_mapping(self.mappings, ctx.vendor_crm.naming.contacts)
        if mapping is not contact_mapping or not protected:
            return actions
        out: list[Action] = []
        for a in actions:
            if isinstance(a, Update) and any(k in protected for k in a.vendor_properties):
                vendor_now = records.vendor.get(a.vendor_id)
                props = dict(a.vendor_properties)
                base = dict(a.base)
                for name, strict in protected.items():
                    if name not in props:
                        continue
                    current = vendor_now.properties.get(name) if vendor_now else None
                    field = next((f for f in mapping.fields if f.vendor == name), None)
                    if current is None and field is not None:
                        current = (a.base.get(field.key) or (None, None))[1]
                    if (current or "").lower() == strict.lower() and (
                        props[name] or ""
                    ).lower() != strict.lower():
                        del props[name]
                        if field is not None:
                            # keep the vendor's strict value in the base, so the partner's
                            # value is offered again on its next change, never forced
                            partner_value = base.get(field.key, (None, None))[0]
                            base[field.key] = (partner_value, current)
                        log.info(
                            "kept %s=%s on vendor contact %s (consent is never loosened by sync)",
                            name,
                            strict,
                            a.vendor_id,
                        )
                a = Update(
                    a.object,
                    a.link_id,
                    a.partner_id,
                    a.vendor_id,
                    a.partner_properties,
                    props,
                    base,
                    a.reasons,
                )
            out.append(a)
        return out

    def after_pass(self, ctx: PassContext) -> None:
        decide_consent(ctx, self.rules)


@dataclass
class ConsentOutlook:
    """What a decision left for later, noted on the pass (``ctx.note``) so a command
    can say so: notices not due yet (address, due time) and contacts that get
    nothing (address, why)."""

    later: list[tuple[str, datetime]] = field(default_factory=list)
    never: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Due:
    """One contact's consent decision that is due now."""

    reg: Registration
    person: RegistrationContact
    kind: str
    key: str
    country: str | None  # the contact's, else its company's (None: unknown)
    window_end: datetime  # the notice's due time (a consent request: the decision's)


def decide_consent(
    ctx: PassContext, rules: RulesFile, registration_ids: Collection[int] | None = None
) -> int:
    """Queue (or suppress) the consent e-mails now due; returns how many were decided.
    ``registration_ids``: only these registrations' contacts (a registration just
    accepted outside a pass, ``dealsync register lead``); otherwise the contacts of
    the connection's accepted registrations whose consent work is due
    (:meth:`~connector.state.registry.Registry.consent_due`: not looked at for the
    registration's current decision, or an EU notice due by now) — a quiet pass reads
    no other registration (issue 17). Each contact looked at is marked (a ``Keep``
    effect, after its e-mail's): nothing more to do, or when to look again.

    The CRM is read in batches, whatever the number of contacts (issue 17): one read
    of the companies of undecided contacts without a country, one subscription-status
    read per 100 addresses, one read of the vendor contacts (by id, else one search
    by e-mail), one property-history read per 50 confirmed ones; web events once per
    event type for every contact due a notice."""
    consent = rules.consent
    registry = ctx.store.registry
    vendor = ctx.vendor_crm
    engagement = vendor if isinstance(vendor, SupportsEngagement) else None
    pages: Callable[[], Iterable[list[tuple[Registration, RegistrationContact]]]]
    if registration_ids is None:
        # a page of contacts at a time: a first sync that accepted N registrations
        # holds a page of rows and what is due, not N pairs of rows (issue 17)
        def pages() -> Iterable[list[tuple[Registration, RegistrationContact]]]:
            return registry.consent_due_pages(ctx.connection, ctx.now)

    else:
        given = (registry.get(i) for i in sorted(registration_ids))
        accepted = [
            r
            for r in given
            if r is not None and r.partner == ctx.connection and r.status == "accepted"
        ]
        # one bulk read instead of a query per registration
        people = registry.contacts_of(r.id for r in accepted if r.id is not None)
        given_pairs = [
            (reg, p) for reg in accepted if reg.id is not None for p in people.get(reg.id, [])
        ]

        def pages() -> Iterable[list[tuple[Registration, RegistrationContact]]]:
            return [given_pairs]

    # contact id → (the decision it was looked at for, when to look again or None, the
    # outbox key the decision rests on or None)
    looked: dict[int, tuple[datetime, datetime | None, str | None]] = {}

    def look(
        reg: Registration,
        person: RegistrationContact,
        again: datetime | None = None,
        key: str | None = None,
    ) -> None:
        if person.id is not None:
            looked[person.id] = (reg.decided_at or reg.submitted_at, again, key)

    def existing(pairs: Sequence[tuple[Registration, RegistrationContact]]) -> set[str]:
        """The outbox keys that exist of these contacts' consent e-mails."""
        return ctx.store.outbox.existing(
            f"{kind}:{p.email.lower()}" for _, p in pairs for kind in CONSENT_KINDS
        )

    # contacts without a country of their own, not decided yet: their company's country
    def decided(person: RegistrationContact, done: Collection[str]) -> bool:
        return any(f"{kind}:{person.email.lower()}" in done for kind in CONSENT_KINDS)

    # Each page is decided as it comes, in order, except the contacts without a country
    # of their own, not decided yet, whose company's country was never read (read once
    # per registration and kept with it: not again on every later pass): those wait
    # for one read of all their companies — with every later contact of the same
    # address, so the decisions about one address keep their order — and go after it.
    # What is due keeps the order of the contacts (``at``).
    unread: dict[int | None, str | None] = {}
    waiting: list[tuple[int, Registration, RegistrationContact]] = []
    waiting_emails: set[str] = set()
    known: set[str] = set()  # the outbox keys that exist of the waiting contacts
    taken: set[str] = set()  # the keys decided by this call, for the pages after
    company_country: dict[str, str | None] = {}
    due: list[tuple[int, _Due]] = []
    never: list[tuple[int, tuple[str, str]]] = []
    later: list[tuple[int, tuple[str, datetime]]] = []

    def decide(at: int, reg: Registration, person: RegistrationContact, done: set[str]) -> None:
        look(reg, person)  # nothing left to do, unless said otherwise below
        if country_code(person.country) is None and decided(person, done):
            # where it is came from its company then, and is not read again
            email = person.email.lower()
            look(
                reg,
                person,
                key=next(f"{k}:{email}" for k in CONSENT_KINDS if f"{k}:{email}" in done),
            )
            return
        company = (
            reg.company_country or None
            if reg.company_country is not None
            else company_country.get(reg.vendor_company_id or "")
        )
        where = lead_country(person.country, company)
        area = region(where.country, consent)
        if area == "outside":
            why = f"{where.source} country {where.country} is outside the EU"
            never.append((at, (person.email, why)))
            return
        kind = "consent_request" if area == "dach" else "data_notice"
        key = f"{kind}:{person.email.lower()}"
        if key in done:
            look(reg, person, key=key)
            return  # decided before (or for another registration of this person)
        decided_at = reg.decided_at or reg.submitted_at
        window_end = notice_due(decided_at, consent) if kind == "data_notice" else ctx.now
        if kind == "data_notice" and ctx.now < window_end:
            # not due yet: decided on the first pass after the window, looked at again then
            later.append((at, (person.email, window_end)))
            look(reg, person, again=window_end)
            return
        look(reg, person, key=key)
        done.add(key)
        taken.add(key)
        due.append((at, _Due(reg, person, kind, key, where.country, window_end)))

    at = 0
    for pairs in pages():
        done = existing(pairs) | taken
        for reg, person in pairs:
            at += 1
            email = person.email.lower()
            needs_company = (
                country_code(person.country) is None
                and bool(reg.vendor_company_id)
                and reg.company_country is None
                and not decided(person, done)
            )
            if needs_company:
                unread[reg.id] = reg.vendor_company_id
            if needs_company or email in waiting_emails:
                if email not in waiting_emails:
                    waiting_emails.add(email)
                    known.update(
                        k for k in (f"{kind}:{email}" for kind in CONSENT_KINDS) if k in done
                    )
                waiting.append((at, reg, person))
                continue
            decide(at, reg, person, done)
    if unread:
        ids = sorted({cid for cid in unread.values() if cid})
        found = vendor.read(vendor.naming.companies, ids, ["country"])
        company_country.update({cid: rec.get("country") for cid, rec in found.items()})
        if not ctx.dry_run:  # a dry run writes nothing, not even what it read
            registry.mark_each(
                {
                    rid: {"company_country": company_country.get(cid or "") or ""}
                    for rid, cid in unread.items()
                    if rid is not None and (cid or "") in found
                }
            )
    done = known | taken
    for at, reg, person in waiting:
        decide(at, reg, person, done)
    if never or later:
        outlook = ctx.note(ConsentOutlook)
        outlook.never.extend(entry for _, entry in sorted(never, key=lambda e: e[0]))
        outlook.later.extend(entry for _, entry in sorted(later, key=lambda e: e[0]))
    due.sort(key=lambda e: e[0])
    count = _decide_due(ctx, rules, engagement, [item for _, item in due])
    # after the e-mails' rows (a crash before this looks at them again: the outbox keys
    # make that harmless); a CRM error that stops the pass leaves them due
    _mark_looked(ctx, looked)
    return count


def _mark_looked(
    ctx: PassContext, looked: Mapping[int, tuple[datetime, datetime | None, str | None]]
) -> None:
    """Hand the consent marks of the contacts looked at to ``ctx.apply``."""
    if not looked:
        return
    items = [(cid, *mark) for cid, mark in sorted(looked.items())]
    registry = ctx.store.registry
    ctx.apply([Keep("consent looked at", lambda: registry.mark_consent(items))])


def _decide_due(
    ctx: PassContext,
    rules: RulesFile,
    engagement: SupportsEngagement | None,
    due: Sequence[_Due],
) -> int:
    """Queue or suppress the consent e-mails of ``due``, reading the vendor's signals
    for all of them in batches; returns how many were decided."""
    if not due:
        return 0
    signals = _Signals.read(ctx, rules, engagement, due)
    identity: list[str] | None = None  # read once, when a first message is rendered
    for item in due:
        reason = signals.suppression(ctx, rules, item)
        if reason:
            _suppress(ctx, item.reg, item.person, item.kind, item.key, reason)
            continue
        if identity is None:
            identity = partner_identity(ctx)
        _queue(ctx, rules, ctx.store.outbox, item, identity)
    return len(due)


def _suppress(
    ctx: PassContext,
    reg: Registration,
    person: RegistrationContact,
    kind: str,
    key: str,
    reason: str,
) -> None:
    """Record the decision not to send (a row, so the person is never asked twice)."""
    ctx.apply([_email(ctx, reg, person, kind, key, None, "suppressed", reason)])


def _email(
    ctx: PassContext,
    reg: Registration,
    person: RegistrationContact,
    kind: str,
    key: str,
    rendered: Rendered | None,
    status: str,
    detail: str | None,
) -> QueueEmail:
    """The outbox row of one consent decision for ``person`` of ``reg``."""
    return QueueEmail(key, kind, person.email, rendered, ctx.connection, reg.id, status, detail)


@dataclass
class _Signals:
    """What the vendor's CRM says about the contacts due a decision, read in batches:
    since when each address is subscribed, each vendor contact's confirmation
    properties and id."""

    engagement: SupportsEngagement | None
    subscribed: dict[str, datetime | None]
    contacts: dict[str, Record]  # by lower-case e-mail
    # since when each vendor contact matches the confirmation conditions (by e-mail;
    # absent: it does not match)
    confirmed: dict[str, datetime]
    # the engagement events of the contacts due a notice, by vendor contact id (read
    # once per event type for all of them)
    engaged: dict[str, list[tuple[str, datetime]]]

    @classmethod
    def read(
        cls,
        ctx: PassContext,
        rules: RulesFile,
        engagement: SupportsEngagement | None,
        due: Sequence[_Due],
    ) -> _Signals:
        consent = rules.consent
        emails = sorted({d.person.email.lower() for d in due})
        subscribed: dict[str, datetime | None] = {}
        if engagement is not None and consent.opted_in_via_subscriptions:
            subscribed = engagement.subscribed_since(emails)
        crm = ctx.vendor_crm
        contacts_object = crm.naming.contacts
        props = ["email", *(c.property for c in consent.opted_in_properties)]
        contacts: dict[str, Record] = {}
        needed = consent.opted_in_properties or (
            engagement is not None and any(d.kind == "data_notice" for d in due)
        )
        if needed:
            ids = sorted({d.person.vendor_contact_id for d in due if d.person.vendor_contact_id})
            by_id = crm.read(contacts_object, ids, props) if ids else {}
            for d in due:
                rec = by_id.get(d.person.vendor_contact_id or "")
                if rec is not None:
                    contacts[d.person.email.lower()] = rec
            missing = sorted(
                {d.person.email for d in due if d.person.email.lower() not in contacts}
            )
            if missing:
                found = crm.find_by_property(contacts_object, "email", missing, props)
                for email, rec in found.items():
                    contacts[email.lower()] = rec
        return cls(
            engagement,
            subscribed,
            contacts,
            _confirmed(crm, rules, contacts),
            _engaged(rules, engagement, due, contacts),
        )

    def suppression(self, ctx: PassContext, rules: RulesFile, item: _Due) -> str | None:
        """Why ``item`` is not sent (None: it is). An opt-in counts when it happened
        by the window's end (a consent request: by now); engagement when its event
        lies in the window."""
        email = item.person.email.lower()
        if opted_in_by(self.subscribed.get(email), item.window_end):
            return "already opted in to the vendor's communications"
        rec = self.contacts.get(email)
        if opted_in_by(self.confirmed.get(email), item.window_end):
            return "already confirmed their e-mail with the vendor"
        if item.kind == "data_notice" and self.engagement is not None and rec is not None:
            reg = item.reg
            start = (reg.decided_at or reg.submitted_at) - timedelta(seconds=1)
            for event_type, at in self.engaged.get(rec.id, []):
                if start < at < item.window_end:
                    return f"engaged within the window ({event_type})"
        return None


def _engaged(
    rules: RulesFile,
    engagement: SupportsEngagement | None,
    due: Sequence[_Due],
    contacts: Mapping[str, Record],
) -> dict[str, list[tuple[str, datetime]]]:
    """The engagement events of every contact due a notice, one read per event type
    over the span of their windows (issue 17: not one per contact and type), kept by
    vendor contact id."""
    notices = [
        (d, contacts[d.person.email.lower()])
        for d in due
        if d.kind == "data_notice" and d.person.email.lower() in contacts
    ]
    if engagement is None or not notices:
        return {}
    wanted = {rec.id for _, rec in notices}
    after = min((d.reg.decided_at or d.reg.submitted_at) for d, _ in notices) - timedelta(seconds=1)
    before = max(d.window_end for d, _ in notices)
    out: dict[str, list[tuple[str, datetime]]] = {}
    for event_type in rules.consent.engagement_events:
        for event in engagement.events(event_type, after, before):
            if event.object_id in wanted:
                out.setdefault(event.object_id, []).append((event_type, event.occurred_at))
    return out


def _confirmed(
    crm: CRMAdapter, rules: RulesFile, contacts: Mapping[str, Record]
) -> dict[str, datetime]:
    """Since when each vendor contact (by e-mail) matches the confirmation conditions:
    the latest of the times its matched properties took their values, read in one
    history batch read per 50 contacts from a CRM that keeps property history; from a
    CRM that does not, since ever (it counts whenever it happened)."""
    conditions = rules.consent.opted_in_properties
    matched = {
        e: r for e, r in contacts.items() if conditions and matches(conditions, r.properties)
    }
    if not matched:
        return {}
    if not isinstance(crm, SupportsPropertyHistory):
        return dict.fromkeys(matched, EPOCH)
    names = sorted({c.property for c in conditions})
    since = crm.values_since(crm.naming.contacts, sorted({r.id for r in matched.values()}), names)
    out: dict[str, datetime] = {}
    for email, rec in matched.items():
        times = [since.get(rec.id, {}).get(n) for n in names if rec.properties.get(n)]
        known = [t for t in times if t is not None]
        out[email] = max(known) if known else EPOCH
    return out


def _queue(
    ctx: PassContext,
    rules: RulesFile,
    outbox: OutboxRows,
    item: _Due,
    identity: Sequence[str],
) -> None:
    consent = rules.consent
    reg, person, kind, key = item.reg, item.person, item.kind, item.key
    code = country_code(item.country)
    language = (person.language or LANGUAGE_BY_COUNTRY.get(code or "", "en"))[:2]
    context = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "company": reg.company_name or reg.domain,
        "vendor_name": consent.vendor_name,
        "privacy_url": consent.privacy_url,
        "consent_url": consent.consent_url,
    }
    message = render(kind, language, context)
    status, detail = "queued", None
    try:
        assert_clean(message, identity, "the registering partner")
    except PrivacyViolation as exc:
        # held, never dropped: a legally required e-mail waits for an admin's decision
        status, detail = "held", f"held: {exc}"
    [inserted] = ctx.apply([_email(ctx, reg, person, kind, key, message, status, detail)])
    if inserted and status == "held":
        row_id = outbox.id_of(key)
        log.error(
            "outbox #%s (%s, registration #%s) held: it would reveal the registering partner; "
            "see `dealsync outbox show %s`, then release or cancel it",
            row_id,
            kind,
            reg.id,
            row_id,
        )
