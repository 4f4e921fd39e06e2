"""The procrastinate app of a program: its jobs live in the state's PostgreSQL, so a
deployment that keeps its state there needs no other server, and a job can be
enqueued in the same database as the state change that needs it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

NEEDS_POSTGRES = (
    "dealsync worker needs a PostgreSQL state_url: the job queue lives in the state's "
    "database (state_url is {url}); set state_url (or DEALSYNC_STATE_URL) to "
    "postgresql://USER@HOST:5432/DB, or run passes with `dealsync sync --all` / "
    "`dealsync serve` on the embedded SQLite state"
)


class NeedsPostgres(Exception):
    """The state is not on PostgreSQL: there is no queue to work from."""


def conninfo(state_url: str) -> str:
    """The libpq connection string of a SQLAlchemy ``postgresql[+driver]://`` URL
    (psycopg 3 takes no driver suffix); its ``options`` (e.g. a ``search_path``) are
    kept, so the queue's tables go where the state's do. :class:`NeedsPostgres` for
    any other database."""
    try:
        url = make_url(state_url)
    except Exception:
        raise NeedsPostgres(NEEDS_POSTGRES.format(url=repr(state_url))) from None
    if url.get_backend_name() != "postgresql":
        shown = url.render_as_string(hide_password=True)
        raise NeedsPostgres(NEEDS_POSTGRES.format(url=repr(shown)))
    parts: list[str] = []
    for key, value in (
        ("host", url.host),
        ("port", url.port),
        ("dbname", url.database),
        ("user", url.username),
        ("password", url.password),
    ):
        if value not in (None, ""):
            parts.append(f"{key}={_quoted(str(value))}")
    query: dict[str, Any] = dict(url.query)
    for key, value in query.items():
        for item in value if isinstance(value, tuple) else (value,):
            parts.append(f"{key}={_quoted(str(item))}")
    return " ".join(parts)


def _quoted(value: str) -> str:
    """A libpq conninfo value: quoted, with ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_app(state_url: str, *, sync: bool = False, database_retries: int | None = None) -> Any:
    """The procrastinate ``App`` on the state's database, with dealsync's tasks
    (:mod:`.tasks`). Not opened: callers use ``with app.open():`` (or the async form).

    ``sync``: a long-lived app used from threads only (``serve`` enqueuing): a sync
    pool (procrastinate's pools, sync and async, check a connection before lending
    it, so one the server ended — a PostgreSQL restart, an idle timeout — is
    replaced instead of failing a request).

    ``database_retries``: how many times a pass whose database connection dropped is
    retried before its job is failed (the worker's ``--database-retries``; default
    :data:`~.tasks.DROPPED_ATTEMPTS`)."""
    import procrastinate

    from connector.scale.tasks import register

    if sync:
        connector: Any = procrastinate.SyncPsycopgConnector(conninfo=conninfo(state_url))
    else:
        connector = procrastinate.PsycopgConnector(conninfo=conninfo(state_url))
    app = procrastinate.App(connector=connector)
    register(app, database_retries=database_retries)
    return app
