"""Writing as the adapter does: sObject CRUD, upsert on an external id, Collections with
per-record results and allOrNone, custom fields from the Tooling API, and describe."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from connector.sandbox.salesforce import SalesforceSandbox

SOURCE_ID = "dealsync_source_id__c"


def install_source_id(sf: Salesforce, obj: str = "Opportunity") -> dict[str, object]:
    """The adapter's `setup`: an external, unique id field on an object."""
    result: dict[str, object] = sf.toolingexecute(
        "sobjects/CustomField",
        method="POST",
        data={
            "FullName": f"{obj}.{SOURCE_ID}",
            "Metadata": {
                "type": "Text",
                "length": 255,
                "externalId": True,
                "unique": True,
                "label": "dealsync source id",
            },
        },
    )
    return result


def opp(name: str, **extra: object) -> dict[str, object]:
    """A valid Opportunity body."""
    return {"Name": name, "StageName": "Prospecting", "CloseDate": "2026-12-31", **extra}


def test_crud_round_trip_with_system_fields(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Acme GmbH", "Website": "https://acme.example"})
    assert created["success"] is True and created["id"].startswith("001")
    assert len(created["id"]) == 18
    rec = sf.Account.get(created["id"])
    assert rec["Name"] == "Acme GmbH" and rec["IsDeleted"] is False
    assert rec["OwnerId"].startswith("005")
    assert rec["CreatedDate"].endswith("+0000") and len(rec["CreatedDate"]) == 28
    sandbox.org("acme").advance(seconds=5)
    assert sf.Account.update(created["id"], {"BillingCountry": "Germany"}) == 204
    after = sf.Account.get(created["id"], params={"fields": "Id,BillingCountry,SystemModstamp"})
    assert set(after) == {"attributes", "Id", "BillingCountry", "SystemModstamp"}
    assert after["SystemModstamp"] > rec["SystemModstamp"]
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(created["id"])
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Account.update(created["id"], {"Name": "x"})
    assert err.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_opportunity_stage_drives_closed_won_and_validation(sf: Salesforce) -> None:
    won = sf.Opportunity.create(opp("Won deal", StageName="Closed Won", Amount=1200.5))
    rec = sf.Opportunity.get(won["id"])
    assert rec["IsClosed"] is True and rec["IsWon"] is True and rec["Probability"] == 100
    cases = [
        ({"Name": "No stage", "CloseDate": "2026-01-01"}, "REQUIRED_FIELD_MISSING", "StageName"),
        (
            opp("Bad stage", StageName="Won-ish"),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "StageName",
        ),
        (opp("Bad date", CloseDate="31/12/2026"), "JSON_PARSER_ERROR", "CloseDate"),
        (opp("Closed by hand", IsClosed=True), "INVALID_FIELD_FOR_INSERT_UPDATE", "IsClosed"),
        (opp("Unknown", Colour="red"), "INVALID_FIELD", "Colour"),
        (
            opp("Bad account", AccountId="001000000000000"),
            "INVALID_CROSS_REFERENCE_KEY",
            "AccountId",
        ),
        (opp("x" * 121), "STRING_TOO_LONG", "Name"),
    ]
    for body, code, field in cases:
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.Opportunity.create(body)
        error = err.value.content[0]
        assert error["errorCode"] == code, body
        assert field in error.get("fields", []) or field in error["message"], body
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.create({"LastName": "X", "Email": "not-an-email"})
    assert err.value.content[0]["errorCode"] == "INVALID_EMAIL_ADDRESS"


def test_custom_field_install_then_describe_soql_and_upsert(sf: Salesforce) -> None:
    result = install_source_id(sf)
    assert result["success"] is True and str(result["id"]).startswith("00N")
    with pytest.raises(SalesforceMalformedRequest) as dup:
        install_source_id(sf)
    assert dup.value.content[0]["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    field = next(f for f in sf.Opportunity.describe()["fields"] if f["name"] == SOURCE_ID)
    assert field["externalId"] and field["unique"] and field["custom"]
    assert field["type"] == "string" and field["length"] == 255
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.toolingexecute(
            "sobjects/CustomField",
            method="POST",
            data={"FullName": "Opportunity.no_suffix", "Metadata": {"type": "Text"}},
        )
    assert bad.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "__c" in bad.value.content[0]["message"]

    first = sf.Opportunity.upsert(f"{SOURCE_ID}/vendor-1", opp("From vendor"), raw_response=True)
    assert first.status_code == 201 and first.json()["created"] is True
    second = sf.Opportunity.upsert(f"{SOURCE_ID}/vendor-1", {"Amount": 99}, raw_response=True)
    assert second.status_code == 200 and second.json()["created"] is False
    assert second.json()["id"] == first.json()["id"]
    rows = sf.query(f"SELECT Id, Amount FROM Opportunity WHERE {SOURCE_ID} = 'vendor-1'")
    assert rows["totalSize"] == 1 and rows["records"][0]["Amount"] == 99
    by_ext = sf.Opportunity.get_by_custom_id(SOURCE_ID, "vendor-1")
    assert by_ext["Id"] == first.json()["id"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Opportunity.create(opp("Clash", **{SOURCE_ID: "VENDOR-1"}))
    assert err.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunity.upsert("Name/whatever", opp("n"))


def test_upsert_on_a_non_unique_external_id_with_two_matches_is_300(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sf.toolingexecute(
        "sobjects/CustomField",
        method="POST",
        data={
            "FullName": "Account.legacy_key__c",
            "Metadata": {"type": "Text", "length": 40, "externalId": True},
        },
    )
    org = sandbox.org("acme")
    org.seed("Account", {"Name": "One", "legacy_key__c": "k"})
    org.seed("Account", {"Name": "Two", "legacy_key__c": "k"})
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.upsert("legacy_key__c/k", {"Name": "Three"})


def test_collections_give_one_result_per_record(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Good 1"},
        {"attributes": {"type": "Account"}},  # no Name
        {"attributes": {"type": "Account"}, "Name": "Good 2"},
    ]
    results = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
    )
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[1]["errors"][0]["fields"] == ["Name"]
    good = [r["id"] for r in results if r["success"]]

    # allOrNone: one bad record and nothing is written
    before = sandbox.org("acme").count("Account")
    rolled = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert sandbox.org("acme").count("Account") == before
    assert [r["success"] for r in rolled] == [False, False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"

    updates = [
        {"attributes": {"type": "Account"}, "id": good[0], "Industry": "Technology"},
        {"attributes": {"type": "Account"}, "id": "001000000000000AAA", "Industry": "Retail"},
    ]
    upd = sf.restful("composite/sobjects", method="PATCH", json={"records": updates})
    assert upd[0] == {"id": good[0], "success": True, "errors": []}
    assert upd[1]["success"] is False

    got = sf.restful(
        f"composite/sobjects/Account?ids={good[0]},{good[1]},001000000000000AAA&fields=Id,Name,Industry"
    )
    assert [g["Name"] if g else None for g in got] == ["Good 1", "Good 2", None]
    assert got[0]["Industry"] == "Technology"

    deleted = sf.restful(
        f"composite/sobjects?ids={good[0]},{good[0][:15]}x&allOrNone=false", method="DELETE"
    )
    assert deleted[0]["success"] is True and deleted[1]["success"] is False
    assert deleted[1]["errors"][0]["statusCode"] == "MALFORMED_ID"


def test_collection_upsert_reports_created_and_refuses_more_than_200(sf: Salesforce) -> None:
    install_source_id(sf)

    def rec(key: str, name: str) -> dict[str, object]:
        return {"attributes": {"type": "Opportunity"}, SOURCE_ID: key, **opp(name)}

    first = sf.restful(
        f"composite/sobjects/Opportunity/{SOURCE_ID}",
        method="PATCH",
        json={"allOrNone": False, "records": [rec("a", "A"), rec("b", "B")]},
    )
    assert [(r["success"], r["created"]) for r in first] == [(True, True), (True, True)]
    second = sf.restful(
        f"composite/sobjects/Opportunity/{SOURCE_ID}",
        method="PATCH",
        json={"allOrNone": False, "records": [rec("a", "A2"), rec("c", "C"), rec("c", "C")]},
    )
    assert (second[0]["created"], second[0]["id"]) == (False, first[0]["id"])
    assert second[1]["errors"][0]["statusCode"] == "DUPLICATE_EXTERNAL_ID"
    too_many = [rec(f"k{i}", f"N{i}") for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful(
            f"composite/sobjects/Opportunity/{SOURCE_ID}",
            method="PATCH",
            json={"records": too_many},
        )
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})


def test_describe_and_describe_global_list_the_adapters_objects(sf: Salesforce) -> None:
    names = {o["name"]: o["keyPrefix"] for o in sf.describe()["sobjects"]}
    assert names["Account"] == "001" and names["Contact"] == "003"
    assert names["Opportunity"] == "006" and names["OpportunityContactRole"] == "00K"
    fields = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    stage = fields["StageName"]
    assert stage["type"] == "picklist" and stage["restrictedPicklist"] is True
    assert [p["value"] for p in stage["picklistValues"]] == [
        "Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote",
        "Negotiation/Review", "Closed Won", "Closed Lost",
    ]  # fmt: skip
    assert fields["Amount"]["type"] == "currency" and fields["CloseDate"]["type"] == "date"
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["SystemModstamp"]["type"] == "datetime"
    assert fields["IsWon"]["createable"] is False
    role = {f["name"]: f for f in sf.OpportunityContactRole.describe()["fields"]}
    assert (
        role["ContactId"]["referenceTo"] == ["Contact"] and role["IsPrimary"]["type"] == "boolean"
    )
    contact = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    assert (
        contact["Email"]["type"] == "email" and contact["HasOptedOutOfEmail"]["nillable"] is False
    )


def test_account_delete_takes_its_contacts_opportunities_and_roles(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    org = sandbox.org("acme")
    acc = org.seed("Account", {"Name": "Parent"})
    contact = org.seed("Contact", {"LastName": "Kid", "AccountId": acc})
    deal = org.seed("Opportunity", opp("Deal", AccountId=acc))
    role = org.seed("OpportunityContactRole", {"OpportunityId": deal, "ContactId": contact})
    sf.Account.delete(acc)
    for type_name, rid in (
        ("Contact", contact),
        ("Opportunity", deal),
        ("OpportunityContactRole", role),
    ):
        assert org.record(type_name, rid)["IsDeleted"] is True  # type: ignore[index]
