"""/healthz under ``serve`` says whether each portal can be reached and takes its token.

Before, a partner whose portal was down (or whose token was wrong) left /healthz at
``"status": "ok"``. Now /healthz lists the vendor portal and every partner's with
``reachable`` / ``authenticated`` and the one-line error, and its status is
``"degraded"`` while any of them fails. The answers are cached: polling /healthz does
not call HubSpot each time (counted by the sandbox), a portal is probed again once
its answer is ``service.portal_check_seconds`` old (a fake clock moves time) or after
a pass over it stopped.

The vendor portal is the project's HubSpot sandbox; partner acme's host is a port
nothing listens on, partner globex's token is not the one the sandbox knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from connector.sandbox import PortalSpec, SandboxServer
from connector.service import Service, build_app
from connector.testing.dead_hosts import closed_port_url
from connector.testing.wait import wait_for
from connector.testing.world import write_project

TOKENS = {"HZ_VENDOR_TOKEN": "hz-vendor", "HZ_ACME_TOKEN": "hz-acme", "HZ_GLOBEX_TOKEN": "hz-gx"}
ENV = {**TOKENS, "DEALSYNC_ADMIN_TOKEN": "admin-hz-1", "DEALSYNC_WEBHOOK_SECRET": "hook-hz-1"}

CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: HZ_VENDOR_TOKEN
  host: {url}
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: HZ_ACME_TOKEN
    host: {acme}
  - id: globex
    name: Globex
    adapter: hubspot
    token_env: HZ_GLOBEX_TOKEN
    host: {url}
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
service:
  portal_check_seconds: 60
"""


class Clock:
    """Wall-clock seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    specs = [
        PortalSpec("vendor", TOKENS["HZ_VENDOR_TOKEN"]),
        PortalSpec("acme", TOKENS["HZ_ACME_TOKEN"]),
        PortalSpec("globex", TOKENS["HZ_GLOBEX_TOKEN"]),
    ]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:  # type: ignore[arg-type]
        yield server


def serve(
    root: Path,
    srv: SandboxServer,
    clock: Clock,
    *,
    acme: str | None = None,
    env: dict[str, str] | None = None,
) -> Service:
    write_project(root, CONFIG.format(url=srv.url, acme=acme or srv.url))
    return Service(root / "dealsync.yaml", env=env or ENV, clock=clock)


def test_healthz_names_the_unreachable_portal_and_the_refused_token(
    tmp_path: Path, srv: SandboxServer
) -> None:
    dead = closed_port_url()
    svc = serve(tmp_path, srv, Clock(), acme=dead, env={**ENV, "HZ_GLOBEX_TOKEN": "wrong"})
    try:
        with TestClient(build_app(svc)) as client:
            health = client.get("/healthz").json()
    finally:
        svc.stop()
    assert health["status"] == "degraded"
    vendor, partners = health["portals"]["vendor"], health["portals"]["partners"]
    assert (vendor["reachable"], vendor["authenticated"], vendor["error"]) == (True, True, None)
    acme, globex = partners["acme"], partners["globex"]
    assert acme["reachable"] is False
    assert f"could not connect to {dead} (partner acme): connection refused" in acme["error"]
    assert (globex["reachable"], globex["authenticated"]) == (True, False)
    assert "refused the token in HZ_GLOBEX_TOKEN (401" in globex["error"]
    assert "wrong" not in str(health)  # /healthz is public: never the token itself


def test_healthz_is_ok_when_every_portal_answers_and_is_cached(
    tmp_path: Path, srv: SandboxServer
) -> None:
    clock = Clock()
    svc = serve(tmp_path, srv, clock)
    try:
        with TestClient(build_app(svc)) as client:
            first = client.get("/healthz").json()
            srv.reset_stats("vendor")
            for _ in range(5):
                assert client.get("/healthz").json()["status"] == "ok"
            assert srv.stats("vendor")["total"] == 0  # polled 5 times, HubSpot not called
            clock.now += 61  # older than portal_check_seconds: probed again, once
            client.get("/healthz")
            client.get("/healthz")
            probed_again = srv.stats("vendor")["total"]
    finally:
        svc.stop()
    assert first["status"] == "ok"
    assert all(
        (p["reachable"], p["authenticated"]) == (True, True)
        for p in [first["portals"]["vendor"], *first["portals"]["partners"].values()]
    )
    assert probed_again >= 1
    assert probed_again <= 3  # one probe: the properties (and pipelines) read


def test_a_stopped_pass_has_its_portals_probed_again(tmp_path: Path, srv: SandboxServer) -> None:
    """Partner acme's portal (a sandbox of its own) stops after /healthz said ok: the
    next /healthz within the cache age still says ok (cached, no call), but once a
    pass over it stops, /healthz probes it again and says degraded without waiting
    for the cache to age."""
    clock = Clock()
    own = SandboxServer([PortalSpec("acme", TOKENS["HZ_ACME_TOKEN"])], port=0, limits=False)
    own.start()
    svc = serve(tmp_path, srv, clock, acme=own.url)
    try:
        with TestClient(build_app(svc)) as client:
            assert client.get("/healthz").json()["status"] == "ok"
            own.stop()
            assert client.get("/healthz").json()["status"] == "ok"  # cached: not probed
            job, _ = svc.request_pass("acme", "admin")
            wait_for(job.done.is_set)
            health = client.get("/healthz").json()
    finally:
        svc.stop()
        own.stop()
    assert job.failed
    assert health["status"] == "degraded"
    acme = health["portals"]["partners"]["acme"]
    assert acme["reachable"] is False
    assert f"could not connect to {own.url} (partner acme): connection refused" in acme["error"]


def test_a_reload_that_fixes_the_host_is_probed_at_once(tmp_path: Path, srv: SandboxServer) -> None:
    """The admin fixes acme's host while /healthz says degraded: the reload takes the
    edit and the next /healthz probes the new version's portals instead of serving
    the old answer until it ages."""
    svc = serve(tmp_path, srv, Clock(), acme=closed_port_url())
    try:
        with TestClient(build_app(svc)) as client:
            assert client.get("/healthz").json()["status"] == "degraded"
            (tmp_path / "dealsync.yaml").write_text(CONFIG.format(url=srv.url, acme=srv.url))
            assert svc.check_reload() is True
            health = client.get("/healthz").json()
    finally:
        svc.stop()
    assert health["status"] == "ok", health
    assert health["portals"]["partners"]["acme"]["reachable"] is True
