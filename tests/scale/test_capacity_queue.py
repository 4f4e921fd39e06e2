"""The admin page's "Queue & budgets" view (/admin/capacity) on a real queue
(``service.queue: procrastinate`` on PostgreSQL): its depth per queue and status and its
oldest waiting job are the queue's, before and after a worker ran the jobs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from connector.service import Service, build_app
from connector.testing.queue import Deployment

TOKEN = "capacity-admin-5e1d"


def rows(page: str) -> dict[tuple[str, str], int]:
    found = re.findall(
        r'<tr class="queue-row" data-queue="([^"]+)" data-status="([^"]+)">.*?<td>([\d,]+)</td></tr>',
        page,
    )
    return {(q, s): int(n.replace(",", "")) for q, s, n in found}


def test_the_capacity_view_shows_the_real_queues_depth_and_oldest_job(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> None:
    world = Deployment.create(tmp_path, state_url_factory("capacity"))
    admin = Service(world.config, env={"DEALSYNC_ADMIN_TOKEN": TOKEN})
    try:
        world.apply_schema()
        first, _ = world.service.request_pass("acme", "partner")
        second, _ = world.service.request_pass("globex", "partner")
        assert first.job_id is not None and second.job_id is not None
        client = TestClient(build_app(admin))
        assert client.post("/admin/login", data={"token": TOKEN}).status_code == 200
        page = client.get("/admin/capacity").text
        assert 'id="no-queue"' not in page
        assert rows(page) == {("passes", "todo"): 2}, rows(page)
        oldest = re.search(r'<p id="oldest">(.*?)</p>', page, re.S)
        assert oldest is not None
        assert f"job #{first.job_id} (" in oldest.group(1) and "of acme" in oldest.group(1)

        world.work()
        page = client.get("/admin/capacity").text
        assert rows(page) == {("passes", "succeeded"): 2}, rows(page)
        assert "No job is waiting." in page
        assert "over 2 jobs" in page
    finally:
        admin.stop()
        world.close()
