"""One rate budget per portal across processes: a moving window in a shared store,
kept by the ``limits`` library, that every process's limiter of the portal takes a
slot from before each request (:class:`SharedWindow`).

The store is ``DEALSYNC_LIMITS_URL`` (``redis://HOST:6379``; any storage ``limits``
supports that keeps a moving window across processes: Redis, Redis Sentinel/Cluster,
memcached, MongoDB). ``limits`` has no PostgreSQL storage, so without the variable
each process keeps its own in-process window (the embedded default, one process).

Failure semantics: a store that does not answer makes the request *wait* (back off
and ask again), never go unshared — nothing exceeds the budget; the window's times
are each process's wall clock, so clock skew between machines eats into the margin
the limiters keep (:mod:`connector.adapters.ratelimit`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("dealsync.scale")

LIMITS_URL_ENV = "DEALSYNC_LIMITS_URL"
UNREACHABLE_BACKOFF = 1.0


class LimitsStoreMissing(Exception):
    """``DEALSYNC_LIMITS_URL`` is set but the ``limits`` package is not installed."""


@dataclass
class SharedWindow:
    """At most ``budget`` requests in any ``window`` seconds (whole seconds: the
    ``limits`` library's granularity; a shorter window is rounded up) under ``key``,
    across every process using the store at ``url``."""

    url: str
    key: str
    budget: int
    window: float
    clock: Callable[[], float] = time.time
    _limiter: Any = field(default=None, repr=False)
    _item: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            from limits import RateLimitItemPerSecond
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter
        except ImportError as exc:
            raise LimitsStoreMissing(
                f"{LIMITS_URL_ENV} is set but the limits package is missing: "
                f"pip install 'dealsync[scale]' ({exc})"
            ) from None
        self._limiter = MovingWindowRateLimiter(storage_from_string(self.url))
        self._item = RateLimitItemPerSecond(
            max(1, self.budget), max(1, math.ceil(self.window - 1e-9))
        )

    def take(self) -> float:
        """Take a slot: 0.0 when taken, else the seconds to wait before asking again
        (the window's oldest slot expires then; the store unreachable: a back-off)."""
        try:
            if self._limiter.hit(self._item, self.key):
                return 0.0
            stats = self._limiter.get_window_stats(self._item, self.key)
        except Exception as exc:  # the store down or restarting: wait, never go unshared
            log.warning(
                "the shared rate budget's store (%s) did not answer (%s: %s); "
                "holding requests back for %.0f s",
                self.url,
                type(exc).__name__,
                exc,
                UNREACHABLE_BACKOFF,
            )
            return UNREACHABLE_BACKOFF
        return max(0.01, float(stats.reset_time) - self.clock())
