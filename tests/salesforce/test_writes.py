"""Writes to a Salesforce org: sObject Collections of 200 with one result per record,
creates as upserts on the External ID dealsync_source_id__c (so a create repeated
after a kill finds the record the first attempt made), associations through
AccountId and OpportunityContactRole, custom fields through the Tooling API, and the
describe ``check --online`` reads."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from connector.records import PropertySpec
from connector.testing.crash import fork_and_wait
from connector.testing.salesforce import SalesforceBackdoor, sandbox_adapter
from tests.salesforce.conftest import MakeSandbox

DEAL = {"Name": "Initech renewal", "StageName": "Prospecting", "CloseDate": "2027-01-31"}
SOURCE = PropertySpec("Opportunity", "dealsync_source_id__c", "dealsync source id", unique=True)


def _holders(crm: SalesforceBackdoor, key: str) -> list[str]:
    return [
        i
        for i in crm.live_ids("deals")
        if (crm.properties("deals", i) or {}).get("dealsync_source_id__c") == key
    ]


def test_a_create_killed_after_salesforce_wrote_it_is_adopted_on_the_retry(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    crm = SalesforceBackdoor(sf.org("initech"))
    sandbox_adapter(sf).ensure_properties([SOURCE])
    key = "vendor:4242"

    def create_then_die() -> None:
        adapter = sandbox_adapter(sf)

        def kill_on_answer(resp: Any, *args: Any, **kwargs: Any) -> None:
            if resp.request.method == "PATCH" and "/composite/sobjects/Opportunity/" in resp.url:
                os.kill(os.getpid(), signal.SIGKILL)  # the answer is never read

        adapter.session.hooks["response"].append(kill_on_answer)
        adapter.upsert("Opportunity", "dealsync_source_id__c", [(key, DEAL)])

    ended = fork_and_wait(create_then_die)
    assert ended.killed, ended
    (first,) = _holders(crm, key)  # Salesforce had written it
    (again,) = sandbox_adapter(sf).upsert(
        "Opportunity", "dealsync_source_id__c", [(key, {**DEAL, "Amount": "5000"})]
    )
    assert again.ok and again.created is False, again
    assert again.record is not None and again.record.id == first
    assert again.record.get("dealsync_source_id__c") == key
    assert _holders(crm, key) == [first]
    assert (crm.properties("deals", first) or {}).get("Amount") == "5000"


def test_collections_carry_200_records_a_call_and_a_bad_record_fails_alone(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    crm = SalesforceBackdoor(sf.org("initech"))
    adapter = sandbox_adapter(sf)
    adapter.ensure_properties([SOURCE])
    items = [(f"vendor:{i}", {**DEAL, "Name": f"Deal {i}"}) for i in range(450)]
    items[301] = ("vendor:301", {**DEAL, "StageName": "Not a stage"})
    results = adapter.upsert("deals", "dealsync_source_id", items)
    assert [r.key for r in results] == [k for k, _ in items]
    assert adapter.api_calls()["collection_upsert"] == 3
    bad = results[301]
    assert not bad.ok and bad.error and "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in bad.error
    assert all(r.ok and r.created for i, r in enumerate(results) if i != 301)
    assert len(crm.live_ids("deals")) == 449
    assert (
        results[0].record is not None and results[0].record.get("dealsync_source_id") == "vendor:0"
    )
    ids = [r.record.id for r in results if r.record]
    updated = adapter.update("deals", [(rid, {"Amount": "10"}) for rid in ids])
    assert all(r.ok and r.record and r.record.get("Amount") == "10" for r in updated)
    assert adapter.api_calls()["collection_update"] == 3
    archived = adapter.archive("deals", ids[:250])
    assert all(r.ok for r in archived) and adapter.api_calls()["collection_delete"] == 2
    assert len(crm.live_ids("deals")) == 199
    # a delete repeated (its first answer lost) is done, not an error
    again = adapter.archive("deals", ids[:3])
    assert [r.error for r in again] == [None, None, None]


def test_a_deal_has_one_company_and_many_contacts(make_sandbox: MakeSandbox) -> None:
    sf = make_sandbox()
    crm = SalesforceBackdoor(sf.org("initech"))
    adapter = sandbox_adapter(sf)
    deal = crm.seed("deals", DEAL)
    acme = crm.seed("companies", {"Name": "Acme", "Website": "https://acme.example"})
    initech = crm.seed("companies", {"Name": "Initech", "Website": "https://initech.example"})
    bob = crm.seed(
        "contacts", {"LastName": "Porter", "Email": "bob@initech.example", "AccountId": initech}
    )
    ann = crm.seed("contacts", {"LastName": "Lumbergh", "Email": "ann@initech.example"})
    # AccountId holds one company: associating another replaces it
    assert all(
        r.ok for r in adapter.associate("deals", "companies", [(deal, acme), (deal, initech)])
    )
    assert crm.associated("deals", deal, "companies") == {initech}
    for _ in range(2):  # contact roles are created once
        assert all(r.ok for r in adapter.associate("deals", "contacts", [(deal, bob), (deal, ann)]))
    assert len(crm.org.rows("OpportunityContactRole")) == 2
    assert set(adapter.read("deals", [deal, "12345", "not an id"], ["Name"])) == {deal}
    before = adapter.api_calls().get("assoc_read", 0)
    got = adapter.read("deals", [deal], ["Name"], associations=["companies", "contacts"])
    assert got[deal].associations == {
        "companies": (initech,),
        "contacts": tuple(sorted([ann, bob])),
    }
    # the company comes with the deal's own AccountId: one query, for the contact roles
    assert adapter.api_calls()["assoc_read"] - before == 1
    assert got[deal].properties == {"Name": "Initech renewal"}
    window = {
        r.id: r for r in adapter.changed_since("deals", None, ["Name"], associations=["companies"])
    }
    assert window[deal].associations == {"companies": (initech,)}
    assert adapter.api_calls()["assoc_read"] - before == 1
    back = adapter.read("companies", [initech], ["Name"], associations=["deals", "contacts"])
    assert back[initech].associations == {"deals": (deal,), "contacts": (bob,)}
    assert adapter.read("contacts", [bob], [], associations=["companies", "deals"])[
        bob
    ].associations == {
        "companies": (initech,),
        "deals": (deal,),
    }


def test_setup_creates_external_id_fields_and_the_describe_tells_types_and_stages(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    crm = SalesforceBackdoor(sf.org("initech"))
    adapter = sandbox_adapter(sf)
    specs = [
        PropertySpec("Opportunity", "dealsync_source_id", "dealsync source id", unique=True),
        PropertySpec("Opportunity", "dealsync_partner_id", "dealsync partner"),
        PropertySpec("Contact", "dealsync_language", "Preferred language"),
        PropertySpec("Opportunity", "dealsync_registered_on", "Registered on", type="date"),
    ]
    created = adapter.ensure_properties(specs)
    assert created == [f"{s.object_type}.{s.name}" for s in specs]
    assert adapter.ensure_properties(specs) == []
    assert {"dealsync_source_id__c", "dealsync_partner_id__c", "dealsync_registered_on__c"} <= (
        crm.property_names("deals")
    )
    schema = adapter.object_schema("Opportunity")
    assert schema.properties["Amount"].type == "number"
    assert schema.properties["CloseDate"].type == "date"
    assert schema.properties["dealsync_registered_on__c"].type == "date"
    assert schema.properties["StageName"].type == "enumeration"
    assert schema.properties["SystemModstamp"].read_only
    (pipeline,) = schema.pipelines
    assert ("Closed Won", "Closed Won") in pipeline.stages and (
        "Prospecting",
        "Prospecting",
    ) in pipeline.stages
    # the unique field is an External ID: an upsert on it works, a second holder is refused
    (made,) = adapter.upsert("deals", "dealsync_source_id", [("vendor:1", DEAL)])
    assert made.ok and made.created
    other = crm.seed("deals", DEAL)
    (clash,) = adapter.update("deals", [(other, {"dealsync_source_id": "vendor:1"})])
    assert not clash.ok and made.record is not None and clash.existing_id == made.record.id


def test_a_create_that_is_no_upsert_is_not_sent_twice_after_a_dropped_answer(
    make_sandbox: MakeSandbox,
) -> None:
    """A contact role is a plain create (no External ID): when its answer is lost it
    is not sent again within the pass (it may have been made); the association fails
    for now and the next pass finds the role there, or creates it."""
    import requests

    from connector.adapters.salesforce_errors import GaveUp

    sf = make_sandbox()
    adapter = sandbox_adapter(sf, max_attempts=4)
    sends = {"idempotent": 0, "create": 0}

    def dropped(kind: str) -> Callable[[object], None]:
        def send(client: object) -> None:
            sends[kind] += 1
            raise requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected")

        return send

    with pytest.raises(GaveUp):
        adapter._call("collection_update", dropped("idempotent"))
    with pytest.raises(GaveUp, match="not repeated"):
        adapter._call("collection_create", dropped("create"), repeat=False)
    assert sends == {"idempotent": 4, "create": 1}
