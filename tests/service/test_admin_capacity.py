"""The admin page's capacity view (issue 18): the queue's depth, oldest job and latency
when workers run passes from a queue, and each portal's budget windows with their use —
and, on the embedded default, that there is no queue and what a deployment needs for one."""

from __future__ import annotations

import re

from service_support import Harness
from starlette.testclient import TestClient
from test_admin_views import login

from connector.adapters.ratelimit import budget_use, limiter_for
from connector.service import build_app


def test_the_embedded_default_says_it_has_no_queue_and_what_one_needs(harness: Harness) -> None:
    client = TestClient(build_app(harness.service()))
    login(client)
    page = client.get("/admin/capacity")
    assert page.status_code == 200
    assert 'data-view="capacity"' in page.text  # in the nav of every view
    assert 'id="no-queue"' in page.text
    assert "service.queue: procrastinate" in page.text
    assert "dealsync worker --apply-schema" in page.text
    assert "Kept in this process only" in page.text


def test_each_portals_budget_windows_show_with_their_use(harness: Harness) -> None:
    limits = limiter_for("https://capacity.example", "t-capacity", 100, 5, name="cap-vendor")
    for _ in range(7):
        limits.requests.acquire()
    limits.search.acquire()
    client = TestClient(build_app(harness.service()))
    login(client)
    page = client.get("/admin/capacity").text
    row = r'<tr class="budget" data-portal="cap-vendor" data-window="(\w+)">(.*?)</tr>'
    rows = {w: re.sub(r"\s+", "", cells) for w, cells in re.findall(row, page, re.S)}
    assert set(rows) >= {"requests", "search"}
    uses = {u.window: u for u in budget_use() if u.portal == "cap-vendor"}
    assert uses["requests"].used == 7 and uses["search"].used == 1
    assert "<td>7</td><td>100</td><td>7%</td>" in rows["requests"]
    assert "<td>1</td><td>5</td>" in rows["search"]


def test_the_capacity_view_needs_a_session(harness: Harness) -> None:
    client = TestClient(build_app(harness.service()))
    page = client.get("/admin/capacity", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
