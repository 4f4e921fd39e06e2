"""The engine over a Salesforce partner (the program's hooks off: the sync alone):
an Opportunity registered in Salesforce is shared to the vendor with its Account, a
pass right after writes nothing, a vendor change comes back in Salesforce's words, a
delete in Salesforce archives the vendor's deal,
and a contact the vendor adds is created in Salesforce once even when the pass is
killed right after Salesforce wrote it."""

from __future__ import annotations

from pathlib import Path

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.testing.crash import in_child, kill_me
from connector.testing.salesforce import CLIENT_ID, CLIENT_SECRET, SalesforceBackdoor
from connector.testing.world import project_yaml, write_project
from tests.salesforce.conftest import MakeSandbox

ENV = {"SF_ID": CLIENT_ID, "SF_SECRET": CLIENT_SECRET}
MAPPING = """\
version: 1
objects:
  - name: companies
    partner_object: Account
    vendor_object: companies
    share: {via: deals}
    fields:
      - {partner: Name, vendor: name, direction: both}
      - {partner: Website, vendor: website, direction: both}
  - name: contacts
    partner_object: Contact
    vendor_object: contacts
    share: {via: deals}
    fields:
      - {partner: FirstName, vendor: firstname, direction: both}
      - {partner: LastName, vendor: lastname, direction: both}
      - {partner: Email, vendor: email, direction: both}
  - name: deals
    partner_object: Opportunity
    vendor_object: deals
    share:
      partner:
        - property: LeadSource
          equals: "Partner Referral"
      vendor:
        - property: dealsync_partner_id
          equals: "acme"
    on_delete: archive
    associations: [companies, contacts]
    fields:
      - {partner: Name, vendor: dealname, direction: create_only}
      - {partner: Amount, vendor: amount, direction: both, transform: decimal, conflict: newest}
      - {partner: CloseDate, vendor: closedate, direction: both, transform: date}
      - partner: StageName
        vendor: dealstage
        direction: both
        transform: enum
        value_map:
          Prospecting: appointmentscheduled
          Qualification: qualifiedtobuy
          Closed Won: closedwon
          Closed Lost: closedlost
"""


def _project(tmp_path: Path, url: str, ca_file: str) -> Dealsync:
    keys = (
        f"    adapter: salesforce\n    login_url: {url}\n    client_id_env: SF_ID\n"
        f"    client_secret_env: SF_SECRET\n    ca_bundle: {ca_file}\n"
    )
    text = project_yaml().replace("    adapter: local\n    path: partner-acme.db\n", keys)
    text = text.replace(
        "mappings: [mappings/shared_deals.yaml]", "mappings: [mappings/sf_deals.yaml]"
    )
    config = write_project(tmp_path, text)
    (tmp_path / "mappings" / "sf_deals.yaml").write_text(MAPPING)
    return Dealsync(load_project(config, env=ENV), env=ENV, hooks=[])


def test_a_salesforce_opportunity_is_shared_and_kept_in_sync(
    tmp_path: Path, make_sandbox: MakeSandbox
) -> None:
    sf = make_sandbox()
    crm = SalesforceBackdoor(sf.org("initech"))
    ds = _project(tmp_path, sf.url, sf.ca_file)
    try:
        ds.setup()
        account = crm.seed("companies", {"Name": "Initech", "Website": "https://initech.example"})
        opp = crm.seed(
            "deals",
            {
                "Name": "Initech renewal",
                "StageName": "Prospecting",
                "CloseDate": "2027-01-31",
                "Amount": "2500",
                "LeadSource": "Partner Referral",
                "AccountId": account,
            },
        )
        crm.seed(
            "deals",
            {"Name": "Not registered", "StageName": "Prospecting", "CloseDate": "2027-01-31"},
        )
        first = ds.sync("acme")
        assert first.status == "ok", first.errors
        vendor = ds.vendor()
        assert isinstance(vendor, LocalCRM)
        (deal,) = vendor.all("deals")
        assert (
            deal.get("dealname") == "Initech renewal"
            and deal.get("dealstage") == "appointmentscheduled"
        )
        assert deal.get("amount") == "2500" and deal.get("closedate") == "2027-01-31"
        assert deal.get("dealsync_source_id") == f"acme:{opp}"
        (company,) = vendor.all("companies")
        assert company.get("name") == "Initech" and deal.associations.get("companies") == (
            company.id,
        )

        again = ds.sync("acme")  # no echo: nothing to write on either side
        assert again.status == "ok"
        assert not [k for k in again.api_calls if k.startswith("partner.collection_")], (
            again.api_calls
        )

        vendor.edit("deals", deal.id, {"dealstage": "closedwon", "amount": "3000"})
        assert ds.sync("acme").status == "ok"
        assert (crm.properties("deals", opp) or {})["StageName"] == "Closed Won"
        assert (crm.properties("deals", opp) or {})["Amount"] == "3000"

        # deleted in Salesforce (to the recycle bin): getDeleted finds it, the
        # vendor's deal is archived (on_delete: archive)
        crm.remove("deals", opp)
        gone = ds.sync("acme")
        assert gone.status == "ok", gone.errors
        assert gone.api_calls.get("partner.get_deleted", 0) >= 1
        assert [d.id for d in vendor.all("deals")] == []
    finally:
        ds.close()


def test_a_deal_the_vendor_shares_is_created_in_salesforce_once_though_the_pass_is_killed(
    tmp_path: Path, make_sandbox: MakeSandbox
) -> None:
    """The vendor's sales team shares a deal with the partner; the pass that creates
    its Opportunity is killed right after Salesforce wrote it (before the link was
    committed): the next pass upserts on dealsync_source_id__c and adopts that record."""
    sf = make_sandbox()
    crm = SalesforceBackdoor(sf.org("initech"))
    ds = _project(tmp_path, sf.url, sf.ca_file)
    try:
        ds.setup()
        vendor = ds.vendor()
        assert isinstance(vendor, LocalCRM)
        deal = vendor.create(
            "deals",
            {
                "dealname": "Vendor-led expansion",
                "dealstage": "qualifiedtobuy",
                "closedate": "2027-03-31",
                "amount": "12000",
                "dealsync_partner_id": "acme",
            },
        )
    finally:
        ds.close()

    def killed_pass() -> None:
        mine = _project(tmp_path, sf.url, sf.ca_file)
        mine.sync("acme", crash_at=kill_me("after_write:deals"))

    assert in_child(killed_pass) == 9, "the pass never reached the write"
    rows = crm.org.rows("Opportunity")
    assert [r["dealsync_source_id__c"] for r in rows] == [f"vendor:{deal.id}"]

    ds = _project(tmp_path, sf.url, sf.ca_file)
    try:
        assert ds.sync("acme").status == "ok"
        (opp,) = crm.org.rows("Opportunity")  # adopted, not created twice
        assert opp["Id"] == rows[0]["Id"]
        assert (opp["Name"], opp["StageName"], opp["Amount"]) == (
            "Vendor-led expansion",
            "Qualification",
            12000.0,
        )
        vendor = ds.vendor()
        assert isinstance(vendor, LocalCRM)
        assert ds.sync("acme").status == "ok"
        assert len(crm.org.rows("Opportunity")) == 1
        vendor.edit("deals", deal.id, {"amount": "15000"})
        assert ds.sync("acme").status == "ok"
        assert (crm.properties("deals", opp["Id"]) or {})["Amount"] == "15000"
    finally:
        ds.close()
