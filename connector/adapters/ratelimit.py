"""Client-side rate limiting per HubSpot portal.

HubSpot counts requests in a rolling window per portal (100 or 190 per 10 s) and
searches separately (about 5 per second). Bouncing off the limit costs a 429 and a
wait of seconds, so the limiter keeps the portal *under* its budget instead: a
sliding-window log of send times, a small safety margin for network jitter, and the
budget corrected from the ``X-HubSpot-RateLimit-*`` headers (another process sharing
the portal shows up as a lower ``Remaining``).

One limiter per portal per process (:func:`limiter_for`), shared by every adapter of
that portal, because the budget belongs to the portal, not to a connection. With a
shared store (the state's PostgreSQL, or ``DEALSYNC_LIMITS_URL``:
:func:`connector.scale.budget.store_url`, set for the process by :func:`use_store`),
each limiter also takes a slot of the portal's windows in that store before a request
goes (:mod:`connector.scale.budget`): the 10-second budget, the search budget (counted
by us: search answers carry no rate-limit headers) and the daily budget — one budget
for every process and machine, as ``dealsync worker`` processes need.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

LIMITS_URL_ENV = "DEALSYNC_LIMITS_URL"
DAILY_DEFAULT = 250_000  # HubSpot's daily budget of a private app until a header says
DAY = 86_400.0
DAILY_BLOCK = 50  # daily slots a process takes from the shared store at once


BACKGROUND_RESERVE = 2
"""A background caller leaves 1/2 of each window's budget to the pass (:func:`background`):
at N = 10,000 a third left the stream's contact reads short while the write-backs
went (×1.28–1.30 the bound; half: ×1.27, docs/benchmarks.md)."""


@dataclass
class Reserve:
    """The share of each window a background caller leaves: ``1/divisor`` of the
    budget (0: none). Its owner may lower it while the calls run (nothing else is
    waiting for the budget any more)."""

    divisor: int = BACKGROUND_RESERVE


_reserve: contextvars.ContextVar[Reserve | None] = contextvars.ContextVar(
    "dealsync_reserve", default=None
)


@contextmanager
def background(reserve: Reserve) -> Iterator[None]:
    """Calls made in this context are background work (a pass's write-back of the
    decided deals' statuses, which nothing in the pass waits on): each goes only while
    its window has more than ``reserve``'s share of the budget free, so the pass's own
    reads on the same portal (the next chunk's contacts) are never held up a whole
    window by a burst of 100 updates. Threads started inside inherit it (context
    variables)."""
    token = _reserve.set(reserve)
    try:
        yield
    finally:
        _reserve.reset(token)


class Shared(Protocol):
    """A window shared with other processes (:class:`connector.scale.budget.SharedWindow`)."""

    budget: int

    def take(self) -> float:
        """0.0 when a slot was taken, else the seconds to wait before asking again."""
        ...

    def resize(self, budget: int, window: float) -> None:
        """The portal told a lower budget or a longer window."""
        ...

    def used(self) -> int | None:
        """Slots every process took in the last window (None: not known)."""
        ...


@dataclass
class SlidingWindowLimiter:
    """At most ``budget`` acquisitions in any ``window`` seconds."""

    budget: int
    window: float
    margin: int = 0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    waited: float = 0.0
    shared: Shared | None = None  # the same window in the shared store
    daily: Shared | None = None  # the portal's daily budget in the shared store
    _sent: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server_block_until: float = 0.0

    @property
    def effective_budget(self) -> int:
        return max(1, self.budget - self.margin)

    def acquire(self) -> float:
        """Block until a request may go; returns the seconds waited."""
        waited = 0.0
        day_slot = self.daily is None  # taken once, kept while the window makes us wait
        reserve = _reserve.get()
        while True:
            cap = self.effective_budget
            if reserve is not None and reserve.divisor > 1:  # background: :func:`background`
                cap = max(1, cap - cap // reserve.divisor)
            with self._lock:
                now = self.clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                delay = 0.0
                if self._server_block_until > now:
                    delay = self._server_block_until - now
                elif len(self._sent) >= cap:
                    # until enough of the window's sends expire to bring it under the cap
                    delay = self._sent[len(self._sent) - cap] + self.window - now
                else:  # the other processes' requests count too
                    if not day_slot and self.daily is not None:
                        delay = self.daily.take()
                        day_slot = delay <= 0
                    if delay <= 0 and self.shared is not None:
                        delay = self.shared.take()
                if delay <= 0:
                    self._sent.append(now)
                    self.waited += waited
                    return waited
            self.sleep(delay)
            waited += delay

    def learn(self, headers: Mapping[str, str] | None) -> None:
        """Adjust to what the server says: its max, and how much of it is left."""
        if not headers:
            return
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            server_max = int(lower.get("x-hubspot-ratelimit-max", "0"))
            remaining = int(lower.get("x-hubspot-ratelimit-remaining", "-1"))
            interval = int(lower.get("x-hubspot-ratelimit-interval-milliseconds", "0")) / 1000
            daily = int(lower.get("x-hubspot-ratelimit-daily", "0"))
        except ValueError:
            return
        with self._lock:
            resized = False
            if server_max > 0 and server_max < self.budget:
                self.budget, resized = server_max, True
            if interval > self.window:
                self.window, resized = interval, True
            if resized and self.shared is not None:
                self.shared.resize(self.effective_budget, self.window)
            if self.daily is not None and daily > 0:
                self.daily.resize(max(1, daily - daily // 100), DAY)
            if 0 <= remaining <= self.margin:
                # Someone else is spending this portal's budget: let the window roll.
                self._server_block_until = self.clock() + self.window / max(self.budget, 1) * (
                    self.margin + 1 - remaining
                )

    def in_window(self) -> int:
        """Requests sent in the last ``window`` seconds: the budget in use
        (``/metrics``) — every process's, from the shared store when there is one
        (and it answers), else this process's."""
        if self.shared is not None:
            used = self.shared.used()
            if used is not None:
                return used
        with self._lock:
            since = self.clock() - self.window
            return sum(1 for sent in self._sent if sent > since)

    def pause(self, seconds: float) -> None:
        """Hold every request of this portal back (after a 429 with Retry-After)."""
        with self._lock:
            self._server_block_until = max(self._server_block_until, self.clock() + seconds)


@dataclass
class PortalLimits:
    requests: SlidingWindowLimiter
    search: SlidingWindowLimiter


_REGISTRY: dict[str, PortalLimits] = {}
_BY_NAME: dict[str, PortalLimits] = {}  # the limiters last handed out for each portal name
_REGISTRY_LOCK = threading.Lock()
_STORE: list[str | None] = [None]  # the shared store of this process (use_store)
_WARNED: set[str] = set()
log = logging.getLogger("dealsync.ratelimit")


def use_store(url: str | None) -> None:
    """The shared store this process's portal limiters take their slots from (the
    program sets it from its state: :func:`connector.scale.budget.store_url`);
    ``DEALSYNC_LIMITS_URL`` in the environment wins over it. A PostgreSQL state
    without the ``[scale]`` packages keeps in-process windows, and says so once."""
    if url and not os.environ.get(LIMITS_URL_ENV, "").strip():
        from connector.scale.budget import missing_packages

        missing = missing_packages(url)
        if missing:
            if url not in _WARNED:
                _WARNED.add(url)
                log.warning(
                    "the HubSpot rate budgets are kept in this process only: sharing "
                    "them with other processes in the state's PostgreSQL needs %s — "
                    "pip install 'dealsync[scale]' (needed before running several "
                    "dealsync processes or workers on one portal)",
                    missing,
                )
            url = None
    _STORE[0] = url


def current_store() -> str | None:
    """Where this process's budgets are shared: ``DEALSYNC_LIMITS_URL`` (``off``:
    nowhere), else what :func:`use_store` set."""
    explicit = os.environ.get(LIMITS_URL_ENV, "").strip()
    if explicit.lower() in ("off", "none", "memory"):
        return None
    return explicit or _STORE[0]


def limiter_for(
    host: str, token: str, per_10s: int, search_per_s: float, name: str | None = None
) -> PortalLimits:
    """The process-wide limiters of one portal (keyed by host and a token digest);
    ``name`` (the portal's name in the config) is what :func:`named_limits` reports
    them under; the portal's windows are shared through the process's store
    (:func:`current_store`) when there is one."""
    key = hashlib.sha256(f"{host}|{token}".encode()).hexdigest()
    url = current_store()
    with _REGISTRY_LOCK:
        limits = _REGISTRY.get(f"{key}|{url}")
        if limits is None:
            margin = max(1, per_10s // 20)
            search_budget = max(1, int(search_per_s))
            limits = PortalLimits(
                requests=SlidingWindowLimiter(budget=per_10s, window=10.0, margin=margin),
                search=SlidingWindowLimiter(
                    budget=search_budget,
                    window=1.0 * search_budget / search_per_s + 0.05,
                ),
            )
            if url:
                _share(limits, url, key[:24])
            _REGISTRY[f"{key}|{url}"] = limits
        if name is not None:
            _BY_NAME[name] = limits
        return limits


def _share(limits: PortalLimits, url: str, key: str) -> None:
    """Give the portal's limiters their windows in the store at ``url``: the 10-second
    budget less its margin, the search budget over the in-process search window, and
    the daily budget (less 1 %, taken in blocks of :data:`DAILY_BLOCK`)."""
    from connector.scale.budget import SharedWindow

    requests, search = limits.requests, limits.search
    requests.shared = SharedWindow.named(
        url, f"{key}:requests", requests.effective_budget, requests.window
    )
    requests.daily = SharedWindow.named(
        url, f"{key}:daily", DAILY_DEFAULT - DAILY_DEFAULT // 100, DAY, block=DAILY_BLOCK
    )
    search.shared = SharedWindow.named(url, f"{key}:search", search.budget, search.window)
    search.daily = requests.daily  # searches spend the same daily budget


def named_limits() -> dict[str, PortalLimits]:
    """This process's limiters by portal name (a portal whose host or token changed
    shows its current ones): the budget and its use per portal on ``/metrics``."""
    with _REGISTRY_LOCK:
        return dict(_BY_NAME)


@dataclass(frozen=True)
class BudgetUse:
    """One window of a portal's budget and how much of it was used in the last window
    (``used`` None: the store did not tell)."""

    portal: str
    window: str  # requests (10 s), search (per second), daily
    budget: int
    used: int | None


def budget_use() -> list[BudgetUse]:
    """Every window of every portal this process drives, with its use: every process's,
    from the shared store when there is one, else this process's (``/metrics`` and the
    admin page's capacity view read the same figures)."""
    out: list[BudgetUse] = []
    for portal, limits in sorted(named_limits().items()):
        for window, limiter in (("requests", limits.requests), ("search", limits.search)):
            out.append(BudgetUse(portal, window, limiter.budget, limiter.in_window()))
        daily = limits.requests.daily
        if daily is not None:
            out.append(BudgetUse(portal, "daily", daily.budget, daily.used()))
    return out
