"""The partner program for a Salesforce partner, over the real adapter
(``simple-salesforce``) and the offline Salesforce sandbox (issue 20).

initech's org is a Salesforce org in the sandbox; its connection names the shipped
``mappings/salesforce_partner.yaml``; the vendor is an embedded CRM with HubSpot's
names. A partner user's edits are made in the org (the sandbox's backdoor, as the
Salesforce UI would), then real passes run through the public API: a registered
Opportunity is accepted (or rejected with its code), its Account and Contact are
shared, the deal syncs both ways, a German contact gets the consent request at once,
a subscribed partner hears about a demo request at its domain, and a win earns the
commission, written back to the Opportunity's ``__c`` fields."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.records import Record
from connector.sandbox.salesforce import Org, OrgSpec, SalesforceSandbox
from connector.state.leads import set_subscription
from connector.testing.world import write_project

CLIENT_ID_ENV = "DEALSYNC_PARTNER_INITECH_SF_CLIENT_ID"
CLIENT_SECRET_ENV = "DEALSYNC_PARTNER_INITECH_SF_CLIENT_SECRET"
NOTIFY = "deals@initech-partners.example"

CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: local
  path: vendor.db
partners:
  - id: initech
    name: Initech Partners
    notify_email: {notify}
    adapter: salesforce
    login_url: {url}
    client_id_env: {cid}
    client_secret_env: {secret}
    ca_bundle: {ca}
    mappings: [mappings/salesforce_partner.yaml]
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""


@dataclass
class World:
    app: Dealsync
    org: Org

    @property
    def vendor(self) -> LocalCRM:
        crm = self.app.vendor()
        assert isinstance(crm, LocalCRM)
        return crm

    def sync(self) -> None:
        result = self.app.sync("initech")
        assert result.status in ("ok", "conflicts"), (result.status, result.error, result.errors)

    def opportunity(self, rid: str) -> dict[str, object]:
        row = self.org.record("Opportunity", rid)
        assert row is not None
        return row

    def registered_opportunity(
        self, website: str, email: str, country: str, *, stage: str = "Qualification"
    ) -> str:
        """A partner user's Account, Contact and registered Opportunity (the Contact
        in the Opportunity's contact roles)."""
        account = self.org.seed("Account", {"Name": "Umbrella GmbH", "Website": website})
        contact = self.org.seed(
            "Contact",
            {"FirstName": "Ann", "LastName": "Lee", "Email": email}
            | {"MailingCountry": country, "AccountId": account},
        )
        deal = self.org.seed(
            "Opportunity",
            {"Name": "Umbrella platform", "Amount": 12000, "StageName": stage}
            | {"CloseDate": "2027-03-31", "AccountId": account, "dealsync_register__c": "true"},
        )
        self.org.seed("OpportunityContactRole", {"OpportunityId": deal, "ContactId": contact})
        return deal


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox([OrgSpec("initech", "initech-cid", "initech-secret")]) as sf:
        yield sf


@pytest.fixture
def world(tmp_path: Path, sandbox: SalesforceSandbox) -> Iterator[World]:
    """A fresh org and project; ``dealsync setup`` has created the custom fields."""
    org = sandbox.org("initech")
    text = CONFIG.format(
        notify=NOTIFY, url=sandbox.url, cid=CLIENT_ID_ENV, secret=CLIENT_SECRET_ENV,
        ca=sandbox.ca_file,
    )  # fmt: skip
    env = {CLIENT_ID_ENV: "initech-cid", CLIENT_SECRET_ENV: "initech-secret"}
    project = load_project(write_project(tmp_path, text), env=env)
    app = Dealsync(project, env=env)
    installed = app.setup()
    assert "Opportunity.dealsync_registration_status__c" in installed["initech"]
    try:
        yield World(app, org)
    finally:
        app.close()


def _one(records: list[Record]) -> Record:
    assert len(records) == 1, records
    return records[0]


def test_a_registered_opportunity_is_accepted_shared_and_synced_both_ways(world: World) -> None:
    deal = world.registered_opportunity("https://www.umbrella.de/", "ann@umbrella.de", "Germany")
    world.sync()

    [reg] = world.app.registry.registrations("initech")
    assert (reg.status, reg.partner_object, reg.domain) == (
        "accepted",
        "Opportunity",
        "umbrella.de",
    )
    vdeal = _one(world.vendor.all("deals"))
    assert vdeal.get("dealname") == "Umbrella platform"
    assert Decimal(vdeal.get("amount") or "0") == Decimal("12000")
    assert (vdeal.get("closedate"), vdeal.get("dealstage")) == ("2027-03-31", "qualifiedtobuy")
    assert vdeal.get("dealsync_source_id") == f"initech:{deal}"
    vcompany = _one(world.vendor.all("companies"))
    assert (vcompany.get("domain"), vcompany.get("dealsync_owner_partner")) == (
        "umbrella.de",
        "initech",
    )
    vcontact = _one(world.vendor.all("contacts"))
    assert (vcontact.get("email"), vcontact.get("country")) == ("ann@umbrella.de", "Germany")
    row = world.opportunity(deal)
    assert row["dealsync_registration_status__c"] == "accepted"
    assert row["dealsync_owned_until__c"]
    # DACH: the consent request at once, to the contact, never naming the partner
    [request] = world.app.store.outbox.messages(kind="consent_request")
    assert request.recipient == "ann@umbrella.de"
    assert "Initech" not in request.body

    # the vendor moves the stage, the partner the amount: each reaches the other side
    world.vendor.edit("deals", vdeal.id, {"dealstage": "contractsent"})
    world.org.edit("Opportunity", deal, {"Amount": 15000})
    world.sync()
    assert world.opportunity(deal)["StageName"] == "Proposal/Price Quote"
    assert Decimal(world.vendor.get("deals", vdeal.id).get("amount") or "0") == Decimal("15000")
    quiet = world.app.sync("initech")
    assert quiet.summary()["records"] == {"written": 0, "failed": 0}, quiet.counts


def test_rejections_are_written_back_with_their_code(world: World) -> None:
    gmail = world.registered_opportunity("gmail.com", "ann@gmail.com", "US")
    world.vendor.create(
        "companies", {"name": "Hooli", "domain": "hooli.com", "lifecyclestage": "customer"}
    )
    customer = world.registered_opportunity("https://hooli.com", "gavin@hooli.com", "US")
    world.sync()
    codes = {
        rid: (world.opportunity(rid)["dealsync_registration_status__c"],
              world.opportunity(rid)["dealsync_registration_code__c"])
        for rid in (gmail, customer)
    }  # fmt: skip
    assert codes == {
        gmail: ("rejected", "personal_domain"),
        customer: ("rejected", "already_customer"),
    }
    assert world.opportunity(customer)["dealsync_registration_reason__c"]
    assert world.vendor.all("deals") == []  # nothing rejected reaches the vendor


def test_lead_notification_and_commission_on_a_win(world: World) -> None:
    deal = world.registered_opportunity("umbrella.de", "ann@umbrella.de", "Germany")
    world.sync()
    set_subscription(world.app.store, "initech", NOTIFY, True)
    vcontact = _one(world.vendor.all("contacts"))
    world.vendor.record_event("pe_demo_requested", vcontact.id)
    world.sync()
    [note] = world.app.store.outbox.messages(kind="lead_notification")
    assert note.recipient == NOTIFY
    assert "umbrella.de" in note.body and "requested a demo" in note.body
    assert "Ann" not in note.body and "ann@" not in note.body

    vdeal = _one(world.vendor.all("deals"))
    world.vendor.edit("deals", vdeal.id, {"dealstage": "closedwon"})
    world.sync()
    [earned] = world.app.registry.commissions("initech")
    assert (earned.vendor_deal_id, earned.partner_deal_id) == (vdeal.id, deal)
    assert Decimal(earned.commission) == Decimal("2400.00")
    row = world.opportunity(deal)
    assert row["StageName"] == "Closed Won"
    assert row["dealsync_commission_status__c"] == "earned"
    assert Decimal(str(row["dealsync_commission__c"])) == Decimal("2400")
