"""Scale-out commands (docs/scale-out.md): ``dealsync worker`` and ``dealsync enqueue``
over :mod:`connector.scale`. The packages are the optional ``[scale]`` extra, imported
only here and only when a command needs them: the embedded default never loads them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from connector.api.errors import DealsyncError

if TYPE_CHECKING:
    from connector.api import Dealsync

MISSING_EXTRA = (
    "dealsync worker needs the scale-out packages: pip install 'dealsync[scale]' "
    "(procrastinate, psycopg, pyrate-limiter)"
)


def _scale() -> Any:
    try:
        import connector.scale.worker as worker
    except ImportError as exc:
        raise DealsyncError(f"{MISSING_EXTRA} ({exc})") from None
    return worker


def queue_url(program: Dealsync) -> str:
    """The state's URL when the queue can live there (PostgreSQL); else the error
    naming the fix: "dealsync worker needs a PostgreSQL state_url"."""
    _scale()
    from connector.scale.app import NeedsPostgres, conninfo

    try:
        conninfo(program.state_url)
    except NeedsPostgres as exc:
        raise DealsyncError(str(exc)) from None
    return program.state_url


def run_worker(
    program: Dealsync,
    *,
    concurrency: int = 1,
    queues: Sequence[str] = (),
    stalled_after: float | None = None,
    until_empty: bool = False,
    apply_schema: bool = False,
    crash_at: Callable[[str], None] | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """``dealsync worker``: run pass jobs from the queue until stopped."""
    worker = _scale()
    url = queue_url(program)
    if concurrency < 1:
        raise DealsyncError("--concurrency must be 1 or more")
    options = worker.WorkerOptions(
        concurrency=concurrency,
        queues=tuple(queues) or worker.WorkerOptions().queues,
        stalled_after=stalled_after or worker.DEFAULT_STALLED_AFTER,
        until_empty=until_empty,
        apply_schema=apply_schema,
    )
    program.store  # noqa: B018  (the state's own schema, migrated before any job runs)
    from connector.state.runs import LockHeld

    worker.run_worker(url, program, options, crash_at=crash_at, busy=(LockHeld,), echo=echo)


def enqueue_sync(
    program: Dealsync,
    partners: Sequence[str] | None,
    *,
    full: bool = False,
    now: str | None = None,
) -> list[str]:
    """``dealsync enqueue sync``: a pass job per connection (None: every partner's);
    one line per connection saying queued or joined."""
    _scale()
    from connector.scale.app import make_app
    from connector.scale.enqueue import enqueue_passes

    url = queue_url(program)
    ids = list(partners) if partners else [p.id for p in program.project.config.partners]
    for pid in ids:
        program.partner(pid)  # an unknown id is named before anything is queued
    app = make_app(url)
    try:
        with app.open():
            return [e.line() for e in enqueue_passes(app, ids, full=full, now=now)]
    except Exception as exc:
        if "procrastinate_" in str(exc) and "does not exist" in str(exc):
            raise DealsyncError(
                "the queue's tables are not in the state's database: run "
                "`dealsync worker --apply-schema` once"
            ) from None
        raise


def pass_jobs(program: Dealsync) -> list[Any]:
    """The pass jobs in the queue (:class:`connector.scale.queue.QueuedJob`), oldest first."""
    _scale()
    from connector.scale.app import make_app
    from connector.scale.queue import pass_jobs as listed

    app = make_app(queue_url(program))
    with app.open():
        return listed(app)
