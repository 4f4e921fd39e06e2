"""``dealsync worker``: one process running pass jobs from the queue, with
``concurrency`` passes at a time (of different connections: the connection lock
keeps one per connection), a heartbeat every quarter of ``stalled_after`` and the
retry of stalled workers' jobs (:mod:`.stalled`). Stops on SIGINT/SIGTERM after the
passes it runs (procrastinate's graceful shutdown); ``until_empty`` stops once the
queue has nothing left to run (cron-like use, tests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connector.scale.app import make_app
from connector.scale.stalled import keep_retrying_stalled, retry_stalled
from connector.scale.tasks import PASSES_QUEUE

log = logging.getLogger("dealsync.scale")

DEFAULT_STALLED_AFTER = 30.0


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 1
    queues: Sequence[str] = (PASSES_QUEUE,)
    stalled_after: float = DEFAULT_STALLED_AFTER
    until_empty: bool = False
    apply_schema: bool = False


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
    app = make_app(state_url)
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
