"""Each admin view in a real headless Chromium (Playwright), on seeded state, at a
desktop and a phone width: the page does not scroll sideways on the phone (wide
tables scroll inside their own box), its key parts are visible, and its screenshot
is not blank. Screenshots are written under the test's ``tmp_path`` only."""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from service_support import ADMIN_TOKEN, CHROMIUM, CHROMIUM_ARGS, Harness, wait_for
from test_admin_views import World, seed_world

from connector.service import build_app

DESKTOP, PHONE = (1280, 900), (390, 844)

# each view, and what must be visible on it
KEY_PARTS = {
    "/admin": ["#views", "#config-state", "#pass-chart", "#summary", "#held-emails"],
    "/admin/runs?connection=acme": ["#views", "#pass-chart", "#runs", ".pager"],
    "/admin/registrations": ["#views", "#pending-registrations", "#registrations"],
    "/admin/commissions": ["#views", "#commission-totals", "#commissions", "#uncredited"],
    "/admin/outbox": ["#views", "#held-emails", "#outbox"],
    "/admin/capacity": ["#views", "#no-queue", "#budget-store"],
}

# the buttons a phone user must reach without scrolling a table sideways
DECIDE = {
    "/admin": ["#held-emails button.release", "#pending-registrations button.approve"],
    "/admin/registrations": ["#pending-registrations button.reject"],
    "/admin/outbox": ["#held-emails button.cancel"],
}

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)


def png_distinct_bytes(png: bytes) -> int:
    """How many different byte values the image data of a PNG holds (its IDAT chunks,
    inflated). A blank, one-colour screenshot holds a handful (the colour, the
    scanline filter bytes, zero differences); a page with text and tables, many."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, data = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(data)))


@pytest.fixture
def world(harness: Harness) -> World:
    return seed_world(harness)


@pytest.fixture
def live_world(world: World) -> Iterator[str]:
    config = uvicorn.Config(build_app(world.svc), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_every_view_fits_a_phone_and_a_desktop_and_is_drawn(
    world: World, live_world: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": DESKTOP[0], "height": DESKTOP[1]})
            # the check can fail: an empty page is blank
            page.set_content("<html><body style='background:#fff'></body></html>")
            assert png_distinct_bytes(page.screenshot()) < 8

            page.goto(f"{live_world}/admin/login")
            page.fill("#token", ADMIN_TOKEN)
            page.click("#login")
            expect(page).to_have_url(f"{live_world}/admin")
            shots = 0
            views = dict(KEY_PARTS)
            views[f"/admin/runs/{world.failed_run}"] = ["#views", "#run", "#run-records"]
            for path, parts in views.items():
                for width, height in (DESKTOP, PHONE):
                    page.set_viewport_size({"width": width, "height": height})
                    sep = "&" if "?" in path else "?"
                    page.goto(f"{live_world}{path}{sep}refresh=0")  # no reload mid-check
                    for selector in parts:
                        expect(page.locator(selector).first).to_be_visible()
                        box = page.locator(selector).first.bounding_box()
                        assert box is not None and box["width"] > 0 and box["height"] > 0
                        assert box["x"] >= 0 and box["x"] < width, (path, width, selector)
                    if width == PHONE[0]:  # the tables to act on are stacked: buttons in reach
                        for button in DECIDE.get(path, []):
                            box = page.locator(button).first.bounding_box()
                            assert box is not None and box["x"] + box["width"] <= width, (
                                path,
                                button,
                                box,
                            )
                    scroll = page.evaluate("document.documentElement.scrollWidth")
                    inner = page.evaluate("window.innerWidth")
                    assert scroll <= inner, f"{path} at {width}px scrolls sideways ({scroll} px)"
                    shot = (
                        tmp_path
                        / f"{path.strip('/').replace('/', '_').replace('?', '-')}-{width}.png"
                    )
                    page.screenshot(path=str(shot), full_page=True)
                    distinct = png_distinct_bytes(shot.read_bytes())
                    assert distinct > 32, f"{shot.name} looks blank ({distinct} byte values)"
                    shots += 1
            assert shots == 2 * len(views)
            assert all(p.parent == tmp_path for p in tmp_path.glob("*.png"))
        finally:
            browser.close()


def test_on_a_phone_errors_unfold_refresh_pauses_and_a_registration_is_approved(
    world: World, live_world: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": PHONE[0], "height": PHONE[1]})
            page.goto(f"{live_world}/admin/login")
            page.fill("#token", ADMIN_TOKEN)
            page.click("#login")

            # from the connection's row to its runs, the failed one's records and error
            page.locator('a.runs-link[data-connection="acme"]').click()
            expect(page).to_have_url(f"{live_world}/admin/runs?connection=acme")
            run = page.locator(f"#run-{world.failed_run}")
            expect(run.locator(".outcome")).to_have_text("failed")
            records = run.locator("details.run-records")
            long_text = records.locator("details.error-text pre")
            expect(long_text).to_be_hidden()
            records.locator("summary").first.click()
            records.locator("details.error-text summary").click()
            expect(long_text).to_be_visible()
            expect(long_text).to_contain_text("correlation id 7f3a-91bc-4d2e-aa10")
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE[0]

            # auto-refresh: on until paused, and the pause is kept across the views
            assert page.locator('meta[http-equiv="refresh"]').count() == 1
            page.click("#pause")
            expect(page.locator("#resume")).to_be_visible()
            assert page.locator('meta[http-equiv="refresh"]').count() == 0
            page.locator('nav a[data-view="registrations"]').click()
            expect(page).to_have_url(f"{live_world}/admin/registrations?refresh=0")
            assert page.locator('meta[http-equiv="refresh"]').count() == 0

            # approve a pending registration there, and stay there
            first = world.pending[0]
            page.locator(
                f'tr.pending-registration[data-registration="{first}"] button.approve'
            ).click()
            expect(page.locator(".flash-ok")).to_contain_text(f"Registration #{first} approved.")
            expect(page).to_have_url(f"{live_world}/admin/registrations?refresh=0")
            expect(page.locator(f'tr.registration[data-registration="{first}"]')).to_contain_text(
                "accepted"
            )
            # a timestamp's exact UTC time is in its title
            title = page.locator("tr.registration time").first.get_attribute("title")
            assert title is not None and title.endswith(" UTC")
        finally:
            browser.close()
    reg = world.svc.store.registry.get(world.pending[0])
    assert reg is not None and reg.status == "accepted"
