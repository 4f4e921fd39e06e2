"""The partner program on CRMs that name things otherwise: both portals spell deals,
contacts and companies ``Opportunity``, ``Contact`` and ``Account``, their custom
fields end in ``__c`` (the markers, the contact's language, the program's own fields
on the partner side: :meth:`Naming.custom`). Registration, ownership,
consent and commission work as they do on HubSpot's names, and nothing is written
under HubSpot's names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connector.adapters.local import LocalCRM
from connector.adapters.naming import Naming
from connector.api import Dealsync
from connector.config import load_project
from connector.config.models import PortalConfig
from connector.records import Record
from connector.testing.world import project_yaml, write_project

# HubSpot's names → a Salesforce-like CRM's: its own object names, fields ending in __c
OBJECTS = {"deals": "Opportunity", "contacts": "Contact", "companies": "Account"}
SALESFORCE_LIKE = Naming(
    *("Dealsync_Source_Id__c", "Dealsync_Partner_Id__c"),
    *OBJECTS.values(),
    *("Language__c", "Merged_Ids__c"),
)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Dealsync]:
    """The test project with both portals embedded CRMs named the Salesforce-like way,
    its mappings naming those object types."""

    def objects(text: str) -> str:
        for ours, theirs in OBJECTS.items():
            for side in ("partner_object", "vendor_object"):
                text = text.replace(f"{side}: {ours}\n", f"{side}: {theirs}\n")
        return text

    config = write_project(tmp_path, project_yaml(), mapping_edit=objects, edits_must_change=True)
    project = load_project(config, env={})

    def salesforce_like(name: str, portal: PortalConfig) -> LocalCRM:
        assert portal.path is not None
        return LocalCRM(project.resolve(portal.path), name=name, naming=SALESFORCE_LIKE)

    ds = Dealsync(project, env={}, adapter_factory=salesforce_like)
    try:
        yield ds
    finally:
        ds.close()


def _crm(ds: Dealsync, portal: str) -> LocalCRM:
    crm = ds.vendor() if portal == "vendor" else ds.partner_crm(portal)
    assert isinstance(crm, LocalCRM)
    return crm


def _seed_registered_deal(partner: LocalCRM) -> tuple[Record, Record]:
    """A registered opportunity on globex.com with one contact, in Switzerland, who
    prefers French."""
    account = partner.create("Account", {"name": "Globex", "domain": "globex.com"})
    person = {"firstname": "Ann", "lastname": "Lee", "email": "ann@globex.com"}
    contact = partner.create("Contact", person | {"country": "Switzerland", "Language__c": "fr"})
    deal = partner.create(
        "Opportunity",
        {"dealname": "Globex deal", "amount": "12000", "dealstage": "qualifiedtobuy"}
        | {"pipeline": "default", "deal_currency_code": "EUR", "dealsync_register": "true"},
    )
    partner.associate("Opportunity", "Account", [(deal.id, account.id)])
    partner.associate("Opportunity", "Contact", [(deal.id, contact.id)])
    return deal, contact


def test_the_program_runs_under_the_adapters_names(app: Dealsync) -> None:
    installed = app.setup()
    assert {
        "Opportunity.dealsync_registration_status__c",
        "Contact.dealsync_register_lead__c",
        "Opportunity.dealsync_commission__c",
    } <= set(installed["acme"])
    assert {"Account.dealsync_owner_partner", "Contact.email"} <= set(installed["vendor"])
    assert not [p for ps in installed.values() for p in ps if p.split(".")[0] in OBJECTS]

    partner, vendor = _crm(app, "acme"), _crm(app, "vendor")
    deal, _ = _seed_registered_deal(partner)
    app.sync("acme", now=NOW)

    # registration: accepted, the deal shared under the vendor's marker, the vendor's
    # account owned, the status written back on the partner's opportunity
    [reg] = app.registry.registrations("acme")
    assert (reg.status, reg.partner_object, reg.domain) == ("accepted", "Opportunity", "globex.com")
    [vdeal] = vendor.all("Opportunity")
    assert vdeal.get("Dealsync_Source_Id__c") == f"acme:{deal.id}"
    assert vdeal.get("Dealsync_Partner_Id__c") == "acme"
    [vaccount] = vendor.all("Account")
    assert vaccount.get("dealsync_owner_partner") == "acme"
    assert partner.get("Opportunity", deal.id).get("dealsync_registration_status__c") == "accepted"

    # consent: a Swiss contact gets the consent request at once, in the language her
    # CRM's language field names
    [message] = app.store.outbox.messages(kind="consent_request")
    assert (message.recipient, message.language) == ("ann@globex.com", "fr")

    # commission: the vendor wins the deal; the partner's opportunity shows the earning
    vendor.edit("Opportunity", vdeal.id, {"dealstage": "closedwon"})
    app.sync("acme", now=NOW + timedelta(days=30))
    [earned] = app.registry.commissions("acme")
    assert (earned.vendor_deal_id, earned.partner_deal_id) == (vdeal.id, deal.id)
    assert Decimal(earned.commission) == Decimal("2400.00")
    assert partner.get("Opportunity", deal.id).get("dealsync_commission_status__c") == "earned"

    # nothing under HubSpot's names
    for crm in (partner, vendor):
        for obj in OBJECTS:
            assert crm.all(obj) == []
    for rec in (*vendor.all("Opportunity"), *vendor.all("Account"), *vendor.all("Contact")):
        assert "dealsync_source_id" not in rec.properties
        assert "dealsync_partner_id" not in rec.properties
