"""The shared budget's store not answering: a request waits and asks again, it never
goes unshared — so nothing can exceed the budget while the store is down. Fake time
(no sleep is slept): the limiter's waits are recorded, then the store comes back."""

from __future__ import annotations

import socket

import pytest

from connector.adapters.ratelimit import SlidingWindowLimiter
from connector.scale.budget import UNREACHABLE_BACKOFF, SharedWindow

pytest.importorskip("redis")


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StoreComesBack:
    """A shared window whose store fails ``down`` times, then gives slots."""

    def __init__(self, window: SharedWindow, down: int) -> None:
        self.window, self.down, self.asked = window, down, 0

    def take(self) -> float:
        self.asked += 1
        if self.asked > self.down:
            return 0.0
        return self.window.take()  # the real one, against a port that refuses


def test_an_unreachable_store_holds_requests_back_instead_of_going_unshared() -> None:
    dead = SharedWindow(f"redis://127.0.0.1:{closed_port()}", "dealsync:test", 10, 10.0)
    assert dead.take() == UNREACHABLE_BACKOFF  # the real store call fails: back off

    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = SlidingWindowLimiter(
        budget=10, window=10.0, clock=lambda: now[0], sleep=sleep, shared=StoreComesBack(dead, 3)
    )
    waited = limiter.acquire()
    assert slept == [UNREACHABLE_BACKOFF] * 3  # held back while the store was down
    assert waited == 3 * UNREACHABLE_BACKOFF
    assert len(limiter._sent) == 1  # and counted once the store gave the slot
