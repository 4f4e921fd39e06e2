"""When the state's database does not answer (issue 18): how the worker tells, what it
says of it, and how long it waits between two tries (the worker's start, its outcome
writes)."""

from __future__ import annotations

#: the back-off between two tries: 1 s, doubled, at most 30 s
FIRST_WAIT, LONGEST_WAIT = 1.0, 30.0


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database does not answer: a
    connection refused or lost, a pool that gave up waiting for one (psycopg's
    ``OperationalError``, which ``PoolTimeout`` is; SQLAlchemy's)."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (psycopg.OperationalError, psycopg.InterfaceError, OperationalError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def reason(exc: BaseException) -> str:
    """The first line of what the driver said (``connection refused``, ``couldn't get a
    connection after 30.00 sec`` …), not procrastinate's wrapper (``Database error.``)."""
    import psycopg

    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, psycopg.Error):
        seen = seen.__cause__ or seen.__context__
    said = seen if seen is not None else exc
    lines = [line.strip() for line in str(said).splitlines() if line.strip()]
    return lines[0] if lines else type(said).__name__
