"""The jobs a worker runs. A pass of a connection is the task
``dealsync:sync_connection`` with two locks named after the connection (:func:`lock_of`):

- ``lock``: procrastinate starts no job while another job with the same lock is
  being run, so one pass per connection at a time across every worker;
- ``queueing_lock``: a second request while one is still waiting is refused by the
  queue (``AlreadyEnqueued``) and reported as *joined* (:mod:`.enqueue`): later
  requests join the waiting pass instead of piling up.

A pass that finds the connection's state lock held (a pass run outside the queue,
by ``sync`` or ``serve``, or one of a worker that died on another host whose lock
has not expired yet) is retried later by the queue's retry strategy."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from procrastinate import JobContext, RetryStrategy

log = logging.getLogger("dealsync.scale")

SYNC_TASK = "dealsync:sync_connection"
PASSES_QUEUE = "passes"


class ConnectionBusy(Exception):
    """The connection's state lock is held by another pass: the job is tried again."""


#: A held state lock is waited out: 20 attempts, 5 s apart then longer (the holder
#: renews its lock while it runs; a dead one's lock expires or, on the same host, is
#: taken over at once).
LOCK_RETRY = RetryStrategy(
    max_attempts=20, wait=5, linear_wait=5, retry_exceptions={ConnectionBusy}
)


class PassFailed(Exception):
    """The pass ended ``fatal``: the job is marked failed with the pass's error."""


def lock_of(partner: str) -> str:
    """The lock name of a connection's passes (full or not: one at a time)."""
    return f"dealsync:sync:{partner}"


def queueing_lock_of(partner: str, full: bool) -> str:
    """The queueing-lock name: a ``--full`` request joins a waiting full pass only,
    never a plain one (which would not re-read every linked pair)."""
    return lock_of(partner) + (":full" if full else "")


ProgramOf = Callable[[], Any]


def sync_connection(
    context: JobContext, partner: str, full: bool = False, now: str | None = None
) -> dict[str, Any]:
    """One pass of ``partner`` (``full``: as ``sync --full``; ``now``: an ISO time the
    pass runs at, for scheduled and test passes), by the worker's program
    (``additional_context["program"]``). Returns the pass's summary, kept by the
    queue with the job."""
    extra = context.additional_context
    program = extra["program"]
    crash_at = extra.get("crash_at")  # tests: kill the worker at a named point
    busy = tuple(extra.get("busy", ()))  # the state's LockHeld (the API passes it)
    at = datetime.fromisoformat(now) if now else None
    try:
        result = program.sync(partner, full=full, now=at, trigger="queue", crash_at=crash_at)
    except busy as exc:
        raise ConnectionBusy(str(exc)) from exc
    if result.status == "fatal":
        raise PassFailed(f"pass of {partner} failed: {result.error}")
    log.info("pass of %s: %s (run %s)", partner, result.status, result.run_id)
    return {"connection": partner, "run": result.run_id, "status": result.status}


def register(app: Any) -> None:
    """Add dealsync's tasks to a new procrastinate app (each app its own task objects:
    a process may open several apps, e.g. the tests)."""
    app.task(name=SYNC_TASK, queue=PASSES_QUEUE, pass_context=True, retry=LOCK_RETRY)(
        sync_connection
    )
