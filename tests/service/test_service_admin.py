"""The sync-health page: login, CSRF, and — in a real headless Chromium driven by
Playwright — a failing record and an open conflict, resync and resolve."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from service_support import (
    ADMIN_TOKEN,
    CHROMIUM,
    CHROMIUM_ARGS,
    WEBHOOK_SECRET,
    Harness,
    finished,
    wait_for,
)
from starlette.testclient import TestClient

from connector.service import Service, build_app


@dataclass
class Trouble:
    conflict_id: int
    failing_partner_deal: str
    failing_vendor_deal: str


def _sync(svc: Service, connection: str = "acme") -> int:
    job, _ = svc.request_pass(connection, "schedule")
    job.done.wait(30)
    assert job.run_id is not None
    return job.run_id


def make_trouble(harness: Harness, svc: Service) -> Trouble:
    """One deal with an open manual conflict, one whose vendor update keeps failing."""
    vendor = harness.crms["vendor"]
    d1 = harness.seed_deal("acme", description="original")
    d2 = harness.seed_deal("acme")
    _sync(svc)
    v1, v2 = harness.vendor_deal("acme", d1.id), harness.vendor_deal("acme", d2.id)
    assert v1 is not None and v2 is not None
    harness.crms["acme"].update("deals", [(d1.id, {"description": "partner text"})])
    vendor.update("deals", [(v1.id, {"description": "vendor text"})])
    harness.crms["acme"].update("deals", [(d2.id, {"amount": "999"})])
    vendor.fail = lambda op, obj, key: (
        "HubSpot refused it (400): amount is locked" if op == "update" and key == v2.id else None
    )
    run_id = _sync(svc)
    assert svc.store.run(run_id).status == "failed"
    [conflict] = svc.store.conflicts("acme")
    assert conflict.id is not None
    vendor.fail = None  # the cause is fixed; the record waits for a resync
    return Trouble(conflict.id, d2.id, v2.id)


def _login(client: TestClient) -> str:
    page = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert page.status_code == 200 and "sync health" in page.text
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_login_and_csrf(harness: Harness, service: Service, client: TestClient) -> None:
    trouble = make_trouble(harness, service)
    assert client.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    assert client.post("/admin/login", data={"token": "guess"}).status_code == 401
    csrf = _login(client)
    cookie = client.cookies.get("dealsync_admin")
    assert cookie and ADMIN_TOKEN not in cookie
    page = client.get("/admin").text
    assert "amount is locked" in page and "partner text" in page and "vendor text" in page
    for secret in (ADMIN_TOKEN, WEBHOOK_SECRET):
        assert secret not in page
    # a POST without the session's CSRF token does nothing
    url = f"/admin/conflicts/{trouble.conflict_id}/resolve"
    assert client.post(url, data={"take": "vendor"}).status_code == 403
    assert client.post(url, data={"take": "vendor", "csrf": "x" + csrf}).status_code == 403
    assert service.store.conflict(trouble.conflict_id).status == "open"
    # a session from another browser (no cookie) cannot post either
    other = TestClient(build_app(service))
    assert other.post(url, data={"take": "vendor", "csrf": csrf}).status_code == 401


@pytest.fixture
def live_server(service: Service) -> Iterator[str]:
    config = uvicorn.Config(build_app(service), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)
def test_health_page_in_a_real_browser(
    harness: Harness, service: Service, live_server: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    trouble = make_trouble(harness, service)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server}/admin")
            expect(page).to_have_url(f"{live_server}/admin/login")
            page.fill("#token", ADMIN_TOKEN)
            page.click("#login")
            expect(page).to_have_url(f"{live_server}/admin")
            expect(page.locator("#config-state")).to_contain_text("Valid")

            # a failing record, grouped by category, and an open conflict
            row = page.locator('tr[data-connection="acme"]')
            expect(row.locator(".failing")).to_have_text("1")
            expect(row.locator(".open-conflicts")).to_have_text("1")
            failing = page.locator('table[data-category="refused"] .failing-record')
            expect(failing).to_have_count(1)
            expect(failing).to_contain_text("amount is locked")
            conflict = page.locator(f'tr[data-conflict="{trouble.conflict_id}"]')
            expect(conflict).to_contain_text("partner text")

            # resolve: take the partner's value
            conflict.locator("button.take-partner").click()
            expect(page.locator(".flash-ok")).to_contain_text(
                f"Conflict #{trouble.conflict_id} resolved"
            )
            resolved = service.store.conflict(trouble.conflict_id)
            assert resolved.status == "resolved" and resolved.resolution == "took partner"

            # resync: the pass re-reads the failed record and now succeeds
            runs_before = {r.id for r in service.store.runs("acme")}
            page.locator('button.resync[data-connection="acme"]').click()
            expect(page.locator(".flash-ok")).to_contain_text("Resync of acme scheduled")
            new_run = wait_for(
                lambda: [r for r in service.store.runs("acme") if r.id not in runs_before]
            )[0]
            wait_for(lambda: finished(service, new_run.id))
            assert new_run.trigger == "resync"
            assert service.store.run(new_run.id).status == "ok"
            page.goto(f"{live_server}/admin")
            expect(row.locator(".failing")).to_have_text("0")
            expect(row.locator(".open-conflicts")).to_have_text("0")
        finally:
            browser.close()

    vendor_deal = harness.crms["vendor"].get("deals", trouble.failing_vendor_deal)
    assert vendor_deal.get("amount") in ("999", "999.00")
    assert service.store.retries("acme", "deals") == []
    v1 = next(
        r for r in harness.crms["vendor"].all("deals") if r.get("description") == "partner text"
    )
    assert v1 is not None


# ---------------------------------------------------------------------- hardening


def test_log_in_is_throttled_after_five_failures_from_one_address(
    service: Service, client: TestClient
) -> None:
    for _ in range(5):
        assert client.post("/admin/login", data={"token": "guess"}).status_code == 401
    # the sixth attempt is not even checked, the right token included
    throttled = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    assert "Too many failed log-in attempts" in throttled.text
    assert client.cookies.get("dealsync_admin") is None
    metrics = client.get("/metrics").text
    assert 'dealsync_admin_logins_total{result="refused"} 5.0' in metrics
    assert 'dealsync_admin_logins_total{result="throttled"} 1.0' in metrics


def test_the_log_in_throttle_counts_per_address_within_its_window() -> None:
    from connector.service.admin import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(limit=5, window=900, clock=lambda: now[0])
    for _ in range(4):
        throttle.failed("10.0.0.1")
        now[0] += 60
    assert throttle.wait("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") == 900 - 4 * 60  # until the first failure is 15 min old
    assert throttle.wait("10.0.0.2") == 0  # another address is not held back
    now[0] += 900 - 4 * 60
    assert throttle.wait("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait("10.0.0.1") > 0
    throttle.succeeded("10.0.0.1")  # a good log-in clears the address
    assert throttle.wait("10.0.0.1") == 0


def test_hostile_conflict_ids_in_the_resolve_url_get_a_clear_answer(
    service: Service, client: TestClient
) -> None:
    csrf = _login(client)
    for bad in ("99999999999999999999999", "9223372036854775808", "-1", "0", "abc", "1e3"):
        r = client.post(  # a server error would raise here
            f"/admin/conflicts/{bad}/resolve",
            data={"take": "vendor", "csrf": csrf},
            follow_redirects=False,
        )
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert "conflict id must be a whole number" in r.text, bad
        # the other path parameter of the page, a connection name, is only compared
        r = client.post(f"/admin/connections/{bad}/resync", data={"csrf": csrf})
        assert r.status_code == 404 and r.text == "no such connection", bad
    # a well-formed id that does not exist: the page says so
    r = client.post("/admin/conflicts/424242/resolve", data={"take": "vendor", "csrf": csrf})
    assert r.status_code == 200 and "Conflict #424242 not resolved: no conflict #424242" in r.text
