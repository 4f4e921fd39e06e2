"""Clocks for tests and the chaos campaign: time that moves only when read, so the
order of modification times is the order of events, with no sleeping."""

from __future__ import annotations

import fcntl
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


class TickClock:
    """A deterministic clock CRMs share in one process: every reading moves one second on."""

    def __init__(self, start: datetime = START) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


class FileClock:
    """Every reading moves one second on, across processes (the tick lives in a file),
    so a parent and the children it kills share one ordering of events."""

    def __init__(self, path: Path, start: datetime = START):
        self.path = path
        self.start = start
        if not path.exists():
            path.write_text("0")

    def _bump(self, by: int) -> int:
        with open(self.path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            ticks = int(f.read() or "0") + by
            f.seek(0)
            f.write(str(ticks))
            f.truncate()
            return ticks

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self._bump(1))

    def advance(self, delta: timedelta) -> None:
        self._bump(int(delta.total_seconds()))
