"""The program-wide vendor reads one enqueued round of pass jobs shares (the
``round_window`` table, issue 18): each job of the round runs in its own worker, so the
window read by the round's first job that needs it is kept here for the others
(:class:`~connector.engine.cycle.RoundCycle`).

Concurrent first readers of one window: on PostgreSQL a session advisory lock on
(round, key) lets one read while the others wait for its row (a reader that dies
releases it with its connection); the insert skips a row already there either way."""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, text
from sqlmodel import col, select

from connector.records import utcnow
from connector.state.tables import Database, RoundWindow, Transactions, insert_once

log = logging.getLogger("dealsync.scale")

#: rounds older than this are forgotten (a round's jobs run within minutes)
KEEP_ROUNDS = timedelta(days=1)


def _lock_key(round_id: str, key: str) -> int:
    digest = hashlib.sha256(f"{round_id}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RoundWindows(Transactions):
    """The queries of the ``round_window`` table, on the store's engine."""

    def __init__(self, store: Database) -> None:
        self.engine = store.engine

    @contextmanager
    def claim(self, round_id: str, key: str) -> Iterator[None]:
        """Held by one job of the round at a time for ``key`` (PostgreSQL; elsewhere a
        single process runs the round and nothing is held)."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        lock = _lock_key(round_id, key)
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock})
                conn.commit()

    def get(self, round_id: str, key: str) -> tuple[datetime | None, datetime, Any] | None:
        """The round's window of ``key`` (since, until, data), None: not read yet."""
        with self.session() as s:
            row = s.exec(
                select(RoundWindow).where(
                    col(RoundWindow.round_id) == round_id, col(RoundWindow.key) == key
                )
            ).first()
            if row is None:
                return None
            since, until, data = pickle.loads(row.data)  # written by put()
        return since, until, data

    def put(
        self, round_id: str, key: str, since: datetime | None, until: datetime, data: Any
    ) -> bool:
        """Keep the round's window of ``key`` (False: one was kept already, it stays);
        rounds older than :data:`KEEP_ROUNDS` are pruned."""
        try:
            blob = pickle.dumps((since, until, data), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            log.warning(
                "round %s: window %s not kept for the round's other jobs (%s): they read their own",
                round_id,
                key,
                exc,
            )
            return False
        now = utcnow()
        with self.session() as s:
            s.execute(delete(RoundWindow).where(col(RoundWindow.created_at) < now - KEEP_ROUNDS))
            s.commit()
            row = RoundWindow(
                round_id=round_id, key=key, since=since, until=until, data=blob, created_at=now
            )
            return insert_once(s, row)

    def kept(self, round_id: str) -> int:
        """Windows kept for one round."""
        return self.count(RoundWindow, col(RoundWindow.round_id) == round_id)
