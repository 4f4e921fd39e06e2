"""Scale-out commands (docs/scale-out.md): ``dealsync worker`` and ``dealsync enqueue``
over :mod:`connector.scale`. The packages are the optional ``[scale]`` extra, imported
only here and only when a command needs them: the embedded default never loads them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.api.errors import DealsyncError

if TYPE_CHECKING:
    from connector.api import Dealsync

MISSING_EXTRA = (
    "dealsync worker needs the scale-out packages: pip install 'dealsync[scale]' "
    "(procrastinate, psycopg, pyrate-limiter)"
)


def _scale() -> Any:
    try:
        import connector.scale.worker as worker
    except ImportError as exc:
        raise DealsyncError(f"{MISSING_EXTRA} ({exc})") from None
    return worker


def queue_url(program: Dealsync) -> str:
    """The state's URL when the queue can live there (PostgreSQL); else the error
    naming the fix: "dealsync worker needs a PostgreSQL state_url"."""
    _scale()
    from connector.scale.app import NeedsPostgres, conninfo

    try:
        conninfo(program.state_url)
    except NeedsPostgres as exc:
        raise DealsyncError(str(exc)) from None
    return program.state_url


def run_worker(
    program: Dealsync,
    *,
    concurrency: int = 1,
    queues: Sequence[str] = (),
    stalled_after: float | None = None,
    until_empty: bool = False,
    apply_schema: bool = False,
    database_retries: int | None = None,
    crash_at: Callable[[str], None] | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """``dealsync worker``: run pass jobs from the queue until stopped. A database
    that does not answer is waited for (logged, with a back-off), not a crash.
    ``database_retries``: retries of a pass whose database connection dropped before
    its job is failed (default 10)."""
    worker = _scale()
    url = queue_url(program)
    if concurrency < 1:
        raise DealsyncError("--concurrency must be 1 or more")
    if database_retries is not None and database_retries < 0:
        raise DealsyncError("--database-retries must be 0 or more")
    options = worker.WorkerOptions(
        concurrency=concurrency,
        queues=tuple(queues) or worker.WorkerOptions().queues,
        stalled_after=stalled_after or worker.DEFAULT_STALLED_AFTER,
        until_empty=until_empty,
        apply_schema=apply_schema,
        database_retries=(
            worker.WorkerOptions().database_retries
            if database_retries is None
            else database_retries
        ),
    )
    # the state's schema is migrated before any job runs: the database must answer
    # first (a worker started before it, or while it restarts, waits instead of dying)
    worker.wait_for_database(url)
    program = _queue_program(program)
    program.store  # noqa: B018  (the state's own schema, migrated before any job runs)
    from connector.state.runs import LockHeld

    worker.run_worker(
        url,
        program,
        options,
        crash_at=crash_at,
        busy=(LockHeld,),
        echo=echo,
        deliver=functools.partial(_deliver, program),
        deliver_due=functools.partial(_delivery_due, program),
    )


def _queue_program(program: Dealsync) -> Dealsync:
    """The worker's program: a pass does not deliver the outbox itself; a delivery job
    does (queued by the pass when e-mails are due: :mod:`connector.scale.tasks`)."""
    from connector.api import Dealsync

    class QueueProgram(Dealsync):
        def _deliver_after_pass(self, now: Any, crash_at: Any) -> None:
            return None  # a job of its own (one at a time, joined when one waits)

    return QueueProgram(
        program.project, env=program.env, adapter_factory=program._factory, hooks=program.hooks
    )


def _delivery_due(program: Dealsync) -> bool:
    """E-mails are due and there is a transport to send them with."""
    from connector.records import utcnow

    return program.transport() is not None and bool(program.store.outbox.due(utcnow(), 1))


def _deliver(
    program: Dealsync, now: datetime | None, crash_at: Callable[[str], None] | None
) -> tuple[int, int]:
    """A delivery job's work: the due e-mails sent (sent, not sent)."""
    from connector.api.errors import DeliveryBusy
    from connector.scale.tasks import DeliveryBusy as Retry

    try:
        done = program.send_outbox(now=now, crash_at=crash_at)
    except DeliveryBusy as exc:
        raise Retry(str(exc)) from None
    sent = sum(1 for d in done if d.ok)
    return sent, len(done) - sent


def enqueue_sync(
    program: Dealsync,
    partners: Sequence[str] | None,
    *,
    full: bool = False,
    now: str | None = None,
) -> list[str]:
    """``dealsync enqueue sync``: a pass job per connection (None: every partner's);
    one line per connection saying queued or joined."""
    _scale()
    from connector.scale.app import make_app
    from connector.scale.enqueue import enqueue_passes

    url = queue_url(program)
    ids = list(partners) if partners else [p.id for p in program.project.config.partners]
    for pid in ids:
        program.partner(pid)  # an unknown id is named before anything is queued
    app = make_app(url)
    try:
        with app.open():
            return [e.line() for e in enqueue_passes(app, ids, full=full, now=now)]
    except Exception as exc:
        if "procrastinate_" in str(exc) and "does not exist" in str(exc):
            raise DealsyncError(
                "the queue's tables are not in the state's database: run "
                "`dealsync worker --apply-schema` once"
            ) from None
        raise


def pass_jobs(program: Dealsync, task: str = "sync") -> list[Any]:
    """The pass jobs in the queue (:class:`connector.scale.queue.QueuedJob`), oldest
    first (``task="outbox"``: the outbox delivery jobs)."""
    _scale()
    from connector.scale.app import make_app
    from connector.scale.queue import delivery_jobs
    from connector.scale.queue import pass_jobs as listed

    app = make_app(queue_url(program))
    with app.open():
        return listed(app) if task == "sync" else delivery_jobs(app)


def enqueue_delivery(program: Dealsync) -> str:
    """``dealsync enqueue outbox``: a delivery job (joined when one waits)."""
    _scale()
    from connector.scale.app import make_app
    from connector.scale.tasks import request_delivery

    app = make_app(queue_url(program))
    with app.open():
        job = request_delivery(app)
    if job is None:
        return "outbox: joined the delivery already waiting in the queue"
    return f"outbox: queued (job {job})"


def queue_stats(program: Dealsync) -> Any:
    """The queue's figures (:class:`connector.state.queue.QueueStats`): depth per
    queue and status, the oldest waiting job, failed jobs per task, the enqueue→start
    latency histogram and the webhook job requests not relayed yet — for ``dealsync
    queue``, ``/metrics`` and the admin page. Read through the state's engine: no queue
    client needed; ``present`` False on SQLite or before the queue's schema."""
    from connector.state.queue import queue_stats as stats

    return stats(program.store)


def queue_lines(program: Dealsync, now: datetime | None = None) -> list[str]:
    """``dealsync queue``: the stats as lines a person reads."""
    from connector.records import utcnow

    figures = queue_stats(program)
    moment = now or utcnow()
    if not figures.present:
        return [
            "no queue in the state's database (the embedded default runs passes in "
            "`dealsync sync`/`serve`; a queue needs a PostgreSQL state_url and "
            "`dealsync worker --apply-schema`)"
        ]
    lines = []
    for (queue, status), n in sorted(figures.depth.items()):
        lines.append(f"queue {queue}: {n} {status}")
    if not figures.depth:
        lines.append("queue: empty")
    if figures.oldest is not None:
        o = figures.oldest
        who = f" of {o.connection}" if o.connection else ""
        lines.append(
            f"oldest waiting: job {o.job_id} ({o.task}{who}), queued {o.age(moment):.0f} s ago"
        )
    else:
        lines.append("oldest waiting: none")
    for task, n in sorted(figures.failed.items()):
        lines.append(f"failed: {n} {task} job(s) (`procrastinate` keeps them; see the run log)")
    for connection, job_id in sorted(figures.failed_passes.items()):
        lines.append(
            f"failed for good: the pass of {connection} (job {job_id}: its retries ran out; "
            f"see the worker's log and `dealsync runs`), none got through since; "
            f"`dealsync enqueue sync --connection {connection}` asks again"
        )
    if figures.latency_buckets:
        started = figures.latency_buckets[-1]
        mean = figures.latency_sum / started if started else 0.0
        lines.append(f"started: {started} job(s), waited {mean:.1f} s on average")
    if figures.relay_pending:
        since = figures.relay_oldest.isoformat() if figures.relay_oldest else "?"
        lines.append(
            f"not queued yet: {figures.relay_pending} webhook job request(s) since {since} "
            "(serve relays them every few seconds; check that serve runs and the queue's "
            "database answers)"
        )
    return lines
