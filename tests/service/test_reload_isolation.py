"""``dealsync serve``: a config that cannot run is refused on reload, and one partner's
broken credentials fail that connection only.

Before, adding a partner while ``serve`` ran said "config reloaded" and /healthz said
valid, but the partner's trigger got 503 "did not start in time" (its token variable
was not set, visible only in a log traceback); and one partner's missing token at
startup stopped the whole service. Now the edit is refused with the reason (naming the
variable) on /healthz and the admin page while the last good version keeps serving;
a token put into ``.env`` is picked up by the next reload; a new portal that does not
answer a bounded probe is refused too; and at startup the other connection syncs while
the broken one's trigger, schedule and webhooks say why. A reloaded edit is also
checked online (a misspelt property refused naming it, warnings shown without
refusing), and an edit refused because a portal was down is retried with backoff on
the reload tick until the portal answers. The portals are sandbox
HubSpot portals reached through the real adapter (no test adapter factory).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import Response
from service_support import ADMIN_TOKEN, WEBHOOK_SECRET, bearer, finished, wait_for
from starlette.testclient import TestClient

from connector.api import Dealsync
from connector.config import load_project
from connector.sandbox import PortalSpec, SandboxServer
from connector.service import Service, build_app
from connector.service.webhooks import sign_v3
from connector.testing.world import write_project

TOKENS = {
    "ISO_VENDOR_TOKEN": "iso-vendor-token",
    "ISO_ACME_TOKEN": "iso-acme-token",
    "ISO_BETA_TOKEN": "iso-beta-token",
}
SECRETS = {"DEALSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "DEALSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET}
FULL_ENV = {**TOKENS, **SECRETS}
WITHOUT_BETA = {k: v for k, v in FULL_ENV.items() if k != "ISO_BETA_TOKEN"}
BETA_PORTAL = 2002

HEAD = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: ISO_VENDOR_TOKEN
  host: {url}
  portal_id: 1000
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: ISO_ACME_TOKEN
    host: {url}
    portal_id: 2001
"""
BETA = """\
  - id: beta
    name: Beta Partners
    adapter: hubspot
    token_env: {token_env}
    host: {url}
    portal_id: 2002
"""
TAIL = """\
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""

BETA_MISSING = "missing env var ISO_BETA_TOKEN for partners[1].token_env"


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    specs = [
        PortalSpec("vendor", TOKENS["ISO_VENDOR_TOKEN"]),
        PortalSpec("acme", TOKENS["ISO_ACME_TOKEN"]),
        PortalSpec("beta", TOKENS["ISO_BETA_TOKEN"]),
    ]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:
        yield server


def config_text(
    url: str,
    *,
    beta: bool,
    beta_url: str | None = None,
    beta_token_env: str = "ISO_BETA_TOKEN",
    probe: float | None = None,
) -> str:
    text = HEAD.format(url=url)
    if beta:
        text += BETA.format(url=beta_url or url, token_env=beta_token_env)
    text += TAIL
    return text if probe is None else text + f"service:\n  reload_probe_seconds: {probe}\n"


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for svc in started:
        svc.stop()


def project(root: Path, srv: SandboxServer, *, beta: bool) -> Path:
    """The project with every portal set up (all tokens known to the admin's shell)."""
    config = write_project(root, config_text(srv.url, beta=beta))
    app = Dealsync(load_project(config, FULL_ENV), env=FULL_ENV)
    try:
        app.setup()
    finally:
        app.close()
    return config


def serve(config: Path, env: dict[str, str], services: list[Service]) -> Service:
    svc = Service(config, env=env)
    services.append(svc)
    return svc


def trigger(client: TestClient, svc: Service, partner: str) -> Response:
    _info, token = svc.tokens.create(partner, "test")
    return client.post(f"/v1/partners/{partner}/sync", headers=bearer(token))


def admin_page(client: TestClient) -> str:
    page = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert page.status_code == 200 and "sync health" in page.text
    return page.text


def metric(client: TestClient, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", client.get("/metrics").text, re.M)
    assert found, sample
    return float(found.group(1))


def synced_ok(client: TestClient, svc: Service, partner: str) -> None:
    answer = trigger(client, svc, partner)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    wait_for(lambda: finished(svc, run_id))
    run = svc.store.run(run_id)
    assert run is not None and run.status == "ok", run


def test_a_partner_added_without_its_env_var_is_refused_until_env_sets_it(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    config = project(tmp_path, srv, beta=False)
    svc = serve(config, WITHOUT_BETA, services)
    good = svc.project
    client = TestClient(build_app(svc))

    config.write_text(config_text(srv.url, beta=True))
    assert svc.check_reload() is False
    assert svc.project is good  # the last good version still serves acme
    health = client.get("/healthz").json()
    assert health["config_valid"] is False and health["connections"] == 1
    assert any(
        f"partners[1]: partner 'beta' cannot run: {BETA_MISSING}" in p
        for p in health["config_problems"]
    ), health
    assert any(".env next to dealsync.yaml" in p for p in health["config_problems"])
    page = admin_page(client)
    assert "still using the last valid version" in page and BETA_MISSING in page
    assert metric(client, "dealsync_config_valid") == 0
    assert metric(client, 'dealsync_config_reloads_total{result="invalid"}') == 1
    synced_ok(client, svc, "acme")

    # the admin puts the token into .env next to the config: the next reload takes it
    (tmp_path / ".env").write_text(f"ISO_BETA_TOKEN={TOKENS['ISO_BETA_TOKEN']}\n")
    assert svc.check_reload() is True
    assert svc.has_partner("beta") and client.get("/healthz").json()["config_valid"] is True
    synced_ok(client, svc, "beta")


def test_a_partner_whose_portal_refuses_its_token_is_refused_on_reload(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    config = project(tmp_path, srv, beta=False)
    svc = serve(config, {**WITHOUT_BETA, "ISO_BETA_WRONG": "not-betas-token"}, services)
    client = TestClient(build_app(svc))
    config.write_text(config_text(srv.url, beta=True, beta_token_env="ISO_BETA_WRONG"))
    assert svc.check_reload() is False
    problems = client.get("/healthz").json()["config_problems"]
    reached = "partners[1]: partner 'beta' could not be reached: "
    assert any(reached in p for p in problems), problems
    assert not svc.has_partner("beta")


def test_a_portal_that_does_not_answer_is_refused_within_the_probe_bound(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    config = project(tmp_path, srv, beta=False)
    svc = serve(config, FULL_ENV, services)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config.write_text(config_text(srv.url, beta=True, beta_url=url, probe=0.5))
        assert svc.check_reload() is False
    problems = svc.reload.problems
    assert any(
        "partners[1]: partner 'beta' did not answer within 0.5 s "
        "(service.reload_probe_seconds)" in p
        for p in problems
    ), problems
    assert not svc.has_partner("beta")


def test_with_one_token_missing_at_startup_the_other_partner_syncs(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    config = project(tmp_path, srv, beta=True)
    svc = serve(config, WITHOUT_BETA, services)  # before: the whole service refused
    client = TestClient(build_app(svc))

    synced_ok(client, svc, "acme")
    refused = trigger(client, svc, "beta")
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error.startswith(f"this connection cannot run: {BETA_MISSING}"), error
    assert svc.store.runs("beta") == []

    health = client.get("/healthz").json()
    assert health["config_valid"] is True
    assert health["connections_unusable"] == {
        "beta": f"{BETA_MISSING}; set it in the environment or .env"
    }
    page = admin_page(client)
    assert f"Cannot run: {BETA_MISSING}" in page

    # the schedule skips it (no run, no backoff); a webhook for it is recorded, not run
    assert svc._run_scheduled("beta") is False and svc.store.runs("beta") == []
    body = json.dumps([webhook(BETA_PORTAL)]).encode()
    ts = str(int(time.time() * 1000))
    url = "http://testserver/v1/webhooks/hubspot"
    answer = client.post(
        "/v1/webhooks/hubspot",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(WEBHOOK_SECRET, "POST", url, body, ts),
            "X-HubSpot-Request-Timestamp": ts,
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["processed"] == 1 and answer.json()["scheduled"] == []
    assert BETA_MISSING in answer.json()["not_started"]["beta"]
    assert {r.record_id for r in svc.store.retries("beta", "deals")} == {"4242"}
    assert svc.store.runs("beta") == []

    assert metric(client, 'dealsync_connection_usable{connection="beta"}') == 0
    assert metric(client, 'dealsync_connection_usable{connection="acme"}') == 1
    assert metric(client, 'dealsync_triggers_total{partner="beta",result="unusable"}') == 1
    for how in ("partner", "schedule", "webhook"):
        sample = f'dealsync_passes_not_started_total{{connection="beta",trigger="{how}"}}'
        assert metric(client, sample) == 1


def webhook(portal: int) -> dict[str, object]:
    return {
        "eventId": 77,
        "subscriptionId": 7,
        "portalId": portal,
        "appId": 99,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 4242,
        "propertyName": "amount",
        "propertyValue": "250",
    }


# ---------------------------------------------------------------------- online checks on reload


def mapping(config: Path) -> Path:
    return config.parent / "mappings" / "shared_deals.yaml"


def test_a_reloaded_mapping_with_a_misspelt_property_is_refused_naming_it(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    config = project(tmp_path, srv, beta=False)
    svc = serve(config, FULL_ENV, services)
    good = svc.project
    client = TestClient(build_app(svc))
    shipped = mapping(config).read_text()

    mapping(config).write_text(shipped.replace("partner: dealname", "partner: dealnmae"))
    assert svc.check_reload() is False  # offline the name is fine: only the portal knows
    assert svc.project is good
    line = next(
        n
        for n, text in enumerate(mapping(config).read_text().splitlines(), 1)
        if "dealnmae" in text
    )
    health = client.get("/healthz").json()
    assert health["config_valid"] is False
    assert any(
        f"shared_deals.yaml:{line}: objects[2].fields[0].partner: partner property 'dealnmae' "
        "does not exist on deals in portal 'acme'"
        in p
        and "did you mean 'dealname'?" in p
        for p in health["config_problems"]
    ), health
    assert health["config_retry"] is None  # a typo waits for the file, it is not retried
    assert "does not exist on deals in portal &#39;acme&#39;" in admin_page(client)
    synced_ok(client, svc, "acme")  # the last good version still syncs

    mapping(config).write_text(shipped)
    assert svc.check_reload() is True
    assert client.get("/healthz").json()["config_valid"] is True


def test_online_warnings_of_a_reloaded_mapping_are_shown_without_refusing_it(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    config = project(tmp_path, srv, beta=False)
    svc = serve(config, FULL_ENV, services)
    client = TestClient(build_app(svc))
    text = mapping(config).read_text()
    edited = text.replace(
        "vendor: amount\n        direction: both\n        transform: decimal",
        "vendor: amount\n        direction: both\n        transform: string",
    )
    assert edited != text
    mapping(config).write_text(edited)
    assert svc.check_reload() is True
    health = client.get("/healthz").json()
    assert health["config_valid"] is True and health["config_problems"] == []
    warned = "transform string copies text into deals.amount in portal 'acme', a number property"
    assert any(warned in w and ": warning: " in w for w in health["config_warnings"]), health
    assert "transform string copies text into deals.amount" in admin_page(client)


class Clock:
    """Wall-clock seconds the test moves by hand (the reload's retry times)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_edit_refused_for_an_unreachable_portal_is_retried_until_it_answers(
    tmp_path: Path, srv: SandboxServer, services: list[Service]
) -> None:
    from connector.sandbox.faults import FaultSpec
    from connector.service.core import RELOAD_RETRY_SECONDS

    config = project(tmp_path, srv, beta=False)
    clock = Clock()
    svc = Service(config, env=FULL_ENV, clock=clock)
    services.append(svc)
    client = TestClient(build_app(svc))
    beta = srv.portal("beta")
    beta.set_faults(FaultSpec(error_rate=1.0, seed=1))  # every call answers 5xx
    try:
        config.write_text(config_text(srv.url, beta=True, probe=0.5))
        assert svc.check_reload() is False
        retry = client.get("/healthz").json()["config_retry"]
        assert retry["attempts"] == 1
        assert retry["next_retry_at"] == _iso(clock.now + RELOAD_RETRY_SECONDS)
        assert "did not answer within 0.5 s" in retry["unreachable"]["beta"]
        assert "tried again at" in admin_page(client)

        assert svc.check_reload() is False  # not due yet: no new attempt
        assert svc.reload.retry is not None and svc.reload.retry.attempts == 1

        clock.now += RELOAD_RETRY_SECONDS  # due, the portal still down: backoff doubles
        assert svc.check_reload() is False
        retry = client.get("/healthz").json()["config_retry"]
        assert retry["attempts"] == 2
        assert retry["next_retry_at"] == _iso(clock.now + 2 * RELOAD_RETRY_SECONDS)
    finally:
        beta.set_faults(FaultSpec())

    clock.now += 2 * RELOAD_RETRY_SECONDS  # the portal is back; nobody touched the files
    assert svc.check_reload() is True
    health = client.get("/healthz").json()
    assert health["config_valid"] is True and health["config_retry"] is None
    assert svc.has_partner("beta")
    synced_ok(client, svc, "beta")


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
