"""Passes killed mid-way, as a power cut or ``kill -9`` ends them: a forked child runs
the pass and ``SIGKILL``\\ s itself at a named point (no exception, no ``finally``), so
what survives is exactly what was committed before. Shared by the reliability tests
and ``scripts/chaos.py``."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def kill_me(point: str) -> Callable[[str], None]:
    """A ``crash_at`` hook that kills this very process at ``point`` — no exception,
    no cleanup: the state is whatever was committed before."""

    def crash(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


@dataclass(frozen=True)
class Ended:
    """How a forked child ended: the signal that killed it (0: none) or its exit code
    (70 when ``fn`` raised; the traceback is on the child's stderr)."""

    signal: int
    code: int

    @property
    def killed(self) -> bool:
        return self.signal == signal.SIGKILL


def fork_and_wait(fn: Callable[[], Any]) -> Ended:
    """Run ``fn`` in a forked child and wait for it. The child never returns into the
    caller (``os._exit``), so nothing of the parent's cleanup runs twice."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 70
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return Ended(os.WTERMSIG(status), 0)
    return Ended(0, os.WEXITSTATUS(status))


def in_child(fn: Callable[[], Any]) -> int:
    """Run ``fn`` in a forked child; returns the signal that ended it (0 when it
    returned). A child that failed fails the test."""
    ended = fork_and_wait(fn)
    assert ended.code == 0, f"the child failed with exit code {ended.code}"
    return ended.signal
