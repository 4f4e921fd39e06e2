"""An org's rolling 24-hour API request allocation, as ``Sforce-Limit-Info`` reports it.

Salesforce counts every API request of an org over the last 24 hours against the org's
allocation and answers ``403 REQUEST_LIMIT_EXCEEDED`` once it is spent.  Time is the
org's clock (``Org.now``), so a test can move a day ahead and see the allocation back.
A refused request is not counted (like the HubSpot sandbox, so a client retrying in a
loop does not lock itself out forever).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

WINDOW = timedelta(hours=24)


class ApiUsage:
    """Requests admitted in the last 24 hours of the org's clock."""

    def __init__(self, allocation: int, now: Callable[[], datetime]) -> None:
        self._lock = threading.Lock()
        self.allocation = allocation
        self._now = now
        self._hits: collections.deque[datetime] = collections.deque()
        self.refused = 0

    def _expire(self, now: datetime) -> None:
        hits = self._hits
        while hits and now - hits[0] >= WINDOW:
            hits.popleft()

    def admit(self, enforce: bool) -> bool:
        """Count one request; False (and not counted) when the allocation is spent and
        enforced."""
        with self._lock:
            now = self._now()
            self._expire(now)
            if enforce and len(self._hits) >= self.allocation:
                self.refused += 1
                return False
            self._hits.append(now)
            return True

    @property
    def used(self) -> int:
        """Requests in the current 24-hour window."""
        with self._lock:
            self._expire(self._now())
            return len(self._hits)

    def header(self) -> str:
        """The ``Sforce-Limit-Info`` value, e.g. ``api-usage=18/100000``."""
        return f"api-usage={self.used}/{self.allocation}"

    def spend(self, requests: int) -> None:
        """Count ``requests`` more at the current time (a test's shortcut to a nearly
        spent allocation: the partner's other integrations)."""
        with self._lock:
            now = self._now()
            self._hits.extend([now] * requests)

    def reset(self) -> None:
        """Forget all usage."""
        with self._lock:
            self._hits.clear()
            self.refused = 0
