"""The shared budget store's clock (:mod:`connector.scale.budget`): the database's own
time, so every worker's windows are keyed on one clock and a worker machine whose
clock is off does not move its requests into another window."""

from __future__ import annotations

from typing import Any

NOW_MS = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"


def database_now_ms(pool: Any) -> int:
    """The PostgreSQL server's wall clock, in epoch milliseconds, through a psycopg
    pool (the error propagates: a store that does not answer must hold requests back,
    never fall back to the local clock)."""
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(NOW_MS)
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("the database returned no time")
    return int(row[0])
