"""``dealsync worker``: one process running pass jobs from the queue, with
``concurrency`` passes at a time (of different connections: the connection lock
keeps one per connection), a heartbeat every quarter of ``stalled_after`` and the
retry of stalled workers' jobs (:mod:`.stalled`). Stops on SIGINT/SIGTERM after the
passes it runs (procrastinate's graceful shutdown); ``until_empty`` stops once the
queue has nothing left to run (cron-like use, tests).

A worker started while the state's database does not answer, or whose queue loses it
for good (its pool gave up), does not die: it logs that the database (its URL without
password) does not answer, waits for it with a growing back-off (1 s doubled up to
30 s) and starts (again) once it answers (:func:`wait_for_database`). A try's outcome
that could not be written (its pool gave up after a cut) is written again until the
database answers (:mod:`.outcome`): the job does not stay ``doing``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from connector.scale.app import conninfo, make_app
from connector.scale.down import FIRST_WAIT, LONGEST_WAIT, reason, unreachable
from connector.scale.outcome import keep_outcomes
from connector.scale.stalled import keep_retrying_stalled, retry_stalled
from connector.scale.tasks import DROPPED_ATTEMPTS, PASSES_QUEUE

log = logging.getLogger("dealsync.scale")

DEFAULT_STALLED_AFTER = 30.0
#: the back-off between two tries of a database that does not answer: 1 s, doubled
#: each time, at most 30 s


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 1
    queues: Sequence[str] = (PASSES_QUEUE,)
    stalled_after: float = DEFAULT_STALLED_AFTER
    until_empty: bool = False
    apply_schema: bool = False
    #: retries of a pass whose database connection dropped, before its job is failed
    database_retries: int = DROPPED_ATTEMPTS


def shown_url(state_url: str) -> str:
    """The database a person is told about: driver, password and options left out."""
    url = make_url(state_url)
    return url.set(drivername=url.get_backend_name(), query={}).render_as_string(hide_password=True)


def wait_for_database(
    state_url: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    first: float = FIRST_WAIT,
    longest: float = LONGEST_WAIT,
) -> int:
    """Return once the state's database answers a connection; until then log, at
    each try, that it does not (named without its password) and when the worker tries
    again (1 s, doubled up to 30 s). The number of tries that failed (0: it answered)."""
    import psycopg

    shown = shown_url(state_url)
    failed = 0
    delay = first
    while True:
        try:
            with psycopg.connect(conninfo(state_url), connect_timeout=10):
                pass
        except psycopg.OperationalError as exc:
            failed += 1
            log.warning(
                "the state's database (%s) does not answer (%s): the worker waits for it "
                "and starts once it answers; trying again in %.0f s (try %d)",
                shown,
                reason(exc),
                delay,
                failed,
            )
            sleep(delay)
            delay = min(longest, delay * 2)
            continue
        if failed:
            log.warning(
                "the state's database (%s) answers again after %d failed tr%s: the worker starts",
                shown,
                failed,
                "y" if failed == 1 else "ies",
            )
        return failed


async def _apply(app: Any) -> bool:
    """procrastinate's schema in the state's database, once (False: already there)."""
    row = await app.connector.execute_query_one_async(
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"
    )
    if row and row["present"]:
        return False
    await app.schema_manager.apply_schema_async()
    return True


def run_worker(
    state_url: str,
    program: Any,
    options: WorkerOptions,
    *,
    crash_at: Callable[[str], None] | None = None,
    busy: tuple[type[Exception], ...] = (),
    echo: Callable[[str], None] = print,
    deliver: Callable[..., tuple[int, int]] | None = None,
    deliver_due: Callable[[], bool] | None = None,
) -> None:
    """Run the worker until stopped (or, ``until_empty``, until the queue is empty).
    ``busy``: the exceptions that mean "another pass holds the connection" (the
    state's ``LockHeld``): the job is retried later. ``deliver(now, crash_at)``: an
    outbox delivery job's work; ``deliver_due()``: whether a pass leaves e-mails due
    (a delivery job is then queued)."""
    extra = {
        "program": program,
        "crash_at": crash_at,
        "busy": busy,
        "deliver": deliver,
        "deliver_due": deliver_due,
    }
    asyncio.run(_run(state_url, extra, options, echo))


async def _run(
    state_url: str,
    extra: dict[str, Any],
    options: WorkerOptions,
    echo: Callable[[str], None],
) -> None:
    """The worker; when its database stops answering for longer than its pool waits
    (it cannot even register or fetch a job), wait for the database and start again."""
    while True:
        try:
            await _run_once(state_url, extra, options, echo)
            return
        except Exception as exc:
            if not unreachable(exc):
                raise
            log.warning(
                "the state's database (%s) does not answer (%s): the worker stopped "
                "taking jobs and waits for it",
                shown_url(state_url),
                reason(exc),
            )
            await asyncio.to_thread(wait_for_database, state_url)


async def _run_once(
    state_url: str,
    extra: dict[str, Any],
    options: WorkerOptions,
    echo: Callable[[str], None],
) -> None:
    app = make_app(state_url, database_retries=options.database_retries)
    keep_outcomes(app)  # a try's outcome is written even if the pool gave up once
    async with app.open_async():
        if options.apply_schema and await _apply(app):
            echo("applied the queue's schema (procrastinate) to the state's database")
        # a worker that died before this one started: its jobs go back first
        for job_id in await retry_stalled(app, options.stalled_after):
            echo(f"job {job_id} of a worker that stopped was retried (or joined to a waiting pass)")
        reaper = asyncio.create_task(keep_retrying_stalled(app, options.stalled_after))
        echo(
            f"worker: {options.concurrency} pass(es) at a time from queue(s) "
            f"{', '.join(options.queues)}"
        )
        try:
            while True:
                await app.run_worker_async(
                    queues=list(options.queues),
                    concurrency=options.concurrency,
                    wait=not options.until_empty,
                    update_heartbeat_interval=max(0.1, options.stalled_after / 4),
                    stalled_worker_timeout=options.stalled_after,
                    additional_context=extra,
                    delete_jobs="never",
                )
                # procrastinate's "no job to fetch" counts a job behind its connection's
                # lock as none: until empty means none left that is due now
                if not options.until_empty or not await _due(app, options.queues):
                    break
                await asyncio.sleep(0.2)  # the running pass holding that lock may end
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper


async def _due(app: Any, queues: Sequence[str]) -> int:
    """Jobs waiting in ``queues`` that are due now (not a retry scheduled later)."""
    now = datetime.now(UTC)
    count = 0
    for queue in queues:
        for job in await app.job_manager.list_jobs_async(queue=queue, status="todo"):
            if job.scheduled_at is None or job.scheduled_at <= now:
                count += 1
    return count
