"""A large first sync through Bulk API 2.0 with simple-salesforce's ``sf.bulk2``: a
query job, then CSV pages chained by Sforce-Locator."""

from __future__ import annotations

import csv
import io

from simple_salesforce import Salesforce

from connector.sandbox.salesforce import SalesforceSandbox


def test_bulk2_query_pages_csv_with_locators(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    org = sandbox.org("acme")
    acc = org.seed("Account", {"Name": "Acme"})
    for i in range(250):
        org.seed(
            "Opportunity",
            {"Name": f"Deal {i}", "StageName": "Closed Won" if i % 2 else "Prospecting",
             "CloseDate": "2026-12-31", "Amount": i * 10, "AccountId": acc},
        )  # fmt: skip
    pages = list(
        sf.bulk2.Opportunity.query(
            "SELECT Id, Name, IsWon, Amount, SystemModstamp FROM Opportunity WHERE Amount >= 100",
            max_records=100,
            wait=0,  # the job is complete on its first status read
        )
    )
    assert len(pages) == 3  # 240 rows in pages of 100
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == 240
    assert {r["IsWon"] for r in rows} == {"true", "false"}
    assert rows[0]["SystemModstamp"].endswith("Z")
    assert sorted(r["Id"] for r in rows) == sorted(
        r["Id"] for r in org.rows("Opportunity") if r["Amount"] >= 100
    )
    assert org.calls["bulk2_create"] == 1 and org.calls["bulk2_results"] == 3
