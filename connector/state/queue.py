"""What the scale-out queue holds, read from procrastinate's tables in the state's
PostgreSQL (the queue lives there: :mod:`connector.scale.app`) through the state's
engine, so ``serve``'s ``/metrics``, ``dealsync queue`` and the admin page need no
queue client: depth per queue and status, the oldest job waiting, failed jobs per
task, and how long jobs waited between being queued and started.

Read-only; procrastinate writes these tables. On SQLite, or before the queue's schema
is applied, there is no queue: :func:`queue_stats` says so (``present`` False)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import text

from connector.state.jobs import JobRequests
from connector.state.tables import Database

#: seconds between a job being queued and a worker starting it
LATENCY_BUCKETS: tuple[float, ...] = (0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


@dataclass(frozen=True)
class Oldest:
    """The job waiting longest (due now, not a retry scheduled for later)."""

    job_id: int
    task: str
    connection: str | None
    queued_at: datetime

    def age(self, now: datetime) -> float:
        return max(0.0, (now - self.queued_at).total_seconds())


@dataclass(frozen=True)
class QueueStats:
    present: bool
    depth: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, status) → jobs
    failed: dict[str, int] = field(default_factory=dict)  # task → jobs failed
    oldest: Oldest | None = None
    # enqueue→start: cumulative counts per bucket of LATENCY_BUCKETS (+Inf last), sum
    latency_buckets: tuple[int, ...] = ()
    latency_sum: float = 0.0
    relay_pending: int = 0  # job requests not relayed to the queue yet
    relay_oldest: datetime | None = None
    # connection → its pass job that failed for good, with no pass succeeded since
    # (its retries ran out: e.g. the database dropped at every try); asked again by
    # `dealsync enqueue sync --connection P`
    failed_passes: dict[str, int] = field(default_factory=dict)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def queue_stats(store: Database, buckets: Sequence[float] = LATENCY_BUCKETS) -> QueueStats:
    """The queue's figures now (``present`` False: no queue in this database)."""
    engine = store.engine
    pending, relay_oldest = JobRequests(store).counts()
    if engine.dialect.name != "postgresql":
        return QueueStats(False, relay_pending=pending, relay_oldest=relay_oldest)
    with engine.connect() as conn:
        present = conn.execute(
            text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        ).scalar()
        if not present:
            return QueueStats(False, relay_pending=pending, relay_oldest=relay_oldest)
        depth = {
            (str(q), str(s)): int(n)
            for q, s, n in conn.execute(
                text(
                    "SELECT queue_name, status::text, count(*) FROM procrastinate_jobs "
                    "GROUP BY queue_name, status"
                )
            )
        }
        failed = {
            str(t): int(n)
            for t, n in conn.execute(
                text(
                    "SELECT task_name, count(*) FROM procrastinate_jobs "
                    "WHERE status = 'failed' GROUP BY task_name"
                )
            )
        }
        row = conn.execute(
            text(
                "SELECT j.id, j.task_name, j.args->>'partner', min(e.at) "
                "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
                "AND e.type = 'deferred' WHERE j.status = 'todo' "
                "AND (j.scheduled_at IS NULL OR j.scheduled_at <= now()) "
                "GROUP BY j.id ORDER BY min(e.at), j.id LIMIT 1"
            )
        ).first()
        oldest = (
            Oldest(int(row[0]), str(row[1]), row[2], _aware(row[3])) if row is not None else None
        )
        # each connection's latest finished pass job (the task's name is the queue's,
        # connector.scale.tasks.SYNC_TASK): failed means nothing got through since
        failed_passes = {
            str(c): int(i)
            for c, i, status in conn.execute(
                text(
                    "SELECT DISTINCT ON (args->>'partner') args->>'partner', id, "
                    "status::text FROM procrastinate_jobs "
                    "WHERE task_name = 'dealsync:sync_connection' "
                    "AND status IN ('succeeded', 'failed') "
                    "ORDER BY args->>'partner', id DESC"
                )
            )
            if status == "failed" and c is not None
        }
        filters = ", ".join(f"count(*) FILTER (WHERE wait <= {float(b)!r})" for b in buckets)
        waits = conn.execute(
            text(
                f"SELECT {filters}, count(*), coalesce(sum(wait), 0) FROM ("
                "SELECT extract(epoch FROM min(e.at) FILTER (WHERE e.type = 'started') "
                "- min(e.at) FILTER (WHERE e.type = 'deferred')) AS wait "
                "FROM procrastinate_events e GROUP BY e.job_id) w WHERE wait IS NOT NULL"
            )
        ).one()
    return QueueStats(
        True,
        depth=depth,
        failed=failed,
        oldest=oldest,
        latency_buckets=tuple(int(n) for n in waits[:-1]),
        latency_sum=float(waits[-1]),
        relay_pending=pending,
        relay_oldest=relay_oldest,
        failed_passes=failed_passes,
    )
