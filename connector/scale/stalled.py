"""Jobs of a worker that died (killed, its machine lost) are retried: every worker
sends a heartbeat; one whose heartbeat is older than ``stalled_after`` seconds is
stalled, and any worker puts the jobs it was running back in the queue (procrastinate
keeps the job ``doing`` otherwise, for ever). The pass that was cut short left what it
committed; the retried pass resumes from there (its intents and the links make the
writes idempotent: no duplicate records). When a pass of the same connection is
already waiting (a request came while the dead job was ``doing``), the dead job is
*aborted* instead, logged as joined to the waiting one: that pass does its work, and
the queueing lock allows one waiting pass per connection."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("dealsync.scale")


async def retry_stalled(app: Any, stalled_after: float) -> list[int]:
    """Put the jobs of stalled workers back in the queue (or join them to the waiting
    pass of their connection); their ids."""
    from procrastinate.exceptions import UniqueViolation
    from procrastinate.jobs import Status

    manager = app.job_manager
    jobs = await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after)
    retried = []
    for job in jobs:
        try:
            await manager.retry_job(job)
        except UniqueViolation:  # a pass of this connection is waiting: it does the work
            await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
            log.warning(
                "job %s (%s %s) was left running by a worker that stopped; a pass of the "
                "same connection is already waiting, so it was aborted and joined to it",
                job.id,
                job.task_name,
                job.task_kwargs,
            )
            retried.append(int(job.id))
            continue
        log.warning(
            "job %s (%s %s) was left running by a worker that stopped sending its "
            "heartbeat for %ss: retried",
            job.id,
            job.task_name,
            job.task_kwargs,
            stalled_after,
        )
        retried.append(int(job.id))
    return retried


async def keep_retrying_stalled(app: Any, stalled_after: float) -> None:
    """:func:`retry_stalled` every half ``stalled_after``, until cancelled."""
    while True:
        try:
            await retry_stalled(app, stalled_after)
        except Exception:  # the database restarting must not stop the worker
            log.exception("could not look for stalled jobs; trying again")
        await asyncio.sleep(max(0.2, stalled_after / 2))
