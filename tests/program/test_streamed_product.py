"""Issue 17: the product's pass streams its deals. With the program's hooks on, the
companies and contacts are detected and held first (on a first sync, read with each
chunk of deals instead, and only the leads detected); the deals then come chunk by chunk
while detection searches on, each chunk decided by the hooks (``decide_chunk``: a
deal's registration, from its company and contacts held) and applied before the next
is read — and right after it, the companies and contacts its deals made shareable,
their creates allowed by those deals' decisions; the leads are decided once every deal
was (``after_stream``); what no chunk claimed is applied last.

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
        # per deal chunk, before it is applied: the vendor's companies and contacts
        self.children: list[tuple[int, int]] = []

    def after_detect(self, ctx: PassContext, seen: Any) -> None:
        self.events.append(("after_detect", {n: len(r.partner) for n, r in seen.items()}))

    def decide_chunk(self, ctx: PassContext, chunk: Chunk, seen: Any) -> None:
        vendor = self.program.vendor
        self.events.append(("chunk", (len(chunk.records.partner), len(vendor.all("deals")))))
        self.children.append((len(vendor.all("companies")), len(vendor.all("contacts"))))

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
    # after_detect, on a first sync: of the children only the lead detected (the
    # deals' companies and contacts come with their chunks), the deals to come
    assert probe.events[0][1] == {"deals": 0, "companies": 0, "contacts": 1}
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


@pytest.mark.usefixtures("chunk_of_2")
def test_a_chunks_companies_and_contacts_go_out_before_the_next_chunk(
    make_program: MakeProgram,
) -> None:
    """The companies and contacts a chunk's deals share are written to the vendor once
    the next chunk has come, before it is decided, while the deals to come are still
    being searched for — not all after the last chunk (issue 17: the pass's wall
    time)."""
    p, probe = probed(make_program)
    seeded = [p.seed_deal(domain=f"co{i}.com", company=f"Co{i}") for i in range(5)]
    result = p.sync()
    assert result.status == "ok", result.errors
    # (vendor companies, vendor contacts) as each of the 3 chunks is decided
    assert probe.children == [(0, 0), (2, 2), (4, 4)]
    for s in seeded:
        deal = p.counterpart("acme", "deals", s.id)
        company = p.counterpart("acme", "companies", s.company.id)
        contact = p.counterpart("acme", "contacts", s.contacts[0].id)
        assert deal is not None and company is not None and contact is not None
        vdeal = p.vendor.get("deals", deal.id)
        assert vdeal.associations["companies"] == (company.id,)
        assert vdeal.associations["contacts"] == (contact.id,)
    assert len(p.vendor.all("companies")) == 5 and len(p.vendor.all("contacts")) == 5
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok" and not again.plan.actions


@pytest.mark.usefixtures("chunk_of_2")
def test_a_company_of_deals_in_two_chunks_is_created_once_with_both_associations(
    make_program: MakeProgram,
) -> None:
    """A company the first chunk's deal shares is written then; the third chunk's deal
    on it is associated with the same vendor company, which is not written again."""
    p, _ = probed(make_program)
    first = p.seed_deal(domain="globex.com", company="Globex")
    for i in range(3):
        p.seed_deal(domain=f"co{i}.com", company=f"Co{i}")
    bo = {"firstname": "Bo", "lastname": "Lee", "email": "bo@globex.com", "country": "US"}
    later = p.seed_deal(company="Globex copy", contacts=[bo], with_company=False)
    p.crm("acme").associate("deals", "companies", [(later.id, first.company.id)])
    result = p.sync()
    assert result.status == "ok", result.errors
    company = p.counterpart("acme", "companies", first.company.id)
    assert company is not None
    assert len(p.vendor_companies("globex.com")) == 1
    for s in (first, later):
        deal = p.counterpart("acme", "deals", s.id)
        assert deal is not None
        assert p.vendor.get("deals", deal.id).associations["companies"] == (company.id,)
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok" and not again.plan.actions


@pytest.mark.usefixtures("chunk_of_2")
def test_a_company_held_back_for_one_chunk_is_created_for_a_later_chunks_deal(
    make_program: MakeProgram,
) -> None:
    """A company shared by a refused deal (capacity) is not created when that deal's
    chunk is applied; a later chunk's accepted deal on it gets it created right after
    that chunk, and its associations follow."""
    p, probe = probed(make_program, capacity_3)
    for i in range(3):
        p.seed_deal(domain=f"co{i}.com", company=f"Co{i}")  # chunks 1 and 2: accepted
    refused = p.seed_deal(domain="co3.com", company="Co3")  # chunk 2: capacity exceeded
    # chunks 3 and 4: on the partner's own domains, accepted again
    again = [
        p.seed_deal(domain=f"co{i}.com", company=f"Co{i} again", contacts=[person(i)])
        for i in range(3)
    ]
    own = again[0]
    p.crm("acme").associate("deals", "companies", [(refused.id, own.company.id)])
    result = p.sync()
    assert result.status == "ok", result.errors
    reg = p.registry.find("acme", "deal", refused.id)
    assert (reg.status, reg.code) == ("rejected", "capacity_exceeded")
    assert p.counterpart("acme", "deals", refused.id) is None
    assert p.counterpart("acme", "companies", refused.company.id) is None
    # vendor companies as each chunk is decided: chunk 2's Co3 and Co0 again held back,
    # then Co0 again (and Co1 again) written once chunk 3's deals were accepted
    assert [c for c, _ in probe.children] == [0, 2, 3, 5]
    company = p.counterpart("acme", "companies", own.company.id)
    assert company is not None
    deal = p.counterpart("acme", "deals", own.id)
    assert deal is not None
    assert p.vendor.get("deals", deal.id).associations["companies"] == (company.id,)
    quiet = p.sync(now=NOW + timedelta(minutes=5))
    assert quiet.status == "ok" and not quiet.plan.actions


def person(i: int) -> dict[str, str]:
    """A second contact at ``co<i>.com``."""
    return {"firstname": "Bo", "lastname": f"Lee{i}", "email": f"bo@co{i}.com", "country": "US"}


@pytest.mark.usefixtures("chunk_of_2")
def test_each_chunks_company_creates_carry_ownership_read_for_that_chunk_only(
    make_program: MakeProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ownership a chunk's company creates carry is read for that chunk's deals:
    while the deals stream, no read of the partner's pending vendor writes returns
    more than a chunk's registrations (before: every registration of the partner,
    once per chunk — 50 loads of 50,000 rows at N = 50,000, the pass's peak of
    memory). Every company still carries its ownership on its create, none is
    updated after."""
    from connector.state.registry import Registry

    p, probe = probed(make_program)
    for i in range(6):
        p.seed_deal(domain=f"co{i}.com", company=f"Co{i}")
    read: list[tuple[bool, int]] = []  # (streaming, registrations returned)
    for name in ("pending_vendor_write_pages", "pending_vendor_writes_of"):
        original = getattr(Registry, name)

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            out = _original(self, *args, **kwargs)
            streaming = not any(e == "after_stream" for e, _ in probe.events)
            if isinstance(out, list):
                read.append((streaming, len(out)))
                return out
            pages = list(out)  # the pages: each one counts
            read.extend((streaming, len(page)) for page in pages)
            return iter(pages)

        monkeypatch.setattr(Registry, name, spy)
    result = p.sync()
    assert result.status == "ok", result.errors
    during = [n for streaming, n in read if streaming]
    assert during and max(during) <= 2  # the chunk's two deals, not the six
    assert not [k for k in result.effect_counts() if k.startswith("ownership writes")]
    for i in range(6):
        (company,) = p.vendor_companies(f"co{i}.com")
        assert company.get("dealsync_owner_partner") == "acme"
