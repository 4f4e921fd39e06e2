"""HubSpot-style rate limiting for the sandbox.

HubSpot throttles private apps with a 10-second rolling window (100 or 190 requests),
a daily quota, and a separate, much lower limit for the search endpoints (about 5
requests per second per account, without rate-limit headers, but counted in the daily
quota).  The connector's
throttling and back-off logic is only trustworthy if the sandbox enforces the same.

Design choices (documented because HubSpot does not specify them):

* A rejected request (429) does **not** consume budget, for both limiters.  Otherwise a
  client retrying in a tight loop could lock itself out forever, which would test the
  sandbox rather than the connector.
* Time comes from ``time.monotonic`` and is never affected by ``Portal.clock`` (which
  only fakes record timestamps).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 10.0
INTERVAL_MS = 10_000
DEFAULT_DAILY = 250_000


@dataclass(frozen=True)
class LimitDecision:
    """Outcome of one admission check, with what the response headers should say."""

    allowed: bool
    policy: str  # "" when allowed, else "TEN_SECONDLY_ROLLING", "DAILY" or "SECONDLY"
    maximum: int
    remaining: int
    daily: int
    daily_remaining: int
    retry_after_s: float
    secondly: int = 0
    secondly_remaining: int = 0


class RateLimiter:
    """The per-portal 10-second rolling window plus the daily quota."""

    def __init__(
        self,
        per_10s: int,
        daily: int | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self.per_10s = per_10s
        self.daily = daily if daily is not None else DEFAULT_DAILY
        self._enforce_daily = daily is not None
        self._now = now
        self._hits: collections.deque[float] = collections.deque()
        self._daily_used = 0

    def check(self) -> LimitDecision:
        """Admit or reject one request, recording it when admitted."""
        with self._lock:
            now = self._now()
            hits = self._hits
            while hits and now - hits[0] >= WINDOW_S:
                hits.popleft()
            daily_left = max(0, self.daily - self._daily_used)
            if self._enforce_daily and daily_left <= 0:
                return LimitDecision(
                    False,
                    "DAILY",
                    self.per_10s,
                    max(0, self.per_10s - len(hits)),
                    self.daily,
                    0,
                    60.0,
                    *self._secondly(now),
                )
            if len(hits) >= self.per_10s:
                retry = max(0.0, WINDOW_S - (now - hits[0]))
                return LimitDecision(
                    False,
                    "TEN_SECONDLY_ROLLING",
                    self.per_10s,
                    0,
                    self.daily,
                    daily_left,
                    retry,
                    *self._secondly(now),
                )
            hits.append(now)
            self._daily_used += 1
            return LimitDecision(
                True,
                "",
                self.per_10s,
                self.per_10s - len(hits),
                self.daily,
                max(0, daily_left - 1),
                0.0,
                *self._secondly(now),
            )

    def _secondly(self, now: float) -> tuple[int, int]:
        """The deprecated per-second pair HubSpot still sends (a tenth of the 10-second
        budget, and what is left of it in the last second); informational, not enforced."""
        per_second = max(1, self.per_10s // 10)
        last_second = sum(1 for h in self._hits if now - h < 1.0)
        return per_second, max(0, per_second - last_second)

    def daily_exhausted(self) -> bool:
        """Whether an enforced daily quota is used up (search checks it before admitting)."""
        with self._lock:
            return self._enforce_daily and self._daily_used >= self.daily

    def charge_daily(self) -> None:
        """Count one admitted request against the daily quota only: search requests
        have their own per-second limit but spend the same daily budget."""
        with self._lock:
            self._daily_used += 1

    def reset(self) -> None:
        """Forget all usage (used by tests between scenarios)."""
        with self._lock:
            self._hits.clear()
            self._daily_used = 0


class SearchLimiter:
    """Token bucket for the search endpoints: ``rate_per_s`` sustained, bursts of ``ceil(rate)``."""

    def __init__(self, rate_per_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self.rate = float(rate_per_s)
        self.capacity = max(1.0, float(math.ceil(self.rate)))
        self._now = now
        self._tokens = self.capacity
        self._last = now()

    def check(self) -> LimitDecision:
        """Admit or reject one search request."""
        with self._lock:
            now = self._now()
            if self.rate > 0:
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return LimitDecision(True, "", int(self.capacity), int(self._tokens), 0, 0, 0.0)
            wait = (1.0 - self._tokens) / self.rate if self.rate > 0 else 1.0
            return LimitDecision(False, "SECONDLY", int(self.capacity), 0, 0, 0, wait)

    def reset(self) -> None:
        """Refill the bucket."""
        with self._lock:
            self._tokens = self.capacity
            self._last = self._now()
