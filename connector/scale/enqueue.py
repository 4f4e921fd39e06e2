"""Asking for passes: each request is a job of :data:`~.tasks.SYNC_TASK` with the
connection's locks and its trigger's priority, or joins the one already waiting (the
queueing lock refused a second)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from procrastinate.exceptions import AlreadyEnqueued

from connector.scale.tasks import SYNC_TASK, URGENT, lock_of, priority_of, queueing_lock_of


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


def enqueue_pass(
    app: Any,
    partner: str,
    *,
    trigger: str = "queue",
    full: bool = False,
    now: str | None = None,
    round_of: tuple[str, Sequence[str]] | None = None,
) -> Enqueued:
    """A pass job of one connection on an opened app, at ``trigger``'s priority.
    ``round_of``: (round id, its partners) — the job shares the round's program-wide
    vendor reads with the round's other jobs (:class:`~connector.engine.cycle.RoundCycle`)."""
    priority = priority_of(trigger)
    kwargs: dict[str, Any] = {"partner": partner, "full": full}
    if round_of is not None:
        kwargs["round"], kwargs["partners"] = round_of[0], list(round_of[1])
    if now is not None:
        kwargs["now"] = now
    if trigger != "queue":
        kwargs["trigger"] = trigger
    task = app.tasks[SYNC_TASK].configure(
        lock=lock_of(partner),
        queueing_lock=queueing_lock_of(partner, full, urgent=priority >= URGENT),
        priority=priority,
    )
    try:
        return Enqueued(partner, int(task.defer(**kwargs)))
    except AlreadyEnqueued:
        return Enqueued(partner, None)


def enqueue_passes(
    app: Any,
    partners: Sequence[str],
    *,
    full: bool = False,
    now: str | None = None,
    trigger: str = "queue",
) -> list[Enqueued]:
    """A pass job per connection on an opened app: one round (a new id, carried in
    each job's args with the round's partners), so the jobs read the program-wide
    vendor data (won deals, web events) once for the round, not once per job. A
    request that joins a job already waiting runs in that job's round (the window it
    finds there covers it or it reads its own)."""
    round_of = (uuid.uuid4().hex, tuple(partners)) if len(partners) > 1 else None
    return [
        enqueue_pass(app, pid, trigger=trigger, full=full, now=now, round_of=round_of)
        for pid in partners
    ]
