"""Fairness on the queue: a busy partner (a storm of triggers and scheduled requests)
holds at most one waiting job per kind and one worker slot at a time (its connection's
lock), so the quiet partners' passes all run; urgent requests (triggers, webhooks) go
ahead of scheduled passes queued before them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.api import scale as queue_api
from connector.testing.queue import Deployment
from connector.testing.world import ann, counterpart, seed_deal

BUSY, QUIET = "acme", ("beta", "globex")


@pytest.fixture
def storm(tmp_path: Path, state_url_factory: Callable[[str], str]) -> Iterator[Deployment]:
    """Each quiet partner asks for one scheduled pass, then the busy one sends 12
    triggers and 12 scheduled requests."""
    world = Deployment.create(
        tmp_path, state_url_factory("fair"), partners=(BUSY, *QUIET), portal_ids=False
    )
    world.apply_schema()
    for pid in (BUSY, *QUIET):
        seed_deal(
            world.crm(pid),
            company=f"{pid} co",
            domain=f"{pid}.com",
            contacts=[ann(f"{pid}.com", pid)],
        )
    svc = world.service
    for pid in QUIET:
        assert svc._run_scheduled(pid) is None  # queued; no pass of it finished yet
    joined = []
    for _ in range(12):
        joined.append(svc.request_pass(BUSY, "partner")[1])
        assert svc._run_scheduled(BUSY) is None
    assert joined.count(False) == 1  # the other 11 triggers joined the waiting one
    yield world
    world.close()


def test_a_busy_partner_holds_one_waiting_job_per_kind_and_cannot_starve_the_quiet_ones(
    storm: Deployment,
) -> None:
    jobs = queue_api.pass_jobs(storm.program)
    per = {pid: [j for j in jobs if j.connection == pid] for pid in (BUSY, *QUIET)}
    assert sorted((j.trigger, j.priority) for j in per[BUSY]) == [("partner", 10), ("schedule", 0)]
    assert all(len(per[pid]) == 1 for pid in QUIET)

    storm.work(concurrency=3)  # room for the busy partner's two passes at once: the lock says no
    assert {j.status for j in queue_api.pass_jobs(storm.program)} == {"succeeded"}
    busy = sorted(storm.program.runs(BUSY), key=lambda r: r.id)
    assert [(r.trigger, r.status) for r in busy] == [("partner", "ok"), ("schedule", "ok")]
    assert busy[1].started_at >= busy[0].finished_at  # one pass per connection at a time
    vendor = storm.crm("vendor")
    for pid in QUIET:
        [run] = storm.program.runs(pid)
        assert (run.trigger, run.status) == ("schedule", "ok")
        [deal] = storm.crm(pid).all("deals")
        assert counterpart(vendor, pid, "deals", deal.id) is not None


def test_urgent_requests_go_ahead_of_scheduled_passes_queued_before_them(storm: Deployment) -> None:
    storm.work(concurrency=1)  # one at a time: the start order is the queue's
    runs = [r for pid in (BUSY, *QUIET) for r in storm.program.runs(pid)]
    order = [(r.connection, r.trigger) for r in sorted(runs, key=lambda r: r.started_at)]
    # the busy partner's trigger came last but goes first; the scheduled ones in turn
    assert order == [
        (BUSY, "partner"),
        ("beta", "schedule"),
        ("globex", "schedule"),
        (BUSY, "schedule"),
    ]
