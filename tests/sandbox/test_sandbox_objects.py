"""CRM object endpoints through the real hubspot-api-client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.deals import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    BatchResponseSimplePublicObject,
    BatchResponseSimplePublicObjectWithErrors,
    BatchResponseSimplePublicUpsertObject,
    PublicObjectSearchRequest,
    SimplePublicObject,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import PropertyCreate

from connector.sandbox import SandboxServer

VENDOR = "vendor-token"


def _batch_create_partner_deal_ids(client: HubSpot, *ids: str) -> Any:
    """One batch create of deals carrying these ``partner_deal_id`` values."""
    inputs = [SimplePublicObjectBatchInputForCreate(properties={"partner_deal_id": i}) for i in ids]
    return client.crm.deals.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    )


def _create(client: HubSpot, **props: str) -> SimplePublicObject:
    return client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties=props))


def _err(exc: ApiException) -> dict:
    return json.loads(exc.body)


def _search_ids(client: HubSpot, prop: str, value: str) -> list[str]:
    req = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}],
        limit=100,
    )
    return [r.id for r in client.crm.deals.search_api.do_search(req).results]


def test_create_returns_201_object(client: HubSpot) -> None:
    deal = _create(client, dealname="Alpha", amount="1500.00")
    assert isinstance(deal, SimplePublicObject)
    assert deal.id.isdigit()
    assert deal.properties["dealname"] == "Alpha"
    assert deal.properties["amount"] == "1500.00"
    assert deal.properties["hs_object_id"] == deal.id
    assert deal.properties["hs_lastmodifieddate"].endswith("Z")
    assert deal.created_at == deal.updated_at


def test_get_returns_requested_plus_system_properties(client: HubSpot) -> None:
    deal = _create(client, dealname="Beta", amount="10", description="hello")
    got = client.crm.deals.basic_api.get_by_id(deal.id, properties=["description", "nope"])
    assert set(got.properties) == {
        "description",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    default = client.crm.deals.basic_api.get_by_id(deal.id)
    assert {"dealname", "amount", "dealstage", "pipeline", "closedate"} <= set(default.properties)
    assert default.properties["closedate"] is None


def test_get_missing_is_404_object_not_found(client: HubSpot) -> None:
    with pytest.raises(ApiException) as info:
        client.crm.deals.basic_api.get_by_id("999999999")
    assert info.value.status == 404
    assert _err(info.value)["category"] == "OBJECT_NOT_FOUND"


def test_update_moves_modification_time_only_on_change(
    server: SandboxServer, client: HubSpot
) -> None:
    portal = server.portal("vendor")
    t0 = datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    portal.clock = lambda: t0
    try:
        deal = _create(client, dealname="Gamma")
        assert deal.properties["hs_lastmodifieddate"] == "2026-01-01T12:00:00.123Z"
        portal.clock = lambda: t0 + timedelta(hours=1)
        upd = client.crm.deals.basic_api.update(
            deal.id, SimplePublicObjectInput(properties={"dealname": "Gamma 2"})
        )
        assert upd.properties["hs_lastmodifieddate"] == "2026-01-01T13:00:00.123Z"
        assert upd.updated_at == datetime(2026, 1, 1, 13, 0, 0, 123000, tzinfo=UTC)
        portal.clock = lambda: t0 + timedelta(hours=2)
        same = client.crm.deals.basic_api.update(
            deal.id, SimplePublicObjectInput(properties={"dealname": "Gamma 2"})
        )
        assert same.properties["hs_lastmodifieddate"] == "2026-01-01T13:00:00.123Z"
    finally:
        portal.clock = lambda: datetime.now(UTC)


def test_empty_string_clears(client: HubSpot) -> None:
    deal = _create(client, dealname="Clear me", description="x")
    client.crm.deals.basic_api.update(
        deal.id, SimplePublicObjectInput(properties={"description": ""})
    )
    got = client.crm.deals.basic_api.get_by_id(deal.id, properties=["description"])
    assert got.properties["description"] is None


def test_archive_keeps_modification_time_and_hides_from_search(
    server: SandboxServer, client: HubSpot
) -> None:
    deal = _create(client, dealname="ArchiveMe-1")
    before = client.crm.deals.basic_api.get_by_id(deal.id).properties["hs_lastmodifieddate"]
    assert _search_ids(client, "dealname", "ArchiveMe-1") == [deal.id]
    client.crm.deals.basic_api.archive(deal.id)
    assert _search_ids(client, "dealname", "ArchiveMe-1") == []
    with pytest.raises(ApiException) as info:
        client.crm.deals.basic_api.get_by_id(deal.id)
    assert info.value.status == 404
    archived = client.crm.deals.get_all(archived=True, properties=["hs_lastmodifieddate"])
    match = [o for o in archived if o.id == deal.id]
    assert len(match) == 1
    assert match[0].archived is True and match[0].archived_at is not None
    assert match[0].properties["hs_lastmodifieddate"] == before
    live = client.crm.deals.get_all()
    assert deal.id not in {o.id for o in live}
    assert server.portal("vendor").get("deals", deal.id)["archived"] is True


def test_unknown_property_rejected(client: HubSpot) -> None:
    with pytest.raises(ApiException) as info:
        _create(client, dealname="x", foo="1")
    assert info.value.status == 400
    body = _err(info.value)
    assert body["category"] == "VALIDATION_ERROR"
    # HubSpot's message embeds the property errors as JSON; errors[] has them readable
    prefix = "Property values were not valid: "
    assert body["message"].startswith(prefix)
    embedded = json.loads(body["message"][len(prefix) :])
    assert embedded[0]["isValid"] is False and embedded[0]["name"] == "foo"
    assert embedded[0]["error"] == "PROPERTY_DOESNT_EXIST"
    assert body["errors"][0]["message"] == 'Property "foo" does not exist'
    assert body["correlationId"]


@pytest.mark.parametrize(
    "props, fragment",
    [
        ({"amount": "lots"}, "amount"),
        ({"dealstage": "nosuchstage"}, "dealstage"),
        ({"pipeline": "nope"}, "pipeline"),
        ({"deal_currency_code": "XXX"}, "deal_currency_code"),
        ({"closedate": "yesterday"}, "closedate"),
        ({"hs_object_id": "5"}, "read-only"),
        ({"hs_lastmodifieddate": "1700000000000"}, "read-only"),
    ],
)
def test_invalid_values_rejected(client: HubSpot, props: dict[str, str], fragment: str) -> None:
    with pytest.raises(ApiException) as info:
        _create(client, dealname="bad", **props)
    assert info.value.status == 400
    assert fragment in _err(info.value)["message"]


def test_dealstage_must_belong_to_pipeline(
    server: SandboxServer, client: HubSpot, partner_client: HubSpot
) -> None:
    deal = _create(client, dealname="Staged", pipeline="default", dealstage="qualifiedtobuy")
    assert deal.properties["dealstage"] == "qualifiedtobuy"
    # The partner portal has its own stage ids.
    with pytest.raises(ApiException):
        partner_client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"dealstage": "qualifiedtobuy"})
        )
    ok = partner_client.crm.deals.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"dealstage": "working"})
    )
    assert ok.properties["pipeline"] == "default"
    server.portal("vendor").add_pipeline(
        "partners", "Partner deals", ["registered", "accepted", "closedwon", "closedlost"]
    )
    with pytest.raises(ApiException):
        client.crm.deals.basic_api.update(
            deal.id, SimplePublicObjectInput(properties={"pipeline": "partners"})
        )
    moved = client.crm.deals.basic_api.update(
        deal.id,
        SimplePublicObjectInput(properties={"pipeline": "partners", "dealstage": "registered"}),
    )
    assert moved.properties["dealstage"] == "registered"


def test_datetime_and_date_values(client: HubSpot) -> None:
    ms = 1767225600000 + 3_723_456  # 2026-01-01T01:02:03.456Z
    deal = _create(client, dealname="Dates", closedate=str(ms))
    assert deal.properties["closedate"] == "2026-01-01T01:02:03.456Z"
    deal2 = _create(client, dealname="Dates2", closedate="2026-02-03T04:05:06+01:00")
    assert deal2.properties["closedate"] == "2026-02-03T03:05:06.000Z"
    client.crm.properties.core_api.create(
        "deals",
        PropertyCreate(
            name="registered_on",
            label="Registered on",
            type="date",
            field_type="date",
            group_name="dealinformation",
        ),
    )
    d = _create(client, dealname="D", registered_on="1767225600000")
    assert d.properties["registered_on"] == "2026-01-01"
    d = _create(client, dealname="D", registered_on="2026-03-04")
    assert d.properties["registered_on"] == "2026-03-04"
    with pytest.raises(ApiException) as info:
        _create(client, dealname="D", registered_on=str(1767225600000 + 1000))
    assert "midnight" in _err(info.value)["message"]


def test_batch_create_100_ok_and_101_rejected(client: HubSpot) -> None:
    inputs = [
        SimplePublicObjectBatchInputForCreate(properties={"dealname": f"B{i}"}) for i in range(100)
    ]
    res = client.crm.deals.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    )
    assert isinstance(res, BatchResponseSimplePublicObject)
    assert res.status == "COMPLETE" and len(res.results) == 100
    assert res.started_at is not None and res.completed_at is not None
    inputs.append(SimplePublicObjectBatchInputForCreate(properties={"dealname": "B100"}))
    with pytest.raises(ApiException) as info:
        client.crm.deals.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
        )
    assert info.value.status == 400
    assert _err(info.value)["category"] == "VALIDATION_ERROR"


def test_batch_create_partial_failure_is_207_only_with_trace_ids(
    server: SandboxServer, client: HubSpot
) -> None:
    before = server.portal("vendor").count("deals")
    untraced = [
        SimplePublicObjectBatchInputForCreate(properties={"dealname": "P-ok-1"}),
        SimplePublicObjectBatchInputForCreate(
            properties={"dealname": "P-bad", "amount": "NaNa"}, object_write_trace_id="t-1"
        ),
        SimplePublicObjectBatchInputForCreate(properties={"dealname": "P-ok-2"}),
    ]
    # not every input traced: the batch fails whole, nothing is created
    with pytest.raises(ApiException) as info:
        client.crm.deals.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(inputs=untraced)
        )
    assert info.value.status == 400
    body = _err(info.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: [")
    assert "amount" in body["errors"][0]["message"]
    assert server.portal("vendor").count("deals") == before
    inputs = [
        SimplePublicObjectBatchInputForCreate(
            properties={"dealname": "P-ok-1"}, object_write_trace_id="t-0"
        ),
        SimplePublicObjectBatchInputForCreate(
            properties={"dealname": "P-bad", "amount": "NaNa"}, object_write_trace_id="t-1"
        ),
        SimplePublicObjectBatchInputForCreate(
            properties={"dealname": "P-ok-2"}, object_write_trace_id="t-2"
        ),
    ]
    res = client.crm.deals.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    )
    assert isinstance(res, BatchResponseSimplePublicObjectWithErrors)
    assert res.num_errors == 1 and len(res.errors) == 1
    err = res.errors[0]
    assert err.status == "error" and err.category == "VALIDATION_ERROR"
    assert err.context["index"] == ["1"] and err.context["objectWriteTraceId"] == ["t-1"]
    assert sorted(r.properties["dealname"] for r in res.results) == ["P-ok-1", "P-ok-2"]


def test_batch_read_update_archive(client: HubSpot) -> None:
    ids = [_create(client, dealname=f"R{i}", amount=str(i)).id for i in range(3)]
    read = client.crm.deals.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids],
            properties=["amount"],
            properties_with_history=[],
        )
    )
    assert isinstance(read, BatchResponseSimplePublicObject)
    assert sorted(r.properties["amount"] for r in read.results) == ["0", "1", "2"]
    missing = client.crm.deals.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=ids[0]), SimplePublicObjectId(id="424242")],
            properties=["amount"],
            properties_with_history=[],
        )
    )
    assert isinstance(missing, BatchResponseSimplePublicObjectWithErrors)
    assert missing.errors[0].context["id"] == ["424242"]
    upd = client.crm.deals.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[SimplePublicObjectBatchInput(id=i, properties={"amount": "99"}) for i in ids]
        )
    )
    assert isinstance(upd, BatchResponseSimplePublicObject)
    assert {r.properties["amount"] for r in upd.results} == {"99"}
    # one unknown id fails the whole batch: nothing is written
    with pytest.raises(ApiException) as info:
        client.crm.deals.batch_api.update(
            BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    SimplePublicObjectBatchInput(id=ids[0], properties={"amount": "1"}),
                    SimplePublicObjectBatchInput(id="777", properties={"amount": "1"}),
                ]
            )
        )
    assert info.value.status == 404
    assert _err(info.value)["context"]["id"] == ["777"]
    assert (
        client.crm.deals.basic_api.get_by_id(ids[0], properties=["amount"]).properties["amount"]
        == "99"
    )
    client.crm.deals.batch_api.archive(
        BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in ids])
    )
    again = client.crm.deals.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids],
            properties=["amount"],
            properties_with_history=[],
        )
    )
    assert again.num_errors == 3


def test_batch_upsert_on_unique_property(client: HubSpot) -> None:
    client.crm.properties.core_api.create(
        "deals",
        PropertyCreate(
            name="partner_deal_id",
            label="Partner deal id",
            type="string",
            field_type="text",
            group_name="dealinformation",
            has_unique_value=True,
        ),
    )
    body = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            SimplePublicObjectBatchInputUpsert(
                id="P-1", id_property="partner_deal_id", properties={"dealname": "Up 1"}
            )
        ]
    )
    first = client.crm.deals.batch_api.upsert(body)
    assert isinstance(first, BatchResponseSimplePublicUpsertObject)
    assert first.results[0].new is True
    assert first.results[0].properties["partner_deal_id"] == "P-1"
    body.inputs[0].properties = {"dealname": "Up 1 renamed"}
    second = client.crm.deals.batch_api.upsert(body)
    assert second.results[0].new is False
    assert second.results[0].id == first.results[0].id
    assert second.results[0].properties["dealname"] == "Up 1 renamed"
    # idProperty lookups on single-object endpoints.
    got = client.crm.deals.basic_api.get_by_id(
        "P-1", id_property="partner_deal_id", properties=["dealname"]
    )
    assert got.id == first.results[0].id
    # Unique values are enforced: a duplicate is a 409 CONFLICT.
    with pytest.raises(ApiException) as info:
        _create(client, dealname="dup", partner_deal_id="P-1")
    assert info.value.status == 409
    assert _err(info.value)["category"] == "CONFLICT"
    # In a batch (without trace ids), a duplicate fails the whole batch with 409 naming
    # the record that has the value; nothing is created.
    with pytest.raises(ApiException) as info:
        _batch_create_partner_deal_ids(client, "P-2", "P-1")
    assert info.value.status == 409
    assert f"Existing ID: {first.results[0].id}" in _err(info.value)["message"]
    listed = client.crm.deals.basic_api.get_page(limit=100, properties=["partner_deal_id"])
    assert all(d.properties.get("partner_deal_id") != "P-2" for d in listed.results)
    # two inputs giving one unique value: refused whole too
    with pytest.raises(ApiException) as info:
        _batch_create_partner_deal_ids(client, "P-3", "P-3")
    assert info.value.status == 400
    # Upsert on a non-unique property refuses the batch (400).
    with pytest.raises(ApiException) as info:
        client.crm.deals.batch_api.upsert(
            BatchInputSimplePublicObjectBatchInputUpsert(
                inputs=[
                    SimplePublicObjectBatchInputUpsert(
                        id="x", id_property="dealname", properties={}
                    )
                ]
            )
        )
    assert info.value.status == 400
    assert "non-unique" in _err(info.value)["message"]


def test_contacts_email_is_unique_and_upsertable(client: HubSpot) -> None:
    from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInputUpsert as CUpsert
    from hubspot.crm.contacts import SimplePublicObjectBatchInputUpsert as CInput

    res = client.crm.contacts.batch_api.upsert(
        CUpsert(
            inputs=[
                CInput(id="ann@example.com", id_property="email", properties={"firstname": "Ann"})
            ]
        )
    )
    assert res.results[0].new is True
    assert res.results[0].properties["lastmodifieddate"]
    res2 = client.crm.contacts.batch_api.upsert(
        CUpsert(
            inputs=[
                CInput(id="ANN@example.com", id_property="email", properties={"lastname": "Lee"})
            ]
        )
    )
    assert res2.results[0].new is False


def test_list_paging_and_object_type_ids(server: SandboxServer) -> None:
    portal = server.portal("vendor")
    ids = portal.seed(
        "companies", [{"name": f"Co {i}", "domain": f"co{i}.example"} for i in range(25)]
    )
    client = HubSpot(access_token=VENDOR, host=server.url)
    page = client.crm.companies.basic_api.get_page(limit=10, properties=["domain"])
    assert len(page.results) == 10 and page.paging.next.after
    everything = client.crm.companies.get_all(properties=["domain"])
    assert [o.id for o in everything] == ids
    r = requests.get(
        f"{server.url}/crm/v3/objects/0-2",
        params={"limit": 101},
        headers={"Authorization": f"Bearer {VENDOR}"},
        timeout=5,
    )
    assert r.status_code == 400
    r = requests.get(
        f"{server.url}/crm/v3/objects/0-2/{ids[0]}",
        headers={"Authorization": f"Bearer {VENDOR}"},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["properties"]["name"] == "Co 0"


def test_inspection_helpers(server: SandboxServer, client: HubSpot) -> None:
    portal = server.portal("vendor")
    deal = _create(client, dealname="Inspect")
    assert portal.get("deals", deal.id)["properties"]["dealname"] == "Inspect"
    assert any(d["id"] == deal.id for d in portal.all("deals"))
    assert any(c["kind"] == "create" for c in portal.calls)
