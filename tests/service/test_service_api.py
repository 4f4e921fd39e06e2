"""Partner API: tokens, cross-partner isolation, triggers joining a running pass, the
per-partner trigger rate limit, health and metrics."""

from __future__ import annotations

from pathlib import Path

from service_support import Harness, bearer, finished, wait_for, write_project
from starlette.testclient import TestClient

from connector.service import Service, build_app
from connector.service.tokens import PartnerTokens


def test_token_is_stored_hashed_and_revocable(service: Service) -> None:
    tokens = PartnerTokens(service.store)
    info, token = tokens.create("acme", "ops")
    assert token.startswith("dsk_") and tokens.verify(token) == "acme"
    with service.store.session() as s:
        from connector.state.tables import PartnerToken

        row = s.get(PartnerToken, info.id)
        assert row is not None and token not in (row.digest, row.salt, row.prefix)
        assert token.rsplit("_", 1)[1] not in row.digest
    assert tokens.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.revoke(info.id, "globex") is None  # not globex's token
    assert tokens.revoke(info.id, "acme") is not None
    assert tokens.verify(token) is None


def test_trigger_and_read_own_run(harness: Harness, service: Service, client: TestClient) -> None:
    deal = harness.seed_deal("acme")
    _, token = PartnerTokens(service.store).create("acme")
    r = client.post("/v1/partners/acme/sync", headers=bearer(token))
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    wait_for(lambda: finished(service, run_id))
    got = client.get(f"/v1/runs/{run_id}", headers=bearer(token))
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "ok" and body["connection"] == "acme" and body["trigger"] == "partner"
    assert harness.vendor_deal("acme", deal.id) is not None


def test_cross_partner_access_denied_everywhere(
    harness: Harness, service: Service, client: TestClient
) -> None:
    tokens = PartnerTokens(service.store)
    _, acme = tokens.create("acme")
    _, globex = tokens.create("globex")
    r = client.post("/v1/partners/acme/sync", headers=bearer(acme))
    acme_run = r.json()["run_id"]
    wait_for(lambda: finished(service, acme_run))

    # no token, garbage, wrong scheme, revoked: 401 on every partner endpoint
    for headers in ({}, bearer("nope"), {"Authorization": f"Basic {acme}"}, bearer("dsk_x_y")):
        assert client.post("/v1/partners/acme/sync", headers=headers).status_code == 401
        assert client.get(f"/v1/runs/{acme_run}", headers=headers).status_code == 401
    # another partner's connection: 403; its run (or an unknown one): 404 alike
    assert client.post("/v1/partners/acme/sync", headers=bearer(globex)).status_code == 403
    assert client.post("/v1/partners/nosuch/sync", headers=bearer(globex)).status_code == 403
    assert client.get(f"/v1/runs/{acme_run}", headers=bearer(globex)).status_code == 404
    assert client.get("/v1/runs/999999", headers=bearer(globex)).status_code == 404
    assert client.get("/v1/runs/abc", headers=bearer(globex)).status_code == 404
    # the admin page and its actions are not reachable with a partner token
    assert client.get("/admin", headers=bearer(acme), follow_redirects=False).status_code == 303
    assert client.post("/admin/connections/acme/resync", headers=bearer(acme)).status_code == 401
    assert client.post("/admin/conflicts/1/resolve", headers=bearer(acme)).status_code == 401
    # nothing ran for globex's token on acme
    assert [r.trigger for r in service.store.runs("acme")] == ["partner"]
    assert service.store.runs("globex") == []


def test_trigger_joins_running_pass(harness: Harness, service: Service, client: TestClient) -> None:
    _, token = PartnerTokens(service.store).create("acme")
    harness.probe.hold.clear()  # the first pass stays inside its lock until released
    first = client.post("/v1/partners/acme/sync", headers=bearer(token))
    assert first.status_code == 202 and first.json()["joined"] is False
    harness.probe.entered.wait(10)
    second = client.post("/v1/partners/acme/sync", headers=bearer(token))
    assert second.status_code == 202
    assert second.json() == first.json() | {"joined": True}
    harness.probe.hold.set()
    wait_for(lambda: finished(service, first.json()["run_id"]))
    assert len(service.store.runs("acme")) == 1


def test_trigger_rate_limit(tmp_path: Path) -> None:
    from service_support import ENV

    config = write_project(tmp_path, trigger_limit=2)
    svc = Service(config, env=ENV, hooks=[])
    try:
        _, token = PartnerTokens(svc.store).create("acme")
        _, other = PartnerTokens(svc.store).create("globex")
        with TestClient(build_app(svc)) as client:
            codes = []
            for _ in range(3):
                r = client.post("/v1/partners/acme/sync", headers=bearer(token))
                codes.append(r.status_code)
                if r.status_code == 202:
                    wait_for(lambda r=r: finished(svc, r.json()["run_id"]))
            assert codes == [202, 202, 429]
            assert int(r.headers["Retry-After"]) >= 1
            # the limit is per partner
            assert client.post("/v1/partners/globex/sync", headers=bearer(other)).status_code == 202
    finally:
        svc.runner.shutdown()
        svc.stop()


def test_healthz_and_metrics(harness: Harness, service: Service, client: TestClient) -> None:
    harness.seed_deal("acme")
    _, token = PartnerTokens(service.store).create("acme")
    run_id = client.post("/v1/partners/acme/sync", headers=bearer(token)).json()["run_id"]
    wait_for(lambda: finished(service, run_id))
    wait_for(lambda: "dealsync_passes_total" in client.get("/metrics").text)
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    for series in (
        'dealsync_passes_total{connection="acme",status="ok",trigger="partner"} 1.0',
        'dealsync_records_synced_total{action="created vendor deals",connection="acme"}',
        'dealsync_api_calls_total{kind="batch_upsert",portal="vendor"}',
        'dealsync_open_conflicts{connection="acme"} 0.0',
        'dealsync_failing_records{connection="globex"} 0.0',
        "dealsync_outbox_backlog ",
        "dealsync_registrations",
        "dealsync_record_failures_total",
        "dealsync_api_429_total",
        "dealsync_rate_limit_wait_seconds_total",
        "dealsync_config_valid 1.0",
    ):
        assert series in text, series
    for secret in (token, "admin-secret-7f3a9c", "hubspot-app-secret-1b2c"):
        assert secret not in text
