"""HubSpot adapters for tests and campaigns against the sandbox that never wait: no
retry back-off sleeps and client-side limiters with a budget nothing reaches, so a
run's speed is the sandbox's and no test depends on the clock. (The HubSpot adapter
tests that look at the waits themselves use fake time: ``tests/hubspot/hs_support.py``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.adapters.hubspot import HubSpotAdapter
from connector.adapters.ratelimit import PortalLimits, SlidingWindowLimiter


def _no_sleep(seconds: float) -> None:
    """Waits are skipped, not slept."""


def unthrottled_adapter(
    token: str,
    host: str,
    name: str,
    *,
    max_attempts: int = 8,
    max_wait: float = 0.01,
    sleep: Callable[[float], None] = _no_sleep,
    **kwargs: Any,
) -> HubSpotAdapter:
    """A HubSpot adapter on ``host`` that retries without sleeping (``sleep``: where
    its retry waits go instead, e.g. a fake clock) and never waits on its own limiters
    (the sandbox's answers, 429s included, still count); ``kwargs`` go to the adapter."""
    adapter = HubSpotAdapter(
        token=token,
        host=host,
        name=name,
        max_attempts=max_attempts,
        max_wait=max_wait,
        sleep=sleep,
        **kwargs,
    )
    adapter.limits = PortalLimits(
        requests=SlidingWindowLimiter(budget=10**9, window=10.0, sleep=_no_sleep),
        search=SlidingWindowLimiter(budget=10**9, window=1.0, sleep=_no_sleep),
    )
    return adapter
