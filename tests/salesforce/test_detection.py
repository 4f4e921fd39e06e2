"""Change detection on a Salesforce org: SystemModstamp windows paged through
nextRecordsUrl, deletes from getDeleted with their last values from the recycle bin,
and the fallback when getDeleted cannot vouch for the window (a cursor older than 30
days, or a recycle bin purged after the cursor: 15 days)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connector.testing.salesforce import SalesforceBackdoor, sandbox_adapter
from tests.salesforce.conftest import MakeSandbox

DEAL = {"Name": "Initech renewal", "StageName": "Prospecting", "CloseDate": "2027-01-31"}
FIELDS = ["Name", "StageName", "Amount"]


def test_a_window_pages_through_next_records_url_each_record_once_in_modstamp_order(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    crm = SalesforceBackdoor(org)
    same = org.now().replace(microsecond=0) - timedelta(minutes=5)
    # 450 deals at one instant and 50 later: three 200-row pages, ties broken by Id
    tied = [
        crm.seed("deals", {**DEAL, "Name": f"Tied {i}", "SystemModstamp": same.isoformat()})
        for i in range(450)
    ]
    later = [crm.seed("deals", {**DEAL, "Name": f"Later {i}"}) for i in range(50)]
    adapter = sandbox_adapter(sf, query_batch=200, clock=org.now)
    found = list(adapter.changed_since("deals", same, FIELDS))
    ids = [r.id for r in found]
    assert len(ids) == len(set(ids)) == 500
    assert ids[:450] == sorted(tied) and set(ids[450:]) == set(later)
    assert adapter.api_calls()["query"] == 3  # 200 + 200 + 100 rows
    chunks = list(adapter.changed_since_chunks("deals", same, FIELDS, chunk_size=150))
    assert [len(c) for c in chunks] == [150, 150, 150, 50]


def test_a_deleted_deal_comes_archived_with_its_last_values_and_where_applies(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    crm = SalesforceBackdoor(org)
    kept = crm.seed("deals", {**DEAL, "Name": "Kept"})
    gone = crm.seed("deals", {**DEAL, "Name": "Gone", "Amount": "900"})
    other = crm.seed("deals", {**DEAL, "Name": "Other stage", "StageName": "Qualification"})
    adapter = sandbox_adapter(sf, clock=org.now)
    cursor = org.advance(minutes=2)
    org.advance(minutes=1)
    crm.remove("deals", gone)
    crm.remove("deals", other)
    window = {r.id: r for r in adapter.changed_since("deals", cursor, FIELDS)}
    assert set(window) == {gone, other}
    assert window[gone].archived and window[gone].properties == {
        "Name": "Gone",
        "StageName": "Prospecting",
        "Amount": "900",
    }
    assert adapter.api_calls()["get_deleted"] == 1
    assert "deleted_full_scan" not in adapter.api_calls()
    prospecting = {
        r.id
        for r in adapter.changed_since("deals", cursor, FIELDS, where={"StageName": "Prospecting"})
    }
    assert prospecting == {gone}
    assert kept not in window


def test_a_cursor_older_than_30_days_scans_the_recycle_bin_instead_of_failing(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    crm = SalesforceBackdoor(org)
    cursor = org.now()
    old = crm.seed("deals", {**DEAL, "Name": "Deleted weeks ago"})
    org.advance(days=20)
    crm.remove("deals", old)  # purged from the recycle bin 15 days later
    org.advance(days=11)  # the cursor is now 31 days old: getDeleted refuses it
    recent = crm.seed("deals", {**DEAL, "Name": "Deleted yesterday"})
    crm.remove("deals", recent)
    adapter = sandbox_adapter(sf, clock=org.now)
    window = {r.id: r for r in adapter.changed_since("deals", cursor, FIELDS)}
    assert window[recent].archived and window[recent].get("Name") == "Deleted yesterday"
    assert old in window and window[old].archived  # still in the bin (11 days)
    calls = adapter.api_calls()
    assert calls["deleted_full_scan"] == 1 and "get_deleted" not in calls


def test_a_recycle_bin_purged_after_the_cursor_falls_back_and_says_what_is_unlisted(
    make_sandbox: MakeSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    crm = SalesforceBackdoor(org)
    purged = crm.seed("deals", {**DEAL, "Name": "Purged"})
    cursor = org.advance(minutes=1)
    org.advance(minutes=1)
    crm.remove("deals", purged)
    org.advance(days=16)  # 15 days in the bin: purged, earliestDateAvailable moves past the cursor
    binned = crm.seed("deals", {**DEAL, "Name": "In the bin"})
    crm.remove("deals", binned)
    adapter = sandbox_adapter(sf, clock=org.now)
    window = {r.id: r for r in adapter.changed_since("deals", cursor, FIELDS)}
    assert set(window) == {binned} and window[binned].archived
    calls = adapter.api_calls()
    assert calls["get_deleted"] == 1 and calls["deleted_full_scan"] == 1
    assert calls["deletes_unlisted"] == 1
    text = caplog.text
    assert "cannot all be listed by getDeleted" in text and "earliest date available" in text


def test_a_first_sync_above_the_threshold_reads_through_bulk_api_2(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    crm = SalesforceBackdoor(org)
    ids = {
        crm.seed("deals", {**DEAL, "Name": f"Bulk {i}", "Amount": str(100 + i)}) for i in range(25)
    }
    bulk = sandbox_adapter(sf, clock=org.now, bulk_threshold=20)
    rest = sandbox_adapter(sf, clock=org.now, bulk_threshold=0)
    via_bulk = {r.id: r for r in bulk.changed_since("deals", None, FIELDS)}
    via_rest = {r.id: r for r in rest.changed_since("deals", None, FIELDS)}
    assert set(via_bulk) == ids == set(via_rest)
    assert {i: r.properties for i, r in via_bulk.items()} == {
        i: r.properties for i, r in via_rest.items()
    }
    assert {i: r.updated_at for i, r in via_bulk.items()} == {
        i: r.updated_at for i, r in via_rest.items()
    }
    assert bulk.api_calls()["bulk_query"] == 1 and "query" not in bulk.api_calls()
    assert "bulk_query" not in rest.api_calls()
    # below the threshold, and for every later window, the REST query
    below = sandbox_adapter(sf, clock=org.now, bulk_threshold=30)
    assert len(list(below.changed_since("deals", None, FIELDS))) == 25
    assert below.api_calls()["query_count"] == 1 and "bulk_query" not in below.api_calls()
    later = list(bulk.changed_since("deals", org.now() - timedelta(days=1), FIELDS))
    assert len(later) == 25 and bulk.api_calls()["bulk_query"] == 1


def test_a_window_narrowed_by_a_checkbox_or_a_number_is_valid_soql(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    crm = SalesforceBackdoor(org)
    won = crm.seed("deals", {**DEAL, "Name": "Won", "StageName": "Closed Won", "Amount": "100"})
    crm.seed("deals", {**DEAL, "Name": "Open", "Amount": "100"})
    adapter = sandbox_adapter(sf, clock=org.now)
    found = {r.id for r in adapter.changed_since("deals", None, FIELDS, where={"IsWon": "true"})}
    assert found == {won}
    both = list(adapter.changed_since("deals", None, FIELDS, where={"Amount": "100"}))
    assert len(both) == 2
    assert adapter.api_calls()["describe"] == 1  # once per object, only when narrowed
