"""Search semantics and HubSpot's search limits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.deals import PublicObjectSearchRequest

from connector.sandbox import PortalSpec, SandboxServer

TOKEN = "search-token"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    with SandboxServer([PortalSpec("s", TOKEN)], limits=False, search_lag=0) as server:
        portal = server.portal("s")
        rows = [
            {
                "dealname": "Acme renewal",
                "amount": "100",
                "dealstage": "closedwon",
                "description": "big deal",
            },
            {"dealname": "acme expansion", "amount": "250.5", "dealstage": "qualifiedtobuy"},
            {
                "dealname": "Globex new",
                "amount": "9",
                "dealstage": "qualifiedtobuy",
                "description": "small-deal pilot",
            },
            {"dealname": "Initech", "dealstage": "closedlost"},
            {"dealname": "Umbrella", "amount": "1000", "dealstage": "contractsent"},
        ]
        for i, row in enumerate(rows):
            portal.clock = lambda i=i: T0 + timedelta(days=i)  # type: ignore[misc]
            portal.seed("deals", [row])
        portal.clock = lambda: datetime.now(UTC)
        yield server


@pytest.fixture(scope="module")
def client(srv: SandboxServer) -> HubSpot:
    return HubSpot(access_token=TOKEN, host=srv.url)


def search(
    client: HubSpot,
    *filters: dict[str, Any],
    groups: list[list[dict[str, Any]]] | None = None,
    **kw: Any,
) -> Any:
    fg = (
        [{"filters": list(g)} for g in groups]
        if groups
        else ([{"filters": list(filters)}] if filters else [])
    )
    return client.crm.deals.search_api.do_search(PublicObjectSearchRequest(filter_groups=fg, **kw))


def names(client: HubSpot, *filters: dict[str, Any], **kw: Any) -> list[str]:
    kw.setdefault("limit", 100)
    kw.setdefault("sorts", ["dealname"])
    return [r.properties["dealname"] for r in search(client, *filters, **kw).results]


def f(prop: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    out = {"propertyName": prop, "operator": op, **extra}
    if value is not None:
        out["value"] = value
    return out


def ms(dt: datetime) -> str:
    return str(int(dt.timestamp() * 1000))


@pytest.mark.parametrize(
    "flt, expected",
    [
        (f("dealname", "EQ", "ACME RENEWAL"), ["Acme renewal"]),
        (
            f("dealname", "NEQ", "initech"),
            ["Acme renewal", "acme expansion", "Globex new", "Umbrella"],
        ),
        (f("amount", "LT", "100"), ["Globex new"]),
        (f("amount", "LTE", "100"), ["Acme renewal", "Globex new"]),
        (f("amount", "GT", "100"), ["acme expansion", "Umbrella"]),
        (f("amount", "GTE", "250.5"), ["acme expansion", "Umbrella"]),
        (f("amount", "BETWEEN", "9", highValue="100"), ["Acme renewal", "Globex new"]),
        (f("dealstage", "IN", values=["closedwon", "closedlost"]), ["Acme renewal", "Initech"]),
        (
            f("dealstage", "NOT_IN", values=["qualifiedtobuy"]),
            ["Acme renewal", "Initech", "Umbrella"],
        ),
        (f("amount", "HAS_PROPERTY"), ["Acme renewal", "acme expansion", "Globex new", "Umbrella"]),
        (f("amount", "NOT_HAS_PROPERTY"), ["Initech"]),
        (f("dealname", "CONTAINS_TOKEN", "acme"), ["Acme renewal", "acme expansion"]),
        (f("dealname", "CONTAINS_TOKEN", "glob*"), ["Globex new"]),
        (f("description", "CONTAINS_TOKEN", "pilot"), ["Globex new"]),
        (f("dealname", "NOT_CONTAINS_TOKEN", "acme"), ["Globex new", "Initech", "Umbrella"]),
    ],
)
def test_operators(client: HubSpot, flt: dict[str, Any], expected: list[str]) -> None:
    assert sorted(names(client, flt), key=str.lower) == sorted(expected, key=str.lower)


def test_datetime_filters_accept_epoch_ms_and_iso(client: HubSpot) -> None:
    since = T0 + timedelta(days=3)
    by_ms = names(client, f("hs_lastmodifieddate", "GTE", ms(since)))
    by_iso = names(client, f("createdate", "GTE", "2026-03-04T00:00:00Z"))
    assert by_ms == by_iso == ["Initech", "Umbrella"]
    window = names(
        client,
        f(
            "hs_lastmodifieddate",
            "BETWEEN",
            ms(T0 + timedelta(days=1)),
            highValue=ms(T0 + timedelta(days=2)),
        ),
    )
    assert window == ["acme expansion", "Globex new"]


def test_filter_groups_are_ored(client: HubSpot) -> None:
    res = names(
        client,
        groups=[
            [f("dealname", "EQ", "Initech")],
            [f("amount", "GT", "500"), f("dealstage", "EQ", "contractsent")],
        ],
    )
    assert res == ["Initech", "Umbrella"]


def test_sorting_and_numeric_order(client: HubSpot) -> None:
    asc = search(client, sorts=[{"propertyName": "amount", "direction": "ASCENDING"}], limit=10)
    assert [r.properties["amount"] for r in asc.results] == ["9", "100", "250.5", "1000", None]
    desc = search(
        client, sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}], limit=10
    )
    assert desc.results[0].properties["dealname"] == "Umbrella"


def test_returned_properties(client: HubSpot) -> None:
    res = search(client, f("dealname", "EQ", "Initech"), properties=["description"])
    assert set(res.results[0].properties) == {
        "description",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    default = search(client, f("dealname", "EQ", "Initech"))
    assert "dealstage" in default.results[0].properties


def test_paging_with_offsets(client: HubSpot) -> None:
    seen: list[str] = []
    after: str | None = None
    while True:
        page = search(client, sorts=["hs_object_id"], limit=2, after=after)
        assert page.total == 5
        seen.extend(r.id for r in page.results)
        if not page.paging:
            break
        after = page.paging.next.after
    assert len(seen) == 5 and len(set(seen)) == 5


def _raw(srv: SandboxServer, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{srv.url}/crm/v3/objects/deals/search",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"limit": 201},
        {"filterGroups": [{"filters": [f("amount", "HAS_PROPERTY")]}] * 6},
        {"filterGroups": [{"filters": [f("amount", "HAS_PROPERTY")] * 7}]},
        {"sorts": ["amount", "dealname"]},
        {"filterGroups": [{"filters": [f("nope", "EQ", "1")]}]},
        {"filterGroups": [{"filters": [f("amount", "LIKE", "1")]}]},
        {"after": "9950", "limit": 100},
        # HubSpot takes at most 100 values in one IN filter
        {
            "filterGroups": [
                {"filters": [{**f("dealname", "IN"), "values": [str(i) for i in range(101)]}]}
            ]
        },
    ],
)
def test_search_limits_are_400(srv: SandboxServer, body: dict[str, Any]) -> None:
    r = _raw(srv, body)
    assert r.status_code == 400, r.text
    assert r.json()["category"] == "VALIDATION_ERROR"
    assert "X-HubSpot-RateLimit-Max" not in r.headers


def test_200_page_size_allowed(srv: SandboxServer) -> None:
    assert _raw(srv, {"limit": 200}).status_code == 200


def test_ten_thousand_cap(make_server: Callable[..., SandboxServer]) -> None:
    big = make_server(PortalSpec("big", "big-token"), limits=False)
    portal = big.portal("big")
    portal.seed(
        "contacts", ({"firstname": f"n{i}", "email": f"c{i}@example.com"} for i in range(12_000))
    )
    client = HubSpot(access_token="big-token", host=big.url)
    after: str | None = None
    got = 0
    from hubspot.crm.contacts import ApiException as CApiException
    from hubspot.crm.contacts import PublicObjectSearchRequest as CReq

    with pytest.raises(CApiException) as info:
        while True:
            page = client.crm.contacts.search_api.do_search(
                CReq(
                    filter_groups=[],
                    sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                    limit=200,
                    after=after,
                    properties=["email"],
                )
            )
            assert page.total == 12_000
            got += len(page.results)
            assert page.paging is not None
            after = page.paging.next.after
    assert got == 10_000
    assert info.value.status == 400
    assert json.loads(info.value.body)["category"] == "VALIDATION_ERROR"
    # (how fast the sandbox pages is for scripts/bench.py; a loaded machine must pass)


def test_search_over_20k_with_varying_filters(make_server: Callable[..., SandboxServer]) -> None:
    big = make_server(PortalSpec("perf", "perf-token"), limits=False)
    portal = big.portal("perf")
    portal.seed("deals", ({"dealname": f"d{i}", "amount": str(i)} for i in range(20_000)))
    body = {
        "filterGroups": [
            {"filters": [f("hs_lastmodifieddate", "GTE", "0"), f("amount", "GTE", "100")]}
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "limit": 200,
        "after": "5000",
    }
    for i in range(5):  # a different filter each time, so no cached result is reused
        body["filterGroups"][0]["filters"][1]["value"] = str(100 - i)
        out = portal.search("deals", body)
        assert out["total"] == 19_900 + i and len(out["results"]) == 200
    # (speed is measured by scripts/bench.py, never asserted in tests)
