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
