"""Registration decisions: the partner program's checks as a pure function.

:func:`decide` takes a submission and the facts about its domain (what the vendor CRM
says, who holds the domain now, how many registrations the partner holds) and returns
a :class:`Decision` with a machine code and a human sentence. No I/O: the registration
hook gathers the facts (:mod:`connector.hooks.registration`), and
:class:`connector.state.registry.Registry` makes the decision durable — the domain claim
and the registration row in one transaction, so two partners racing for one domain
cannot both win.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from dateutil.relativedelta import relativedelta

from connector.config.models import RulesFile
from connector.program.domains import DomainError, registrable_domain

Code = Literal[
    "invalid_data",
    "personal_domain",
    "already_customer",
    "owned_by_partner",
    "owned_by_vendor_sales",
    "capacity_exceeded",
]

REASONS: dict[str, str] = {
    "invalid_data": "The registration is missing required data: {detail}.",
    "personal_domain": "{domain} is a personal mailbox domain and cannot be registered; "
    "use the company's own web domain.",
    "already_customer": "{domain} is already a customer of the vendor.",
    "owned_by_partner": "{domain} is registered by another partner until {until}.",
    "owned_by_vendor_sales": "The vendor's sales team is already working with {domain}.",
    "capacity_exceeded": "Your tier ({tier}) allows {capacity} active registrations and you "
    "hold {active}; wait for one to expire or grow your tier.",
}
ACCEPTED = "Accepted: you own {domain} until {until}."
EXPIRED = "Your registration of {domain} expired on {until}; the domain is free again."
RESERVED = "{domain} is awaiting the program's review of another partner's registration."
WITHDRAWN = "Withdrawn by the partner; {domain} is free again."


@dataclass(frozen=True)
class Person:
    email: str
    first_name: str = ""
    last_name: str = ""
    country: str | None = None
    language: str | None = None
    record_id: str | None = None


@dataclass(frozen=True)
class Submission:
    """What a partner submitted, before any check."""

    partner: str
    kind: Literal["lead", "deal"]
    partner_object: str
    partner_record_id: str
    domain_text: str | None
    company_name: str
    contacts: tuple[Person, ...]
    missing: tuple[str, ...] = ()  # required data the partner's record lacks

    def fingerprint(self) -> str:
        """Changes when the inputs of the decision change (then it is re-decided)."""
        payload = [
            self.domain_text,
            self.company_name,
            sorted((p.email, p.first_name, p.last_name) for p in self.contacts),
            sorted(self.missing),
        ]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class VendorFacts:
    """What the vendor CRM says about a domain."""

    company_id: str | None = None
    is_customer: bool = False
    worked_by_sales: bool = False


@dataclass(frozen=True, slots=True)
class Holder:
    partner: str
    owned_until: datetime


@dataclass(frozen=True)
class Decision:
    status: Literal["accepted", "rejected", "pending"]
    domain: str
    code: str | None
    reason: str
    owned_until: datetime | None = None
    contacts: tuple[Person, ...] = field(default=())
    note: str | None = None  # a pending one's: why it waits, for the program's admins


def day_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def normalise_domain(sub: Submission) -> str | None:
    try:
        return registrable_domain(sub.domain_text) if sub.domain_text else None
    except DomainError:
        return None


def decide(
    sub: Submission,
    *,
    facts: VendorFacts,
    holder: Holder | None,
    active: int,
    tier_name: str,
    capacity: int,
    rules: RulesFile,
    now: datetime,
    reserved_by: str | None = None,
) -> Decision:
    """The program's checks, in order; the first that fails is the reason.
    ``reserved_by``: the partner whose pending registration (waiting for review,
    :mod:`connector.program.review`) reserves the domain, if any."""
    domain = normalise_domain(sub) or ""

    def reject(code: str, **kw: object) -> Decision:
        reason = REASONS[code].format(domain=domain or "the domain", **kw)
        return Decision("rejected", domain, code, reason)

    missing = list(sub.missing)
    if not sub.domain_text:
        missing.append("company domain")
    elif not domain:
        missing.append(f"a valid company domain ({sub.domain_text!r} is not one)")
    if not sub.company_name:
        missing.append("company name")
    if not sub.contacts:
        missing.append("at least one contact")
    for person in sub.contacts:
        for label, value in (
            ("first name", person.first_name),
            ("last name", person.last_name),
            ("e-mail", person.email),
        ):
            if not value or not value.strip():
                missing.append(f"contact {label}")
        if person.email and "@" not in person.email:
            missing.append(f"a valid contact e-mail ({person.email!r})")
    if missing:
        return reject("invalid_data", detail=", ".join(dict.fromkeys(missing)))
    personal = {d.lower() for d in rules.personal_domains}
    if domain in personal:
        return reject("personal_domain")
    if facts.is_customer:
        return reject("already_customer")
    own = holder is not None and holder.partner == sub.partner and holder.owned_until > now
    if holder is not None and holder.partner != sub.partner and holder.owned_until > now:
        return reject("owned_by_partner", until=day_text(holder.owned_until))
    if reserved_by is not None and reserved_by != sub.partner and not own:
        return Decision("rejected", domain, "owned_by_partner", RESERVED.format(domain=domain))
    if facts.worked_by_sales and not own:
        return reject("owned_by_vendor_sales")
    if own:
        assert holder is not None
        return Decision(
            "accepted",
            domain,
            None,
            ACCEPTED.format(domain=domain, until=day_text(holder.owned_until)),
            holder.owned_until,
            sub.contacts,
        )
    if active >= capacity:
        return reject("capacity_exceeded", tier=tier_name, capacity=capacity, active=active)
    until = now + relativedelta(months=rules.ownership_months)
    return Decision(
        "accepted",
        domain,
        None,
        ACCEPTED.format(domain=domain, until=day_text(until)),
        until,
        sub.contacts,
    )
