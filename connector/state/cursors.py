"""Where the next pass reads from: the per-side, per-object cursors (moved only forward)
and the retry list (records a pass failed on, or a webhook asked to re-read, fetched
again by id on the next pass until they succeed)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col, select

from connector.records import Side, utcnow
from connector.state.tables import Cursor, RetryItem, Transactions

WEBHOOK_PREFIX = "webhook"  # retry items queued by a webhook, not by a failure


def retry_item(connection: str, obj: str, side: Side, rid: str, error: str) -> RetryItem:
    """A new retry-list row: failures and webhook re-reads put records on the list the
    same way (only an existing row is treated differently: a failure counts another
    attempt, a webhook leaves a failing record's error and count alone)."""
    return RetryItem(
        connection=connection, object=obj, side=side, record_id=rid, last_error=error[:2000]
    )


class ReadPositions(Transactions):
    """The cursor and retry-list queries of :class:`~connector.state.store.StateStore` (a
    mixin: callers keep calling them on the store)."""

    def cursor(self, connection: str, side: Side, obj: str) -> datetime | None:
        with self.session() as s:
            row = s.get(Cursor, (connection, side, obj))
            return row.value if row else None

    def set_cursors(self, connection: str, values: dict[tuple[Side, str], datetime]) -> None:
        """Move cursors forward (never back) in one transaction."""
        with self.session() as s:
            for (side, obj), value in values.items():
                row = s.get(Cursor, (connection, side, obj))
                if row is None:
                    s.add(Cursor(connection=connection, side=side, object=obj, value=value))
                elif value > row.value:
                    row.value = value
                    row.updated_at = utcnow()
                    s.add(row)
            s.commit()

    def retries(self, connection: str, obj: str) -> list[RetryItem]:
        return self.rows(
            select(RetryItem).where(RetryItem.connection == connection, RetryItem.object == obj)
        )

    def add_retries(self, connection: str, items: Iterable[tuple[str, Side, str, str]]) -> None:
        """Remember failed records (object, side, id, error) for the next pass."""
        with self.session() as s:
            for obj, side, rid, error in items:
                row = s.get(RetryItem, (connection, obj, side, rid))
                if row is None:
                    s.add(retry_item(connection, obj, side, rid, error))
                else:
                    row.attempts += 1
                    row.last_error = error[:2000]
                    row.updated_at = utcnow()
                    s.add(row)
            s.commit()

    def clear_retries(self, connection: str, items: Iterable[tuple[str, Side, str]]) -> None:
        with self.session() as s:
            for obj, side, rid in items:
                s.execute(
                    delete(RetryItem).where(
                        col(RetryItem.connection) == connection,
                        col(RetryItem.object) == obj,
                        col(RetryItem.side) == side,
                        col(RetryItem.record_id) == rid,
                    )
                )
            s.commit()

    def retry_count(self, connection: str) -> int:
        return self.count(RetryItem, RetryItem.connection == connection)

    def failing_records(self, connection: str) -> list[RetryItem]:
        """Records whose last attempt failed (re-read on every pass until they succeed);
        ids queued by webhooks are not failures."""
        with self.session() as s:
            rows = s.exec(
                select(RetryItem)
                .where(RetryItem.connection == connection)
                .order_by(col(RetryItem.object), col(RetryItem.record_id))
            ).all()
        return [r for r in rows if not r.last_error.startswith(WEBHOOK_PREFIX)]
