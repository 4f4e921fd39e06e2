"""The sandbox's own pieces without HTTP: Salesforce's case-safe id suffix, SOQL paging
as a property (every record once, in order, whatever the batch), and the rollback of
an allOrNone call."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.sandbox.salesforce import OrgSpec
from connector.sandbox.salesforce.schema import id_suffix, to_id18
from connector.sandbox.salesforce.store import Org


def test_id_suffix_matches_salesforce_examples() -> None:
    # the documented 15 → 18 conversion: one character per 5-character chunk
    assert "001A0000006Vm9r" + id_suffix("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert to_id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert to_id18("001A0000006Vm9riac") == "001A0000006Vm9rIAC"  # suffix case ignored
    assert to_id18("001A0000006Vm9rIAD") is None  # check characters that do not match
    assert to_id18("not an id") is None


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=900),
    batch=st.integers(min_value=200, max_value=2000),
    descending=st.booleans(),
)
def test_paging_returns_every_record_once_in_order(n: int, batch: int, descending: bool) -> None:
    org = Org(OrgSpec("acme", "c", "s"))
    for i in range(n):
        org.seed("Contact", {"LastName": f"N{(i * 7919) % 1000:04d}"})
    order = "DESC" if descending else "ASC"
    page, nxt = org.query(
        f"SELECT Id, LastName FROM Contact ORDER BY LastName {order}, Id", False, batch
    )
    rows = list(page["records"])
    assert page["totalSize"] == n
    while nxt is not None:
        page, nxt, _ = org.query_more(nxt)
        assert len(page["records"]) <= batch
        rows.extend(page["records"])
    assert len(rows) == n and len({r["Id"] for r in rows}) == n
    keys = [(r["LastName"], r["Id"]) for r in rows]
    names = [k[0] for k in keys]
    assert names == sorted(names, reverse=descending)


def test_rollback_restores_records_bin_and_unique_index() -> None:
    org = Org(OrgSpec("acme", "c", "s"))
    org.add_custom_field("Account.key__c", {"type": "Text", "unique": True, "externalId": True})
    kept = org.seed("Account", {"Name": "Kept", "key__c": "k1"})
    with org.transaction() as tx:
        org.delete("Account", kept)
        org.create("Account", {"Name": "New", "key__c": "k2"})
        tx.rollback()
    assert [r["Name"] for r in org.rows("Account")] == ["Kept"]
    assert org.find_by("Account", "key__c", "K1") == [kept]
    assert org.find_by("Account", "key__c", "k2") == []
    assert org.deleted_at == {}
