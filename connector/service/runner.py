"""Runs passes in worker threads: at most one per connection in this process, and the
state database's lock (taken by ``run_pass``) for at most one across processes.

A request for a connection that already has a pass in flight *joins* it: the caller
gets the running pass's run id instead of queueing a second pass. A pass refused by
the database lock (another process holds it) is joined the same way, through the
``running`` run row that process wrote.

When the runner starts (``dealsync serve`` starting up), runs left ``running`` by a
process that died or lost its lock are marked ``interrupted``, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from connector.api import ConnectionUnusable
from connector.engine.sync import PassResult
from connector.state import StateStore
from connector.state.store import LockHeld

log = logging.getLogger("dealsync.service.runner")

_announce = threading.local()


def _tell_requester(run_id: int) -> None:
    """The store's ``on_run_started``: tell the request waiting in this thread (if any)
    its run id as soon as ``run_pass`` has created the run (before detection starts)."""
    callback = getattr(_announce, "callback", None)
    if callback is not None:
        callback(run_id)


@dataclass
class Job:
    """One pass in flight (or about to be) for one connection."""

    connection: str
    trigger: str
    run_id: int | None = None
    joined_other_process: bool = False
    job_id: int | None = None  # the queue's job (a deployment with a queue)
    queued: bool = False  # put in the queue for a worker, not run here
    follow_up: bool = False  # run once more right after (records queued mid-pass)
    result: PassResult | None = None
    error: str | None = None
    started: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def failed(self) -> bool:
        if self.error is not None:
            return True
        return self.result is not None and self.result.status in ("failed", "fatal", "interrupted")


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to hold back the next scheduled pass after ``failures`` failing passes
    in a row: ``base`` doubled per failure, at most ``cap``; 0 after a success."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


class Runner:
    def __init__(
        self,
        store: StateStore,
        run: Callable[[str, str], PassResult],
        *,
        workers: int = 4,
        on_done: Callable[[Job], None] | None = None,
    ) -> None:
        self.store = store
        store.on_run_started = _tell_requester
        self._run = run
        self._on_done = on_done
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dealsync-pass")
        self._lock = threading.Lock()
        self._current: dict[str, Job] = {}
        self._closed = False
        for orphan in store.interrupt_orphaned_runs():
            log.warning(
                "run %s of %s was left running: %s", orphan.id, orphan.connection, orphan.error
            )

    def is_running(self, connection: str) -> bool:
        with self._lock:
            return connection in self._current

    def request(
        self, connection: str, trigger: str, *, follow_up: bool = False
    ) -> tuple[Job, bool]:
        """Start a pass of ``connection`` unless one is in flight here; returns the job
        and whether it was joined rather than started. ``follow_up``: if one is in
        flight, run another right after it (it may have read its retry list already)."""
        with self._lock:
            job = self._current.get(connection)
            if job is not None:
                job.follow_up = job.follow_up or follow_up
                return job, True
            job = Job(connection, trigger)
            self._current[connection] = job
            self._pool.submit(self._execute, job)
            return job, False

    def _execute(self, job: Job) -> None:
        def announce(run_id: int) -> None:
            job.run_id = run_id
            job.started.set()

        _announce.callback = announce
        try:
            job.result = self._run(job.connection, job.trigger)
        except LockHeld:
            # Another process is running this connection: join its run.
            job.joined_other_process = True
            other = self.store.running_run(job.connection)
            job.run_id = other.id if other is not None else None
            log.info("pass of %s joined: another process holds the lock", job.connection)
        except ConnectionUnusable as exc:  # its reason names what to set; no traceback
            job.error = str(exc)
            log.error("pass of %s not started: %s", job.connection, exc)
        except Exception as exc:  # a pass must never take the worker down
            job.error = f"{type(exc).__name__}: {exc}"
            log.exception("pass of %s failed to run", job.connection)
        finally:
            _announce.callback = None
            with self._lock:
                self._current.pop(job.connection, None)
            job.started.set()
            job.done.set()
            if self._on_done is not None:
                try:
                    self._on_done(job)
                except Exception:
                    log.exception("after-pass bookkeeping of %s failed", job.connection)
            if job.follow_up and not self._closed:
                with contextlib.suppress(RuntimeError):  # the pool shut down meanwhile
                    self.request(job.connection, job.trigger)

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


class QueueRunner:
    """The runner of a deployment with a queue (``service.queue: procrastinate``):
    ``serve`` runs no pass itself; each request is a job for ``dealsync worker``
    processes (:mod:`connector.scale`), at its trigger's priority, joined to the
    connection's waiting job if there is one. Same interface as :class:`Runner`; a
    request's :class:`Job` is ``queued`` with its job id (None: joined) and no run
    id yet (the worker creates the run)."""

    def __init__(self, store: StateStore, state_url: str) -> None:
        from connector.scale.app import make_app

        self.store = store
        self.app = make_app(state_url, sync=True)
        self.app.open()

    def is_running(self, connection: str) -> bool:
        """A pass of the connection is running on some worker (its run row says so)."""
        return self.store.running_run(connection) is not None

    def request(
        self,
        connection: str,
        trigger: str,
        *,
        follow_up: bool = False,
        round_of: tuple[str, Sequence[str]] | None = None,
    ) -> tuple[Job, bool]:
        """Queue a pass (``follow_up`` is implied: a job waiting behind a running pass
        of the connection runs after it); ``round_of``: (round id, its connections) —
        the scheduled jobs of one tick. Raises what the queue raises (the caller
        answers 5xx; a webhook's request stays recorded for the relay)."""
        from connector.scale.enqueue import enqueue_pass

        done = enqueue_pass(self.app, connection, trigger=trigger, round_of=round_of)
        job = Job(connection, trigger, job_id=done.job_id, queued=True)
        job.started.set()
        job.done.set()
        return job, done.joined

    def relay(self, held: Callable[[str], str | None]) -> dict[str, int | None]:
        """Queue the job requests the state recorded (webhooks); what was queued."""
        from connector.scale.relay import relay
        from connector.state.jobs import JobRequests

        return relay(self.app, JobRequests(self.store), held).enqueued

    def shutdown(self, wait: bool = True) -> None:
        self.app.close()
