"""The relay of the outbox pattern (:mod:`connector.state.jobs`): job requests the
state recorded with the change that needs them are handed to the queue.

procrastinate's connector (psycopg 3, its own pool) cannot join the state's SQLAlchemy
transaction, so a webhook delivery commits its events, re-reads *and* a request for
the connection's pass together, and the relay enqueues afterwards: at once, by the
``serve`` that accepted the delivery, and again every few seconds for any request
still pending (the enqueue failed: the queue's database restarting, its schema
missing, the process killed between commit and enqueue). Enqueuing is idempotent:
a connection whose urgent pass already waits joins it (the queueing lock), and a
request enqueued twice (killed after enqueuing, before marking it) costs at most one
extra pass, which finds nothing new. A request is marked only once the queue took it,
so it is never lost."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connector.scale.enqueue import enqueue_pass

log = logging.getLogger("dealsync.scale")


class Request(Protocol):
    id: int | None
    connection: str
    trigger: str


class Requests(Protocol):
    """The job requests of the state (:class:`connector.state.jobs.JobRequests`; this
    folder does not import the state's)."""

    def pending(self, limit: int = 500) -> Sequence[Request]: ...

    def mark_enqueued(self, job_ids: Mapping[int, int | None]) -> None: ...


@dataclass
class Relayed:
    """What one relay did: jobs per connection (None: joined a waiting one), the
    connections left pending and why."""

    enqueued: dict[str, int | None] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)


def relay(
    app: Any, requests: Requests, held: Callable[[str], str | None] = lambda c: None
) -> Relayed:
    """Enqueue the pending requests, one job per connection (``held(connection)``: the
    reason a connection's requests stay pending, e.g. it cannot run; None: go). A
    failed enqueue leaves the requests pending for the next relay (logged)."""
    out = Relayed()
    by_connection: dict[tuple[str, str], list[int]] = {}
    for row in requests.pending():
        assert row.id is not None
        by_connection.setdefault((row.connection, row.trigger), []).append(row.id)
    for (connection, trigger), ids in by_connection.items():
        reason = held(connection)
        if reason is not None:
            out.held[connection] = reason
            continue
        try:
            done = enqueue_pass(app, connection, trigger=trigger)
        except Exception as exc:  # the queue's database down: the next relay tries again
            out.held[connection] = f"the queue did not take the job ({type(exc).__name__}: {exc})"
            log.warning(
                "the %s pass of %s could not be queued (%s: %s); it stays recorded and is "
                "queued by the next relay",
                trigger,
                connection,
                type(exc).__name__,
                exc,
            )
            continue
        requests.mark_enqueued(dict.fromkeys(ids, done.job_id))
        out.enqueued[connection] = done.job_id
    return out
