"""Detecting deletes: queryAll shows the recycle bin, getDeleted lists deletions in a
window, records are purged after 15 days (earliestDateAvailable moves), and a start
more than 30 days back is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.sandbox.salesforce import SalesforceSandbox

if TYPE_CHECKING:
    from tests.sandbox.salesforce.conftest import Login


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def test_query_all_includes_the_recycle_bin_query_does_not(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    org = sandbox.org("acme")
    keep = org.seed("Contact", {"LastName": "Keep"})
    gone = org.seed("Contact", {"LastName": "Gone"})
    before = org.record("Contact", gone)["SystemModstamp"]  # type: ignore[index]
    org.advance(seconds=2)
    sf.Contact.delete(gone)
    live = sf.query_all("SELECT Id FROM Contact")["records"]
    assert [r["Id"] for r in live] == [keep]
    every = sf.query_all(
        "SELECT Id, IsDeleted, SystemModstamp FROM Contact ORDER BY Id", include_deleted=True
    )
    by_id = {r["Id"]: r for r in every["records"]}
    assert set(by_id) == {keep, gone}
    assert by_id[gone]["IsDeleted"] is True and by_id[gone]["SystemModstamp"] > before
    only_deleted = sf.query_all(
        "SELECT Id FROM Contact WHERE IsDeleted = true", include_deleted=True
    )
    assert [r["Id"] for r in only_deleted["records"]] == [gone]
    # a purged record is gone from queryAll too
    org.purge_recycle_bin()
    assert sf.query_all("SELECT Id FROM Contact", include_deleted=True)["totalSize"] == 1


def test_get_deleted_lists_a_window_ignoring_seconds(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    org = sandbox.org("acme")
    org.set_clock(datetime(2026, 12, 1, 10, 0, 30, tzinfo=UTC))
    a = org.seed("Account", {"Name": "A"})
    b = org.seed("Account", {"Name": "B"})
    sf.Account.delete(a)
    org.advance(minutes=10)
    sf.Account.delete(b)
    org.advance(minutes=1)
    start = datetime(2026, 12, 1, 10, 0, 59, tzinfo=UTC)  # the seconds are ignored: 10:00
    result = sf.Account.deleted(start, start + timedelta(minutes=5))
    assert [r["id"] for r in result["deletedRecords"]] == [a]
    assert result["latestDateCovered"] == "2026-12-01T10:05:00.000+0000"
    wide = sf.Account.deleted(start, datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert [r["id"] for r in wide["deletedRecords"]] == [a, b]
    assert _parse(wide["deletedRecords"][1]["deletedDate"]) >= datetime(
        2026, 12, 1, 10, 10, tzinfo=UTC
    )
    # the window is never reported as covered beyond the org's now
    assert _parse(wide["latestDateCovered"]) <= datetime(2026, 12, 1, 10, 12, tzinfo=UTC)


def test_recycle_bin_purges_after_15_days_and_earliest_date_moves(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    org = sandbox.org("acme")
    t0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    org.set_clock(t0)
    old = org.seed(
        "Opportunity", {"Name": "Old", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )
    sf.Opportunity.delete(old)
    org.advance(days=10)
    newer = org.seed(
        "Opportunity", {"Name": "New", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )
    sf.Opportunity.delete(newer)
    org.advance(days=5, minutes=1)  # the first deletion is 15 days old now, the second 5
    result = sf.Opportunity.deleted(t0 + timedelta(minutes=-1), t0 + timedelta(days=15))
    assert [r["id"] for r in result["deletedRecords"]] == [newer]
    earliest = _parse(result["earliestDateAvailable"])
    assert t0 <= earliest < t0 + timedelta(minutes=1)  # the purged record's deletion
    # a cursor before earliestDateAvailable may have missed deletions: a full scan is due
    assert earliest > t0 - timedelta(minutes=1)
    assert sf.query_all("SELECT Id FROM Opportunity", include_deleted=True)["totalSize"] == 1


def test_start_more_than_30_days_back_is_invalid_replication_date(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    now = sandbox.org("acme").now()
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.deleted(now - timedelta(days=31), now)
    assert err.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.deleted(now, now - timedelta(hours=1))
    assert err.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert sf.Contact.deleted(now - timedelta(days=29), now)["deletedRecords"] == []


def test_get_updated_lists_changed_ids(sandbox: SalesforceSandbox, login: Login) -> None:
    org = sandbox.org("acme")
    org.set_clock(datetime(2026, 12, 2, 8, 0, tzinfo=UTC))
    sf = login(sandbox)  # after the clock moved: a session lives 2 hours of inactivity
    first = org.seed("Contact", {"LastName": "First"})
    org.advance(minutes=30)
    second = sf.Contact.create({"LastName": "Second"})["id"]
    result = sf.Contact.updated(
        datetime(2026, 12, 2, 8, 10, tzinfo=UTC), datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    )
    assert result["ids"] == [second] and first not in result["ids"]
