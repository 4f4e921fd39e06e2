"""Registration review: which registrations wait for an admin, and what approving or
rejecting one says (issue 16 item 5). Pure: no I/O.

The checks of :mod:`connector.program.decide` run first. A registration they would
accept is held ``pending`` instead when its kind is reviewed by hand (``review.deal`` /
``review.lead``: ``manual``) or, with ``review.manual_when_uncertain``, when a check is
uncertain: its company name is a *fuzzy match* of another partner's active
registration on a different domain (the same company under two domains, or a typo) —
:func:`similarity` of the normalised names reaches ``review.fuzzy_threshold``.

A pending registration does not own its domain (no claim row, no commission, no
consent e-mail) but reserves it: another partner's registration of that domain is
rejected ``owned_by_partner`` ("awaiting review") — the first one in stays first. It
is the admin's ``approve`` that takes the domain claim and starts the ownership
window; ``reject`` takes one of the program's rejection codes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from difflib import SequenceMatcher

from dateutil.relativedelta import relativedelta

from connector.config.models import ReviewRules, RulesFile
from connector.program.decide import ACCEPTED, REASONS, Decision, Submission, day_text

# The codes an admin may reject with: the program's rejection codes (docs/program.md).
REJECT_CODES: tuple[str, ...] = tuple(REASONS)

# Why a registration waits (its ``code`` while pending).
MANUAL = "manual_review"
UNCERTAIN = "uncertain_match"

PENDING_MANUAL = (
    "Waiting for the program's review of {kind} registrations; {domain} is reserved for "
    "you meanwhile."
)
PENDING_UNCERTAIN = (
    "Waiting for the program's review: the company name resembles another partner's "
    "registration; {domain} is reserved for you meanwhile."
)
REJECTED_AFTER_REVIEW = "Rejected by the program's review ({code}): {why}."
WHY: dict[str, str] = {
    "invalid_data": "the registration's data is incomplete or wrong",
    "personal_domain": "{domain} is a personal mailbox domain",
    "already_customer": "{domain} is already a customer of the vendor",
    "owned_by_partner": "{domain} is registered by another partner",
    "owned_by_vendor_sales": "the vendor's sales team is already working with {domain}",
    "capacity_exceeded": "your tier's capacity of active registrations is reached",
}

# Words that say what kind of company it is, not which: dropped before comparing.
LEGAL_FORMS = frozenset(
    [
        "ag",
        "co",
        "company",
        "corp",
        "corporation",
        "gmbh",
        "gbr",
        "inc",
        "incorporated",
        "kg",
        "kgaa",
        "limited",
        "llc",
        "llp",
        "ltd",
        "mbh",
        "nv",
        "oy",
        "oyj",
        "plc",
        "pty",
        "sa",
        "sarl",
        "sas",
        "spa",
        "srl",
        "bv",
        "ab",
        "as",
        "aps",
        "the",
        "und",
        "and",
    ]
)


class ReviewError(ValueError):
    """An approval or rejection the review cannot make (the message says why)."""


@dataclass(frozen=True)
class Rival:
    """Another partner's active (accepted or pending) registration, for the fuzzy check."""

    registration_id: int
    partner: str
    company_name: str
    domain: str


def normalise_company(name: str) -> str:
    """A company name as compared: accents folded, lower case, punctuation to spaces,
    legal forms (GmbH, Inc., Ltd …) dropped, whitespace collapsed. "ACME, Inc." and
    "Acme Inc" are both ``acme``; "Müller GmbH" is ``muller``."""
    folded = unicodedata.normalize("NFKD", name)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    words = re.sub(r"[^a-z0-9]+", " ", folded).split()
    kept = [w for w in words if w not in LEGAL_FORMS]
    return " ".join(kept or words)


def similarity(a: str, b: str) -> float:
    """How alike two company names are, 0..1: :class:`difflib.SequenceMatcher`'s ratio
    of the normalised names (1.0 when they normalise to the same; 0.0 when either is
    empty). "Globex Corporation" / "Globex Corp." is 1.0, "Globex" / "Globecs" 0.77."""
    x, y = normalise_company(a), normalise_company(b)
    if not x or not y:
        return 0.0
    if x == y:
        return 1.0
    return SequenceMatcher(None, x, y).ratio()


def fuzzy_rival(
    sub: Submission, domain: str, rivals: Iterable[Rival], threshold: float
) -> tuple[Rival, float] | None:
    """The most similar other partner's registration on a different domain whose
    company name scores at least ``threshold``; None when there is none."""
    best: tuple[Rival, float] | None = None
    for rival in rivals:
        if rival.partner == sub.partner or rival.domain == domain:
            continue
        score = similarity(sub.company_name, rival.company_name)
        if score >= threshold and (best is None or score > best[1]):
            best = (rival, score)
    return best


def review(
    sub: Submission,
    decision: Decision,
    rules: ReviewRules,
    rivals: Iterable[Rival],
    *,
    already_owned: bool = False,
) -> Decision:
    """An accepted decision becomes ``pending`` when its kind is reviewed by hand or,
    with ``manual_when_uncertain``, on a fuzzy company-name match; anything else stands,
    and so does a registration of a domain the partner owns already (it claims nothing
    new). A pending decision's ``note`` says why it waits, for the program's admins
    (ids, companies and domains; never written to the partner's record)."""
    if decision.status != "accepted" or already_owned:
        return decision
    pending = replace(decision, status="pending", owned_until=None)
    if getattr(rules, sub.kind) == "manual":
        reason = PENDING_MANUAL.format(kind=sub.kind, domain=decision.domain)
        note = f"{sub.kind} registrations are reviewed by hand (review.{sub.kind}: manual)"
        return replace(pending, code=MANUAL, reason=reason, note=note)
    if rules.manual_when_uncertain:
        found = fuzzy_rival(sub, decision.domain, rivals, rules.fuzzy_threshold)
        if found is not None:
            rival, score = found
            note = (
                f"company {sub.company_name!r} resembles {rival.company_name!r} of "
                f"registration #{rival.registration_id} ({rival.partner}, {rival.domain}): "
                f"similarity {score:.2f} >= review.fuzzy_threshold {rules.fuzzy_threshold:.2f}"
            )
            reason = PENDING_UNCERTAIN.format(domain=decision.domain)
            return replace(pending, code=UNCERTAIN, reason=reason, note=note)
    return decision


def approval_until(rules: RulesFile, now: datetime) -> datetime:
    """The ownership end of an approval at ``now``: the window starts at approval, not
    at submission."""
    return now + relativedelta(months=rules.ownership_months)


def accepted_reason(domain: str, until: datetime) -> str:
    return ACCEPTED.format(domain=domain, until=day_text(until))


def rejection(code: str, domain: str) -> str:
    """The reason of a rejection by review with ``code``; an unknown code is a
    :class:`ReviewError` listing the codes."""
    if code not in REJECT_CODES:
        raise ReviewError(
            f"unknown rejection code {code!r}: use one of {', '.join(REJECT_CODES)} "
            "(the program's codes, docs/program.md)"
        )
    why = WHY.get(code, "see the program's rules").format(domain=domain or "the domain")
    return REJECTED_AFTER_REVIEW.format(code=code, why=why)


def reviewed_by(who: str, action: str, now: datetime, note: str | None) -> str:
    """The audit line of a review: who did what when, and why."""
    return f"{action} by {who} at {day_text(now)}" + (f": {note}" if note else "")


def overdue(pending_since: datetime, rules: ReviewRules, now: datetime) -> bool:
    """Pending longer than the SLA (``review.sla_hours``), counted from the decision
    that made it pending."""
    return (now - pending_since).total_seconds() >= rules.sla_hours * 3600


def reminder_context(
    *,
    registration_id: int | None,
    kind: str,
    partner: str,
    company: str,
    domain: str,
    since: datetime,
    note: str | None,
    rules: ReviewRules,
) -> dict[str, object]:
    """What the SLA reminder to the program's address says: ids, partner, company and
    domain — what the program's admins may see; never a contact's name or e-mail."""
    return {
        "id": registration_id,
        "kind": kind,
        "partner": partner,
        "company": company or "(no name)",
        "domain": domain,
        "since": day_text(since),
        "sla_hours": rules.sla_hours,
        "why": note or "manual review",
        "codes": ", ".join(REJECT_CODES),
    }
