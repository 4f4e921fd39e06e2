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

from collections.abc import Callable, Iterator
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


ENV = {CLIENT_ID_ENV: "initech-cid", CLIENT_SECRET_ENV: "initech-secret"}


def _project(
    root: Path, sandbox: SalesforceSandbox, edit: Callable[[str], str] | None = None
) -> Path:
    """The project folder: initech on the sandbox's org, its mapping the shipped
    salesforce_partner.yaml (rewritten by ``edit``); returns its dealsync.yaml."""
    text = CONFIG.format(
        notify=NOTIFY, url=sandbox.url, cid=CLIENT_ID_ENV, secret=CLIENT_SECRET_ENV,
        ca=sandbox.ca_file,
    )  # fmt: skip
    config = write_project(root, text)
    if edit is not None:
        mapping = root / "mappings" / "salesforce_partner.yaml"
        before = mapping.read_text()
        mapping.write_text(edit(before))
        assert mapping.read_text() != before, "the edit changed nothing"
    return config


@pytest.fixture
def world(tmp_path: Path, sandbox: SalesforceSandbox) -> Iterator[World]:
    """A fresh org and project; ``dealsync setup`` has created the custom fields."""
    app = Dealsync(load_project(_project(tmp_path, sandbox), env=ENV), env=ENV)
    installed = app.setup()
    assert "Opportunity.dealsync_registration_status__c" in installed["initech"]
    try:
        yield World(app, sandbox.org("initech"))
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
    assert world.opportunity(deal)["StageName"] == "Negotiation/Review"
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


# ----------------------------------------------------------------- check --online


def _online(config: Path) -> list[str]:
    """``dealsync check --online``'s problems about the Salesforce partner's mapping."""
    app = Dealsync(load_project(config, env=ENV), env=ENV)
    try:
        problems = app.online_check().problems
    finally:
        app.close()
    return [
        f"{'error' if p.is_error else 'warning'}: {p.message} | {p.hint}"
        for p in problems
        if p.file.endswith("salesforce_partner.yaml")
    ]


def test_check_online_validates_the_shipped_mapping_against_the_orgs_describe(
    tmp_path: Path, sandbox: SalesforceSandbox
) -> None:
    config = _project(tmp_path, sandbox)
    # before setup: dealsync's own fields are not there yet, which setup would fix
    before = _online(config)
    assert before and all(line.startswith("warning: ") for line in before), before
    assert any("'dealsync_register__c' does not exist yet on Opportunity" in w for w in before)
    app = Dealsync(load_project(config, env=ENV), env=ENV)
    app.setup()
    app.close()
    assert _online(config) == []


def test_check_online_names_a_misspelt_field_and_a_stage_the_picklist_lacks(
    tmp_path: Path, sandbox: SalesforceSandbox
) -> None:
    def broken(text: str) -> str:
        return text.replace("partner: CloseDate", "partner: CloseDat").replace(
            "Closed Won: closedwon", "Closed-Won: closedwon"
        )

    found = _online(_project(tmp_path, sandbox, broken))
    errors = [line for line in found if line.startswith("error: ")]
    assert any(
        "'CloseDat' does not exist on Opportunity" in e and "did you mean 'CloseDate'" in e
        for e in errors
    ), errors
    assert any(
        "value_map names partner stage 'Closed-Won'" in e and "Closed Won" in e for e in errors
    ), errors
