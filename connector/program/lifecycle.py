"""A registration's life after its decision: the expiry reminder, one extension, a
withdrawal — the program's rules as pure functions (issue 16 items 6 and 8).

What they decide from: the registration as the state store holds it, the registry's
record of earlier changes, and the latest *activity* at the registration's domain that
dealsync knows of (:class:`Activity`; the registry reads it,
:meth:`connector.state.registry.Registry.latest_activity`). No I/O here: the expiry hook
(:mod:`connector.hooks.expiry`) queues reminders, the API
(:mod:`connector.api.lifecycle`) records extensions and withdrawals and writes them to
both CRMs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from dateutil.relativedelta import relativedelta

from connector.config.models import ExpiryRules
from connector.program.decide import day_text

RefusalCode = Literal["not_active", "already_extended", "extensions_off", "no_recent_activity"]

EXTENDED = "Extended by {by} until {until}: {reason}"
WITHDRAWN_BY = "Withdrawn by {by}: {reason}; {domain} is free again."


class Registration(Protocol):
    """What these rules read of a registration (the state store's row has it; the
    program does not import the state store)."""

    @property
    def id(self) -> int | None: ...
    @property
    def partner(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def owned_until(self) -> datetime | None: ...


@dataclass(frozen=True)
class Activity:
    """The latest thing at a domain that shows the partner is working it: ``what`` says
    which kind (``web activity``, ``commission``, ``deal synced``), ``at`` when."""

    what: str
    at: datetime


@dataclass(frozen=True)
class Refusal:
    """Why a registration cannot be changed so: a machine code and a sentence for the
    person who asked (with what they can do instead)."""

    code: RefusalCode
    reason: str


@dataclass(frozen=True)
class Extension:
    """An allowed extension: ownership moves from ``previous_until`` to ``new_until``;
    ``activity`` is the evidence that allowed it (None when the rules ask for none)."""

    previous_until: datetime
    new_until: datetime
    activity: Activity | None


def is_active(reg: Registration, now: datetime) -> bool:
    """Accepted and its ownership window not over (a due expiry counts as over even
    before the next pass records it)."""
    return reg.status == "accepted" and reg.owned_until is not None and reg.owned_until > now


def _not_active(reg: Registration) -> Refusal:
    state = reg.status if reg.status != "accepted" else "expired (its window is over)"
    return Refusal(
        "not_active",
        f"registration #{reg.id} is {state}, not active; only an active registration "
        "can be extended or withdrawn",
    )


def reminder_due(reg: Registration, rules: ExpiryRules, now: datetime) -> bool:
    """Whether the partner should be told now that this registration expires soon:
    active, and its end within ``remind_days_before`` days."""
    if rules.remind_days_before <= 0 or not is_active(reg, now):
        return False
    assert reg.owned_until is not None
    return reg.owned_until - timedelta(days=rules.remind_days_before) <= now


def reminder_key(reg: Registration) -> str:
    """One reminder per registration and end of ownership: an extended registration is
    reminded again before its new end, a rerun never twice for the same one."""
    assert reg.owned_until is not None
    return f"expiry_reminder:{reg.partner}:{reg.id}:{reg.owned_until.strftime('%Y%m%dT%H%M%S')}"


def days_left(reg: Registration, now: datetime) -> int:
    assert reg.owned_until is not None
    return max(0, (reg.owned_until - now).days)


def decide_extension(
    reg: Registration,
    *,
    extended_before: bool,
    activity: Activity | None,
    rules: ExpiryRules,
    now: datetime,
) -> Extension | Refusal:
    """The program's extension rule, checks in order: the registration is active, was
    not extended before, extensions are on, and (when the rules ask) the domain had
    activity within ``extend_requires_activity_days`` days before ``now``."""
    if not is_active(reg, now):
        return _not_active(reg)
    assert reg.owned_until is not None
    if extended_before:
        return Refusal(
            "already_extended",
            f"registration #{reg.id} was extended once already (until "
            f"{day_text(reg.owned_until)}); a registration is extended at most once — "
            "register the domain again after it expires",
        )
    if rules.extend_months <= 0:
        return Refusal(
            "extensions_off",
            "the rules allow no extensions (expiry.extend_months is 0 in the rules file)",
        )
    window = rules.extend_requires_activity_days
    evidence = activity if activity is not None and activity.at <= now else None
    if window > 0:
        since = now - timedelta(days=window)
        if evidence is None or evidence.at < since:
            last = (
                f"the last was {evidence.what} on {day_text(evidence.at)}"
                if evidence is not None
                else "dealsync knows of none"
            )
            return Refusal(
                "no_recent_activity",
                f"{reg.domain} had no activity in the last {window} days ({last}); an "
                "extension needs web activity at the domain, a commission on it or a "
                "change of the registered deal in that time",
            )
    return Extension(
        reg.owned_until, reg.owned_until + relativedelta(months=rules.extend_months), evidence
    )


def check_withdrawal(reg: Registration, now: datetime) -> Refusal | None:
    """Only an active registration can be withdrawn (None: it can)."""
    return None if is_active(reg, now) else _not_active(reg)
