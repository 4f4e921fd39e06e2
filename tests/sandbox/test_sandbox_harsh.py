"""The sandbox as harsh as HubSpot where a sync connector breaks (issue 13).

Each scenario puts records in a portal and talks to it the way a client does: the real
``hubspot-api-client`` where it has the call, raw HTTP (``requests``) where it does not
or where the point is the wire (malformed bodies, headers, 404/405), and the real
connector adapter for association paging.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

from connector.adapters.hubspot import HubSpotAdapter
from connector.adapters.ratelimit import PortalLimits, SlidingWindowLimiter
from connector.sandbox import PortalSpec, SandboxServer
from connector.sandbox.store import ASSOC_READ_PAGE

TOKEN = "harsh-token"


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    with SandboxServer(
        [PortalSpec("h", TOKEN, portal_id=5151)], limits=False, search_lag=0
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: SandboxServer) -> HubSpot:
    return HubSpot(access_token=TOKEN, host=srv.url)


def _h() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


# ------------------------------------------------------------------ 3. malformed bodies


def _malformed(deal: str, company: str) -> list[tuple[str, str, bytes]]:
    """(method, path, body) that HubSpot refuses whole, before any business rule."""
    j = json.dumps
    obj = "/crm/v3/objects/deals"
    v4 = "/crm/v4/associations/deals/companies/batch"
    rows: list[tuple[str, str, Any]] = [
        ("POST", obj, b"{not json"),
        ("POST", obj, [1, 2]),
        ("POST", obj, {"properties": ["dealname"]}),
        ("POST", obj, {"properties": "dealname=x"}),
        ("POST", obj, {"properties": {"dealname": {"nested": 1}}}),
        ("POST", obj, {"properties": {"dealname": "x"}, "associations": 5}),
        ("POST", obj, {"properties": {"dealname": "x"}, "associations": [{"to": [company]}]}),
        ("PATCH", f"{obj}/{deal}", {"properties": ["a"]}),
        ("PATCH", f"{obj}/{deal}", {"properties": [5, {"a": 1}]}),
        ("POST", f"{obj}/batch/read", {}),
        ("POST", f"{obj}/batch/read", {"inputs": {"id": deal}}),
        ("POST", f"{obj}/batch/read", {"inputs": [{"id": {"a": 1}}]}),
        ("POST", f"{obj}/batch/read", {"inputs": [{"id": deal}], "properties": 5}),
        ("POST", f"{obj}/batch/read", {"inputs": [{"id": deal}], "properties": "dealname"}),
        ("POST", f"{obj}/batch/read", {"inputs": [{"id": deal}], "idProperty": ["x"]}),
        ("POST", f"{obj}/batch/create", {"inputs": "x"}),
        ("POST", f"{obj}/batch/create", {"inputs": [1, "a"]}),
        ("POST", f"{obj}/batch/create", {"inputs": [{"properties": ["a"]}]}),
        ("POST", f"{obj}/batch/update", {"inputs": [{"id": deal, "properties": [["a", "b"]]}]}),
        ("POST", f"{obj}/batch/update", {"inputs": [{"id": deal, "idProperty": {"a": 1}}]}),
        ("POST", f"{obj}/batch/upsert", {"inputs": [{"id": [deal], "idProperty": "x"}]}),
        ("POST", f"{obj}/batch/archive", {"inputs": [{"id": {"a": 1}}]}),
        ("POST", f"{obj}/search", {"filterGroups": {"filters": []}}),
        ("POST", f"{obj}/search", {"filterGroups": [{"filters": [{"propertyName": ["x"]}]}]}),
        ("POST", f"{obj}/search", {"sorts": [5]}),
        ("POST", f"{obj}/search", {"limit": [1]}),
        ("POST", f"{obj}/search", {"after": {"a": 1}}),
        ("POST", f"{obj}/search", {"properties": [{"a": 1}]}),
        ("POST", f"{v4}/read", {"inputs": [{"id": deal, "after": {"x": 1}}]}),
        ("POST", f"{v4}/read", {"inputs": [{"id": deal, "after": "not-a-cursor"}]}),
        ("POST", f"{v4}/create", {"inputs": [{"from": [deal], "to": {"id": company}}]}),
        ("POST", f"{v4}/create", {"inputs": [{"from": {"id": deal}, "to": 5}]}),
        ("POST", f"{v4}/archive", {"inputs": [{"from": {"id": deal}, "to": {"id": company}}]}),
        ("POST", f"{v4}/associate/default", {"inputs": [{"from": {"id": deal}, "to": [1]}]}),
        (
            "PUT",
            f"/crm/v4/objects/deals/{deal}/associations/companies/{company}",
            [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": {"a": 1}}],
        ),
        ("POST", "/crm/v3/properties/deals", {"name": "p1", "type": "string", "displayOrder": "x"}),
        ("POST", "/crm/v3/properties/deals", {"name": "p2", "type": "string", "groupName": ["g"]}),
        ("POST", "/crm/v3/properties/deals", {"name": "p3", "options": [{"value": {"a": 1}}]}),
        ("PATCH", "/crm/v3/properties/deals/dealname", {"displayOrder": "x"}),
        ("POST", "/events/v3/send", {"eventName": ["x"], "email": "a@example.com"}),
        ("POST", "/events/v3/send/batch", {"inputs": [{"eventName": "e", "properties": [1]}]}),
        ("POST", "/communication-preferences/v3/subscribe", {"emailAddress": ["x"]}),
    ]
    return [(m, p, b if isinstance(b, bytes) else j(b).encode()) for m, p, b in rows]


def test_malformed_bodies_are_400_validation_errors_never_500(srv: SandboxServer) -> None:
    portal = srv.portal("h")
    deal = portal.seed("deals", [{"dealname": "Fuzzed"}])[0]
    company = portal.seed("companies", [{"name": "Fuzz Co"}])[0]
    before = portal.count("deals")
    wrong: list[str] = []
    for method, path, body in _malformed(deal, company):
        r = requests.request(method, srv.url + path, data=body, headers=_h(), timeout=30)
        got = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        ok = (
            r.status_code == 400
            and got.get("status") == "error"
            and got.get("category") == "VALIDATION_ERROR"
            and got.get("message")
            and len(str(got.get("correlationId", ""))) == 36
        )
        if not ok:
            wrong.append(f"{method} {path} {body[:80]!r} -> {r.status_code} {r.text[:120]}")
    assert wrong == []
    # refused whole: nothing was created or changed on the way
    assert portal.count("deals") == before
    assert portal.get("deals", deal)["properties"]["dealname"] == "Fuzzed"
    assert portal.stats()["errors_5xx"] == 0


def test_a_malformed_body_names_the_field_it_could_not_read(srv: SandboxServer) -> None:
    r = requests.post(
        f"{srv.url}/crm/v3/objects/deals/batch/update",
        json={"inputs": [{"id": "1", "properties": {"dealname": "ok"}}, {"id": ["2"]}]},
        headers=_h(),
        timeout=30,
    )
    assert r.status_code == 400
    body = r.json()
    assert "inputs[1].id" in body["message"]
    assert body["context"] == {"field": ["inputs[1].id"]}


def test_property_errors_carry_the_errors_list_and_context(client: HubSpot) -> None:
    from hubspot.crm.deals import ApiException, SimplePublicObjectInputForCreate

    with pytest.raises(ApiException) as exc:
        client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"nope": "x", "amount": "lots"})
        )
    assert exc.value.status == 400
    body = json.loads(exc.value.body)
    assert body["category"] == "VALIDATION_ERROR"
    by_name = {e["context"]["propertyName"][0]: e["code"] for e in body["errors"]}
    assert by_name == {"nope": "PROPERTY_DOESNT_EXIST", "amount": "INVALID_DOUBLE"}
    assert sorted(body["context"]["propertyName"]) == ["amount", "nope"]


# ------------------------------------------------------------------ 4. paging


def test_list_next_link_keeps_limit_properties_and_associations(srv: SandboxServer) -> None:
    portal = srv.portal("h")
    company = portal.seed("companies", [{"name": "Linked"}])[0]
    ids = portal.seed("deals", [{"dealname": f"L{i}", "amount": str(i)} for i in range(5)])
    for did in ids:
        portal.associate("deals", did, "companies", company)
    url = (
        f"{srv.url}/crm/v3/objects/deals?limit=2&properties=dealname,amount"
        "&associations=companies&propertiesWithHistory=amount"
    )
    seen: list[str] = []
    pages = 0
    while url:
        page = requests.get(url, headers=_h(), timeout=30).json()
        pages += 1
        for rec in page["results"]:
            seen.append(rec["id"])
            assert set(rec["properties"]) >= {"dealname", "amount"}
            if rec["id"] in ids:
                assert rec["associations"]["companies"]["results"][0]["id"] == company
                assert (
                    rec["propertiesWithHistory"]["amount"][0]["value"]
                    == rec["properties"]["amount"]
                )
        assert len(page["results"]) <= 2
        nxt = (page.get("paging") or {}).get("next")
        url = nxt["link"] if nxt else ""
        if nxt:
            query = parse_qs(urlparse(url).query)
            assert query["limit"] == ["2"]
            assert query["after"] == [nxt["after"]]
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))
    assert pages >= 3


def test_client_list_pages_keep_properties(srv: SandboxServer, client: HubSpot) -> None:
    """The client's ``get_all`` follows ``after`` itself; pages keep the columns asked for."""
    srv.portal("h").seed(
        "companies", [{"name": f"P{i}", "domain": f"p{i}.example"} for i in range(4)]
    )
    got = client.crm.companies.get_all(properties=["domain"], limit=2)
    assert got and all("domain" in c.properties for c in got)


def _adapter(srv: SandboxServer) -> HubSpotAdapter:
    adapter = HubSpotAdapter(token=TOKEN, host=srv.url, name="harsh")
    adapter.limits = PortalLimits(
        requests=SlidingWindowLimiter(budget=1_000_000, window=10.0),
        search=SlidingWindowLimiter(budget=1_000_000, window=1.0),
    )
    return adapter


def test_association_batch_read_pages_per_input_and_the_adapter_follows(
    srv: SandboxServer, client: HubSpot
) -> None:
    portal = srv.portal("h")
    many = ASSOC_READ_PAGE + 37
    company = portal.seed("companies", [{"name": "Big account"}])[0]
    small = portal.seed("companies", [{"name": "Small account"}])[0]
    deals = portal.seed("deals", [{"dealname": f"D{i}"} for i in range(many)])
    with portal.lock:
        for did in deals:
            portal.associate("companies", company, "deals", did)
        portal.associate("companies", small, "deals", deals[0])

    # the wire: the big input gets one page and a cursor, the small one none
    req = BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[
            PublicFetchAssociationsBatchRequest(id=company),
            PublicFetchAssociationsBatchRequest(id=small),
        ]
    )
    first = client.crm.associations.v4.batch_api.get_page("companies", "deals", req)
    rows = {r._from.id: r for r in first.results}
    assert len(rows[company].to) == ASSOC_READ_PAGE
    assert rows[company].paging.next.after
    assert rows[small].paging is None
    again = client.crm.associations.v4.batch_api.get_page(
        "companies",
        "deals",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[
                PublicFetchAssociationsBatchRequest(
                    id=company, after=rows[company].paging.next.after
                )
            ]
        ),
    )
    assert len(again.results[0].to) == many - ASSOC_READ_PAGE
    assert again.results[0].paging is None

    # the connector: every association, none truncated
    adapter = _adapter(srv)
    got = adapter.read("companies", [company, small], ["name"], associations=["deals"])
    assert got[company].associations["deals"] == tuple(sorted(deals, key=int))
    assert got[small].associations["deals"] == (deals[0],)


# ------------------------------------------------------------------ 5. rate limits

HEADERS = (
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Secondly",
    "X-HubSpot-RateLimit-Secondly-Remaining",
)


@pytest.fixture
def limited(make_server: Callable[..., SandboxServer]) -> SandboxServer:
    return make_server(
        PortalSpec("lim", "lim-token", rate_limit_per_10s=190, daily_limit=4, search_rate_per_s=50)
    )


def test_rate_limit_headers_as_hubspot_sends_a_private_app(limited: SandboxServer) -> None:
    client = HubSpot(access_token="lim-token", host=limited.url)
    _, status, headers = client.crm.deals.basic_api.get_page_with_http_info(limit=1)
    assert status == 200
    got = {h: headers.get(h) for h in HEADERS}
    assert got == {
        "X-HubSpot-RateLimit-Daily": "4",
        "X-HubSpot-RateLimit-Daily-Remaining": "3",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        "X-HubSpot-RateLimit-Max": "190",
        "X-HubSpot-RateLimit-Remaining": "189",
        "X-HubSpot-RateLimit-Secondly": "19",
        "X-HubSpot-RateLimit-Secondly-Remaining": "18",
    }


def test_search_has_no_rate_headers_but_spends_the_daily_quota(limited: SandboxServer) -> None:
    h = {"Authorization": "Bearer lim-token"}
    listed = requests.get(f"{limited.url}/crm/v3/objects/deals", headers=h, timeout=30)
    assert listed.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "3"
    for _ in range(2):
        found = requests.post(
            f"{limited.url}/crm/v3/objects/deals/search", json={}, headers=h, timeout=30
        )
        assert found.status_code == 200
        assert not [k for k in found.headers if k.lower().startswith("x-hubspot-ratelimit")]
    listed = requests.get(f"{limited.url}/crm/v3/objects/deals", headers=h, timeout=30)
    assert listed.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    # the quota is spent: search is refused too, with the daily policy and no headers
    refused = requests.post(
        f"{limited.url}/crm/v3/objects/deals/search", json={}, headers=h, timeout=30
    )
    assert refused.status_code == 429
    assert refused.json()["policyName"] == "DAILY"
    assert not [k for k in refused.headers if k.lower().startswith("x-hubspot-ratelimit")]


def test_429_body_is_exactly_hubspots(make_server: Callable[..., SandboxServer]) -> None:
    srv = make_server(PortalSpec("tiny", "tiny-token", rate_limit_per_10s=1))
    h = {"Authorization": "Bearer tiny-token"}
    assert requests.get(f"{srv.url}/crm/v3/objects/deals", headers=h, timeout=30).ok
    r = requests.get(f"{srv.url}/crm/v3/objects/deals", headers=h, timeout=30)
    assert r.status_code == 429
    body = r.json()
    assert set(body) == {
        "status",
        "message",
        "errorType",
        "correlationId",
        "policyName",
        "requestId",
    }
    assert body["status"] == "error"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."


# ------------------------------------------------------------------ 7. router, history


def test_unknown_paths_are_json_404_and_wrong_methods_405(srv: SandboxServer) -> None:
    for path in ("/crm/v3/nothing-here", "/crm/v3/objects/deals/1/2/3", "/crm/v5/objects/deals"):
        r = requests.get(srv.url + path, headers=_h(), timeout=30)
        assert r.status_code == 404
        body = r.json()
        assert body["status"] == "error"
        assert body["category"] == "OBJECT_NOT_FOUND"
        assert len(body["correlationId"]) == 36
        assert path in body["message"]
    r = requests.put(f"{srv.url}/crm/v3/objects/deals", headers=_h(), timeout=30)
    assert r.status_code == 405
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert r.content == b""


def test_properties_with_history_on_get_list_and_batch_read(
    srv: SandboxServer, client: HubSpot
) -> None:
    portal = srv.portal("h")
    did = portal.create("deals", {"dealname": "v1", "amount": "10"})["id"]
    portal.update("deals", did, {"dealname": "v2"})
    portal.update("deals", did, {"dealname": "v3", "amount": ""})

    one = client.crm.deals.basic_api.get_by_id(
        did, properties=["dealname"], properties_with_history=["dealname", "amount", "nope"]
    )
    names = [v.value for v in one.properties_with_history["dealname"]]
    assert names == ["v3", "v2", "v1"]  # newest first
    assert [v.value for v in one.properties_with_history["amount"]] == ["", "10"]
    assert "nope" not in one.properties_with_history  # unknown names are ignored
    stamps = [v.timestamp for v in one.properties_with_history["dealname"]]
    assert stamps == sorted(stamps, reverse=True)
    assert {v.source_type for v in one.properties_with_history["dealname"]} == {"API"}

    batch = client.crm.deals.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=did)],
            properties=["dealname"],
            properties_with_history=["dealname"],
        )
    )
    assert [v.value for v in batch.results[0].properties_with_history["dealname"]] == [
        "v3",
        "v2",
        "v1",
    ]
    plain = client.crm.deals.basic_api.get_by_id(did)
    assert plain.properties_with_history is None


# ------------------------------------------------------------------ 8. peers (dlt, Airbyte)


def test_properties_v2_schemas_and_owners(srv: SandboxServer, client: HubSpot) -> None:
    v2 = requests.get(f"{srv.url}/properties/v2/deals/properties", headers=_h(), timeout=30)
    assert v2.status_code == 200
    props = {p["name"]: p for p in v2.json()}
    assert isinstance(v2.json(), list)
    stage = props["dealstage"]
    assert stage["type"] == "enumeration" and stage["groupName"]
    assert {"label", "fieldType", "options", "hubspotDefined", "createdAt"} <= set(stage)
    assert stage["options"] and {"label", "value", "displayOrder"} <= set(stage["options"][0])
    assert client.crm.schemas.core_api.get_all().results == []
    raw = requests.get(f"{srv.url}/crm/v3/schemas", headers=_h(), timeout=30)
    assert raw.json() == {"results": []}
    owners = client.crm.owners.owners_api.get_page()
    assert len(owners.results) == 1 and owners.results[0].type == "PERSON"
    assert client.crm.owners.owners_api.get_page(archived=True).results == []


def test_the_endpoints_dlt_reads_in_the_order_it_reads_them(srv: SandboxServer) -> None:
    """dlt's verified HubSpot source: property names per object, then the objects by
    following ``paging.next.link`` only (with associations and their own paging), the
    property history at 50 a page, owners, pipelines and one property's labels."""
    portal = srv.portal("h")
    contact_ids = portal.seed("contacts", [{"email": f"dlt{i}@example.com"} for i in range(3)])
    deal = portal.seed("deals", [{"dealname": "dlt deal", "pipeline": "default"}])[0]
    portal.associate("contacts", contact_ids[0], "deals", deal)
    s = requests.Session()
    s.headers["authorization"] = f"Bearer {TOKEN}"

    def follow(url: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        r = s.get(url, params=params, timeout=30)
        while True:
            assert r.status_code == 200, r.text
            data = r.json()
            out.extend(data["results"])
            nxt = (data.get("paging") or {}).get("next")
            if not nxt:
                return out
            r = s.get(nxt["link"], timeout=30)

    for plural in ("contacts", "companies", "deals"):
        names = [p["name"] for p in follow(f"{srv.url}/crm/v3/properties/{plural}")]
        assert "hs_object_id" in names
        base = f"{srv.url}/crm/v3/objects/{plural}"
        if plural != "deals":
            base += "?associations=deals,products,tickets,quotes"
        rows = follow(base, {"properties": ",".join(sorted(names)), "limit": 2})
        assert len(rows) == portal.count(plural)
        assert all(set(names) <= set(r["properties"]) for r in rows)
        history = follow(base, {"propertiesWithHistory": ",".join(sorted(names)), "limit": 50})
        assert all("propertiesWithHistory" in r for r in history)
    linked = [
        r
        for r in follow(f"{srv.url}/crm/v3/objects/contacts?associations=deals")
        if r["id"] == contact_ids[0]
    ]
    assert linked[0]["associations"]["deals"]["results"][0]["id"] == deal
    assert follow(f"{srv.url}/crm/v3/owners/")
    pipelines = follow(f"{srv.url}/crm/v3/pipelines/deals")
    assert pipelines[0]["stages"]
    label = s.get(f"{srv.url}/crm/v3/properties/deals/dealstage", timeout=30)
    assert label.status_code == 200 and label.json()["options"]
    events = s.get(
        f"{srv.url}/events/v3/events?objectType=contact&objectId={contact_ids[0]}"
        "&occurredAfter=2024-02-10T00%3A00%3A00%2B00%3A00"
        "&occurredBefore=2030-01-01T00%3A00%3A00%2B00%3A00&sort=-occurredAt",
        timeout=30,
    )
    assert events.status_code == 200 and events.json()["results"] == []


def test_batch_read_with_history_takes_at_most_50_inputs(srv: SandboxServer) -> None:
    ids = srv.portal("h").seed("deals", [{"dealname": f"H{i}"} for i in range(51)])
    url = f"{srv.url}/crm/v3/objects/deals/batch/read"
    inputs = [{"id": i} for i in ids]
    refused = requests.post(
        url,
        json={"inputs": inputs, "properties": [], "propertiesWithHistory": ["dealname"]},
        headers=_h(),
        timeout=30,
    )
    assert refused.status_code == 400
    assert "property histories is 50" in refused.json()["message"]
    # without histories (as the connector reads) the usual 100 apply
    plain = requests.post(
        url,
        json={"inputs": inputs, "properties": ["dealname"], "propertiesWithHistory": []},
        headers=_h(),
        timeout=30,
    )
    assert plain.status_code == 200 and len(plain.json()["results"]) == 51


def test_inline_associations_page_past_100_and_the_link_reads_the_rest(
    srv: SandboxServer,
) -> None:
    portal = srv.portal("h")
    company = portal.seed("companies", [{"name": "Many deals"}])[0]
    deals = portal.seed("deals", [{"dealname": f"I{i}"} for i in range(130)])
    with portal.lock:
        for did in deals:
            portal.associate("companies", company, "deals", did)
    got = requests.get(
        f"{srv.url}/crm/v3/objects/companies/{company}?associations=deals", headers=_h(), timeout=30
    ).json()["associations"]["deals"]
    assert len(got["results"]) == 100
    seen = [r["id"] for r in got["results"]]
    page = got
    while (page.get("paging") or {}).get("next"):
        page = requests.get(page["paging"]["next"]["link"], headers=_h(), timeout=30).json()
        seen.extend(r["id"] for r in page["results"])
    assert sorted(seen, key=int) == sorted(deals, key=int)
