"""Commission rules (pure): which partner a won vendor deal credits, with which kind of
sale, and what it earns.

The program's rule is "if one of your registered leads buys, you receive a commission
automatically": any vendor deal reaching a won stage credits the partner that owned
its domain *when the deal closed*. So the question is answered from the ownership
windows of the domain (each accepted registration owns it from its decision until
its ``owned_until``, or until it was withdrawn or expired earlier) and the deal's
close date — never from who holds the domain at the moment a pass happens to look.
A win outside every window credits no one, and says why (:class:`Verdict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

from connector.config.models import RulesFile

CENTS = Decimal("0.01")

Kind = Literal["shared", "vendor_led", "self_serve"]
KINDS: tuple[Kind, ...] = ("shared", "vendor_led", "self_serve")
"""``shared``: a deal mirrored from the partner's CRM; ``vendor_led``: the vendor's own
sales team won it; ``self_serve``: bought without any sales interaction."""

# why a won deal credits no one: the code and the sentence `dealsync commissions` shows
NOT_CREDITED: dict[str, str] = {
    "no_domain": "not credited: the deal has no associated company with a domain",
    "not_registered": "not credited: {domain} was not registered by any partner",
    "won_after_ownership": (
        "not credited: won after ownership ended ({partner}'s ownership of {domain} "
        "ended {end}, the deal closed {closed})"
    ),
    "won_before_registration": (
        "not credited: won before the registration ({partner} registered {domain} "
        "{start}, the deal closed {closed})"
    ),
    "owned_by_other": (
        "not credited to {shared_by}: {partner} owned {domain} when the deal closed {closed}"
    ),
}

# the same, as the pass summary counts them ("commissions: 1 not credited (…)")
WHY: dict[str, str] = {
    "no_domain": "no company domain",
    "not_registered": "domain not registered",
    "won_after_ownership": "won after ownership ended",
    "won_before_registration": "won before the registration",
    "owned_by_other": "another partner owned the domain",
}


def _decimal(value: str | None) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        number = Decimal(str(value).replace(",", ""))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass(frozen=True)
class Earning:
    amount: Decimal
    rate: Decimal
    commission: Decimal  # amount × rate, to the cent
    mrr: Decimal  # the deal's MRR property, else amount ÷ the rules' divisor: credits the tier


def earning(props: Mapping[str, str | None], rules: RulesFile) -> Earning:
    """What a won vendor deal with these properties earns under ``rules``."""
    signals = rules.vendor_signals
    amount = _decimal(props.get("amount")) or Decimal(0)
    mrr = _decimal(props.get(signals.mrr_property))
    if mrr is None:
        mrr = (amount / Decimal(str(signals.amount_to_mrr_divisor))).quantize(CENTS, ROUND_HALF_UP)
    rate = Decimal(str(rules.commission_rate))
    return Earning(amount, rate, (amount * rate).quantize(CENTS, ROUND_HALF_UP), mrr)


# ---------------------------------------------------------------------- kind of sale


def _engaged(value: str | None) -> bool:
    """An engagement property says "a salesperson touched this deal" when it holds
    anything but nothing or a zero count."""
    text = (value or "").strip()
    if not text:
        return False
    number = _decimal(text)
    return number is None or number != 0


def sale_kind(
    props: Mapping[str, str | None], rules: RulesFile, *, shared: bool, signalled: bool
) -> Kind:
    """The kind of a won vendor deal. ``shared`` (mirrored from a partner) wins; else
    self-serve when ``signalled`` (it matches ``vendor_signals.self_serve``, e.g. a
    purchase-channel property — the caller evaluates the conditions) or it has no
    ``deal_owner_property`` and no ``sales_engagement_properties``; else the vendor's
    sales team led it."""
    if shared:
        return "shared"
    if signalled:
        return "self_serve"
    signals = rules.vendor_signals
    owner = (props.get(signals.deal_owner_property) or "").strip()
    if not owner and not any(_engaged(props.get(p)) for p in signals.sales_engagement_properties):
        return "self_serve"
    return "vendor_led"


def deal_properties(rules: RulesFile, partner_marker: str) -> list[str]:
    """The vendor deal properties the kind, the close time and the earning are read
    from (one list, so a read never misses one)."""
    signals = rules.vendor_signals
    return sorted(
        {
            "dealstage",
            "amount",
            "closedate",
            "deal_currency_code",
            signals.mrr_property,
            signals.deal_owner_property,
            partner_marker,
            *signals.sales_engagement_properties,
            *(c.property for c in signals.self_serve),
        }
    )


def closed_at(props: Mapping[str, str | None], fallback: datetime) -> datetime:
    """When the deal closed: its ``closedate`` (ISO date or date-time, or epoch
    milliseconds as HubSpot may send), else ``fallback`` (the pass that saw it won)."""
    text = (props.get("closedate") or "").strip()
    if not text:
        return fallback
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return fallback
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# ---------------------------------------------------------------------- who is credited


@dataclass(frozen=True)
class Window:
    """One partner's ownership of a domain: from ``start`` (the registration's
    acceptance) until ``end`` (exclusive: its ``owned_until``, or when it was withdrawn
    or expired if that came first)."""

    partner: str
    registration_id: int
    start: datetime
    end: datetime

    def covers(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True)
class Verdict:
    """Whom a won deal credits: ``partner`` and its registration when ``code`` is
    ``credited``; else nobody, with ``code`` (a key of :data:`NOT_CREDITED`), the
    sentence, and the partner whose window it missed (None when there was none)."""

    code: str
    domain: str
    partner: str | None = None
    registration_id: int | None = None
    reason: str = ""

    @property
    def credited(self) -> bool:
        return self.code == "credited"


def _day(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


def credit(
    domains: Sequence[str],
    closed: datetime,
    windows: Mapping[str, Iterable[Window]],
    *,
    shared_by: str | None = None,
) -> Verdict:
    """Whom a deal on ``domains`` (its companies' registrable domains) that closed at
    ``closed`` credits, given each domain's ownership ``windows``. A domain owned at
    ``closed`` credits its owner; else the nearest missed window explains the refusal
    (won after it ended, or before it began). ``shared_by``: the partner a shared deal
    came from, whose window alone can credit it."""
    known = [d for d in domains if d]
    if not known:
        return Verdict("no_domain", "", reason=NOT_CREDITED["no_domain"])
    closed_text = _day(closed)
    nearest: tuple[float, str, Window, str] | None = None
    for domain in known:
        for w in windows.get(domain, ()):
            if w.covers(closed):
                if shared_by is not None and w.partner != shared_by:
                    reason = NOT_CREDITED["owned_by_other"].format(
                        shared_by=shared_by, partner=w.partner, domain=domain, closed=closed_text
                    )
                    return Verdict("owned_by_other", domain, w.partner, w.registration_id, reason)
                return Verdict("credited", domain, w.partner, w.registration_id)
            if shared_by is not None and w.partner != shared_by:
                continue
            if closed >= w.end:
                gap, code = (closed - w.end).total_seconds(), "won_after_ownership"
            else:
                gap, code = (w.start - closed).total_seconds(), "won_before_registration"
            if nearest is None or gap < nearest[0]:
                nearest = (gap, code, w, domain)
    if nearest is None:
        return Verdict(
            "not_registered",
            known[0],
            reason=NOT_CREDITED["not_registered"].format(domain=known[0]),
        )
    _, code, w, domain = nearest
    reason = NOT_CREDITED[code].format(
        partner=w.partner,
        domain=domain,
        end=_day(w.end),
        start=_day(w.start),
        closed=closed_text,
    )
    return Verdict(code, domain, w.partner, w.registration_id, reason)
