"""SOQL as an adapter's detection runs it: typed filters on SystemModstamp with an id
tie-break, ORDER BY over several fields, nextRecordsUrl paging, and clear refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.sandbox.salesforce import SalesforceSandbox

if TYPE_CHECKING:
    pass


def _seed_contacts(sandbox: SalesforceSandbox, n: int) -> list[str]:
    org = sandbox.org("acme")
    account = org.seed("Account", {"Name": "Acme", "BillingCountry": "DE"})
    return [
        org.seed(
            "Contact",
            {
                "LastName": f"Person {i:04d}",
                "Email": f"p{i}@acme.example",
                "AccountId": account,
                "SystemModstamp": f"2026-11-{1 + i % 20:02d}T10:00:00.000Z",
            },
        )
        for i in range(n)
    ]


def test_query_pages_through_next_records_url_with_batch_size(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    ids = _seed_contacts(sandbox, 450)
    first = sf.query(
        "SELECT Id, LastName FROM Contact ORDER BY LastName",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert first["totalSize"] == 450 and not first["done"] and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert len(second["records"]) == 200 and len(third["records"]) == 50 and third["done"]
    assert "nextRecordsUrl" not in third
    names = [r["LastName"] for page in (first, second, third) for r in page["records"]]
    assert names == sorted(names) and len(set(names)) == 450
    # default batch is 2000: one page; query_all collects every id
    everything = sf.query_all("SELECT Id FROM Contact")
    assert sorted(r["Id"] for r in everything["records"]) == sorted(ids)
    assert sf.query("SELECT Id FROM Contact")["done"] is True
    # a finished cursor is gone
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert err.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_modstamp_window_with_id_tie_break_and_multi_field_order(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    _seed_contacts(sandbox, 60)
    org = sandbox.org("acme")
    rows = org.rows("Contact")
    stamp = "2026-11-05T10:00:00.000+0000"
    same = sorted(r["Id"] for r in rows if r["SystemModstamp"] == stamp)
    pivot = same[0]
    q = (
        "SELECT Id, SystemModstamp FROM Contact "
        "WHERE (SystemModstamp > 2026-11-05T10:00:00Z) OR "
        f"(SystemModstamp = 2026-11-05T10:00:00Z AND Id > '{pivot}') "
        "ORDER BY SystemModstamp ASC, Id ASC LIMIT 1000"
    )
    got = sf.query_all(q)["records"]
    want = sorted(
        (r["SystemModstamp"], r["Id"])
        for r in rows
        if r["SystemModstamp"] > stamp or (r["SystemModstamp"] == stamp and r["Id"] > pivot)
    )
    assert [(r["SystemModstamp"], r["Id"]) for r in got] == want
    desc = sf.query("SELECT Id, LastName FROM Contact ORDER BY SystemModstamp DESC, LastName ASC")
    first = desc["records"][0]
    assert org.record("Contact", first["Id"])["SystemModstamp"].startswith("2026-11-20")  # type: ignore[index]


def test_filters_typed_like_soql(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    org = sandbox.org("acme")
    acc = org.seed("Account", {"Name": "Globex", "Website": "globex.example"})
    org.seed("Opportunity", {"Name": "Big", "StageName": "Closed Won", "CloseDate": "2026-03-01",
                             "Amount": 50000, "AccountId": acc})  # fmt: skip
    org.seed("Opportunity", {"Name": "Small", "StageName": "Prospecting", "CloseDate": "2026-06-01",
                             "Amount": 100})  # fmt: skip
    org.seed("Opportunity", {"Name": "No amount", "StageName": "Qualification",
                             "CloseDate": "2026-07-01"})  # fmt: skip

    def names(where: str) -> list[str]:
        q = f"SELECT Name FROM Opportunity WHERE {where} ORDER BY Name"
        return [r["Name"] for r in sf.query(q)["records"]]

    assert names("IsWon = true") == ["Big"]
    assert names("IsClosed = false AND Amount != null") == ["Small"]
    assert names("Amount = null") == ["No amount"]
    assert names("CloseDate >= 2026-06-01") == ["No amount", "Small"]
    assert names("StageName IN ('Prospecting', 'Closed Won')") == ["Big", "Small"]
    assert names("StageName NOT IN ('Prospecting')") == ["Big", "No amount"]
    assert names("NOT Name LIKE 's%'") == ["Big", "No amount"]
    assert names("name = 'BIG'") == ["Big"]  # string equality ignores case
    assert names(f"AccountId = '{acc[:15]}'") == ["Big"]  # 15-character ids match too
    assert names("Amount > 1000 OR (Amount < 200 AND StageName = 'Prospecting')") == [
        "Big",
        "Small",
    ]
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE Amount > 0")["totalSize"] == 2
    assert [r["Name"] for r in sf.query("SELECT Name FROM Opportunity ORDER BY Amount DESC NULLS LAST")["records"]] == ["Big", "Small", "No amount"]  # fmt: skip


@pytest.mark.parametrize(
    ("soql", "code", "names"),
    [
        ("SELECT Id FORM Contact", "MALFORMED_QUERY", "FORM"),
        ("SELECT Id, Bogus__c FROM Contact", "INVALID_FIELD", "Bogus__c"),
        ("SELECT Id FROM Contact WHERE Emial = 'x'", "INVALID_FIELD", "Emial"),
        ("SELECT Id FROM Contact ORDER BY Nope", "INVALID_FIELD", "Nope"),
        ("SELECT Id FROM Widget", "INVALID_TYPE", "Widget"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > '2026-01-01T00:00:00Z'",
            "INVALID_FIELD",
            "SystemModstamp",
        ),
        (
            "SELECT Id FROM Opportunity WHERE CloseDate > 2026-01-01T00:00:00Z",
            "INVALID_FIELD",
            "CloseDate",
        ),
        ("SELECT Id FROM Contact WHERE LastName = 5", "INVALID_FIELD", "LastName"),
        (
            "SELECT Id FROM Contact WHERE LastName = 'a' AND Email = 'b' OR Id = null",
            "MALFORMED_QUERY",
            "OR",
        ),
        (
            "SELECT Id FROM Contact WHERE Id = 'not-an-id'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "not-an-id",
        ),
        ("SELECT Account.Name FROM Contact", "INVALID_FIELD", "Account.Name"),
    ],
)
def test_malformed_soql_is_refused_naming_the_token(
    sf: Salesforce, soql: str, code: str, names: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query(soql)
    body = err.value.content[0]
    assert body["errorCode"] == code
    assert names in body["message"]
