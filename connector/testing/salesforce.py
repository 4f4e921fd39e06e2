"""The Salesforce adapter against the offline Salesforce sandbox, for tests: an adapter
that never sleeps between retries, the conformance kit's backdoor to one sandbox org,
and Salesforce's vocabulary for the kit's checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.adapters.salesforce import SalesforceAdapter
from connector.adapters.salesforce_associations import Junction, Lookup, relation
from connector.adapters.salesforce_auth import Credentials
from connector.adapters.salesforce_records import text
from connector.adapters.salesforce_soql import api_name, sobject
from connector.testing.adapter_suite import Vocabulary

if TYPE_CHECKING:
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
