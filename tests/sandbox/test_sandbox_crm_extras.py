"""Associations v4, properties, pipelines, web events and communication preferences."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from hubspot import HubSpot
from hubspot.communication_preferences import PublicUpdateSubscriptionStatusRequest
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiArchive,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    BatchResponseLabelsBetweenObjectPair,
    BatchResponsePublicAssociationMultiWithLabel,
    BatchResponsePublicAssociationMultiWithLabelWithErrors,
    PublicAssociationMultiArchive,
    PublicAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)
from hubspot.crm.properties import ApiException as PropApiException
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyUpdate
from hubspot.events.send import (
    BatchedBehavioralEventHttpCompletionRequest,
    BehavioralEventHttpCompletionRequest,
)

from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import DEAL_STAGES

TOKEN = "extras-token"


def _post(srv: SandboxServer, path: str, body: dict[str, object]) -> int:
    """The status of a raw ``POST`` to portal x (what the client library cannot send)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return requests.post(f"{srv.url}{path}", json=body, headers=headers, timeout=5).status_code


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    specs = [
        PortalSpec("x", TOKEN, portal_id=4242),
        PortalSpec("y", "other-token", deal_stages=["s1", "won"]),
    ]
    with SandboxServer(specs, limits=False, search_lag=0) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: SandboxServer) -> HubSpot:
    return HubSpot(access_token=TOKEN, host=srv.url)


def spec(type_id: int) -> AssociationSpec:
    return AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)


def test_associations_single_and_bidirectional(srv: SandboxServer, client: HubSpot) -> None:
    portal = srv.portal("x")
    deal, company = (
        portal.seed("deals", [{"dealname": "A"}])[0],
        portal.seed("companies", [{"name": "C"}])[0],
    )
    v4 = client.crm.associations.v4
    made = v4.basic_api.create("deals", deal, "companies", company, association_spec=[spec(5)])
    assert (
        made.from_object_id == deal and made.to_object_id == company and made.labels == ["Primary"]
    )
    fwd = v4.basic_api.get_page("deals", deal, "companies")
    assert fwd.results[0].to_object_id == company
    assert {t.type_id for t in fwd.results[0].association_types} == {5}
    back = v4.basic_api.get_page("0-2", company, "0-3")
    assert {t.type_id for t in back.results[0].association_types} == {6}
    default = v4.basic_api.create_default("deals", deal, "companies", company)
    assert default.results[0].association_spec.association_type_id == 341
    again = v4.basic_api.get_page("deals", deal, "companies")
    assert {t.type_id for t in again.results[0].association_types} == {5, 341}
    with pytest.raises(Exception) as info:
        v4.basic_api.create("deals", deal, "companies", company, association_spec=[spec(279)])
    assert getattr(info.value, "status", None) == 400
    # v3 reads can inline associations.
    got = client.crm.deals.basic_api.get_by_id(deal, associations=["companies"])
    assert got.associations["companies"].results[0].id == company


def test_associations_batch(srv: SandboxServer, client: HubSpot) -> None:
    portal = srv.portal("x")
    deals = portal.seed("deals", [{"dealname": f"D{i}"} for i in range(3)])
    contacts = portal.seed("contacts", [{"email": f"p{i}@example.com"} for i in range(3)])
    batch = client.crm.associations.v4.batch_api
    inputs = [
        PublicAssociationMultiPost(
            _from=PublicObjectId(id=d), to=PublicObjectId(id=c), types=[spec(3)]
        )
        for d, c in zip(deals[:2], contacts[:2], strict=True)
    ]
    created = batch.create("deals", "contacts", BatchInputPublicAssociationMultiPost(inputs=inputs))
    assert isinstance(created, BatchResponseLabelsBetweenObjectPair) and len(created.results) == 2
    read = batch.get_page(
        "contacts",
        "deals",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=c) for c in contacts[:2]]
        ),
    )
    assert isinstance(read, BatchResponsePublicAssociationMultiWithLabel)
    assert {r._from.id: r.to[0].to_object_id for r in read.results} == {
        contacts[0]: deals[0],
        contacts[1]: deals[1],
    }
    assert read.results[0].to[0].association_types[0].type_id == 4
    partial = batch.get_page(
        "contacts",
        "deals",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=c) for c in contacts]
        ),
    )
    assert isinstance(partial, BatchResponsePublicAssociationMultiWithLabelWithErrors)
    assert partial.num_errors == 1
    batch.archive(
        "deals",
        "contacts",
        BatchInputPublicAssociationMultiArchive(
            inputs=[
                PublicAssociationMultiArchive(
                    _from=PublicObjectId(id=deals[0]), to=[PublicObjectId(id=contacts[0])]
                )
            ]
        ),
    )
    assert portal.associations_of("contacts", contacts[0], "deals") == []
    too_many = {"inputs": [{"id": "1"}] * 1001}
    assert _post(srv, "/crm/v4/associations/deals/contacts/batch/read", too_many) == 400
    too_many_create = {
        "inputs": [
            {
                "from": {"id": deals[0]},
                "to": {"id": contacts[0]},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
            }
        ]
        * 2001
    }
    assert _post(srv, "/crm/v4/associations/deals/contacts/batch/create", too_many_create) == 400


def test_properties_api(client: HubSpot) -> None:
    core = client.crm.properties.core_api
    all_props = {p.name: p for p in core.get_all("deals").results}
    assert all_props["amount"].type == "number"
    assert all_props["hs_lastmodifieddate"].modification_metadata.read_only_value is True
    stage = core.get_by_name("deals", "dealstage")
    assert "closedwon" in {o.value for o in stage.options}
    created = core.create(
        "deals",
        PropertyCreate(
            name="partner_tier",
            label="Partner tier",
            type="enumeration",
            field_type="select",
            group_name="dealinformation",
            options=[
                OptionInput(label="Gold", value="gold", hidden=False, display_order=0),
                OptionInput(label="Silver", value="silver", hidden=False, display_order=1),
            ],
        ),
    )
    assert created.name == "partner_tier" and created.hubspot_defined is False
    with pytest.raises(PropApiException) as info:
        core.create(
            "deals",
            PropertyCreate(
                name="partner_tier",
                label="x",
                type="string",
                field_type="text",
                group_name="dealinformation",
            ),
        )
    assert info.value.status == 409
    unique = core.create(
        "companies",
        PropertyCreate(
            name="ext_id",
            label="Ext",
            type="string",
            field_type="text",
            group_name="companyinformation",
            has_unique_value=True,
        ),
    )
    assert unique.has_unique_value is True
    updated = core.update("deals", "partner_tier", PropertyUpdate(label="Tier"))
    assert updated.label == "Tier"
    groups = client.crm.properties.groups_api.get_all("deals")
    assert "dealinformation" in {g.name for g in groups.results}
    from hubspot.crm.deals import ApiException, SimplePublicObjectInputForCreate

    with pytest.raises(ApiException) as bad:
        client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"partner_tier": "bronze"})
        )
    assert "partner_tier" in json.loads(bad.value.body)["message"]
    ok = client.crm.deals.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"partner_tier": "gold"})
    )
    assert ok.properties["partner_tier"] == "gold"


def test_pipelines_per_portal(srv: SandboxServer, client: HubSpot) -> None:
    pipelines = client.crm.pipelines.pipelines_api.get_all("deals")
    default = pipelines.results[0]
    assert default.id == "default"
    assert [s.id for s in default.stages] == list(DEAL_STAGES)
    won = next(s for s in default.stages if s.id == "closedwon")
    assert won.metadata == {"isClosed": "true", "probability": "1.0"}
    one = client.crm.pipelines.pipelines_api.get_by_id("deals", "default")
    assert one.label == "Sales Pipeline"
    other = HubSpot(access_token="other-token", host=srv.url).crm.pipelines.pipelines_api.get_all(
        "deals"
    )
    assert [s.id for s in other.results[0].stages] == ["s1", "won"]


def test_events_send_and_read(srv: SandboxServer, client: HubSpot) -> None:
    portal = srv.portal("x")
    contact = portal.seed("contacts", [{"email": "lead@example.com", "firstname": "Lee"}])[0]
    send = client.events.send
    send.basic_api.send(
        BehavioralEventHttpCompletionRequest(
            event_name="pe4242_demo_requested",
            email="lead@example.com",
            occurred_at=datetime(2026, 5, 1, 10, 0, tzinfo=UTC),
            properties={"product": "Pro"},
        )
    )
    send.batch_api.send(
        BatchedBehavioralEventHttpCompletionRequest(
            inputs=[
                BehavioralEventHttpCompletionRequest(
                    event_name="pe4242_pricing_viewed",
                    object_id=contact,
                    occurred_at=datetime(2026, 5, 2, tzinfo=UTC),
                ),
                BehavioralEventHttpCompletionRequest(
                    event_name="pe4242_pricing_viewed", email="new@example.com"
                ),
            ]
        )
    )
    events = client.events.events_api.get_page(object_type="contact", object_id=int(contact))
    assert [e.event_type for e in events.results] == [
        "pe4242_pricing_viewed",
        "pe4242_demo_requested",
    ]
    assert events.results[1].properties == {"product": "Pro"}
    assert events.results[1].object_id == contact
    after = client.events.events_api.get_page(
        object_type="contact",
        event_type="pe4242_demo_requested",
        occurred_after=datetime(2026, 4, 30, tzinfo=UTC),
    )
    assert len(after.results) == 1
    none = client.events.events_api.get_page(
        object_type="contact",
        occurred_after=datetime(2026, 6, 1, tzinfo=UTC),
        object_id=int(contact),
    )
    assert none.results == []
    types = client.events.events_api.get_types()
    assert "pe4242_demo_requested" in types.event_types
    # Sending by an unknown email creates the contact, as HubSpot does.
    assert any(c["properties"].get("email") == "new@example.com" for c in portal.all("contacts"))


def test_communication_preferences(client: HubSpot) -> None:
    status_api = client.communication_preferences.status_api
    before = status_api.get_email_status("opt@example.com")
    assert before.recipient == "opt@example.com"
    assert {s.status for s in before.subscription_statuses} == {"NOT_SUBSCRIBED"}
    sub = status_api.subscribe(
        PublicUpdateSubscriptionStatusRequest(
            email_address="opt@example.com",
            subscription_id="1001",
            legal_basis="CONSENT_WITH_NOTICE",
            legal_basis_explanation="form",
        )
    )
    assert sub.status == "SUBSCRIBED" and sub.legal_basis == "CONSENT_WITH_NOTICE"
    after = status_api.get_email_status("opt@example.com")
    assert {s.id: s.status for s in after.subscription_statuses}["1001"] == "SUBSCRIBED"
    from hubspot.communication_preferences import ApiException

    with pytest.raises(ApiException) as info:
        status_api.subscribe(
            PublicUpdateSubscriptionStatusRequest(
                email_address="opt@example.com", subscription_id="1001"
            )
        )
    assert info.value.status == 400
    un = status_api.unsubscribe(
        PublicUpdateSubscriptionStatusRequest(
            email_address="opt@example.com", subscription_id="1001"
        )
    )
    assert un.status == "NOT_SUBSCRIBED"
    defs = client.communication_preferences.definition_api.get_page()
    assert len(defs.subscription_definitions) == 3


def test_subscription_statuses_v4_batch_read_carry_the_change_time(srv: SandboxServer) -> None:
    """``POST /communication-preferences/v4/statuses/batch/read?channel=EMAIL``: each
    status set through the API, with the portal-clock time of its change (what
    consent dates an opt-in by, issue 16); addresses never set answer no statuses."""
    portal = srv.portal("x")
    at = datetime(2027, 2, 13, 10, tzinfo=UTC)
    before = portal.clock
    portal.clock = lambda: at
    try:
        portal.set_subscription("Dated@example.com", "1001", True)
    finally:
        portal.clock = before
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{srv.url}/communication-preferences/v4/statuses/batch/read"
    body = {"inputs": ["dated@example.com", "never@example.com"]}
    answer = requests.post(url, params={"channel": "EMAIL"}, json=body, headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    dated, never = answer.json()["results"]
    [status] = dated["statuses"]
    assert (status["status"], status["subscriptionId"], status["channel"]) == (
        "SUBSCRIBED",
        1001,
        "EMAIL",
    )
    assert datetime.fromisoformat(status["timestamp"].replace("Z", "+00:00")) == at
    assert never == {"subscriberIdString": "never@example.com", "statuses": []}
    no_channel = requests.post(url, json=body, headers=headers, timeout=5)
    assert no_channel.status_code == 400
    too_many = {"inputs": [f"a{i}@example.com" for i in range(101)]}
    assert (
        _post(srv, "/communication-preferences/v4/statuses/batch/read?channel=EMAIL", too_many)
        == 400
    )
