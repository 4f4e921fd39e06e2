"""Commission maths: what a won deal earns its partner (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from connector.config.models import RulesFile

CENTS = Decimal("0.01")


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
