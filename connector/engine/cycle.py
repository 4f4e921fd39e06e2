"""The program's cycle: program-wide vendor reads shared by the passes of one
``sync --all`` (or one round of the service's passes), not repeated per partner.

Some of what the program's hooks read from the vendor's portal concerns every partner
alike — the vendor deals won since the last pass (commissions), the web events since
the last pass (lead notifications). Read per partner, ``sync --all`` over P partners
read them P times (issue 17). A :class:`ProgramCycle` is handed to every pass of the
cycle (``PassContext.cycle``); the first pass that needs a window reads it once, from
the earliest cursor among the cycle's partners to the vendor's now, and every later
pass of the cycle takes from it what its own cursor has not seen yet, then moves its
cursor to the window's end — so nothing is read twice and nothing is missed (what
changed after the window's end is the next cycle's).

A pass whose cursor the window does not cover (it ran again after the window was read,
or it never ran while the window starts later) reads a window of its own, as a pass
without a cycle always does (a single-partner ``sync``).

With the queue (``service.queue: procrastinate``) each partner's pass is a job of its
own, run by any worker process: the jobs of one enqueued round (``enqueue sync --all``,
or the connections due at one schedule tick) carry the round's id and partners, and
their :class:`RoundCycle` keeps the round's windows in the state store instead of in
memory (issue 18).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from connector.engine.hooks import PassContext

T = TypeVar("T")


@dataclass(frozen=True)
class Window(Generic[T]):
    """What was read for one key: from ``since`` (None: from the beginning) to
    ``until`` (the vendor's high-water mark when it was read)."""

    since: datetime | None
    until: datetime
    data: T

    def covers(self, since: datetime | None) -> bool:
        """Whether a pass whose cursor is ``since`` finds all it needs here."""
        if self.since is None:
            return since is None or since <= self.until
        return since is not None and self.since <= since <= self.until


@dataclass
class ProgramCycle:
    """The program-wide reads of one cycle, keyed by what they read. ``partners``: the
    connections the cycle runs (their cursors say where a shared window starts)."""

    partners: tuple[str, ...] = ()
    windows: dict[Hashable, Window[Any]] = field(default_factory=dict)
    # connections whose pass took part (the service starts a new cycle when one comes
    # round again)
    taken: set[str] = field(default_factory=set)
    reads: int = 0  # windows read for the cycle (the rest were taken from them)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def window(
        self,
        key: Hashable,
        since: datetime | None,
        start: Callable[[], datetime | None],
        read: Callable[[datetime | None], tuple[datetime, T]],
    ) -> Window[T]:
        """The cycle's window of ``key`` covering a pass whose cursor is ``since``.
        The first ask reads it with ``read(from)`` (which returns the high-water mark
        and the data) from ``start()`` — at most ``since``; a later ask whose cursor it
        does not cover gets a window of its own, read now and not kept. Concurrent
        passes (the service) wait for the one read instead of reading it again."""
        with self._lock:
            known = cast("Window[T] | None", self.windows.get(key))
            if known is None:
                begin = start()
                if since is None or (begin is not None and begin > since):
                    begin = since
                until, data = read(begin)
                known = Window(begin, until, data)
                self.windows[key] = known
                self.reads += 1
                return known
            if known.covers(since):
                return known
        until, data = read(since)
        return Window(since, until, data)


def earliest(cursors: Iterable[datetime | None]) -> datetime | None:
    """The earliest of the cursors that are set (None: none is)."""
    times = [c for c in cursors if c is not None]
    return min(times) if times else None


def shared_window(
    ctx: PassContext,
    key: Hashable,
    cursor: str,
    read: Callable[[datetime | None], tuple[datetime, T]],
    *,
    from_start_when_unset: bool = True,
) -> Window[T]:
    """The window of vendor data ``key`` for this pass, whose cursor is the vendor
    cursor ``cursor`` of its connection: the cycle's (``ctx.cycle``), else read for
    this pass alone. A shared window starts at the earliest of the cycle's partners'
    set cursors (``from_start_when_unset``: a pass whose cursor is not set reads from
    the beginning; else the caller does not ask then)."""
    since = ctx.store.cursor(ctx.connection, "vendor", cursor)
    cycle = ctx.cycle
    if cycle is None:
        until, data = read(since)
        return Window(since, until, data)
    partners: Sequence[str] = cycle.partners or (ctx.connection,)

    def start() -> datetime | None:
        if since is None and from_start_when_unset:
            return None
        return earliest(ctx.store.cursor(p, "vendor", cursor) for p in partners)

    return cycle.window(key, since, start, read)


class Rounds:
    """The service's cycles: passes run on their own schedules and triggers, so a
    cycle is one round of them — it ends when a connection comes round again (or the
    reloaded config has other partners), and the next pass starts a new one. A
    connection's data is then at most one round old, and a round of P passes reads
    each program-wide window once instead of P times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: ProgramCycle | None = None

    def for_pass(self, connection: str, partners: Sequence[str]) -> ProgramCycle:
        """The cycle the pass of ``connection`` about to start belongs to."""
        with self._lock:
            cycle = self._current
            if cycle is None or connection in cycle.taken or cycle.partners != tuple(partners):
                cycle = self._current = ProgramCycle(tuple(partners))
            cycle.taken.add(connection)
            return cycle


class SharedWindows(Protocol):
    """Where the windows of a round of pass jobs are kept for the round's other jobs
    (:class:`connector.state.round_windows.RoundWindows`)."""

    def claim(self, round_id: str, key: str) -> AbstractContextManager[None]: ...

    def get(self, round_id: str, key: str) -> tuple[datetime | None, datetime, Any] | None: ...

    def put(
        self, round_id: str, key: str, since: datetime | None, until: datetime, data: Any
    ) -> bool: ...


@dataclass
class RoundCycle(ProgramCycle):
    """The cycle of one pass job of an enqueued round (issue 18): the jobs of one
    ``enqueue sync --all`` through worker processes, one job per partner, or the
    scheduled jobs of one schedule tick (``round_id`` ``tick-<epoch seconds>``, the
    same in every ``serve`` process; ``partners``: the connections due at the tick,
    less those held back by their backoff — :class:`connector.service.scheduler.TickRound`;
    a tick with one connection due, or a backoff's retry, makes no round). The round's
    windows are kept in the state store (``shared``) under ``round_id``, so the round's
    first job that needs one reads it and the others take from it — the same
    :meth:`Window.covers` rules as in one process; a job the window does not cover
    reads its own, not kept. Concurrent first readers: one reads (``claim``), the
    others wait and take its window."""

    round_id: str = ""
    shared: SharedWindows | None = None

    def window(
        self,
        key: Hashable,
        since: datetime | None,
        start: Callable[[], datetime | None],
        read: Callable[[datetime | None], tuple[datetime, T]],
    ) -> Window[T]:
        if self.shared is None or not self.round_id:
            return super().window(key, since, start, read)
        name = repr(key)
        with self.shared.claim(self.round_id, name):
            kept = self.shared.get(self.round_id, name)
            if kept is None:
                begin = start()
                if since is None or (begin is not None and begin > since):
                    begin = since
                until, data = read(begin)
                self.shared.put(self.round_id, name, begin, until, data)
                self.reads += 1
                return Window(begin, until, data)
        known: Window[T] = Window(kept[0], kept[1], cast("T", kept[2]))
        if known.covers(since):
            return known
        until, data = read(since)
        return Window(since, until, data)
