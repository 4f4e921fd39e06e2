"""Expiry reminders: a partner hears ``expiry.remind_days_before`` days ahead that a
registration of its ends (issue 16 item 6).

After every pass of a connection, each of its active registrations whose end is that
close gets one e-mail to the partner's notification address (``notify_email``, or the
address ``dealsync partners notify`` set), keyed per registration and end of
ownership in the outbox: a rerun queues nothing again; an extended registration is
reminded again before its new end. The message names the company and domain the
partner registered, never the lead: it passes the privacy check every e-mail passes
(:func:`connector.mail.privacy.assert_clean`) and is ``held`` for an admin if it would
name the registered contact. A partner without an address (or unsubscribed) gets no
reminder, visibly: a ``suppressed`` row saying why and what to do — and once an
address is set, the reminder is queued on the next pass.

Which registrations are due is :func:`connector.program.lifecycle.reminder_due`; the
rows are effects handed to ``ctx.apply`` (a dry run lists them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from connector.config.models import ObjectMapping, RulesFile
from connector.engine.effects import QueueEmail
from connector.engine.hooks import BaseHook, PassContext
from connector.mail.privacy import PrivacyViolation, assert_clean
from connector.mail.render import render
from connector.program.decide import day_text
from connector.program.lifecycle import days_left, reminder_due, reminder_key
from connector.state.leads import subscription

log = logging.getLogger("dealsync.expiry")

NO_ADDRESS = (
    "not sent: partner {partner} has no notification address (set notify_email in "
    "dealsync.yaml or run `dealsync partners notify -p {partner} --email ADDRESS`); it is "
    "queued on the next pass once one is set"
)


class ExpiryHook(BaseHook):
    name = "expiry"

    def __init__(self, rules: RulesFile, mappings: Sequence[ObjectMapping]) -> None:
        self.rules = rules

    def after_pass(self, ctx: PassContext) -> None:
        remind_expiring(ctx, self.rules)


def remind_expiring(ctx: PassContext, rules: RulesFile) -> int:
    """Queue the reminders due now; returns how many were queued."""
    expiry = rules.expiry
    if expiry.remind_days_before <= 0:
        return 0
    registry = ctx.store.registry
    regs = [
        r
        for r in registry.expiring(
            ctx.connection, ctx.now, ctx.now + timedelta(days=expiry.remind_days_before)
        )
        if reminder_due(r, expiry, ctx.now)
    ]
    if not regs:
        return 0
    address = subscription(ctx.store, ctx.connection, ctx.partner.notify_email)
    keys = {r.id: reminder_key(r) + ("" if address else ":no-address") for r in regs}
    known = ctx.store.outbox.existing(keys.values())
    todo = [r for r in regs if keys[r.id] not in known]
    if not todo:
        return 0
    extended = registry.extended_ids(r.id for r in todo if r.id is not None)
    people = registry.contacts_of(r.id for r in todo if r.id is not None)
    effects = []
    for reg in todo:
        assert reg.id is not None and reg.owned_until is not None
        company = reg.company_name or reg.domain
        message = render(
            "expiry_reminder",
            "en",
            {
                "company": company,
                "domain": reg.domain,
                "until": day_text(reg.owned_until),
                "days": days_left(reg, ctx.now),
                "extendable": expiry.extend_months > 0 and reg.id not in extended,
                "months": expiry.extend_months,
                "activity_days": expiry.extend_requires_activity_days,
                "registration": reg.id,
            },
        )
        status, detail = "queued", None
        if address is None:
            status, detail = "suppressed", NO_ADDRESS.format(partner=ctx.connection)
        else:
            full: list[str] = []
            partial: list[str] = []
            for p in people.get(reg.id, []):
                full.append(p.email)
                partial.append(p.email.split("@")[0])
                if p.first_name and p.last_name:
                    full.append(f"{p.first_name} {p.last_name}")
                partial += [x for x in (p.last_name,) if x]
            try:
                assert_clean(
                    message, full, "the contact", partial=partial, named=[company, reg.domain]
                )
            except PrivacyViolation as exc:
                status, detail = "held", f"held: {exc}"
        effects.append(
            QueueEmail(
                dedupe_key=keys[reg.id],
                kind="expiry_reminder",
                recipient=address or "",
                rendered=message,
                partner=ctx.connection,
                registration_id=reg.id,
                status=status,
                detail=detail,
            )
        )
    outcomes = ctx.apply(effects)
    for effect, inserted in zip(effects, outcomes, strict=True):
        if inserted and effect.status != "queued":
            log.warning(
                "expiry reminder of registration %s %s: %s",
                effect.registration_id,
                effect.status,
                effect.detail,
            )
    return sum(1 for e, ok in zip(effects, outcomes, strict=True) if ok and e.status == "queued")
