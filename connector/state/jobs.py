"""Requests for scale-out jobs (the ``job_request`` table): the outbox pattern between
the state and the queue. procrastinate's connector cannot join the state's SQLAlchemy
transaction, so the state change records *that* a job is needed in its own
transaction (:meth:`~connector.state.webhooks.WebhookLedger.record_webhook_delivery`)
and a relay asks the queue for it afterwards (:mod:`connector.scale.relay`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, func, select

from connector.records import utcnow
from connector.state.tables import Database, JobRequest, Transactions


class JobRequests(Transactions):
    """The queries of the ``job_request`` table, on the store's engine."""

    def __init__(self, store: Database) -> None:
        self.engine = store.engine

    def pending(self, limit: int = 500) -> list[JobRequest]:
        """Requests not relayed yet, oldest first."""
        query = (
            select(JobRequest)
            .where(col(JobRequest.enqueued_at).is_(None))
            .order_by(col(JobRequest.id))
            .limit(limit)
        )
        return self.rows(query)

    def mark_enqueued(self, job_ids: Mapping[int, int | None], now: datetime | None = None) -> None:
        """Requests (by id) the queue took: their job (None: joined a waiting one)."""
        moment = now or utcnow()
        with self.session() as s:
            for request_id, job_id in job_ids.items():
                s.execute(
                    update(JobRequest)
                    .where(col(JobRequest.id) == request_id)
                    .values(enqueued_at=moment, job_id=job_id)
                )
            s.commit()

    def counts(self) -> tuple[int, datetime | None]:
        """How many requests wait to be relayed, and since when (the oldest)."""
        with self.session() as s:
            n, oldest = s.exec(
                select(func.count(), func.min(JobRequest.created_at)).where(
                    col(JobRequest.enqueued_at).is_(None)
                )
            ).one()
        return int(n), oldest

    def add(self, requests: Iterable[tuple[str, str]]) -> None:
        """Record requests (connection, trigger) in a transaction of their own."""
        with self.session() as s:
            for connection, trigger in requests:
                s.add(JobRequest(connection=connection, trigger=trigger))
            s.commit()

    def prune(self, before: datetime) -> int:
        """Forget requests the queue took before ``before`` (pending ones stay)."""
        with self.session() as s:
            result = s.execute(
                delete(JobRequest).where(
                    col(JobRequest.enqueued_at).is_not(None), col(JobRequest.enqueued_at) < before
                )
            )
            s.commit()
            return int(getattr(result, "rowcount", 0) or 0)
