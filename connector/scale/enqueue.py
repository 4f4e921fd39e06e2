"""Asking for passes: each request is a job of :data:`~.tasks.SYNC_TASK` with the
connection's locks, or joins the one already waiting (the queueing lock refused a
second)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from procrastinate.exceptions import AlreadyEnqueued

from connector.scale.tasks import SYNC_TASK, lock_of, queueing_lock_of


@dataclass(frozen=True)
class Enqueued:
    """What became of one request: a new job (its id), or joined the waiting one."""

    connection: str
    job_id: int | None

    @property
    def joined(self) -> bool:
        return self.job_id is None

    def line(self) -> str:
        if self.joined:
            return (
                f"{self.connection}: joined the pass already waiting in the queue "
                "(one pass per connection at a time)"
            )
        return f"{self.connection}: queued (job {self.job_id})"


def enqueue_passes(
    app: Any, partners: Sequence[str], *, full: bool = False, now: str | None = None
) -> list[Enqueued]:
    """A pass job per connection on an opened app."""
    task = app.tasks[SYNC_TASK]
    out = []
    for pid in partners:
        kwargs: dict[str, Any] = {"partner": pid, "full": full}
        if now is not None:
            kwargs["now"] = now
        try:
            job = task.configure(lock=lock_of(pid), queueing_lock=queueing_lock_of(pid, full))
            job_id = job.defer(**kwargs)
        except AlreadyEnqueued:
            out.append(Enqueued(pid, None))
            continue
        out.append(Enqueued(pid, int(job_id)))
    return out
