"""The partner program for a partner whose CRM names its fields otherwise (issue 20).

Next to a HubSpot-style partner (acme, the shipped shared_deals.yaml), globex runs a
CRM spelled the Salesforce way — Opportunity/Account/Contact, StageName, Amount,
CloseDate, Website, Email, MailingCountry, custom fields ending in ``__c`` — with its
own mapping file, the shipped ``mappings/salesforce_partner.yaml``. The vendor keeps
HubSpot's names. Registration, the shared deal's sync both ways, consent, lead
notifications and commission work for globex as they do for acme: the rules read the
partner's fields through its mapping and write the program's fields under its CRM's
names, never under HubSpot's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connector.adapters.local import LocalCRM
from connector.adapters.naming import HUBSPOT_NAMING, Naming
from connector.api import Dealsync
from connector.config import load_project
from connector.config.models import PortalConfig
from connector.engine.values import ValueError_, canonical
from connector.records import Record
from connector.state.leads import set_subscription
from connector.testing.world import project_yaml, write_project

SALESFORCE_STYLE = Naming(
    *("dealsync_source_id__c", "dealsync_partner_id__c"),
    *("Opportunity", "Contact", "Account"),
    *("dealsync_language__c", "dealsync_merged_ids__c"),
)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
GLOBEX_TO = "deals@globex-reseller.example"


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Dealsync]:
    """acme (HubSpot names, the project's mappings) and globex (Salesforce-style names,
    its own mapping file) against one vendor with HubSpot's names."""
    config = project_yaml(("acme", "globex"), notify={"globex": GLOBEX_TO})
    config = config.replace(
        "    path: partner-globex.db\n",
        "    path: partner-globex.db\n    mappings: [mappings/salesforce_partner.yaml]\n",
    )
    assert "salesforce_partner.yaml" in config
    project = load_project(write_project(tmp_path, config), env={})

    def factory(name: str, portal: PortalConfig) -> LocalCRM:
        assert portal.path is not None
        naming = SALESFORCE_STYLE if name == "globex" else HUBSPOT_NAMING
        return LocalCRM(project.resolve(portal.path), name=name, naming=naming)

    ds = Dealsync(project, env={}, adapter_factory=factory)
    try:
        yield ds
    finally:
        ds.close()


@pytest.fixture
def app(bare: Dealsync) -> Dealsync:
    """The project after ``dealsync setup``."""
    bare.setup()
    return bare


def _crm(ds: Dealsync, portal: str) -> LocalCRM:
    crm = ds.vendor() if portal == "vendor" else ds.partner_crm(portal)
    assert isinstance(crm, LocalCRM)
    return crm


def _opportunity(
    partner: LocalCRM, website: str, email: str, country: str, stage: str = "Qualification"
) -> tuple[Record, Record, Record]:
    """A registered opportunity with its account and one contact, Salesforce-style."""
    account = partner.create("Account", {"Name": "Umbrella GmbH", "Website": website})
    contact = partner.create(
        "Contact",
        {"FirstName": "Ann", "LastName": "Lee", "Email": email, "MailingCountry": country},
    )
    deal = partner.create(
        "Opportunity",
        {"Name": "Umbrella platform", "Amount": "12000", "StageName": stage}
        | {"CloseDate": "2027-03-31", "dealsync_register__c": "true"},
    )
    partner.associate("Opportunity", "Account", [(deal.id, account.id)])
    partner.associate("Opportunity", "Contact", [(deal.id, contact.id)])
    return deal, account, contact


def test_setup_names_the_program_fields_the_partner_crms_way(bare: Dealsync) -> None:
    installed = bare.setup()
    assert {
        "Opportunity.dealsync_registration_status__c",
        "Opportunity.dealsync_registration_code__c",
        "Contact.dealsync_register_lead__c",
        "Opportunity.dealsync_commission__c",
    } <= set(installed["globex"])
    assert not [p for p in installed["globex"] if p.endswith(".dealsync_registration_status")]
    assert "deals.dealsync_registration_status" in installed["acme"]


def test_a_registered_opportunity_is_accepted_and_shared_with_hubspot_names(
    app: Dealsync,
) -> None:
    partner, vendor = _crm(app, "globex"), _crm(app, "vendor")
    deal, _, _ = _opportunity(
        partner, "https://www.Umbrella.de/about", "ann@umbrella.de", "Germany"
    )
    result = app.sync("globex", now=NOW)
    assert result.status == "ok", result

    [reg] = app.registry.registrations("globex")
    assert (reg.status, reg.partner_object, reg.domain) == (
        "accepted",
        "Opportunity",
        "umbrella.de",
    )
    assert reg.company_name == "Umbrella GmbH"
    # the shared deal, its company and contact at the vendor, under HubSpot's names
    [vdeal] = vendor.all("deals")
    assert vdeal.get("dealname") == "Umbrella platform"
    assert (vdeal.get("amount"), vdeal.get("closedate")) == ("12000", "2027-03-31")
    assert vdeal.get("dealstage") == "qualifiedtobuy"
    [vcompany] = vendor.all("companies")
    assert vcompany.get("domain") == "umbrella.de"  # the website's host
    assert vcompany.get("dealsync_owner_partner") == "globex"
    [vcontact] = vendor.all("contacts")
    assert (vcontact.get("email"), vcontact.get("country")) == ("ann@umbrella.de", "Germany")
    # the decision written back under the partner CRM's custom-field names
    mine = partner.get("Opportunity", deal.id)
    assert mine.get("dealsync_registration_status__c") == "accepted"
    assert mine.get("dealsync_owned_until__c")
    assert "dealsync_registration_status" not in mine.properties
    # a German lead: the consent request goes at once
    [message] = app.store.outbox.messages(kind="consent_request")
    assert message.recipient == "ann@umbrella.de"

    # both ways: the vendor moves the stage, the partner the amount
    vendor.edit("deals", vdeal.id, {"dealstage": "contractsent"})
    partner.edit("Opportunity", deal.id, {"Amount": "15000"})
    app.sync("globex", now=NOW + timedelta(minutes=10))
    assert partner.get("Opportunity", deal.id).get("StageName") == "Negotiation/Review"
    assert vendor.get("deals", vdeal.id).get("amount") == "15000"
    # and a pass right after writes nothing
    quiet = app.sync("globex", now=NOW + timedelta(minutes=20))
    assert quiet.status == "ok", quiet
    assert quiet.summary()["records"] == {"written": 0, "failed": 0}


def test_rejections_carry_their_code_to_the_opportunity(app: Dealsync) -> None:
    partner, hubspot_style = _crm(app, "globex"), _crm(app, "acme")
    # a personal mailbox domain as the account's website
    gmail, _, _ = _opportunity(partner, "gmail.com", "ann@gmail.com", "US")
    app.sync("globex", now=NOW)
    assert partner.get("Opportunity", gmail.id).get("dealsync_registration_code__c") == (
        "personal_domain"
    )
    # acme (HubSpot names) registers initech.com first; globex's opportunity on it is
    # refused as owned by another partner
    company = hubspot_style.create("companies", {"name": "Initech", "domain": "initech.com"})
    person = {"firstname": "Bob", "lastname": "Porter", "email": "bob@initech.com"}
    contact = hubspot_style.create("contacts", person | {"country": "US"})
    hs_deal = hubspot_style.create(
        "deals",
        {"dealname": "Initech", "amount": "100", "dealstage": "qualifiedtobuy"}
        | {"pipeline": "default", "dealsync_register": "true"},
    )
    hubspot_style.associate("deals", "companies", [(hs_deal.id, company.id)])
    hubspot_style.associate("deals", "contacts", [(hs_deal.id, contact.id)])
    app.sync("acme", now=NOW)
    taken, _, _ = _opportunity(partner, "http://initech.com", "peter@initech.com", "US")
    app.sync("globex", now=NOW + timedelta(minutes=5))
    rejected = partner.get("Opportunity", taken.id)
    assert rejected.get("dealsync_registration_status__c") == "rejected"
    assert rejected.get("dealsync_registration_code__c") == "owned_by_partner"
    assert rejected.get("dealsync_registration_reason__c")
    assert len(_crm(app, "vendor").all("deals")) == 1  # acme's only


def test_a_lead_is_registered_with_its_accounts_name_and_website(app: Dealsync) -> None:
    partner = _crm(app, "globex")
    account = partner.create("Account", {"Name": "Hooli SARL", "Website": "https://hooli.fr/"})
    lead = partner.create(
        "Contact",
        {"FirstName": "Eve", "LastName": "Roth", "Email": "eve@mail.hooli-group.com"}
        | {"MailingCountry": "France", "dealsync_register_lead__c": "true"},
    )
    partner.associate("Contact", "Account", [(lead.id, account.id)])
    app.sync("globex", now=NOW)
    [reg] = app.registry.registrations("globex")
    assert (reg.kind, reg.status, reg.domain) == ("lead", "accepted", "hooli.fr")
    assert reg.company_name == "Hooli SARL"
    assert partner.get("Contact", lead.id).get("dealsync_registration_status__c") == "accepted"
    # a French lead: the notice is due in 30 days, nothing at once
    assert app.store.outbox.messages(kind="consent_request") == []


def test_lead_notification_and_commission_for_the_salesforce_style_partner(
    app: Dealsync,
) -> None:
    partner, vendor = _crm(app, "globex"), _crm(app, "vendor")
    deal, _, _ = _opportunity(partner, "umbrella.de", "ann@umbrella.de", "Germany")
    app.sync("globex", now=NOW)
    set_subscription(app.store, "globex", GLOBEX_TO, True)
    [vcontact] = vendor.all("contacts")
    vendor.record_event("pe_demo_requested", vcontact.id)  # on the vendor CRM's clock
    app.sync("globex", now=NOW + timedelta(hours=2))
    [note] = [m for m in app.store.outbox.messages(kind="lead_notification")]
    assert note.recipient == GLOBEX_TO
    assert "umbrella.de" in note.body and "requested a demo" in note.body
    assert "Ann" not in note.body and "ann@" not in note.body

    # the vendor wins the deal: 20% of the amount, written to the opportunity
    [vdeal] = vendor.all("deals")
    vendor.edit("deals", vdeal.id, {"dealstage": "closedwon"})
    app.sync("globex", now=NOW + timedelta(days=30))
    [earned] = app.registry.commissions("globex")
    assert (earned.vendor_deal_id, earned.partner_deal_id) == (vdeal.id, deal.id)
    assert Decimal(earned.commission) == Decimal("2400.00")
    mine = partner.get("Opportunity", deal.id)
    assert mine.get("StageName") == "Closed Won"
    assert mine.get("dealsync_commission_status__c") == "earned"
    assert Decimal(mine.get("dealsync_commission__c") or "0") == Decimal("2400")


@pytest.mark.parametrize(
    ("website", "host"),
    [
        ("https://www.Umbrella.de/about?x=1", "umbrella.de"),
        ("http://shop.umbrella.co.uk:8080", "shop.umbrella.co.uk"),
        ("//umbrella.de", "umbrella.de"),
        ("UMBRELLA.DE.", "umbrella.de"),
    ],
)
def test_the_domain_transform_reads_a_website_as_its_host(website: str, host: str) -> None:
    assert canonical("domain", website) == host


@pytest.mark.parametrize("website", ["not a website", "localhost", "https:///path"])
def test_the_domain_transform_refuses_what_is_no_website(website: str) -> None:
    with pytest.raises(ValueError_, match="is not a website or domain"):
        canonical("domain", website)


def test_a_contact_the_vendor_enters_again_finds_the_partners_contact(app: Dealsync) -> None:
    """The vendor deletes the shared contact and a vendor user enters it again on the
    deal: the partner's Contact (same Email) is linked again, not doubled."""
    partner, vendor = _crm(app, "globex"), _crm(app, "vendor")
    deal, _, contact = _opportunity(partner, "umbrella.de", "ann@umbrella.de", "US")
    app.sync("globex", now=NOW)
    [old] = vendor.all("contacts")
    [vdeal] = vendor.all("deals")
    vendor.remove("contacts", old.id)
    app.sync("globex", now=NOW + timedelta(minutes=5))
    again = vendor.create("contacts", {"firstname": "Ann", "email": "ann@umbrella.de"})
    vendor.associate("deals", "contacts", [(vdeal.id, again.id)])
    vendor.edit("deals", vdeal.id, {"description": "contact entered again"})
    result = app.sync("globex", now=NOW + timedelta(minutes=10))
    assert result.status in ("ok", "conflicts"), result.errors
    assert [c.id for c in partner.all("Contact")] == [contact.id]
    assert partner.get("Opportunity", deal.id).associations.get("Contact") == (contact.id,)
