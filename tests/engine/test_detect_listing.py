"""Issue 17: which detection job a first sync lists (``plan_listing``), and detection's
second thread (the listed mapping) handing its records and its errors over like the
first. The passes that use it are in tests/program/test_first_sync_children.py and
tests/hubspot/test_first_sync_children_over_sandbox.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.adapters.base import AdapterError, SupportsListing
from connector.adapters.local import LocalCRM
from connector.adapters.salesforce import SalesforceAdapter
from connector.engine.detect import Detection, DetectJob, plan_listing
from connector.records import Record

T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


def job(mapping: str, side: str, since: datetime | None = None) -> DetectJob:
    return DetectJob(mapping, side, mapping, since, T0 + timedelta(days=1), ["name"], None, [])  # type: ignore[arg-type]


def jobs_of(*mappings: str, since: dict[str, datetime] | None = None) -> list[DetectJob]:
    return [job(m, side, (since or {}).get(m)) for m in mappings for side in ("vendor", "partner")]


def listed(jobs: list[DetectJob]) -> list[tuple[str, str]]:
    return [(j.mapping, j.side) for j in jobs if j.listed]


def test_a_first_sync_lists_the_last_held_mapping_partner_side_only() -> None:
    jobs = jobs_of("companies", "contacts", "deals")
    planned = plan_listing(jobs, ["companies", "contacts"], LocalCRM())
    assert listed(planned) == [("contacts", "partner")]
    # nothing else changes: same jobs, same order
    assert [(j.mapping, j.side, j.since) for j in planned] == [
        (j.mapping, j.side, j.since) for j in jobs
    ]


def test_listing_needs_two_held_first_syncs_and_a_crm_that_lists() -> None:
    crm = LocalCRM()
    # incremental (a cursor on each): searched
    both = {"companies": T0, "contacts": T0}
    assert (
        listed(
            plan_listing(
                jobs_of("companies", "contacts", "deals", since=both),
                ["companies", "contacts"],
                crm,
            )
        )
        == []
    )
    # only one held mapping on its first sync: no search to run beside it
    one = {"companies": T0}
    assert (
        listed(
            plan_listing(
                jobs_of("companies", "contacts", "deals", since=one), ["companies", "contacts"], crm
            )
        )
        == []
    )
    # one held mapping only
    assert listed(plan_listing(jobs_of("companies", "deals"), ["companies"], crm)) == []
    # a partner CRM without a listing on a budget of its own (Salesforce): searched
    assert not issubclass(SalesforceAdapter, SupportsListing)
    assert (
        listed(
            plan_listing(
                jobs_of("companies", "contacts", "deals"), ["companies", "contacts"], object()
            )
        )
        == []
    )  # type: ignore[arg-type]


def seeded() -> tuple[LocalCRM, LocalCRM]:
    partner, vendor = LocalCRM(name="partner"), LocalCRM(name="vendor")
    for i in range(5):
        partner.create("companies", {"name": f"Co {i}"})
        partner.create("contacts", {"name": f"Pat {i}"})
    return partner, vendor


def test_the_listed_mapping_comes_from_the_second_thread_with_the_search_s_records() -> None:
    partner, vendor = seeded()
    jobs = plan_listing(jobs_of("companies", "contacts"), ["companies", "contacts"], partner)
    detection = Detection({"partner": partner, "vendor": vendor}, jobs, chunk_size=2)
    detection.start()
    try:
        got: dict[str, dict[str, Record]] = {}
        for m in ("companies", "contacts"):
            assert detection.vendor(m) == {}
            got[m] = {rid: r for chunk in detection.partner_chunks(m) for rid, r in chunk.items()}
    finally:
        detection.stop()
    assert partner.calls["list"] == 1 and partner.calls["search"] == 1  # companies searched
    searched = {r.id: r for r in partner.changed_since("contacts", None, ["name"])}
    assert got["contacts"] == searched and len(searched) == 5
    assert len(got["companies"]) == 5


class FailingListing(LocalCRM):
    def listed_chunks(
        self, object_type: str, properties: Any, **scope: Any
    ) -> Iterator[list[Record]]:
        yield from ()
        raise AdapterError("listing refused", retriable=True)


@pytest.mark.parametrize("first", ["companies", "contacts"])
def test_an_error_in_the_listing_thread_is_raised_in_the_applying_thread(first: str) -> None:
    partner, vendor = FailingListing(name="partner"), LocalCRM(name="vendor")
    partner.create("companies", {"name": "Co"})
    jobs = plan_listing(jobs_of("companies", "contacts"), ["companies", "contacts"], partner)
    detection = Detection({"partner": partner, "vendor": vendor}, jobs, chunk_size=2)
    detection.start()
    try:
        with pytest.raises(AdapterError, match="listing refused"):
            for m in ("companies", "contacts") if first == "companies" else ("contacts",):
                detection.vendor(m)
                for _ in detection.partner_chunks(m):
                    pass
    finally:
        detection.stop()
