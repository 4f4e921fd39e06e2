"""A try's outcome is written, whatever the database did meanwhile (issue 18).

procrastinate writes a job's outcome (``succeeded``, ``failed``, a retry) in a task of
its own once the job's function returned; when that write fails, nothing retries it
(asyncio logs ``Task exception was never retrieved``) and the job stays ``doing``: it
is only retried as a stalled job, once its worker's heartbeat is older than
``--stalled-after`` — and a long-running worker keeps heartbeating, so its job (and,
through its ``lock``, the connection's next passes) could stay there until the worker
stops.

That write fails when the database does not answer within the pool's 30 s wait
(``PoolTimeout``), or when connections keep breaking: psycopg's pool hands out its idle
connections one at a time, each found broken by its check, and backs off between them
(0, 1, 2, 4, 8, 16 s), so six broken connections in a row outlast its wait even if the
database answers again within a second (docs/scale-out.md;
tests/scale/test_outcome_write.py).

:func:`keep_outcomes` makes the worker's job manager try such a write again — logged
at each try, with a back-off of 1 s doubled up to 30 s, until the database answers —
so the job leaves ``doing`` once it does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from connector.scale.down import FIRST_WAIT, LONGEST_WAIT, reason, unreachable

log = logging.getLogger("dealsync.scale")


async def write_outcome(
    manager: Any,
    job: Any,
    what: str,
    write: Callable[[], Awaitable[None]],
    *,
    first: float = FIRST_WAIT,
    longest: float = LONGEST_WAIT,
) -> None:
    """``write()`` (the outcome ``what`` of ``job``), tried again while the database
    does not answer. A write that fails otherwise after a try that did not get its
    answer: if the job left ``doing`` meanwhile (that try was committed, or another
    worker retried it as stalled), it is done; else the error is raised."""
    failed = 0
    delay = first
    while True:
        try:
            await write()
        except Exception as exc:
            if not unreachable(exc):
                if failed and await _left_doing(manager, job):
                    log.warning(
                        "the outcome of job %s (%s) was written by an earlier try whose "
                        "answer was lost (the job is no longer doing)",
                        job.id,
                        what,
                    )
                    return
                raise
            failed += 1
            log.warning(
                "could not write the outcome of job %s (%s): the database does not answer "
                "(%s); the job stays doing until it is written: trying again in %.0f s "
                "(try %d)",
                job.id,
                what,
                reason(exc),
                delay,
                failed,
            )
            await asyncio.sleep(delay)
            delay = min(longest, delay * 2)
            continue
        if failed:
            log.warning(
                "wrote the outcome of job %s (%s) after %d failed tr%s: the database answers again",
                job.id,
                what,
                failed,
                "y" if failed == 1 else "ies",
            )
        return


async def _left_doing(manager: Any, job: Any) -> bool:
    from procrastinate.jobs import Status

    try:
        status = await manager.get_job_status_async(job.id)
    except Exception:
        return False
    return bool(status != Status.DOING)


def keep_outcomes(app: Any, *, first: float = FIRST_WAIT, longest: float = LONGEST_WAIT) -> None:
    """Make ``app``'s job manager write a job's outcome (``finish_job``, ``retry_job``)
    again until the database answers, instead of giving up at the first failure."""
    manager = app.job_manager
    finish, retry = manager.finish_job, manager.retry_job

    async def finish_job(job: Any, status: Any, delete_job: bool) -> None:
        shown = getattr(status, "value", status)
        await write_outcome(
            manager,
            job,
            str(shown),
            lambda: finish(job=job, status=status, delete_job=delete_job),
            first=first,
            longest=longest,
        )

    async def retry_job(job: Any, retry_at: Any = None, **kwargs: Any) -> None:
        await write_outcome(
            manager,
            job,
            "to retry",
            lambda: retry(job, retry_at=retry_at, **kwargs),
            first=first,
            longest=longest,
        )

    manager.finish_job = finish_job
    manager.retry_job = retry_job
