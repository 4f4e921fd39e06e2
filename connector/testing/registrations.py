"""Many accepted registrations straight in the state store (through the registry's
batch write, as a pass records them), for tests and measurements of passes over many
registrations — without a partner record behind each one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from connector.program.decide import Decision, Person, Submission
from connector.state.registry import Registry


def seed_registrations(
    registry: Registry,
    partner: str,
    count: int,
    *,
    decided_at: datetime,
    countries: Sequence[str] = ("US",),
    owned_for: timedelta = timedelta(days=180),
) -> list[int]:
    """``count`` accepted lead registrations of ``partner`` (``company<i>.com``), one
    contact each, whose country cycles through ``countries``; marked written back to
    both sides (no record stands behind them). Returns their ids."""
    items = []
    for i in range(count):
        domain = f"company{i}.com"
        person = Person(f"p{i}@{domain}", "Pat", f"Lee{i}", countries[i % len(countries)])
        sub = Submission(
            partner, "lead", "contacts", f"seeded-{i}", domain, f"Company {i}", (person,)
        )
        until = decided_at + owned_for
        items.append((sub, Decision("accepted", domain, None, "seeded", until, (person,))))
    registry.record_many(items, now=decided_at)
    ids = [r.id for r in registry.registrations(partner) if r.id is not None]
    registry.mark(ids, written_back=True, vendor_written=True)
    return ids
