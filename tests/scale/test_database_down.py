"""PostgreSQL gone for longer than a blip (issue 18), through the proxy that cuts the
deployment's connections (tests/scale/pgproxy.py; the machine's PostgreSQL is never
restarted):

- a ``dealsync worker`` *started* while the database refuses connections does not die:
  it logs that the database (named without its password) does not answer and that it
  tries again, backs off, and runs the queued jobs once it answers — they converge;
- a pass that loses the database at every try runs out of its retries
  (``--database-retries``): its job is ``failed``, logged with what to do, shown by
  ``dealsync queue`` and on ``/metrics``, and ``dealsync enqueue sync`` afterwards runs
  the pass: exactly one vendor counterpart per partner record."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pgproxy import PgProxy
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from connector.api import scale as queue_api
from connector.service import build_app
from connector.testing.queue import Deployment
from connector.testing.wait import wait_for
from connector.testing.world import ann, counterpart, run_cli, seed_deal

DEALS = 2
PASSWORD = "s3cret-pw"  # the server trusts the test user: a password it never asks for
RETRIES = 2


@pytest.fixture
def proxied(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> Iterator[tuple[PgProxy, Deployment]]:
    proxy, url = PgProxy.to(state_url_factory("down"))
    with_password = make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)
    world = Deployment.create(tmp_path, with_password)
    yield proxy, world
    world.close()
    proxy.stop()


def _seed(world: Deployment, partners: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        p: [
            seed_deal(
                world.crm(p),
                company=f"{p} {n}",
                domain=f"{p}{n}.com",
                contacts=[ann(f"{p}{n}.com", f"{p} {n}")],
            ).deal.id
            for n in range(DEALS)
        ]
        for p in partners
    }


def _converged(world: Deployment, deals: dict[str, list[str]]) -> None:
    """Exactly one vendor counterpart per partner deal, company and contact."""
    vendor = world.crm("vendor")
    for p, ids in deals.items():
        for deal in ids:
            assert counterpart(vendor, p, "deals", deal) is not None, (p, deal)
    for obj in ("deals", "companies", "contacts"):
        sources = [
            (r.get("dealsync_partner"), r.get("dealsync_source_id")) for r in vendor.all(obj)
        ]
        assert len(sources) == len(set(sources)) == len(deals) * DEALS, (obj, sources)


def test_a_worker_started_while_postgres_is_unreachable_waits_and_then_runs_the_jobs(
    proxied: tuple[PgProxy, Deployment], tmp_path: Path
) -> None:
    proxy, world = proxied
    world.apply_schema()
    deals = _seed(world, ("acme", "globex"))
    queued = run_cli(world.config, "enqueue", "sync", "--all")
    assert queued.exit_code == 0 and queued.output.count("queued (job") == 2, queued.output
    proxy.cut()  # the database is gone before the worker starts

    log = tmp_path / "worker.log"
    command = ("-m", "connector.cli", "-c", str(world.config), "worker", "--until-empty")
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # it says so and tries again (a second try: it backs off rather than giving up)
        wait_for(
            lambda: log.read_text().count("does not answer") >= 2 or worker.poll() is not None,
            timeout=60,
        )
        text = log.read_text()
        assert worker.poll() is None, (worker.returncode, text)  # alive, waiting
        database = make_url(world.program.state_url).database
        shown = f"postgresql://postgres:***@127.0.0.1:{proxy.port}/{database}"
        assert f"the state's database ({shown}) does not answer" in text, text
        assert "trying again in" in text, text
        assert PASSWORD not in text and "Traceback" not in text, text
        proxy.resume()
        assert worker.wait(timeout=120) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    text = log.read_text()
    assert "answers again" in text and "Traceback" not in text, text
    jobs = queue_api.pass_jobs(world.program)
    assert [j.status for j in jobs] == ["succeeded", "succeeded"], jobs
    _converged(world, deals)


def test_a_pass_losing_postgres_at_every_try_fails_visibly_and_enqueue_sync_asks_again(
    proxied: tuple[PgProxy, Deployment], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, world = proxied
    world.apply_schema()
    deals = _seed(world, ("acme",))
    queued = run_cli(world.config, "enqueue", "sync", "--connection", "acme")
    assert queued.exit_code == 0 and "acme: queued (job" in queued.output, queued.output
    # the database goes away in every try of the pass, after its deal intents are
    # recorded, and comes back a moment later: each try loses its connection
    timers: list[threading.Timer] = []
    losing = [True]

    def outage(point: str) -> None:
        if point == "after_intent:deals" and losing[0]:
            timers.append(proxy.outage(1.0))

    def run(until: Callable[[list], bool]) -> list:
        seen: list[list] = []

        def done() -> list:
            queue_api.run_worker(
                world.program,
                until_empty=True,
                database_retries=RETRIES,
                crash_at=outage,
                echo=lambda _: None,
            )
            jobs = queue_api.pass_jobs(world.program)
            seen.append(jobs)
            return jobs if until(jobs) else []

        try:
            return wait_for(done, timeout=180)
        except AssertionError:
            raise AssertionError((seen[-1:], caplog.text[-3000:])) from None

    with caplog.at_level(logging.WARNING, logger="dealsync"):
        [job] = run(lambda jobs: jobs[0].status == "failed")
    # a first try and RETRIES retries, each of which lost the database (a try may lose
    # it before the cut: a connection its pool kept from the last outage)
    assert job.attempts >= RETRIES + 1 and timers, (job, len(timers))
    assert f"job {job.id} (the pass of acme) failed for good after" in caplog.text
    assert "`dealsync enqueue sync --connection acme` asks again" in caplog.text

    # where the user looks: `dealsync queue` and /metrics
    shown = run_cli(world.config, "queue")
    assert shown.exit_code == 0, shown.output
    assert "failed: 1 dealsync:sync_connection job(s)" in shown.output, shown.output
    assert (
        f"failed for good: the pass of acme (job {job.id}: its retries ran out" in shown.output
    ), shown.output
    assert "`dealsync enqueue sync --connection acme` asks again" in shown.output
    with TestClient(build_app(world.service)) as client:
        metrics = client.get("/metrics").text
    assert 'dealsync_queue_jobs_failed{task="dealsync:sync_connection"} 1.0' in metrics
    assert 'dealsync_queue_pass_failed{connection="acme"} 1.0' in metrics

    # the database answers again; asking again runs the pass: no duplicate
    losing[0] = False
    again = run_cli(world.config, "enqueue", "sync", "--connection", "acme")
    assert again.exit_code == 0 and "acme: queued (job" in again.output, again.output
    jobs = run(lambda jobs: len(jobs) == 2 and jobs[1].status == "succeeded")
    assert [j.status for j in jobs] == ["failed", "succeeded"], jobs
    _converged(world, deals)
    runs = sorted(world.program.runs("acme"), key=lambda r: r.id)
    assert runs[-1].status == "ok" and runs[0].status == "interrupted", [r.status for r in runs]
    after = run_cli(world.config, "queue").output
    assert "failed for good: the pass of acme" not in after, after  # it got through since
    with TestClient(build_app(world.service)) as client:
        assert "dealsync_queue_pass_failed{" not in client.get("/metrics").text
