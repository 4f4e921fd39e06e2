"""/metrics under ``serve`` tells an operator what to alert on (issue 19, item 5): how
long passes take and when each connection last got through, the outbox backlog by
status, each HubSpot portal's 429s and rate-limit budget in use, whether each portal
can be reached — and no ``*_created`` series beside every counter.

The first scenario runs the service over two embedded CRM partners (the service
suite's harness); the second over the project's HubSpot sandbox, whose vendor portal
answers one request with 429.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from service_support import Harness, bearer, finished, wait_for
from starlette.testclient import TestClient

from connector.api import Dealsync
from connector.config import load_project
from connector.sandbox import PortalSpec, SandboxServer
from connector.service import Service, build_app
from connector.state.tokens import PartnerTokens
from connector.testing.world import write_project


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_pass_duration_last_success_backlog_and_portals_are_on_metrics(
    harness: Harness, service: Service, client: TestClient
) -> None:
    harness.seed_deal("acme")
    _, token = PartnerTokens(service.store).create("acme")
    run_id = client.post("/v1/partners/acme/sync", headers=bearer(token)).json()["run_id"]
    wait_for(lambda: finished(service, run_id))
    text = wait_for(lambda: (t := client.get("/metrics").text) and "_count{" in t and t)
    got = samples(text)
    acme, globex = (("connection", "acme"),), (("connection", "globex"),)
    # one pass of acme timed; globex has not run
    assert got[("dealsync_pass_duration_seconds_count", acme)] == 1
    assert got[("dealsync_pass_duration_seconds_bucket", (*acme, ("le", "+Inf")))] == 1
    assert ("dealsync_pass_duration_seconds_count", globex) not in got
    # the last pass that got through, to the second the run row says it finished
    run = service.store.run(run_id)
    assert run is not None and run.status == "ok" and run.finished_at is not None
    assert got[("dealsync_last_success_timestamp_seconds", acme)] == run.finished_at.timestamp()
    assert ("dealsync_last_success_timestamp_seconds", globex) not in got
    # the outbox backlog by status, zeros included
    for status in ("queued", "held", "failed"):
        assert (("dealsync_outbox_backlog_by_status", (("status", status),))) in got
    # every portal answered its /healthz check (the embedded CRMs)
    for portal in ("vendor", "acme", "globex"):
        assert got[("dealsync_portal_up", (("portal", portal),))] == 1
        assert got[("dealsync_portal_reachable", (("portal", portal),))] == 1
        assert got[("dealsync_portal_authenticated", (("portal", portal),))] == 1
    # no *_created series anywhere
    assert not [name for name, _ in got if name.endswith("_created")]
    assert "_created" not in text


CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor: {{name: vendor, adapter: hubspot, token_env: M_VENDOR, host: "{url}"}}
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: M_ACME
    host: "{url}"
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""
ENV = {"M_VENDOR": "metrics-vendor-tok", "M_ACME": "metrics-acme-tok"}


def test_a_429_from_hubspot_is_counted_and_the_budget_in_use_shown(tmp_path: Path) -> None:
    portals = [PortalSpec("vendor", ENV["M_VENDOR"]), PortalSpec("acme", ENV["M_ACME"])]
    with SandboxServer(portals, port=0, limits=False, search_lag=0) as srv:
        config = write_project(tmp_path, CONFIG.format(url=srv.url))
        setup = Dealsync(load_project(config, env=ENV), env=ENV)
        setup.setup()
        setup.close()
        service = Service(config, env=ENV)
        try:
            srv.portal("vendor").faults.throttle_next(1)  # the vendor's next answer: 429
            job, _ = service.request_pass("acme", "schedule")
            job.done.wait(120)
            assert job.result is not None and job.result.status == "ok", job.result
            with TestClient(build_app(service)) as client:
                got = samples(client.get("/metrics").text)
        finally:
            service.stop()
        assert srv.stats("vendor")["rate_limited"] == 1  # the sandbox sent exactly one
    vendor, acme = (("portal", "vendor"),), (("portal", "acme"),)
    assert got[("dealsync_api_429_total", vendor)] == 1
    assert got.get(("dealsync_api_429_total", acme), 0) == 0
    # each HubSpot portal's budget (the client default: 100 per 10 s) and its use
    for portal in (vendor, acme):
        requests = (("limit", "requests"), *portal)
        assert got[("dealsync_rate_limit_budget", requests)] == 100
        assert got[("dealsync_rate_limit_budget_used", requests)] >= 1
