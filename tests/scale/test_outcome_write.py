"""A try's outcome is written even when the queue's pool gave up on it (issue 18).

Every connection to PostgreSQL is cut (tests/scale/pgproxy.py) right after a pass is
done and before its job is marked, and stays cut until the worker says it could not
write the job's outcome: that write waits the pool's 30 s and gives up
(``PoolTimeout``) — what a 1 s cut also did, sometimes, in test_database_down, and what
connections that keep breaking do (the pool backs off 0, 1, 2, 4, 8, 16 s between the
broken connections it hands out). Before the fix
procrastinate left that write unretried (``Task exception was never retrieved``), the
worker never said so, and the job stayed ``doing``; now the worker logs that it could
not write the outcome, tries again until the database answers, and the job is
``succeeded`` when the worker stops, after one attempt — the pass converged. (Without
the fix the proxy is resumed anyway after a generous wait, so the test fails instead of
hanging: the worker, its heartbeat lost too, waits for the database, starts again and
retries the job as a stalled one — a second attempt, and neither line logged.)"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pgproxy import PgProxy

from connector.api import scale as queue_api
from connector.testing.queue import Deployment
from connector.testing.world import ann, counterpart, run_cli, seed_deal


@pytest.fixture
def proxied(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> Iterator[tuple[PgProxy, Deployment]]:
    proxy, url = PgProxy.to(state_url_factory("outcome"))
    world = Deployment.create(tmp_path, url)
    yield proxy, world
    world.close()
    proxy.stop()


def test_a_jobs_outcome_lost_by_the_pool_after_a_cut_is_written_once_the_database_answers(
    proxied: tuple[PgProxy, Deployment], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, world = proxied
    world.apply_schema()
    deal = seed_deal(
        world.crm("acme"),
        company="acme 0",
        domain="acme0.com",
        contacts=[ann("acme0.com", "acme 0")],
    ).deal.id
    queued = run_cli(world.config, "enqueue", "sync", "--connection", "acme")
    assert queued.exit_code == 0 and "acme: queued (job" in queued.output, queued.output
    cuts: list[str] = []
    resumed = threading.Lock()

    def resume() -> None:
        if resumed.acquire(blocking=False):
            proxy.resume()

    def outage(point: str) -> None:
        # the pass is done, its job not marked yet: every connection is cut
        if point == "job_done:sync" and not cuts:
            cuts.append(point)
            proxy.cut()
            fallback = threading.Timer(120, resume)  # never hang the suite
            fallback.daemon = True
            fallback.start()

    class ResumeOnceSaid(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "could not write the outcome of job" in record.getMessage():
                resume()  # the database answers again

    said = ResumeOnceSaid()
    logging.getLogger("dealsync.scale").addHandler(said)
    try:
        with caplog.at_level(logging.WARNING, logger="dealsync"):
            queue_api.run_worker(
                world.program, until_empty=True, crash_at=outage, echo=lambda _: None
            )
    finally:
        logging.getLogger("dealsync.scale").removeHandler(said)
        resume()
    assert cuts, "the pass never reached the point of the cut"
    [job] = queue_api.pass_jobs(world.program)
    # the job left `doing`: its outcome was written once the database answered
    assert job.status == "succeeded", (job, caplog.text[-3000:])
    text = caplog.text
    assert f"could not write the outcome of job {job.id} (succeeded)" in text, text[-3000:]
    assert f"wrote the outcome of job {job.id} (succeeded) after" in text, text[-3000:]
    # its own try's outcome, not a stalled job's retry that ran the pass again
    assert job.attempts == 1 and "was left running by a worker" not in text, (job, text[-3000:])
    vendor = world.crm("vendor")
    assert counterpart(vendor, "acme", "deals", deal) is not None
    assert world.program.runs("acme")[-1].status == "ok"


class _Manager:
    """A job manager whose status query answers ``status``."""

    def __init__(self, status: str) -> None:
        self.status = status

    async def get_job_status_async(self, job_id: int) -> object:
        from procrastinate.jobs import Status

        return Status(self.status)


class _Job:
    id = 7


def _writes(*outcomes: BaseException | None) -> tuple[list[int], Callable[[], Any]]:
    """A write failing with each of ``outcomes`` in turn (None: it succeeds)."""
    calls: list[int] = []

    async def write() -> None:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if outcome is not None:
            raise outcome

    return calls, write


def _dropped() -> BaseException:
    import psycopg
    from procrastinate.exceptions import ConnectorException

    try:
        raise psycopg.OperationalError("couldn't get a connection after 30.00 sec")
    except psycopg.OperationalError as exc:
        wrapped = ConnectorException()
        wrapped.__cause__ = exc
        return wrapped


def test_an_outcome_write_is_tried_again_while_the_database_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from connector.scale.outcome import write_outcome

    calls, write = _writes(_dropped(), _dropped(), None)
    with caplog.at_level(logging.WARNING, logger="dealsync"):
        asyncio.run(write_outcome(_Manager("doing"), _Job(), "succeeded", write, first=0))
    assert len(calls) == 3
    assert caplog.text.count("could not write the outcome of job 7 (succeeded)") == 2
    assert "couldn't get a connection after 30.00 sec" in caplog.text
    assert "wrote the outcome of job 7 (succeeded) after 2 failed tries" in caplog.text


def test_an_outcome_written_by_a_try_that_lost_its_answer_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from procrastinate.exceptions import ConnectorException

    from connector.scale.outcome import write_outcome

    # the first try was committed but its answer lost; the second finds the job done
    calls, write = _writes(_dropped(), ConnectorException("not in doing status"))
    with caplog.at_level(logging.WARNING, logger="dealsync"):
        asyncio.run(write_outcome(_Manager("succeeded"), _Job(), "succeeded", write, first=0))
    assert len(calls) == 2
    assert "was written by an earlier try whose answer was lost" in caplog.text


def test_an_outcome_write_failing_otherwise_is_raised() -> None:
    from procrastinate.exceptions import ConnectorException

    from connector.scale.outcome import write_outcome

    # at the first try (nothing lost before it), and with the job still doing
    for manager, outcomes in (
        (_Manager("succeeded"), (ConnectorException("boom"),)),
        (_Manager("doing"), (_dropped(), ConnectorException("boom"))),
    ):
        calls, write = _writes(*outcomes)
        with pytest.raises(ConnectorException, match="boom"):
            asyncio.run(write_outcome(manager, _Job(), "succeeded", write, first=0))
        assert len(calls) == len(outcomes)
