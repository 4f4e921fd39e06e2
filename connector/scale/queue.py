"""What is in the queue, job by job: the pass jobs (and outbox deliveries), their
status, attempts and priority (a job retried after its worker died has two attempts),
for ``dealsync`` and the tests. The figures (depth, oldest, latency) for ``/metrics``
and ``dealsync queue`` are :func:`connector.state.queue.queue_stats`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.scale.tasks import DELIVER_TASK, SYNC_TASK


@dataclass(frozen=True)
class QueuedJob:
    id: int
    connection: str
    status: str  # todo | doing | succeeded | failed | cancelled | aborted
    attempts: int
    priority: int = 0
    trigger: str = "queue"
    round: str | None = None  # the round the job is in (enqueue sync --all, a tick)


def jobs_of(app: Any, task: str) -> list[QueuedJob]:
    """Every job of ``task`` the queue keeps (an opened app), oldest first."""
    out = [
        QueuedJob(
            int(j.id),
            str(j.task_kwargs.get("partner", "@outbox")),
            str(j.status),
            int(j.attempts),
            int(j.priority),
            str(j.task_kwargs.get("trigger", "queue")),
            j.task_kwargs.get("round"),
        )
        for j in app.job_manager.list_jobs(task=task)
    ]
    return sorted(out, key=lambda j: j.id)


def pass_jobs(app: Any) -> list[QueuedJob]:
    """Every pass job the queue keeps (an opened app), oldest first."""
    return jobs_of(app, SYNC_TASK)


def delivery_jobs(app: Any) -> list[QueuedJob]:
    """Every outbox delivery job the queue keeps, oldest first."""
    return jobs_of(app, DELIVER_TASK)


SCHEDULE_TICKS = "dealsync.schedule"  # its rows in procrastinate_periodic_defers


def claim_tick(app: Any, connection: str, tick: int) -> bool:
    """Take tick ``tick`` (epoch seconds) of ``connection``'s schedule for this
    ``serve`` process (an opened sync app): True once per (connection, tick) across
    every process — procrastinate's own dedupe table of periodic defers, unique on
    (task, periodic id, timestamp). The connection's older ticks are deleted."""
    row = app.connector.execute_query_one(
        "WITH claimed AS (INSERT INTO procrastinate_periodic_defers "
        "(task_name, periodic_id, defer_timestamp) "
        "VALUES (%(task)s, %(connection)s, %(tick)s) ON CONFLICT DO NOTHING RETURNING id) "
        "SELECT count(*) AS claimed FROM claimed",
        task=SCHEDULE_TICKS,
        connection=connection,
        tick=tick,
    )
    if not row["claimed"]:
        return False
    app.connector.execute_query(
        "DELETE FROM procrastinate_periodic_defers WHERE task_name = %(task)s "
        "AND periodic_id = %(connection)s AND defer_timestamp < %(tick)s",
        task=SCHEDULE_TICKS,
        connection=connection,
        tick=tick,
    )
    return True
