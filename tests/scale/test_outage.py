"""PostgreSQL unreachable for a while under a running worker (issue 18): every
connection of the deployment goes through a proxy the test cuts mid-pass — connections
dropped, new ones refused for a few seconds — then resumes. The worker survives (it
reconnects), the jobs are retried and converge: no duplicate, no lost update, and the
pass's lock, which it could not give back while the database was gone, is given back
once it answers (before that fix the retries waited for the lock's 30-minute expiry)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pgproxy import PgProxy

from connector.api import scale as queue_api
from connector.testing.queue import Deployment
from connector.testing.wait import wait_for
from connector.testing.world import ann, counterpart, seed_deal

DEALS = 3
OUTAGE_SECONDS = 3.0


@pytest.fixture
def proxied(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> Iterator[tuple[PgProxy, Deployment]]:
    proxy, url = PgProxy.to(state_url_factory("outage"))
    world = Deployment.create(tmp_path, url)
    yield proxy, world
    world.close()
    proxy.stop()


def test_postgres_unreachable_mid_pass_the_worker_survives_and_jobs_converge(
    proxied: tuple[PgProxy, Deployment],
) -> None:
    proxy, world = proxied
    world.apply_schema()
    deals = {
        p: [
            seed_deal(
                world.crm(p),
                company=f"{p} {n}",
                domain=f"{p}{n}.com",
                contacts=[ann(f"{p}{n}.com", f"{p} {n}")],
            ).deal.id
            for n in range(DEALS)
        ]
        for p in ("acme", "globex")
    }
    for p in deals:
        job, _ = world.service.request_pass(p, "partner")
        assert job.queued and job.job_id is not None, job.error
    timers: list[threading.Timer] = []

    def outage(point: str) -> None:
        if point == "after_intent:deals" and not timers:
            timers.append(proxy.outage(OUTAGE_SECONDS))

    errors: list[BaseException] = []
    seen: list[list] = []
    echoed: list[str] = []

    def finished() -> list:
        try:
            queue_api.run_worker(
                world.program, until_empty=True, crash_at=outage, echo=echoed.append
            )
        except Exception as exc:  # the worker must not die of the outage
            errors.append(exc)
            raise
        jobs = queue_api.pass_jobs(world.program)
        seen.append(jobs)
        return (
            jobs
            if len(jobs) == 2 and all(j.status in ("succeeded", "failed") for j in jobs)
            else []
        )

    try:
        jobs = wait_for(finished, timeout=240)
    except AssertionError:
        raise AssertionError((seen[-1:], echoed[-5:], errors)) from None
    assert proxy.cuts == 1 and timers
    assert not errors
    assert [j.status for j in jobs] == ["succeeded", "succeeded"], jobs
    vendor = world.crm("vendor")
    for p, ids in deals.items():
        for deal in ids:
            assert counterpart(vendor, p, "deals", deal) is not None
    for obj in ("deals", "companies", "contacts"):
        sources = [
            (r.get("dealsync_partner"), r.get("dealsync_source_id")) for r in vendor.all(obj)
        ]
        assert len(sources) == len(set(sources)) == 2 * DEALS, (obj, sources)
    runs = sorted(world.program.runs("acme") + world.program.runs("globex"), key=lambda r: r.id)
    assert runs[-1].status == "ok" and any(r.status == "interrupted" for r in runs), [
        (r.partner_id, r.status) for r in runs
    ]
