"""The shared windows follow what HubSpot says: a lower ``X-HubSpot-RateLimit-Max`` (or
a longer interval) resizes the portal's shared 10-second window for every process from
then on, and ``X-HubSpot-RateLimit-Daily`` sets the shared daily budget (less 1 %); the
daily budget is taken from the store in blocks, so most requests cost no round trip."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from connector.adapters.ratelimit import DAY, SlidingWindowLimiter
from connector.scale.budget import SharedWindow


class Recorded:
    """A shared window that gives every slot and records what it is told."""

    def __init__(self, budget: int) -> None:
        self.budget, self.taken = budget, 0
        self.sizes: list[tuple[int, float]] = []

    def take(self) -> float:
        self.taken += 1
        return 0.0

    def resize(self, budget: int, window: float) -> None:
        self.budget = budget
        self.sizes.append((budget, window))

    def used(self) -> int | None:
        return self.taken


def test_headers_resize_the_shared_windows() -> None:
    shared, daily = Recorded(95), Recorded(247_500)
    limiter = SlidingWindowLimiter(budget=100, window=10.0, margin=5, shared=shared, daily=daily)
    limiter.learn({"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "90"})
    assert shared.sizes == []  # nothing new
    limiter.learn(
        {
            "X-HubSpot-RateLimit-Max": "50",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Remaining": "40",
            "X-HubSpot-RateLimit-Daily": "1000",
        }
    )
    assert shared.sizes == [(45, 10.0)]  # the new max less the margin
    assert daily.sizes == [(990, DAY)]
    limiter.acquire()
    assert (daily.taken, shared.taken) == (1, 1)  # both windows asked before the request


class Busy(Recorded):
    """A shared 10-second window that is full for the first ``full`` asks."""

    def __init__(self, budget: int, full: int) -> None:
        super().__init__(budget)
        self.full = full

    def take(self) -> float:
        self.taken += 1
        return 0.5 if self.taken <= self.full else 0.0


def test_waiting_for_the_window_takes_one_daily_slot_not_one_per_ask() -> None:
    shared, daily = Busy(95, full=4), Recorded(1000)
    limiter = SlidingWindowLimiter(
        budget=100, window=10.0, shared=shared, daily=daily, sleep=lambda s: None
    )
    limiter.acquire()
    assert shared.taken == 5  # four waits for the 10-second window, then the slot
    assert daily.taken == 1  # one request: one daily slot


def test_the_daily_budget_is_taken_in_blocks(state_url_factory: Callable[[str], str]) -> None:
    window = SharedWindow.named(
        state_url_factory("daily"), f"daily-{uuid.uuid4().hex}", 1000, DAY, block=50
    )
    assert all(window.take() == 0.0 for _ in range(120))
    assert window.used() == 150  # three blocks of 50 taken for 120 requests
