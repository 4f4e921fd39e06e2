"""Three ``dealsync worker`` processes on one PostgreSQL over three partners' CRMs, with
kills: a worker dies mid-pass (``SIGKILL`` after recording its deal intents) in the
initial sync, another is killed before the second round; every pass is retried or run
by the others, and the vendor ends with exactly one record per partner record
carrying each partner's latest values — no duplicate, no lost update."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.api import scale as queue_api
from connector.testing.queue import Deployment
from connector.testing.wait import wait_for
from connector.testing.world import ann, counterpart, run_cli, seed_deal

PARTNERS = ("acme", "beta", "globex")
DEALS = 4


def worker(world: Deployment, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A worker process of the project (its output in ``log``)."""
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "-c", str(world.config), "worker", *extra],
        env=dict(os.environ),
        stdout=out,
        stderr=out,
    )


@pytest.fixture
def world(tmp_path: Path, state_url_factory: Callable[[str], str]) -> Iterator[Deployment]:
    deployment = Deployment.create(
        tmp_path, state_url_factory("workload"), partners=PARTNERS, portal_ids=False
    )
    deployment.apply_schema()
    yield deployment
    deployment.close()


def all_done(world: Deployment, logs: list[Path]) -> list:
    def done() -> list:
        jobs = queue_api.pass_jobs(world.program)
        return jobs if jobs and all(j.status in ("succeeded", "aborted") for j in jobs) else []

    try:
        return wait_for(done, timeout=240)
    except AssertionError:
        raise AssertionError("\n".join(p.read_text() for p in logs)) from None


def test_three_workers_with_kills_converge_with_no_duplicate_and_no_lost_update(
    world: Deployment, tmp_path: Path
) -> None:
    deals = {
        pid: [
            seed_deal(
                world.crm(pid),
                company=f"{pid} {n}",
                domain=f"{pid}{n}.com",
                contacts=[ann(f"{pid}{n}.com", f"{pid} {n}")],
            ).deal.id
            for n in range(DEALS)
        ]
        for pid in PARTNERS
    }
    assert "queued (job" in run_cli(world.config, "enqueue", "sync", "--all").output
    # a worker dies in the first pass it takes, after recording its deal intents
    dying = tmp_path / "dying.log"
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector.testing.scale",
            "worker",
            str(world.config),
            "--crash-at",
            "after_intent:deals",
        ],
        env=dict(os.environ),
        stdout=dying.open("wb"),
        stderr=subprocess.STDOUT,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, dying.read_text()

    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    workers = [worker(world, log, "--concurrency", "2", "--stalled-after", "1") for log in logs]
    try:
        first = all_done(world, logs)
        assert len(first) == len(PARTNERS)
        assert sum(j.attempts for j in first) == len(PARTNERS) + 1  # the dead one's retried
        # one worker is killed outright; the round of updates is left to the other two
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=60)
        amounts = {}
        for pid in PARTNERS:
            crm = world.crm(pid)
            for n, deal in enumerate(deals[pid]):
                amounts[(pid, deal)] = str(5000 + 10 * n)
                crm.edit("deals", deal, {"amount": amounts[(pid, deal)]})
        assert "queued (job" in run_cli(world.config, "enqueue", "sync", "--all").output
        wait_for(
            lambda: (
                len(jobs := queue_api.pass_jobs(world.program)) == 2 * len(PARTNERS)
                and all(j.status in ("succeeded", "aborted") for j in jobs)
            ),
            timeout=240,
        )
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(timeout=60)

    vendor = world.crm("vendor")
    for pid in PARTNERS:
        for deal in deals[pid]:
            found = counterpart(vendor, pid, "deals", deal)  # fails on a duplicate
            assert found is not None, (pid, deal)
            assert found.get("amount") == amounts[(pid, deal)], (pid, deal)  # no lost update
    for obj in ("deals", "companies", "contacts"):
        sources = [r.get("dealsync_source_id") for r in vendor.all(obj)]
        assert len(sources) == len(set(sources)) == len(PARTNERS) * DEALS, (obj, sources)
    statuses = [r.status for pid in PARTNERS for r in world.program.runs(pid)]
    assert statuses.count("interrupted") == 1 and statuses.count("ok") == 2 * len(PARTNERS)
