"""The Salesforce adapter against the offline Salesforce sandbox, for tests: an adapter
that never sleeps between retries, the conformance kit's backdoor to one sandbox org,
and Salesforce's vocabulary for the kit's checks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.adapters.salesforce import SalesforceAdapter
from connector.adapters.salesforce_associations import Junction, Lookup, relation
from connector.adapters.salesforce_auth import Credentials
from connector.adapters.salesforce_records import text
from connector.adapters.salesforce_soql import api_name, sobject
from connector.testing.adapter_suite import Vocabulary

if TYPE_CHECKING:
    from connector.api import Dealsync
    from connector.sandbox.salesforce import Org, SalesforceSandbox

CLIENT_ID = "cid"
CLIENT_SECRET = "secret"


def _no_sleep(seconds: float) -> None:
    """Retry waits are skipped, not slept."""


def sandbox_adapter(
    sandbox: SalesforceSandbox,
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    name: str = "initech",
    **kwargs: Any,
) -> SalesforceAdapter:
    """A Salesforce adapter logged in to the sandbox by client credentials, verifying
    its TLS with the sandbox's CA; ``kwargs`` go to the adapter (``api_reserve_percent``,
    ``clock``, ``bulk_threshold``...)."""
    creds = Credentials(
        sandbox.url,
        client_id,
        client_secret,
        sources=(
            "DEALSYNC_PARTNER_INITECH_SF_CLIENT_ID",
            "DEALSYNC_PARTNER_INITECH_SF_CLIENT_SECRET",
        ),
    )
    kwargs.setdefault("sleep", _no_sleep)
    kwargs.setdefault("max_wait", 0.01)
    kwargs.setdefault("portal", f"partner {name}")
    return SalesforceAdapter(creds, name=name, ca_bundle=sandbox.ca_file, **kwargs)


def missing_id(rid: str) -> str:
    """An 18-character id of the same object as ``rid`` (its key prefix) that no record
    of the sandbox has, with a valid case-safe suffix."""
    from connector.sandbox.salesforce.schema import id_suffix

    id15 = rid[:3] + "ZZ" + "9" * 10
    return id15 + id_suffix(id15)


SALESFORCE_VOCABULARY = Vocabulary(
    deal={
        "Name": "Conformance deal",
        "Amount": "100",
        "StageName": "Prospecting",
        "CloseDate": "2026-12-31",
    },
    deal_name="Name",
    deal_stage="StageName",
    other_stage="Qualification",
    amount="Amount",
    company=("Name", "Website"),
    email="Email",
    first_name="FirstName",
    contact={"LastName": "Conformance"},
    unique_email=False,
    many=("deals", "contacts"),
    custom=api_name,
    missing=missing_id,
)
"""Salesforce's words: Opportunity's Name/StageName/Amount/CloseDate, Account's
Website, Contact's LastName (required); e-mail is not unique; a deal has many
contacts (OpportunityContactRole) but one company (AccountId)."""


class SalesforceBackdoor:
    """The backdoor to one sandbox org (``SalesforceSandbox.org(name)``): a user's
    edits in Salesforce, and the truth to compare the adapter's answers with."""

    def __init__(self, org: Org) -> None:
        self.org = org

    def seed(self, object_type: str, properties: Mapping[str, str]) -> str:
        return self.org.seed(sobject(object_type), {api_name(k): v for k, v in properties.items()})

    def edit(self, object_type: str, rid: str, properties: Mapping[str, str]) -> None:
        self.org.edit(sobject(object_type), rid, {api_name(k): v for k, v in properties.items()})

    def remove(self, object_type: str, rid: str) -> None:
        self.org.remove(sobject(object_type), rid)

    def properties(self, object_type: str, rid: str) -> dict[str, str | None] | None:
        """A live record's fields as strings; dealsync's custom fields also under
        dealsync's names (``dealsync_source_id`` for ``dealsync_source_id__c``)."""
        row = self.org.record(sobject(object_type), rid)
        if row is None or row.get("IsDeleted"):
            return None
        out = {k: text(v) for k, v in row.items()}
        for k in list(out):
            if k.startswith("dealsync_") and k.endswith("__c"):
                out[k.removesuffix("__c")] = out[k]
        return out

    def live_ids(self, object_type: str) -> set[str]:
        return {str(r["Id"]) for r in self.org.rows(sobject(object_type))}

    def associated(self, from_type: str, rid: str, to_type: str) -> set[str]:
        rel = relation(from_type, to_type)
        if rel is None:
            return set()
        end, how = rel
        live = self.live_ids(to_type)
        if isinstance(how, Lookup):
            if end == "child":
                row = self.org.record(sobject(from_type), rid) or {}
                found = {str(row[how.field])} if row.get(how.field) else set()
            else:
                found = {
                    str(r["Id"])
                    for r in self.org.rows(sobject(how.child))
                    if r.get(how.field) == rid
                }
        else:
            assert isinstance(how, Junction)
            mine, theirs = (
                (how.left_field, how.right_field)
                if end == "left"
                else (how.right_field, how.left_field)
            )
            found = {str(r[theirs]) for r in self.org.rows(how.sobject) if r.get(mine) == rid}
        return found & live

    def property_names(self, object_type: str) -> set[str]:
        return {f.name for f in self.org.sobject(sobject(object_type)).fields}


# ---------------------------------------------------------------- an engine world

PARTNER_ENV = {"SF_ID": CLIENT_ID, "SF_SECRET": CLIENT_SECRET}
"""The environment the Salesforce partner's credentials are read from."""

STAGES = {
    "Prospecting": "appointmentscheduled",
    "Qualification": "qualifiedtobuy",
    "Closed Won": "closedwon",
    "Closed Lost": "closedlost",
}
"""The Opportunity stage picklist values the scenarios map to the vendor's stage ids."""


def sf_mapping(*, on_delete: str = "archive", amount_conflict: str = "newest") -> str:
    """A mapping for partner ``acme`` on Salesforce, the program's hooks off: the
    shared Opportunity (LeadSource "Partner Referral") with its Account (Website as a
    domain) and its contact roles' Contacts; ``on_delete`` and the Amount's conflict
    policy are what the scenarios vary."""
    stages = "".join(f"          {k}: {v}\n" for k, v in STAGES.items())
    return (
        "version: 1\nobjects:\n"
        "  - name: companies\n    partner_object: Account\n    vendor_object: companies\n"
        "    share: {via: deals}\n    fields:\n"
        "      - {partner: Name, vendor: name, direction: both}\n"
        "      - {partner: Website, vendor: domain, direction: both, transform: domain}\n"
        "  - name: contacts\n    partner_object: Contact\n    vendor_object: contacts\n"
        "    share: {via: deals}\n    fields:\n"
        "      - {partner: FirstName, vendor: firstname, direction: both}\n"
        "      - {partner: LastName, vendor: lastname, direction: both}\n"
        "      - {partner: Email, vendor: email, direction: both}\n"
        "  - name: deals\n    partner_object: Opportunity\n    vendor_object: deals\n"
        "    share:\n      partner:\n        - property: LeadSource\n"
        '          equals: "Partner Referral"\n'
        "      vendor:\n        - property: dealsync_partner_id\n          equals: acme\n"
        f"    on_delete: {on_delete}\n    associations: [companies, contacts]\n"
        "    fields:\n"
        "      - {partner: Name, vendor: dealname, direction: both}\n"
        "      - {partner: Amount, vendor: amount, direction: both, transform: decimal,"
        f" conflict: {amount_conflict}}}\n"
        "      - {partner: CloseDate, vendor: closedate, direction: both, transform: date}\n"
        "      - partner: StageName\n        vendor: dealstage\n        direction: both\n"
        "        transform: enum\n        value_map:\n" + stages
    )


def sf_project(tmp_path: Path, sandbox: SalesforceSandbox, mapping: str | None = None) -> Dealsync:
    """A project whose partner ``acme`` is the sandbox's ``initech`` org (client
    credentials, the sandbox's CA) and whose vendor is the embedded local CRM, with
    ``mapping`` (default :func:`sf_mapping`) and no program hooks: the engine alone.
    Opening it again on the same ``tmp_path`` is the same project (a next run)."""
    from connector.api import Dealsync
    from connector.config import load_project
    from connector.testing.world import project_yaml, write_project

    keys = (
        f"    adapter: salesforce\n    login_url: {sandbox.url}\n    client_id_env: SF_ID\n"
        f"    client_secret_env: SF_SECRET\n    ca_bundle: {sandbox.ca_file}\n"
    )
    text = project_yaml().replace("    adapter: local\n    path: partner-acme.db\n", keys)
    text = text.replace(
        "mappings: [mappings/shared_deals.yaml]", "mappings: [mappings/sf_deals.yaml]"
    )
    config = write_project(tmp_path, text)
    target = tmp_path / "mappings" / "sf_deals.yaml"
    if mapping is not None or not target.exists():
        target.write_text(mapping if mapping is not None else sf_mapping())
    return Dealsync(load_project(config, env=PARTNER_ENV), env=PARTNER_ENV, hooks=[])
