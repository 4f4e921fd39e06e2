"""The lifecycle rules' edges, as the pure functions decide them (the scenarios through
the CLI are ``test_registration_lifecycle.py``): where the reminder window and the
activity window start, and what does not count as activity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connector.config.models import ExpiryRules
from connector.program.lifecycle import (
    Activity,
    Extension,
    Refusal,
    check_withdrawal,
    decide_extension,
    reminder_due,
    reminder_key,
)

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
RULES = ExpiryRules()  # 14 days, 3 months, 30 days


@dataclass
class Reg:
    id: int | None = 7
    partner: str = "acme"
    status: str = "accepted"
    domain: str = "initech.de"
    owned_until: datetime | None = NOW + timedelta(days=20)


def test_the_reminder_is_due_from_exactly_remind_days_before_the_end() -> None:
    end = NOW + timedelta(days=14)
    assert reminder_due(Reg(owned_until=end), RULES, NOW)
    assert not reminder_due(Reg(owned_until=end + timedelta(seconds=1)), RULES, NOW)
    assert not reminder_due(Reg(owned_until=NOW), RULES, NOW)  # over: no reminder
    assert not reminder_due(Reg(owned_until=end), ExpiryRules(remind_days_before=0), NOW)
    assert not reminder_due(Reg(status="withdrawn", owned_until=end), RULES, NOW)


def test_one_reminder_key_per_registration_and_end() -> None:
    reg = Reg()
    assert reminder_key(reg) == reminder_key(Reg())
    assert reminder_key(reg) != reminder_key(Reg(owned_until=NOW + timedelta(days=21)))
    assert reminder_key(reg) != reminder_key(Reg(id=8))


def test_activity_counts_from_exactly_the_start_of_the_window() -> None:
    edge = Activity("a commission", NOW - timedelta(days=30))
    ext = decide_extension(Reg(), extended_before=False, activity=edge, rules=RULES, now=NOW)
    assert isinstance(ext, Extension)
    assert ext.new_until == datetime(2027, 9, 21, 12, 0, tzinfo=UTC)  # + 3 months
    older = Activity("a commission", edge.at - timedelta(seconds=1))
    refused = decide_extension(Reg(), extended_before=False, activity=older, rules=RULES, now=NOW)
    assert isinstance(refused, Refusal) and refused.code == "no_recent_activity"
    assert "the last was a commission on 2027-05-02" in refused.reason


def test_activity_after_now_is_no_evidence() -> None:
    future = Activity("web activity", NOW + timedelta(days=1))
    refused = decide_extension(Reg(), extended_before=False, activity=future, rules=RULES, now=NOW)
    assert isinstance(refused, Refusal) and refused.code == "no_recent_activity"
    assert "dealsync knows of none" in refused.reason


def test_the_checks_in_order() -> None:
    fresh = Activity("web activity", NOW)
    over = Reg(owned_until=NOW)
    first = decide_extension(over, extended_before=True, activity=None, rules=RULES, now=NOW)
    assert isinstance(first, Refusal) and first.code == "not_active"
    twice = decide_extension(Reg(), extended_before=True, activity=fresh, rules=RULES, now=NOW)
    assert isinstance(twice, Refusal) and twice.code == "already_extended"
    off = ExpiryRules(extend_months=0)
    none = decide_extension(Reg(), extended_before=False, activity=fresh, rules=off, now=NOW)
    assert isinstance(none, Refusal) and none.code == "extensions_off"
    assert check_withdrawal(Reg(), NOW) is None
    refusal = check_withdrawal(Reg(status="expired"), NOW)
    assert refusal is not None and refusal.code == "not_active"
