"""Helpers for the HubSpot adapter tests: fast adapters, fake time, project folders.

Adapters built here talk to the sandbox through the real ``hubspot-api-client``. To
keep the suite fast without timed assertions, retry waits and client-side limiter
waits go to a :class:`FakeTime` (recorded, never slept) except in the tests whose
point is the limiter against the real clock.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from connector.adapters.hubspot import HubSpotAdapter
from connector.adapters.ratelimit import PortalLimits, SlidingWindowLimiter
from connector.testing.hubspot import unthrottled_adapter
from connector.testing.world import HubSpotPortals, project_yaml
from connector.testing.world import write_project as write_folder

_TOKENS = itertools.count(1)


def unique_token(prefix: str) -> str:
    """A token never used before in this process: ``limiter_for`` caches limiters per
    (host, token), so a fresh token gives a fresh limiter with the budget asked for."""
    return f"{prefix}-{next(_TOKENS)}"


class FakeTime:
    """A clock that only moves when something sleeps on it; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def fake_limits(ft: FakeTime, budget: int = 1_000_000) -> PortalLimits:
    """Limiters on fake time with a budget that never blocks by itself (a server
    ``pause`` after a 429 still blocks — on fake time)."""
    return PortalLimits(
        requests=SlidingWindowLimiter(budget=budget, window=10.0, clock=ft.clock, sleep=ft.sleep),
        search=SlidingWindowLimiter(budget=budget, window=1.0, clock=ft.clock, sleep=ft.sleep),
    )


def make_adapter(
    url: str,
    token: str,
    *,
    name: str = "hubspot",
    ft: FakeTime | None = None,
    max_attempts: int = 8,
    max_wait: float = 30.0,
    **kwargs: Any,
) -> HubSpotAdapter:
    """An adapter whose retry waits and limiter waits run on fake time."""
    ft = ft or FakeTime()
    adapter = unthrottled_adapter(
        token, url, name, max_attempts=max_attempts, max_wait=max_wait, sleep=ft.sleep, **kwargs
    )
    adapter.limits = fake_limits(ft)
    return adapter


def write_project(root: Path, url: str) -> Path:
    """A project folder (config + shipped mappings) pointing both portals at ``url``."""
    tokens = {"vendor": "HS_VENDOR_TOKEN", "acme": "HS_ACME_TOKEN"}
    return write_folder(root, project_yaml(hubspot=HubSpotPortals(url, tokens)))


def settled_stats(srv: Any, name: str) -> dict[str, Any]:
    """``srv.stats(name)`` once the counters stop moving: the sandbox counts a request
    after its answer is sent, so a client may read the stats a moment too early."""
    import time

    deadline = time.monotonic() + 5.0
    last = srv.stats(name)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = srv.stats(name)
        if now == last:
            return dict(now)
        last = now
    return dict(last)
