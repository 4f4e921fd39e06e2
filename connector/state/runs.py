"""Runs and the pass lock: what a pass records of itself, and how one pass at a time
runs a connection.

A run row says what a pass did (its counts, per-record outcomes and how it ended);
the lock (a lease renewed while the pass runs) keeps two passes of one connection
from interleaving. A ``running`` run whose process died or lost its lock is marked
``interrupted`` with the reason, so ``dealsync status`` never shows a dead pass as
running. Mixed into :class:`~connector.state.store.StateStore`, which keeps the engine.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, insert, true, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from connector.records import utcnow
from connector.state.tables import Run, RunRecord, SyncLock, Transactions, valid_id

log = logging.getLogger("dealsync.state")


LOCK_TTL = timedelta(minutes=30)
"""How long a pass lock holds without renewal. A running pass renews it every third
of this, so only a holder that stopped (its host died, its process froze) lets it
expire; a pass killed on this machine is noticed at once instead."""

_RUN_RECORD: Table = RunRecord.__table__  # type: ignore[attr-defined]


class LockHeld(Exception):
    """Another process is running a pass of this connection."""


class LockLost(Exception):
    """This pass's lock expired or was taken over while the pass ran: another pass may
    be running now, so this one must stop before it commits anything more."""


def _process(owner: str) -> str:
    """``host:pid`` of a lock or run owner (``host:pid:lease``), for messages."""
    return ":".join(owner.split(":")[:2])


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _takes_the_lock(run: Run) -> bool:
    """Whether ``run`` is a pass that holds its connection's lock while it runs (its
    owner is a lock owner, ``host:pid:lease``; older runs name no owner). Dry runs
    take no lock: only their process's death tells they stopped."""
    if run.dry_run:
        return False
    return run.owner is None or run.owner.count(":") >= 2


def _orphan_reason(run: Run, lock: SyncLock | None, now: datetime) -> str | None:
    """Why a ``running`` run cannot be running any more, or None if it may be: its
    process is gone, or the lock it ran under is free, expired or someone else's."""
    who = f"the process {_process(run.owner)}" if run.owner else "the process that ran it"
    if run.owner and _holder_is_dead(run.owner):
        return f"{who} died before the run finished (found at {_when(now)})"
    if not _takes_the_lock(run):
        return None
    if lock is None:
        return f"{who} ended without finishing the run (its lock was free at {_when(now)})"
    if run.owner and lock.owner != run.owner:
        return f"{who} lost its lock to {_process(lock.owner)} (found at {_when(now)})"
    if lock.expires_at < now:
        return f"{who} stopped renewing its lock (it expired at {_when(lock.expires_at)})"
    if run.owner is None and _holder_is_dead(lock.owner):
        return f"the process {_process(lock.owner)} died before the run finished"
    return None


def _holder_is_dead(owner: str) -> bool:
    """True when a lock owner (``host:pid:…``) names a process of *this* machine that
    no longer exists — it was killed mid-pass and never released its lock. Holders on
    other machines are never judged dead here: their lock expires instead."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class RecordOutcome:
    object: str
    side: str
    record_id: str
    action: str
    outcome: str
    field: str | None = None
    detail: str | None = None


class RunLedger(Transactions):
    """The runs and lock queries of :class:`~connector.state.store.StateStore` (a mixin:
    callers keep calling them on the store)."""

    lock_ttl: timedelta
    clock: Callable[[], datetime]
    on_run_started: Callable[[int], None] | None

    def process(self) -> str:
        """``host:pid`` of this process, as runs and locks name it."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def start_run(
        self, connection: str, *, dry_run: bool, trigger: str = "cli", owner: str | None = None
    ) -> int:
        """A new ``running`` run; ``owner`` is the pass lock's owner when the pass holds
        it (default: this process, for a pass without the lock)."""
        with self.session() as s:
            run = Run(
                connection=connection,
                dry_run=dry_run,
                trigger=trigger,
                owner=owner or self.process(),
            )
            s.add(run)
            s.commit()
            assert run.id is not None
        if self.on_run_started is not None:
            self.on_run_started(run.id)
        return run.id

    def add_outcomes(self, run_id: int, outcomes: Sequence[RecordOutcome]) -> None:
        if not outcomes:
            return
        with self.session() as s:
            s.execute(
                insert(_RUN_RECORD),
                [
                    {
                        "run_id": run_id,
                        "object": o.object,
                        "side": o.side,
                        "record_id": o.record_id,
                        "action": o.action,
                        "outcome": o.outcome,
                        "field": o.field,
                        "detail": (o.detail or None) and o.detail[:4000],
                    }
                    for o in outcomes
                ],
            )
            s.commit()

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: dict[str, Any],
        api_calls: dict[str, Any],
        error: str | None = None,
    ) -> None:
        """Record how a run ended. A run another process already marked
        ``interrupted`` (it took this pass's lock over) keeps that status and reason:
        another pass may have redone its work since."""
        with self.session() as s:
            run = s.get(Run, run_id)
            assert run is not None
            if run.status != "interrupted":
                run.status = status
                run.error = error
                run.finished_at = utcnow()
            run.counts = counts
            run.api_calls = api_calls
            s.add(run)
            s.commit()

    def interrupt_orphaned_runs(self, connection: str | None = None) -> list[Run]:
        """Mark ``interrupted``, with the reason, every run left ``running`` by a
        process that died or lost its lock — a pass killed by ``SIGKILL`` or a full
        disk never finishes its run itself. Called when the service starts, before a
        pass and before runs are shown; returns the runs it marked."""
        now = self.clock()
        with self.session() as s:
            q = select(Run).where(Run.status == "running")
            if connection:
                q = q.where(Run.connection == connection)
            runs = list(s.exec(q).all())
            if not runs:
                return []
            locks = {
                row.connection: row
                for row in s.exec(
                    select(SyncLock).where(
                        col(SyncLock.connection).in_(sorted({r.connection for r in runs}))
                    )
                ).all()
            }
            marked = [
                run.id
                for run in runs
                if (reason := _orphan_reason(run, locks.get(run.connection), now))
                and self._mark_interrupted(s, run, reason, now)
            ]
            s.commit()
        return [r for r in (self.run(i) for i in marked if i is not None) if r is not None]

    @staticmethod
    def _mark_interrupted(s: Session, run: Run, reason: str, now: datetime) -> bool:
        # only if still running: a pass that finished meanwhile keeps its own status
        result = s.execute(
            update(Run)
            .where(col(Run.id) == run.id, col(Run.status) == "running")
            .values(status="interrupted", error=reason, finished_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    def _interrupt_after_taking(
        self,
        s: Session,
        connection: str,
        now: datetime,
        lock_before: SyncLock | None,
        owner: str,
        reasons: dict[str, str],
    ) -> None:
        """This process has just taken the lock of ``connection``: no pass of it that
        holds the lock can still be running, so each ``running`` one is interrupted —
        with the takeover's reason for the previous holder's run."""
        runs = s.exec(
            select(Run).where(Run.connection == connection, Run.status == "running")
        ).all()
        for run in runs:
            reason = reasons.get(run.owner or "") or _orphan_reason(run, lock_before, now)
            if reason is None and _takes_the_lock(run):
                reason = f"its lock was taken by {_process(owner)} at {_when(now)}"
            if reason is not None:
                self._mark_interrupted(s, run, reason, now)

    def running_run(self, connection: str) -> Run | None:
        """The newest unfinished, non-dry run of a connection (a pass in progress here or in
        another process sharing the database)."""
        with self.session() as s:
            return s.exec(
                select(Run)
                .where(
                    Run.connection == connection,
                    Run.status == "running",
                    col(Run.dry_run).is_(False),
                )
                .order_by(col(Run.id).desc())
            ).first()

    def runs(self, connection: str | None = None, limit: int = 20) -> list[Run]:
        with self.session() as s:
            q = select(Run)
            if connection:
                q = q.where(Run.connection == connection)
            return list(s.exec(q.order_by(col(Run.id).desc()).limit(limit)).all())

    def last_successes(self) -> dict[str, datetime]:
        """When each connection's last pass that got through finished (``ok``, or
        ``conflicts``: every record handled, some waiting for a human; dry runs are
        not passes): one grouped query, read by ``/metrics`` at every scrape."""
        with self.session() as s:
            rows = s.exec(
                select(Run.connection, func.max(Run.finished_at))
                .where(
                    col(Run.status).in_(("ok", "conflicts")),
                    col(Run.dry_run).is_(False),
                    col(Run.finished_at).is_not(None),
                )
                .group_by(Run.connection)
            ).all()
        return {connection: finished for connection, finished in rows if finished is not None}

    def run(self, run_id: int) -> Run | None:
        if not valid_id(run_id):
            return None
        with self.session() as s:
            return s.get(Run, run_id)

    def run_records(self, run_id: int, outcome: str | None = None) -> list[RunRecord]:
        if not valid_id(run_id):
            return []
        with self.session() as s:
            q = select(RunRecord).where(RunRecord.run_id == run_id)
            if outcome:
                q = q.where(RunRecord.outcome == outcome)
            return list(s.exec(q.order_by(col(RunRecord.id))).all())

    def failed_run_records(self, run_ids: list[int]) -> list[RunRecord]:
        """The failed records of these runs, newest run first (``dealsync runs
        --failed`` without a run id)."""
        if not run_ids:
            return []
        with self.session() as s:
            q = select(RunRecord).where(
                col(RunRecord.run_id).in_(run_ids), RunRecord.outcome == "failed"
            )
            return list(s.exec(q.order_by(col(RunRecord.run_id).desc(), col(RunRecord.id))).all())

    # ------------------------------------------------------------------ locks

    def acquire_lock(
        self, connection: str, *, ttl: timedelta | None = None, owner: str | None = None
    ) -> str:
        """Take the connection's pass lock or raise :class:`LockHeld`.

        A held lock is taken over only when its holder stopped renewing it (it expired)
        or is a process of this machine that no longer exists; the runs it left
        ``running`` are marked ``interrupted`` in the same transaction, saying why.
        Most callers want :meth:`lease`, which also renews the lock."""
        ttl = self.lock_ttl if ttl is None else ttl
        owner = owner or f"{self.process()}:{secrets.token_hex(4)}"
        for _attempt in range(5):
            now = self.clock()
            with self.session() as s:
                row = s.get(SyncLock, connection)
                if row is None:
                    s.add(
                        SyncLock(
                            connection=connection,
                            owner=owner,
                            acquired_at=now,
                            expires_at=now + ttl,
                        )
                    )
                    try:
                        s.flush()
                    except IntegrityError:  # another process inserted it first
                        s.rollback()
                        continue
                    self._interrupt_after_taking(s, connection, now, None, owner, {})
                    s.commit()
                    return owner
                previous, expires = row.owner, row.expires_at
                guard: ColumnElement[bool]
                if expires < now:
                    why = f"stopped renewing its lock (it expired at {_when(expires)})"
                    guard = col(SyncLock.expires_at) < now
                elif _holder_is_dead(previous):
                    why = "died"
                    guard = true()
                else:
                    raise LockHeld(
                        f"connection {connection!r} is being synced by {previous} (its lock "
                        f"is renewed while it runs); wait for that pass to finish"
                    )
                s.expunge(row)
                taken = s.execute(
                    update(SyncLock)
                    .where(
                        col(SyncLock.connection) == connection,
                        col(SyncLock.owner) == previous,
                        guard,
                    )
                    .values(owner=owner, acquired_at=now, expires_at=now + ttl)
                )
                if not getattr(taken, "rowcount", 0):  # renewed or taken meanwhile
                    s.rollback()
                    continue
                reason = (
                    f"the process {_process(previous)} {why}; its lock was taken over at "
                    f"{_when(now)} by {_process(owner)}"
                )
                log.warning("connection %s: %s", connection, reason)
                self._interrupt_after_taking(s, connection, now, row, owner, {previous: reason})
                s.commit()
                return owner
        raise LockHeld(f"connection {connection!r}: its lock kept changing hands; try again")

    def renew_lock(self, connection: str, owner: str, ttl: timedelta | None = None) -> bool:
        """Move the lock's expiry on by ``ttl``; False when ``owner`` no longer holds it
        — taken over, or expired (then anyone may take it over at any moment)."""
        ttl = self.lock_ttl if ttl is None else ttl
        now = self.clock()
        with self.session() as s:
            result = s.execute(
                update(SyncLock)
                .where(
                    col(SyncLock.connection) == connection,
                    col(SyncLock.owner) == owner,
                    col(SyncLock.expires_at) >= now,
                )
                .values(expires_at=now + ttl)
            )
            s.commit()
            return bool(getattr(result, "rowcount", 0))

    def release_lock(self, connection: str, owner: str) -> None:
        with self.session() as s:
            s.execute(
                delete(SyncLock).where(
                    col(SyncLock.connection) == connection, col(SyncLock.owner) == owner
                )
            )
            s.commit()

    def lease(self, connection: str, *, ttl: timedelta | None = None) -> LockLease:
        """Take the connection's pass lock (:meth:`acquire_lock`) and keep renewing it
        until :meth:`LockLease.release`."""
        ttl = self.lock_ttl if ttl is None else ttl
        return LockLease(self, connection, self.acquire_lock(connection, ttl=ttl), ttl)


class LockLease:
    """A held pass lock and the thread renewing it every third of its TTL while the
    pass runs. A pass calls :meth:`check` at each of its steps: it renews the lock
    there too and raises :class:`LockLost` once the lock is no longer this pass's."""

    def __init__(self, store: RunLedger, connection: str, owner: str, ttl: timedelta) -> None:
        self.store, self.connection, self.owner, self.ttl = store, connection, owner, ttl
        self.lost: str | None = None
        self._renewing = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_until_stopped, name=f"dealsync-lock-{connection}", daemon=True
        )
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Renew now; False once the lock is lost (then it stays lost)."""
        with self._renewing:
            if self.lost is not None:
                return False
            try:
                held = self.store.renew_lock(self.connection, self.owner, self.ttl)
            except Exception as exc:  # the database is briefly unreachable: expiry is the limit
                log.warning("could not renew the lock of %s: %s", self.connection, exc)
                return True
            if not held:
                self.lost = (
                    f"this pass lost its lock of connection {self.connection!r} (it expired "
                    "or another process took it over); it stopped before committing more"
                )
                log.error("%s", self.lost)
            return held

    def check(self) -> None:
        """Raise :class:`LockLost` unless this pass still holds its lock."""
        if not self.renew():
            raise LockLost(self.lost)

    def release(self) -> None:
        """Stop renewing and give the lock back (a lost lock is not touched)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        try:
            self.store.release_lock(self.connection, self.owner)
        except Exception as exc:  # the database is unreachable (a restart, an outage)
            log.warning(
                "could not give back the lock of %s (%s); trying again in the background "
                "until the database answers (at the latest it expires after its TTL)",
                self.connection,
                exc,
            )
            threading.Thread(
                target=self._release_later, name=f"dealsync-unlock-{self.connection}", daemon=True
            ).start()

    def _release_later(self) -> None:
        """Give the lock back once the database answers again (a back-off up to 10 s),
        so the retried pass does not wait for the lock's expiry."""
        delay, deadline = 0.5, time.monotonic() + self.ttl.total_seconds()
        while time.monotonic() < deadline:
            time.sleep(delay)
            try:
                self.store.release_lock(self.connection, self.owner)
            except Exception:
                delay = min(delay * 2, 10.0)
                continue
            log.warning("gave back the lock of %s: the database answers again", self.connection)
            return
