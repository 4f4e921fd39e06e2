"""What is in the queue: the pass jobs, their status and attempts (a job retried after
its worker died has two), for ``dealsync`` and the tests (and, later, ``status``,
``/metrics`` and the admin page: queue depth per connection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.scale.tasks import SYNC_TASK


@dataclass(frozen=True)
class QueuedJob:
    id: int
    connection: str
    status: str  # todo | doing | succeeded | failed | cancelled | aborted
    attempts: int


def pass_jobs(app: Any) -> list[QueuedJob]:
    """Every pass job the queue keeps (an opened app), oldest first."""
    jobs = app.job_manager.list_jobs(task=SYNC_TASK)
    out = [
        QueuedJob(int(j.id), str(j.task_kwargs.get("partner")), str(j.status), int(j.attempts))
        for j in jobs
    ]
    return sorted(out, key=lambda j: j.id)
