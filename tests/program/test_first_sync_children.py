"""Issue 17: the product's first sync of a partner reads the companies and contacts of
each chunk of deals with that chunk, by id (a search by id: a page of 200 a call, as
detecting them would cost), instead of detecting them whole before the first deal can
be decided; of the contacts it detects only those flagged as leads, whom no deal shares.
Later passes search each object's window as before. A first sync whose children are
linked already (an earlier first pass stopped after writing some) holds them whole,
and lists the contacts beside the companies' searches. On the embedded CRMs (the
HubSpot sandbox's version: tests/hubspot/test_first_sync_children_over_sandbox.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from program_support import NOW, MakeProgram

from connector.adapters.base import AdapterError
from connector.adapters.local import LocalCRM
from connector.engine.run import PassAborted
from connector.records import Record


def test_first_sync_reads_the_deals_children_with_them_and_the_next_pass_searches(
    make_program: MakeProgram,
) -> None:
    p = make_program()
    seeded = [p.seed_deal(domain=f"co{i}.com", company=f"Co{i}") for i in range(3)]
    lead = p.seed_lead(email="carol@initech.de")
    loner = p.crm().create("companies", {"name": "Nobody's", "domain": "nobody.example"})
    partner = p.crm()
    first = p.sync()
    assert first.status == "ok", first.errors
    assert "partner.list" not in first.api_calls, first.api_calls
    # the leads' search, the deals' search, one search by id for the 3 deals' companies;
    # their contacts in one batch read (the general budget, beside those searches)
    assert first.api_calls.get("partner.search") == 3, first.api_calls
    assert first.api_calls.get("partner.batch_read") == 1, first.api_calls
    for s in seeded:
        assert p.registry.find("acme", "deal", s.id).status == "accepted"
        assert p.counterpart("acme", "companies", s.company.id) is not None
        for person in s.contacts:
            assert p.counterpart("acme", "contacts", person.id) is not None
    assert p.registry.find("acme", "lead", lead.id).status == "accepted"
    assert p.counterpart("acme", "companies", loner.id) is None  # no deal shares it

    partner.update("contacts", [(seeded[0].contacts[0].id, {"firstname": "Annie"})])
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok", again.errors
    assert "partner.list" not in again.api_calls, again.api_calls
    assert again.api_calls.get("partner.search", 0) >= 3  # each object's window
    vendor = p.counterpart("acme", "contacts", seeded[0].contacts[0].id)
    assert vendor is not None and vendor.get("firstname") == "Annie"


def test_a_failed_read_of_the_children_fails_the_pass_and_the_rerun_reads_again(
    make_program: MakeProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_program()
    s = p.seed_deal()
    fail = [True]
    searched = LocalCRM.read_searched

    def flaky(self: LocalCRM, object_type: str, ids: Any, properties: Any) -> dict[str, Record]:
        if fail and self is p.crm():
            fail.clear()
            raise AdapterError("search refused", retriable=True)
        return searched(self, object_type, ids, properties)

    monkeypatch.setattr(LocalCRM, "read_searched", flaky)
    broken = p.sync()
    assert broken.status == "fatal" and "search refused" in (broken.error or ""), broken.status
    assert p.counterpart("acme", "deals", s.deal.id) is None  # nothing decided or written
    rerun = p.sync()
    assert rerun.status == "ok", rerun.errors
    assert p.counterpart("acme", "deals", s.deal.id) is not None
    assert p.counterpart("acme", "companies", s.company.id) is not None
    assert p.counterpart("acme", "contacts", s.contacts[0].id) is not None


def test_a_rerun_after_a_first_pass_linked_children_holds_them_whole_and_lists(
    make_program: MakeProgram,
) -> None:
    p = make_program()
    seeded = [p.seed_deal(domain=f"co{i}.com", company=f"Co{i}") for i in range(3)]

    def crash(point: str) -> None:
        if point == "before_cursor":
            raise PassAborted(point)

    with pytest.raises(PassAborted):
        p.sync(crash_at=crash)
    assert p.app.store.link_counts("acme")["companies"] == {"active": 3}
    # no cursor moved, but the children are linked: detected whole, the contacts listed
    rerun = p.sync()
    assert rerun.status == "ok", rerun.errors
    assert rerun.api_calls.get("partner.list") == 1, rerun.api_calls
    for s in seeded:
        assert p.counterpart("acme", "companies", s.company.id) is not None
        for person in s.contacts:
            assert p.counterpart("acme", "contacts", person.id) is not None
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok" and not again.plan.actions
