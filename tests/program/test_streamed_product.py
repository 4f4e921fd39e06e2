"""Issue 17: the product's pass streams its deals. With the program's hooks on, the
companies and contacts are detected and held first; the deals then come chunk by chunk
while detection searches on, each chunk decided by the hooks (``decide_chunk``: a
deal's registration, from its company and contacts held) and applied before the next
is read; the leads are decided once every deal was (``after_stream``); the companies
and contacts are applied last, their creates allowed by their deals' decisions.

Chunks of 2 deals here (``DETECT_CHUNK``), so 5 deals are 3 chunks; the embedded CRM
hands its search over in such chunks too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from program_support import NOW, MakeProgram, Program

from connector.engine.effects import Decide
from connector.engine.hooks import BaseHook, Chunk, ObjectRecords, PassContext


class Probe(BaseHook):
    """Records the hook points of a pass in order, and at each deal chunk how many
    deals the vendor already had (the earlier chunks', applied meanwhile)."""

    name = "probe"

    def __init__(self, program: Program) -> None:
        self.program = program
        self.events: list[tuple[str, Any]] = []

    def after_detect(self, ctx: PassContext, seen: Any) -> None:
        self.events.append(("after_detect", {n: len(r.partner) for n, r in seen.items()}))

    def decide_chunk(self, ctx: PassContext, chunk: Chunk, seen: Any) -> None:
        vendor_deals = len(self.program.vendor.all("deals"))
        self.events.append(("chunk", (len(chunk.records.partner), vendor_deals)))

    def after_stream(self, ctx: PassContext, seen: dict[str, ObjectRecords]) -> None:
        self.events.append(("after_stream", None))


def probed(make_program: MakeProgram, rules_edit: Any = None) -> tuple[Program, Probe]:
    p = make_program(rules_edit=rules_edit)
    probe = Probe(p)
    p.app.hooks = [*p.app.hooks, probe]  # the shipped hooks, then the probe
    return p, probe


@pytest.fixture
def chunk_of_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 2)


@pytest.mark.usefixtures("chunk_of_2")
def test_deals_are_decided_and_applied_chunk_by_chunk(make_program: MakeProgram) -> None:
    p, probe = probed(make_program)
    seeded = [p.seed_deal(domain=f"co{i}.com", company=f"Co{i}") for i in range(5)]
    lead = p.seed_lead(email="carol@initech.de")
    result = p.sync()
    assert result.status == "ok", result.errors

    kinds = [k for k, _ in probe.events]
    assert kinds == ["after_detect", "chunk", "chunk", "chunk", "after_stream"]
    # after_detect: the companies and contacts held, the deals' partner side to come
    assert probe.events[0][1] == {"deals": 0, "companies": 5, "contacts": 6}
    # each chunk is decided once the chunks before it were written to the vendor
    assert [e[1] for e in probe.events[1:4]] == [(2, 0), (2, 2), (1, 4)]
    for s in seeded:
        assert p.registry.find("acme", "deal", s.id).status == "accepted"
        assert p.counterpart("acme", "deals", s.id) is not None
        assert p.counterpart("acme", "companies", s.company.id) is not None
        for person in s.contacts:
            assert p.counterpart("acme", "contacts", person.id) is not None
    assert p.registry.find("acme", "lead", lead.id).status == "accepted"
    # the next pass is quiet and decides nothing again
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok" and not again.plan.actions


def capacity_3(text: str) -> str:
    return text.replace("capacity: 10", "capacity: 3", 1)


def deal_decisions(p: Program, dry: bool) -> list[str]:
    """The deals' decisions of one first pass over 5 deals in 3 chunks: 4 domains, the
    last deal on the first one's domain (a partner's own domain is accepted again)."""
    for i in range(4):
        p.seed_deal(domain=f"co{i}.com", company=f"Co{i}")
    bo = {"firstname": "Bo", "lastname": "Lee", "email": "bo@co0.com", "country": "US"}
    p.seed_deal(domain="co0.com", company="Co0 again", contacts=[bo])
    result = p.sync(dry_run=dry)
    assert result.status == "ok", result.errors
    return [
        e.effect.decision.code or e.effect.decision.status
        for e in result.effects
        if isinstance(e.effect, Decide) and e.effect.submission.kind == "deal"
    ]


@pytest.mark.usefixtures("chunk_of_2")
def test_a_later_chunk_sees_the_earlier_chunks_decisions(make_program: MakeProgram) -> None:
    """Capacity and the domains accepted carry from chunk to chunk, in a dry run (which
    records nothing) as in a real pass: the dry run's decisions are the real pass's."""
    real = deal_decisions(make_program("real", capacity_3), dry=False)
    dry = deal_decisions(make_program("dry", capacity_3), dry=True)
    assert real == ["accepted", "accepted", "accepted", "capacity_exceeded", "accepted"]
    assert dry == real
