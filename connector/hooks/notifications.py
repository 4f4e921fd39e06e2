"""Lead notifications: a subscribed partner hears when someone at a domain it owns
performs a high-value action on the vendor's site — which action, at which company,
when; never who.

Each pass reads the vendor's web events of the configured types since a cursor, maps
each event's contact to its company domain, and keeps those at domains this partner
owns. Activity is deduplicated per partner, company, day and action (a table with
that unique key), and the new activities of a pass are digested into one e-mail per
company and day. A digest that would identify the contact (its e-mail address or
full name anywhere; its surname or local part outside the company name) is held for
an admin to release or cancel, never dropped.

The activity, the digests, their marks and the cursors are effects handed to
``ctx.apply`` (:mod:`connector.engine.effects`): a dry run lists the activity and the
digests it would queue, and moves no cursor.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from connector.adapters.base import CRMAdapter, SupportsEngagement
from connector.config.models import ObjectMapping, RulesFile
from connector.engine.cycle import shared_window
from connector.engine.effects import Keep, Notify, QueueEmail
from connector.engine.hooks import BaseHook, PassContext
from connector.mail.privacy import PrivacyViolation, assert_clean
from connector.mail.render import render
from connector.program.domains import DomainError, registrable_domain
from connector.records import Event, Record
from connector.state.leads import mark_notified, pending_activity, subscription
from connector.state.tables import LeadActivity

log = logging.getLogger("dealsync.notifications")


class NotificationHook(BaseHook):
    name = "notifications"

    def __init__(self, rules: RulesFile, mappings: Sequence[ObjectMapping]) -> None:
        self.rules = rules

    def after_pass(self, ctx: PassContext) -> None:
        notify_partner(ctx, self.rules)


def notify_partner(ctx: PassContext, rules: RulesFile) -> int:
    """Record new high-value activity at owned domains and queue digests; returns the
    number of e-mails queued."""
    vendor = ctx.vendor_crm
    if not isinstance(vendor, SupportsEngagement) or not rules.notifications.actions:
        return 0
    registry = ctx.store.registry
    naming = vendor.naming
    address = subscription(ctx.store, ctx.connection, ctx.partner.notify_email)
    high_water = vendor.now()
    identities: dict[str, Identity] = defaultdict(Identity)
    cursors = {}
    unrecorded: list[LeadActivity] = []  # activity not carried out (a dry run): shown too
    for action in rules.notifications.actions:
        cursor_name = f"@events:{action.event}"
        since = ctx.store.cursor(ctx.connection, "vendor", cursor_name)
        cursors[("vendor", cursor_name)] = high_water
        if since is None or address is None:
            continue  # the first pass only sets the cursor: no notifications about the past
        # the events, their contacts and companies: once per sync --all / service cycle
        window = shared_window(
            ctx,
            ("events", action.event),
            cursor_name,
            lambda after, event=action.event: _read_events(vendor, event, after),  # type: ignore[misc]
            from_start_when_unset=False,
        )
        cursors[("vendor", cursor_name)] = window.until
        events_all, contacts, companies = window.data
        events = [e for e in events_all if window.since == since or _aware(e.occurred_at) > since]
        if not events:
            continue
        for event in events:
            contact = contacts.get(event.object_id)
            if contact is None:
                continue
            domain, company = _company_of(contact, companies, naming.companies)
            if not domain:
                continue
            holder = registry.holder(domain)
            if holder is None or holder.partner != ctx.connection or holder.owned_until <= ctx.now:
                continue
            email = contact.get("email") or ""
            first, last = contact.get("firstname") or "", contact.get("lastname") or ""
            who = identities[domain]
            if first and last:
                who.full.add(f"{first} {last}")
                who.partial.add(last)
            else:  # one name alone is like a surname: it may be the company's too
                who.partial.update(x for x in (first, last) if x)
            if email:
                who.full.add(email)
                who.partial.add(email.split("@")[0])
            if not company:
                reg = registry.accepted_for_domain(ctx.connection, domain)
                company = reg.company_name if reg and reg.company_name else domain
            row = LeadActivity(
                partner=ctx.connection,
                domain=domain,
                company=company,
                day=event.occurred_at.strftime("%Y-%m-%d"),
                action=action.event,
                label=action.label,
                occurred_at=event.occurred_at,
            )
            [recorded] = ctx.apply([Notify(row)])
            if recorded is None:
                unrecorded.append(row)
    ctx.apply(
        [Keep("event cursors", lambda: ctx.store.set_cursors(ctx.connection, cursors))]  # type: ignore[arg-type]
    )
    if address is None:
        return 0
    return _queue_digests(ctx, address, identities, unrecorded)


def _read_events(
    vendor: SupportsEngagement, event_type: str, after: datetime | None
) -> tuple[datetime, tuple[list[Event], dict[str, Record], dict[str, Record]]]:
    """The web events of one type after ``after`` up to the vendor's now, with their
    contacts (and the contacts' companies, with domain and name): the high-water mark
    and the three."""
    crm = cast(CRMAdapter, vendor)
    naming = crm.naming
    high_water = crm.now()
    events = vendor.events(event_type, after, high_water)
    if not events:
        return high_water, ([], {}, {})
    contact_ids = sorted({e.object_id for e in events})
    contacts = crm.read(
        naming.contacts,
        contact_ids,
        ["email", "firstname", "lastname"],
        associations=[naming.companies],
    )
    company_ids = sorted(
        {c for r in contacts.values() for c in r.associations.get(naming.companies, ())}
    )
    companies = crm.read(naming.companies, company_ids, ["domain", "name"]) if company_ids else {}
    return high_water, (events, contacts, companies)


def _aware(moment: datetime) -> datetime:
    """An event's time as UTC-aware (a CRM may hand a naive UTC one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass
class Identity:
    """What identifies the contacts active at one domain: ``full`` (e-mail address,
    full name) anywhere in a digest; ``partial`` (local part, surname) only outside the
    company the digest names — "Baker Logistics" does not name Tom Baker."""

    full: set[str] = field(default_factory=set)
    partial: set[str] = field(default_factory=set)


def _company_of(
    contact: Record, companies: Mapping[str, Record], companies_type: str
) -> tuple[str | None, str | None]:
    """The contact's company domain: its associated company's, else its e-mail's."""
    for cid in contact.associations.get(companies_type, ()):
        comp = companies.get(cid)
        if comp and comp.get("domain"):
            try:
                return registrable_domain(comp.get("domain") or ""), comp.get("name")
            except DomainError:
                continue
    try:
        return registrable_domain(contact.get("email") or ""), None
    except DomainError:
        return None, None


def _queue_digests(
    ctx: PassContext,
    address: str,
    identities: Mapping[str, Identity],
    unrecorded: Sequence[LeadActivity] = (),
) -> int:
    """One e-mail per company and day for the activity not notified yet (and the
    ``unrecorded`` activity of a dry run). Keyed by the activity ids, so a crash between
    queueing and marking re-finds the same message."""
    outbox = ctx.store.outbox
    pending = [*pending_activity(ctx.store, ctx.connection), *unrecorded]
    groups: dict[tuple[str, str], list[LeadActivity]] = defaultdict(list)
    for r in pending:
        groups[(r.domain, r.day)].append(r)
    queued = 0
    for (domain, day), acts in sorted(groups.items()):
        acts.sort(key=lambda a: a.occurred_at)
        ids = sorted(a.id for a in acts if a.id is not None)
        key = (
            f"lead_notification:{ctx.connection}:{domain}:{day}:"
            + hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
        )
        message = render(
            "lead_notification",
            "en",
            {
                "company": acts[0].company,
                "domain": domain,
                "day": day,
                "actions": [
                    {"label": a.label, "time": a.occurred_at.strftime("%H:%M UTC")} for a in acts
                ],
            },
        )
        status, detail = "queued", None
        who = identities.get(domain, Identity())
        try:
            assert_clean(
                message,
                who.full,
                "the contact",
                partial=who.partial,
                named=[acts[0].company, domain],
            )
        except PrivacyViolation as exc:
            status, detail = "held", f"held: {exc}"
        [inserted] = ctx.apply(
            [
                QueueEmail(
                    dedupe_key=key,
                    kind="lead_notification",
                    recipient=address,
                    rendered=message,
                    partner=ctx.connection,
                    registration_id=None,
                    status=status,
                    detail=detail,
                )
            ]
        )
        if inserted and status == "queued":
            queued += 1
        if inserted is None:  # not carried out (a dry run): nothing to mark
            continue
        row_id = outbox.id_of(key)
        if inserted and status == "held":
            log.error(
                "outbox #%s (lead notification for %s) held: it would reveal the contact; "
                "see `dealsync outbox show %s`, then release or cancel it",
                row_id,
                ctx.connection,
                row_id,
            )
        ctx.apply(
            [Keep("activity notified", lambda: mark_notified(ctx.store, ids, row_id))]  # noqa: B023
        )
    return queued
