"""The consent hook: privacy-law e-mails for the contacts of accepted registrations.

Per contact, by country (DESIGN §2.2):

* DACH — a consent request at once, unless already opted in to the vendor's
  communications;
* other EU, or country unknown — a notice ``notice_after_days`` after registration,
  unless within that window the contact opted in or engaged (privacy policy view,
  content download, form fill: web events named in the rules);
* known country outside the EU — nothing.

Each decision is one outbox row keyed ``<kind>:<e-mail>`` — queued, suppressed with
its reason, or held (rendered, but it would name the partner: an admin releases or
cancels it) — so an e-mail exists at most once per contact and kind, across
reruns and crashes. Each row is a :class:`~connector.engine.effects.QueueEmail` handed
to ``ctx.apply``: the engine queues it, or a dry run lists it. Only accepted registrations are considered, and the sender drops
a queued consent e-mail whose registration ended before delivery.

The hook also keeps the vendor's consent strict: a sync write may never move a
protected vendor contact property away from its strict value (an opt-out wins).

The vendor's contacts are named as the vendor's CRM names them (``ctx.vendor_crm.naming``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta

from connector.adapters.base import SupportsEngagement
from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.effects import QueueEmail
from connector.engine.hooks import BaseHook, PassContext, Planned
from connector.engine.plan import Action, Update
from connector.engine.reconcile import matches
from connector.hooks.objects import vendor_mapping
from connector.mail.privacy import PrivacyViolation, assert_clean
from connector.mail.render import Rendered, render
from connector.program.consent import LANGUAGE_BY_COUNTRY, region
from connector.program.countries import country_code
from connector.records import PropertySpec, Side
from connector.state.outbox import OutboxRows
from connector.state.tables import Registration, RegistrationContact

log = logging.getLogger("dealsync.consent")


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


def decide_consent(ctx: PassContext, rules: RulesFile) -> int:
    """Queue (or suppress) the consent e-mails now due; returns how many were decided."""
    consent = rules.consent
    registry = ctx.store.registry
    outbox = ctx.store.outbox
    vendor = ctx.vendor_crm
    engagement = vendor if isinstance(vendor, SupportsEngagement) else None
    decided = 0
    accepted = registry.registrations(ctx.connection, status="accepted")
    # two bulk reads instead of two queries per registration and person
    people = registry.contacts_of(r.id for r in accepted if r.id is not None)
    todo: list[tuple[Registration, RegistrationContact, str, str]] = []
    for reg in accepted:
        assert reg.id is not None
        for person in people.get(reg.id, []):
            where = region(person.country, consent)
            if where == "outside":
                continue
            kind = "consent_request" if where == "dach" else "data_notice"
            todo.append((reg, person, kind, f"{kind}:{person.email.lower()}"))
    done = outbox.existing(key for *_, key in todo)
    identity: list[str] | None = None  # read once, when a first message is rendered
    for reg, person, kind, key in todo:
        if key in done:
            continue  # decided before (or for another registration of this person)
        decided_at = reg.decided_at or reg.submitted_at
        window_end = decided_at + timedelta(days=consent.notice_after_days)
        if kind == "data_notice" and ctx.now < window_end:
            continue  # not due yet: decided on a pass after the window
        done.add(key)
        reason = _suppression(ctx, rules, engagement, person, kind, reg, window_end)
        if reason:
            _suppress(ctx, reg, person, kind, key, reason)
            decided += 1
            continue
        if identity is None:
            identity = partner_identity(ctx)
        _queue(ctx, rules, outbox, reg, person, kind, key, identity)
        decided += 1
    return decided


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


def _suppression(
    ctx: PassContext,
    rules: RulesFile,
    engagement: SupportsEngagement | None,
    person: RegistrationContact,
    kind: str,
    reg: Registration,
    window_end: object,
) -> str | None:
    consent = rules.consent
    contacts = ctx.vendor_crm.naming.contacts
    if (
        engagement is not None
        and consent.opted_in_via_subscriptions
        and engagement.opted_in(person.email)
    ):
        return "already opted in to the vendor's communications"
    if consent.opted_in_properties:
        props = [c.property for c in consent.opted_in_properties]
        rec = None
        if person.vendor_contact_id:
            rec = ctx.vendor_crm.read(contacts, [person.vendor_contact_id], props).get(
                person.vendor_contact_id
            )
        else:
            rec = ctx.vendor_crm.find_by_property(contacts, "email", [person.email], props).get(
                person.email
            )
        if rec is not None and matches(consent.opted_in_properties, rec.properties):
            return "already confirmed their e-mail with the vendor"
    if kind == "data_notice" and engagement is not None:
        contact_id = person.vendor_contact_id
        if contact_id is None:
            found = ctx.vendor_crm.find_by_property(contacts, "email", [person.email], ["email"])
            contact_id = found[person.email].id if person.email in found else None
        if contact_id is not None:
            start = (reg.decided_at or reg.submitted_at) - timedelta(seconds=1)
            for event_type in consent.engagement_events:
                if engagement.events(event_type, start, window_end, object_id=contact_id):  # type: ignore[arg-type]
                    return f"engaged within the window ({event_type})"
    return None


def _queue(
    ctx: PassContext,
    rules: RulesFile,
    outbox: OutboxRows,
    reg: Registration,
    person: RegistrationContact,
    kind: str,
    key: str,
    identity: Sequence[str],
) -> None:
    consent = rules.consent
    code = country_code(person.country)
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
