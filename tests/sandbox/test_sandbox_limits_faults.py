"""Rate limits, fault injection, auth, portal isolation, admin endpoints, persistence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import urllib3
from hubspot import HubSpot
from hubspot.crm.deals import (
    ApiException,
    PublicObjectSearchRequest,
    SimplePublicObjectInputForCreate,
)

from connector.sandbox import (
    ApiError,
    FaultSpec,
    PortalSpec,
    SandboxServer,
    parse_faults,
    parse_portal,
)

MakeServer = Callable[..., SandboxServer]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sixty_deal_lists(srv: SandboxServer) -> list[int]:
    """The statuses of 60 deal listings on portal f (whose faults are the subject)."""
    url = f"{srv.url}/crm/v3/objects/deals"
    return [requests.get(url, headers=auth("f-token"), timeout=5).status_code for _ in range(60)]


def test_rate_limit_headers_and_429(make_server: MakeServer) -> None:
    srv = make_server(PortalSpec("rl", "rl-token", rate_limit_per_10s=20))
    client = HubSpot(access_token="rl-token", host=srv.url)
    first = requests.get(f"{srv.url}/crm/v3/objects/deals", headers=auth("rl-token"), timeout=5)
    assert first.status_code == 200
    assert first.headers["X-HubSpot-RateLimit-Max"] == "20"
    assert first.headers["X-HubSpot-RateLimit-Remaining"] == "19"
    assert first.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert int(first.headers["X-HubSpot-RateLimit-Daily-Remaining"]) > 0
    assert "X-HubSpot-RateLimit-Daily" in first.headers
    for _ in range(19):
        client.crm.deals.basic_api.get_page(limit=1)
    with pytest.raises(ApiException) as info:
        client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"dealname": "x"})
        )
    assert info.value.status == 429
    body = json.loads(info.value.body)
    assert body["status"] == "error"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["correlationId"]
    assert info.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert srv.portal("rl").count("deals") == 0  # rejected before being applied
    stats = srv.stats("rl")
    assert stats["rate_limited"] == 1 and stats["total"] == 21
    assert stats["by_kind"] == {"list": 20, "create": 1}
    # Admin endpoints are never limited.
    assert (
        requests.get(f"{srv.url}/_sandbox/stats", headers=auth("rl-token"), timeout=5).status_code
        == 200
    )
    srv.reset_stats()
    assert srv.stats("rl")["total"] == 0
    assert (
        requests.get(
            f"{srv.url}/crm/v3/objects/deals", headers=auth("rl-token"), timeout=5
        ).status_code
        == 200
    )


def test_search_limit_is_separate_and_headerless(make_server: MakeServer) -> None:
    srv = make_server(PortalSpec("sl", "sl-token", rate_limit_per_10s=100, search_rate_per_s=2))
    url = f"{srv.url}/crm/v3/objects/deals/search"
    answers = [requests.post(url, json={}, headers=auth("sl-token"), timeout=5) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "X-HubSpot-RateLimit-Max" not in answers[0].headers
    assert answers[2].json()["policyName"] == "SECONDLY"
    # The 10-second budget is untouched by searches.
    r = requests.get(f"{srv.url}/crm/v3/objects/deals", headers=auth("sl-token"), timeout=5)
    assert r.headers["X-HubSpot-RateLimit-Remaining"] == "99"
    time.sleep(1.05)  # the bucket refills at 2 tokens per second
    assert requests.post(url, json={}, headers=auth("sl-token"), timeout=5).status_code == 200
    client = HubSpot(access_token="sl-token", host=srv.url)
    client.crm.deals.search_api.do_search(PublicObjectSearchRequest(filter_groups=[]))
    with pytest.raises(ApiException) as info:
        client.crm.deals.search_api.do_search(PublicObjectSearchRequest(filter_groups=[]))
    assert info.value.status == 429
    assert srv.stats("sl")["by_kind"]["search"] == 6


def test_daily_limit(make_server: MakeServer) -> None:
    srv = make_server(PortalSpec("d", "d-token", daily_limit=3))
    codes = [
        requests.get(f"{srv.url}/crm/v3/objects/deals", headers=auth("d-token"), timeout=5)
        for _ in range(4)
    ]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert codes[2].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert codes[3].json()["policyName"] == "DAILY"


def test_injected_5xx(make_server: MakeServer) -> None:
    srv = make_server(
        PortalSpec("f", "f-token", faults=FaultSpec(error_rate=1.0, status_choices=(502,))),
        limits=False,
    )
    client = HubSpot(access_token="f-token", host=srv.url)
    with pytest.raises(ApiException) as info:
        client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"dealname": "x"})
        )
    assert info.value.status == 502
    body = json.loads(info.value.body)
    assert body["status"] == "error" and body["correlationId"]
    assert srv.portal("f").count("deals") == 0  # the fault hit before the write
    srv.portal("f").set_faults(FaultSpec(error_rate=0.3, seed=7))
    codes = _sixty_deal_lists(srv)
    failures = sum(c >= 500 for c in codes)
    assert 8 <= failures <= 30
    assert all(c in (200, 500, 502, 503, 504) for c in codes)
    # Same seed, same sequence.
    srv.portal("f").set_faults(FaultSpec(error_rate=0.3, seed=7))
    again = _sixty_deal_lists(srv)
    assert again == codes
    assert srv.stats("f")["errors_5xx"] == 1 + 2 * failures


def test_429_storm_with_retry_after(make_server: MakeServer) -> None:
    srv = make_server(
        PortalSpec(
            "st", "st-token", faults=FaultSpec(storm_429_rate=0.2, storm_429_length=4, seed=3)
        ),
        limits=False,
    )
    answers = [
        requests.get(f"{srv.url}/crm/v3/objects/deals", headers=auth("st-token"), timeout=5)
        for _ in range(40)
    ]
    codes = [a.status_code for a in answers]
    start = codes.index(429)
    assert codes[start : start + 4] == [429] * 4
    storm = answers[start]
    assert storm.headers["Retry-After"] == "1"
    assert storm.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert 200 in codes


def test_dropped_connection_and_latency(make_server: MakeServer) -> None:
    srv = make_server(PortalSpec("dr", "dr-token", faults=FaultSpec(drop_rate=1.0)), limits=False)
    client = HubSpot(access_token="dr-token", host=srv.url)
    with pytest.raises((urllib3.exceptions.ProtocolError, urllib3.exceptions.MaxRetryError)):
        client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"dealname": "x"})
        )
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{srv.url}/crm/v3/objects/deals", headers=auth("dr-token"), timeout=5)
    assert srv.stats("dr")["dropped"] >= 2
    assert srv.portal("dr").count("deals") == 0
    # Faults never touch the admin endpoints; the admin endpoint can switch them off.
    r = requests.post(
        f"{srv.url}/_sandbox/faults", json={"latency_ms": 150}, headers=auth("dr-token"), timeout=5
    )
    assert r.status_code == 200 and r.json()["drop_rate"] == 0.0
    started = time.monotonic()
    assert (
        requests.get(
            f"{srv.url}/crm/v3/objects/deals", headers=auth("dr-token"), timeout=5
        ).status_code
        == 200
    )
    assert time.monotonic() - started >= 0.15
    bad = requests.post(
        f"{srv.url}/_sandbox/faults", json={"bogus": 1}, headers=auth("dr-token"), timeout=5
    )
    assert bad.status_code == 400


def test_unknown_token_is_401(make_server: MakeServer) -> None:
    srv = make_server(PortalSpec("a", "a-token"), limits=False)
    client = HubSpot(access_token="wrong", host=srv.url)
    with pytest.raises(ApiException) as info:
        client.crm.deals.basic_api.get_page()
    assert info.value.status == 401
    body = json.loads(info.value.body)
    assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
    assert requests.get(f"{srv.url}/crm/v3/objects/deals", timeout=5).status_code == 401


def test_portals_isolated_by_token(make_server: MakeServer) -> None:
    srv = make_server(
        PortalSpec("vendor", "v-token"), PortalSpec("partner", "p-token"), limits=False
    )
    vendor = HubSpot(access_token="v-token", host=srv.url)
    partner = HubSpot(access_token="p-token", host=srv.url)
    deal = vendor.crm.deals.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"dealname": "mine"})
    )
    assert partner.crm.deals.get_all() == []
    with pytest.raises(ApiException):
        partner.crm.deals.basic_api.get_by_id(deal.id)
    assert srv.portal("vendor").count("deals") == 1 and srv.portal("partner").count("deals") == 0
    assert srv.stats("partner")["total"] == 2 and srv.stats("vendor")["total"] == 1


def test_admin_seed_stats_reset(make_server: MakeServer) -> None:
    srv = make_server(PortalSpec("ad", "ad-token", rate_limit_per_10s=5))
    body = {
        "deals": [{"dealname": f"s{i}"} for i in range(50)],
        "0-1": [{"email": "a@example.com"}],
    }
    r = requests.post(f"{srv.url}/_sandbox/seed", json=body, headers=auth("ad-token"), timeout=5)
    assert r.status_code == 200
    assert len(r.json()["deals"]) == 50 and len(r.json()["0-1"]) == 1
    bad = requests.post(
        f"{srv.url}/_sandbox/seed",
        json={"deals": [{"nope": "1"}]},
        headers=auth("ad-token"),
        timeout=5,
    )
    assert bad.status_code == 400
    requests.get(f"{srv.url}/crm/v3/objects/deals", headers=auth("ad-token"), timeout=5)
    stats = requests.get(f"{srv.url}/_sandbox/stats", headers=auth("ad-token"), timeout=5).json()
    assert stats["total"] == 1 and stats["by_kind"] == {"list": 1}
    reset = requests.post(
        f"{srv.url}/_sandbox/reset-stats", headers=auth("ad-token"), timeout=5
    ).json()
    assert reset["total"] == 0


def test_parse_faults_and_portal() -> None:
    spec = parse_faults("5xx=0.2,429=0.1,latency=50,drop=0.05,seed=7")
    assert spec == FaultSpec(
        error_rate=0.2, storm_429_rate=0.1, latency_ms=50, drop_rate=0.05, seed=7
    )
    assert parse_faults("") == FaultSpec()
    assert parse_faults("storm_len=3,status=500/503").status_choices == (500, 503)
    for bad in ("5xx=2", "foo=1", "5xx", "latency=abc", "status=404"):
        with pytest.raises(ValueError):
            parse_faults(bad)
    assert parse_portal("vendor:vendor-token") == ("vendor", "vendor-token")
    for bad in ("vendor", ":tok", "vendor:", "a:b c"):
        with pytest.raises(ValueError):
            parse_portal(bad)


def test_data_file_persistence(tmp_path: Path) -> None:
    data = tmp_path / "sandbox.json"
    spec = [PortalSpec("p", "p-token")]
    with SandboxServer(spec, data_file=str(data), limits=False, search_lag=0) as srv:
        portal = srv.portal("p")
        portal.create_property(
            "deals", {"name": "ext_id", "label": "Ext", "type": "string", "hasUniqueValue": True}
        )
        deal, company = (
            portal.seed("deals", [{"dealname": "kept", "ext_id": "E1"}])[0],
            portal.seed("companies", [{"name": "c"}])[0],
        )
        portal.associate("deals", deal, "companies", company)
        portal.archive("companies", portal.seed("companies", [{"name": "gone"}])[0])
    assert data.exists()
    with SandboxServer(spec, data_file=str(data), limits=False, search_lag=0) as srv:
        portal = srv.portal("p")
        assert portal.get("deals", deal)["properties"]["ext_id"] == "E1"
        assert portal.associations_of("deals", deal, "companies")[0]["toObjectId"] == int(company)
        assert len(portal.all("companies", archived=True)) == 1
        new = portal.seed("deals", [{"dealname": "next"}])[0]
        assert int(new) > int(company)
        with pytest.raises(ApiError) as info:
            portal.seed("deals", [{"ext_id": "E1"}])
        assert info.value.status == 409


def test_run_sandbox_cli_entry(tmp_path: Path) -> None:
    data = tmp_path / "cli.json"
    code = (
        "import sys\n"
        "from connector.sandbox import PortalSpec, run_sandbox\n"
        "run_sandbox([PortalSpec('vendor', 'vt'), PortalSpec('partner', 'pt')], '127.0.0.1', 0,"
        f" {str(data)!r}, True, print_fn=lambda s: print(s, flush=True))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        url = lines[0].split("listening on ")[1].split()[0]
        assert any("'vt'" in line for line in lines) and any("'pt'" in line for line in lines)
        r = requests.post(
            f"{url}/crm/v3/objects/deals",
            json={"properties": {"dealname": "cli"}},
            headers=auth("vt"),
            timeout=5,
        )
        assert r.status_code == 201
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    saved = json.loads(data.read_text())
    vendor = next(p for p in saved["portals"] if p["name"] == "vendor")
    assert vendor["records"]["deals"][0]["props"]["dealname"] == "cli"
