"""The jobs a worker runs.

A pass of a connection is the task ``dealsync:sync_connection`` with two locks named
after the connection (:func:`lock_of`):

- ``lock``: procrastinate starts no job while another job with the same lock is
  being run, so one pass per connection at a time across every worker — the
  per-connection cap on in-flight work under the workers' ``--concurrency``: a busy
  connection holds at most one worker slot, the others go to the other connections;
- ``queueing_lock``: a second request while one is still waiting is refused by the
  queue (``AlreadyEnqueued``) and reported as *joined* (:mod:`.enqueue`): later
  requests join the waiting pass instead of piling up. Urgent requests (a partner's
  trigger, a webhook, an admin's resync) have their own queueing lock and a higher
  **priority** (:data:`URGENT`), so they go ahead of scheduled passes
  (:data:`SCHEDULED`) and are never joined to a scheduled pass waiting behind others:
  a connection has at most one urgent and one scheduled pass waiting, however busy.

Outbox delivery is the task ``dealsync:deliver_outbox`` (one at a time, at most one
waiting: :data:`OUTBOX_LOCK`), queued after each pass that left e-mails due.

A pass that finds the connection's state lock held (a pass run outside the queue,
by ``sync`` or ``serve``, or one of a worker that died on another host whose lock
has not expired yet) or loses its database connection is retried later by the
queue's retry strategy; it resumes from what was committed (intents, links)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from procrastinate import BaseRetryStrategy, JobContext, RetryStrategy
from procrastinate.retry import RetryDecision

log = logging.getLogger("dealsync.scale")

SYNC_TASK = "dealsync:sync_connection"
DELIVER_TASK = "dealsync:deliver_outbox"
PASSES_QUEUE = "passes"
OUTBOX_LOCK = "dealsync:outbox"

#: Priorities (procrastinate fetches the highest first): what a person or a partner
#: waits for, then the schedule.
URGENT = 10
SCHEDULED = 0
URGENT_TRIGGERS = frozenset({"partner", "webhook", "resync", "api", "trigger"})


def priority_of(trigger: str) -> int:
    """The job priority of a request made by ``trigger`` (the run log's trigger)."""
    return URGENT if trigger in URGENT_TRIGGERS else SCHEDULED


class ConnectionBusy(Exception):
    """The connection's state lock is held by another pass: the job is tried again."""


class DatabaseDropped(Exception):
    """The pass lost its database connection (PostgreSQL restarted, a connection
    killed): the job is tried again and resumes from what was committed."""


@dataclass(frozen=True)
class ByCause(BaseRetryStrategy):
    """Each kind of failure its own retry strategy (procrastinate's ``RetryStrategy``
    has one wait for every exception); any other exception is not retried."""

    strategies: tuple[tuple[type[Exception], RetryStrategy], ...]

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
        for kind, strategy in self.strategies:
            if isinstance(exception, kind):
                decision = strategy.get_retry_decision(exception=exception, job=job)
                if decision is None:
                    _gave_up(exception, job)
                return decision
        return None


def _gave_up(exception: BaseException, job: Any) -> None:
    """Say that a job is failed for good because its retries ran out, and how to ask
    again (the job's status is ``failed``: ``dealsync queue``, ``/metrics``)."""
    kwargs = getattr(job, "task_kwargs", None) or {}
    partner = kwargs.get("partner")
    attempts = int(getattr(job, "attempts", 0)) + 1
    if partner:
        again = f"`dealsync enqueue sync --connection {partner}` asks again"
        what = f"the pass of {partner}"
    else:
        again = "`dealsync enqueue outbox` asks again"
        what = "the outbox delivery"
    log.error(
        "job %s (%s) failed for good after %d attempt(s), the last one: %s; %s",
        getattr(job, "id", "?"),
        what,
        attempts,
        exception,
        again,
    )


#: A held state lock is waited out: 20 retries, 5 s apart then longer (the holder
#: renews its lock while it runs; a dead one's lock expires or, on the same host, is
#: taken over at once). A dropped database is tried again sooner: 1 s, then 2 s
#: longer each time, 10 retries (PostgreSQL restarting takes seconds; a worker's
#: ``--database-retries`` sets how many). A job that is not retried any more is
#: ``failed``, logged as an error naming how to ask again.
DROPPED_ATTEMPTS = 10
LOCK_RETRY = RetryStrategy(max_attempts=20, wait=5, linear_wait=5)


def dropped_retry(retries: int = DROPPED_ATTEMPTS) -> RetryStrategy:
    """The retry strategy of a job whose database connection dropped."""
    return RetryStrategy(max_attempts=retries, wait=1, linear_wait=2)


DROPPED_RETRY = dropped_retry()


def pass_retry(database_retries: int = DROPPED_ATTEMPTS) -> ByCause:
    return ByCause(
        ((ConnectionBusy, LOCK_RETRY), (DatabaseDropped, dropped_retry(database_retries)))
    )


PASS_RETRY = pass_retry()


class PassFailed(Exception):
    """The pass ended ``fatal``: the job is marked failed with the pass's error."""


def lock_of(partner: str) -> str:
    """The lock name of a connection's passes (full or not: one at a time)."""
    return f"dealsync:sync:{partner}"


def queueing_lock_of(partner: str, full: bool, urgent: bool = False) -> str:
    """The queueing-lock name: a ``--full`` request joins a waiting full pass only,
    never a plain one (which would not re-read every linked pair); an urgent request
    joins a waiting urgent one only (a scheduled one waits at a lower priority)."""
    return lock_of(partner) + (":full" if full else "") + (":urgent" if urgent else "")


ProgramOf = Callable[[], Any]


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost database connection."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OperationalError):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if type(seen).__module__.startswith("psycopg") and type(seen).__name__ in (
            "OperationalError",
            "InterfaceError",
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def sync_connection(
    context: JobContext,
    partner: str,
    full: bool = False,
    now: str | None = None,
    trigger: str = "queue",
    round: str | None = None,
    partners: list[str] | None = None,
) -> dict[str, Any]:
    """One pass of ``partner`` (``full``: as ``sync --full``; ``now``: an ISO time the
    pass runs at, for scheduled and test passes; ``trigger``: what asked, as the run
    log shows it), by the worker's program (``additional_context["program"]``).
    ``round``/``partners``: the enqueued round the job is one of (:mod:`.enqueue`) —
    its program-wide vendor reads are shared with the round's other jobs through the
    state store (:class:`~connector.engine.cycle.RoundCycle`).
    Returns the pass's summary, kept by the queue with the job; queues an outbox
    delivery when the pass left e-mails due."""
    extra = context.additional_context
    program = extra["program"]
    crash_at = extra.get("crash_at")  # tests: kill the worker at a named point
    busy = tuple(extra.get("busy", ()))  # the state's LockHeld (the API passes it)
    at = datetime.fromisoformat(now) if now else None
    kwargs: dict[str, Any] = {}
    if round:
        kwargs["cycle"] = program.round_cycle(round, partners or [partner])
    try:
        result = program.sync(
            partner, full=full, now=at, trigger=trigger, crash_at=crash_at, **kwargs
        )
    except busy as exc:
        raise ConnectionBusy(str(exc)) from exc
    except Exception as exc:
        if _dropped(exc):
            log.warning("pass of %s lost its database connection (%s): retried", partner, exc)
            raise DatabaseDropped(f"{type(exc).__name__}: {exc}") from exc
        raise
    if result.status == "fatal":
        raise PassFailed(f"pass of {partner} failed: {result.error}")
    if round:  # never silent: which round the job was in (its reads shared or not)
        log.info(
            "pass of %s in round %s (%d connections): %s (run %s)",
            partner,
            round,
            len(partners or [partner]),
            result.status,
            result.run_id,
        )
    else:
        log.info("pass of %s: %s (run %s)", partner, result.status, result.run_id)
    deliver = extra.get("deliver_due")
    if deliver is not None and deliver():
        request_delivery(context.app)
    if crash_at is not None:
        crash_at("job_done:sync")  # tests: the pass is done, the job not yet marked so
    done: dict[str, Any] = {"connection": partner, "run": result.run_id, "status": result.status}
    return done | ({"round": round} if round else {})


def request_delivery(app: Any) -> int | None:
    """Queue an outbox delivery (None: one is waiting already and will send it all)."""
    from procrastinate.exceptions import AlreadyEnqueued

    try:
        task = app.tasks[DELIVER_TASK].configure(
            lock=OUTBOX_LOCK, queueing_lock=OUTBOX_LOCK, priority=URGENT
        )
        return int(task.defer())
    except AlreadyEnqueued:
        return None


def deliver_outbox(context: JobContext, now: str | None = None) -> dict[str, Any]:
    """Send the outbox's due e-mails (``additional_context["deliver"]``). A delivery
    running elsewhere (``dealsync outbox send``) makes the job retry later; a job
    delivered twice sends nothing twice: a sent message's row says ``sent``."""
    extra = context.additional_context
    crash_at = extra.get("crash_at")
    at = datetime.fromisoformat(now) if now else None
    try:
        sent, failed = extra["deliver"](at, crash_at)
    except Exception as exc:
        if _dropped(exc):
            raise DatabaseDropped(f"{type(exc).__name__}: {exc}") from exc
        raise
    if crash_at is not None:
        crash_at("job_done:outbox")
    return {"sent": sent, "failed": failed}


class DeliveryBusy(Exception):
    """Another delivery is running: this job is tried again (it may find nothing due)."""


DELIVERY_BUSY_RETRY = RetryStrategy(max_attempts=10, wait=10, linear_wait=10)
DELIVERY_RETRY = ByCause(((DeliveryBusy, DELIVERY_BUSY_RETRY), (DatabaseDropped, DROPPED_RETRY)))


def register(app: Any, *, database_retries: int | None = None) -> None:
    """Add dealsync's tasks to a new procrastinate app (each app its own task objects:
    a process may open several apps, e.g. the tests). ``database_retries``: retries of
    a job whose database connection dropped (default :data:`DROPPED_ATTEMPTS`); the
    retry is decided by the worker that ran the job, so it is the worker's setting."""
    retries = DROPPED_ATTEMPTS if database_retries is None else database_retries
    passes, deliveries = PASS_RETRY, DELIVERY_RETRY
    if retries != DROPPED_ATTEMPTS:
        passes = pass_retry(retries)
        deliveries = ByCause(
            ((DeliveryBusy, DELIVERY_BUSY_RETRY), (DatabaseDropped, dropped_retry(retries)))
        )
    app.task(name=SYNC_TASK, queue=PASSES_QUEUE, pass_context=True, retry=passes)(sync_connection)
    app.task(name=DELIVER_TASK, queue=PASSES_QUEUE, pass_context=True, retry=deliveries)(
        deliver_outbox
    )
