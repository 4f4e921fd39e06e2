"""Issue 17: the product's first sync of a partner lists its contacts (a listing on the
portal's general budget, beside the companies' searches) instead of searching them;
later passes search their window as before. On the embedded CRMs (the HubSpot
sandbox's version, with the calls counted on the portal: tests/hubspot/
test_initial_listing.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from program_support import NOW, MakeProgram

from connector.adapters.base import AdapterError
from connector.adapters.local import LocalCRM
from connector.records import Record


def test_first_sync_lists_contacts_and_the_next_pass_searches(make_program: MakeProgram) -> None:
    p = make_program()
    seeded = [p.seed_deal(domain=f"co{i}.com", company=f"Co{i}") for i in range(3)]
    lead = p.seed_lead(email="carol@initech.de")
    partner = p.crm()
    first = p.sync()
    assert first.status == "ok", first.errors
    assert first.api_calls.get("partner.list") == 1, first.api_calls  # 4 contacts: a page
    for s in seeded:
        assert p.registry.find("acme", "deal", s.id).status == "accepted"
        assert p.counterpart("acme", "companies", s.company.id) is not None
        for person in s.contacts:
            assert p.counterpart("acme", "contacts", person.id) is not None
    assert p.registry.find("acme", "lead", lead.id).status == "accepted"

    partner.update("contacts", [(seeded[0].contacts[0].id, {"firstname": "Annie"})])
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok", again.errors
    assert "partner.list" not in again.api_calls, again.api_calls
    assert again.api_calls.get("partner.search", 0) >= 3  # each object's window
    vendor = p.counterpart("acme", "contacts", seeded[0].contacts[0].id)
    assert vendor is not None and vendor.get("firstname") == "Annie"


def test_a_failed_listing_fails_the_pass_and_the_rerun_lists_again(
    make_program: MakeProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_program()
    s = p.seed_deal()
    fail = [True]
    listed = LocalCRM.listed_chunks

    def flaky(
        self: LocalCRM, object_type: str, properties: Any, **scope: Any
    ) -> Iterator[list[Record]]:
        if fail and self is p.crm():
            fail.clear()
            raise AdapterError("listing refused", retriable=True)
        return listed(self, object_type, properties, **scope)

    monkeypatch.setattr(LocalCRM, "listed_chunks", flaky)
    broken = p.sync()
    assert broken.status == "fatal" and "listing refused" in (broken.error or ""), broken.status
    assert p.counterpart("acme", "deals", s.deal.id) is None  # nothing decided or written
    # the cursors did not move: the rerun is a first sync again, and lists
    rerun = p.sync()
    assert rerun.status == "ok", rerun.errors
    assert rerun.api_calls.get("partner.list") == 1, rerun.api_calls
    assert p.counterpart("acme", "deals", s.deal.id) is not None
    assert p.counterpart("acme", "contacts", s.contacts[0].id) is not None
