"""Partner API: tokens, cross-partner isolation, triggers joining a running pass, the
per-partner trigger rate limit, health and metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from service_support import Harness, bearer, finished, wait_for, write_project
from starlette.testclient import TestClient

from connector.service import Service, build_app
from connector.state.store import RecordOutcome
from connector.state.tokens import PartnerTokens


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


# ---------------------------------------------------------------------- hostile ids

HOSTILE_IDS = [
    "99999999999999999999999",  # 23 digits: beyond SQLite's 64-bit integers
    "9223372036854775808",  # one past the largest 64-bit integer
    "-1",
    "0",
    "1e3",
    "abc",
    "%20" + "1",
    "\u0661\u0662",  # Arabic-Indic digits: int() would take them
    "1" * 5000,
]


def test_hostile_run_ids_are_404_with_a_message_never_500(
    harness: Harness, service: Service
) -> None:
    _, token = PartnerTokens(service.store).create("acme")
    with TestClient(build_app(service), raise_server_exceptions=False) as client:
        for bad in HOSTILE_IDS:
            r = client.get(f"/v1/runs/{bad}", headers=bearer(token))
            assert r.status_code == 404, (bad, r.status_code, r.text)
            assert "no such run" in r.json()["error"], bad
    # the store itself answers "none" for such ids, so the CLI says "no run #…" too
    assert service.store.run(10**22) is None and service.store.run(-1) is None


# ---------------------------------------------------------------------- token expiry


def test_an_expired_token_is_refused_with_401_naming_the_date(
    service: Service, client: TestClient
) -> None:
    tokens = PartnerTokens(service.store)
    now = datetime.now(UTC)
    _, fresh = tokens.create("acme", "ops", expires_at=now + timedelta(days=90))
    old_info, old = tokens.create("acme", "old", expires_at=now - timedelta(hours=1))
    _, forever = tokens.create("acme", "no expiry")
    assert client.post("/v1/partners/acme/sync", headers=bearer(fresh)).status_code == 202
    assert client.post("/v1/partners/acme/sync", headers=bearer(forever)).status_code == 202
    r = client.post("/v1/partners/acme/sync", headers=bearer(old))
    assert r.status_code == 401
    assert old_info.expires_at is not None
    assert r.json()["error"] == f"token expired on {old_info.expires_at:%Y-%m-%d %H:%M} UTC"
    assert client.get("/v1/runs/1", headers=bearer(old)).status_code == 401
    # a wrong secret with an expired token's prefix learns nothing about the expiry
    wrong = old[:-2] + ("AA" if not old.endswith("AA") else "BB")
    r = client.post("/v1/partners/acme/sync", headers=bearer(wrong))
    assert r.status_code == 401 and "expired" not in r.text
    listed = {t.label: t for t in tokens.list("acme")}
    assert listed["old"].expired and not listed["old"].active
    assert not listed["ops"].expired and listed["ops"].active
    assert listed["no expiry"].expires_at is None and listed["no expiry"].active


def test_partners_token_create_expires_and_list_show_it(harness: Harness) -> None:
    from click.testing import CliRunner

    from connector.cli import cli

    runner = CliRunner()
    base = ["--config", str(harness.config), "partners", "token"]
    made = runner.invoke(cli, [*base, "create", "--partner", "acme", "--expires", "90d"])
    assert made.exit_code == 0, made.output
    assert "expires " in made.output and made.output.splitlines()[-1].startswith("dsk_")
    for spec in ("12h", "2099-01-31", "2099-01-31T08:00:00+00:00"):
        ok = runner.invoke(cli, [*base, "create", "--partner", "acme", "--expires", spec])
        assert ok.exit_code == 0, (spec, ok.output)
    for bad in ("soon", "0d", "-3d", "2020-01-01", "2099-02-30"):
        refused = runner.invoke(cli, [*base, "create", "--partner", "acme", "--expires", bad])
        assert refused.exit_code == 3, (bad, refused.output)
        assert "--expires" in refused.output and "Traceback" not in refused.output, bad
    # one token that has already expired (made through the API, as time would)
    from connector.api import Dealsync
    from connector.config import load_project

    app = Dealsync(load_project(harness.config, check_env=False))
    try:
        PartnerTokens(app.store).create(
            "acme", "lapsed", expires_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
        )
    finally:
        app.close()
    listed = runner.invoke(cli, [*base, "list", "--partner", "acme"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()[1:]  # under the table's header
    assert len(lines) == 5
    assert sum("expires 20" in line for line in lines) == 4
    [lapsed] = [line for line in lines if "lapsed" in line]
    assert "expired 2026-01-02 03:04" in lapsed and "active" not in lapsed


def test_a_token_table_of_an_older_version_gains_the_expiry_column(tmp_path: Path) -> None:
    from sqlalchemy import text

    from connector.state import StateStore
    from connector.state.migrations import LATEST

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = StateStore(url)
    PartnerTokens(store).create("acme", "from before")
    run_id = store.start_run("acme", dry_run=False)
    with store.engine.begin() as conn:  # make it the schema as version 4 wrote it
        conn.execute(text("ALTER TABLE partner_token DROP COLUMN expires_at"))
        conn.execute(text("ALTER TABLE run DROP COLUMN owner"))
        conn.execute(text("DELETE FROM schema_version WHERE version > 4"))
    store.close()
    upgraded = StateStore(url)
    try:
        assert upgraded.schema_version() == LATEST
        [old] = PartnerTokens(upgraded).list("acme")
        assert old.label == "from before" and old.expires_at is None and old.active
        run = upgraded.run(run_id)
        assert run is not None and run.owner is None
    finally:
        upgraded.close()


# ---------------------------------------------------------------------- what a partner sees

VENDOR_URL = "http://127.0.0.1:54321/crm/v3/objects/deals/batch/update?hapikey=x"


def test_a_partners_run_view_shows_no_vendor_host_port_or_error_text(
    service: Service, client: TestClient
) -> None:
    store = service.store
    run_id = store.start_run("acme", dry_run=False, trigger="partner")
    store.add_outcomes(
        run_id,
        [
            RecordOutcome(
                "deals",
                "vendor",
                "9001",
                "update",
                "failed",
                "amount",
                f"HubSpot refused it (400) at {VENDOR_URL}: amount is locked by workflow 77",
            ),
            RecordOutcome(
                "deals",
                "partner",
                "17",
                "update",
                "failed",
                None,
                "refused (400) by https://api.hubapi.com:443/crm/v3/objects/deals: "
                "closedate is not a date",
            ),
        ],
    )
    store.finish_run(
        run_id,
        status="fatal",
        counts={},
        api_calls={},
        error=f"vendor: batch_update still failing after 5 attempts: 503 Service "
        f"Unavailable from {VENDOR_URL} (upstream crm-db-7.vendor.internal:5432)",
    )
    _, token = PartnerTokens(store).create("acme")
    r = client.get(f"/v1/runs/{run_id}", headers=bearer(token))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "fatal"
    assert body["error"] == "vendor side failed: HTTP 503 (details in the vendor's run log)"
    vendor_rec, partner_rec = body["failed_records"]
    assert vendor_rec["detail"] == (
        "vendor side failed: HTTP 400 (details in the vendor's run log)"
    )
    assert "closedate is not a date" in partner_rec["detail"]
    for leak in (
        "127.0.0.1",
        "54321",
        "/crm/v3",
        "hapikey",
        "Service Unavailable",
        "vendor.internal",
        "5432",
        "locked by workflow",
        "api.hubapi.com",
        "http",
    ):
        assert leak not in r.text, leak
    # the vendor's admins still see everything
    assert store.run(run_id).error.endswith("crm-db-7.vendor.internal:5432)")
