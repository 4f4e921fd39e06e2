"""The partner-trigger rate limit and the admin log-in throttle across ``serve``
processes: two limiters (as two processes have, each with its own connection to the
store) count in the one shared store — the state's PostgreSQL — so a partner cannot
get twice its triggers, nor a guesser twice its log-in attempts, by spreading them
over several processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from connector.scale import budget
from connector.service.admin import LoginThrottle
from connector.service.core import TriggerLimiter


@pytest.fixture
def store(state_url_factory: Callable[[str], str]) -> str:
    return state_url_factory("throttles")


def another_process() -> None:
    """The next limiter opens its own store connection, as another process would."""
    budget._STORES.clear()


def test_triggers_are_limited_across_serve_processes(store: str) -> None:
    partner, other = f"acme-{uuid.uuid4().hex[:6]}", f"beta-{uuid.uuid4().hex[:6]}"
    first = TriggerLimiter(2, 60.0, store=store)
    assert [first.check(partner), first.check(partner)] == [0.0, 0.0]
    another_process()
    second = TriggerLimiter(2, 60.0, store=store)
    wait = second.check(partner)
    assert 0 < wait <= 60.0  # the first process's triggers count here too
    assert second.check(other) == 0.0  # per partner
    # without the store each process would have allowed its own two
    assert TriggerLimiter(2, 60.0).check(partner) == 0.0


def test_admin_login_failures_are_counted_across_serve_processes(store: str) -> None:
    address = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:4]}"
    first = LoginThrottle(limit=3, window=900.0, store=store)
    for _ in range(2):
        assert first.wait(address) == 0.0
        first.failed(address)
    another_process()
    second = LoginThrottle(limit=3, window=900.0, store=store)
    assert second.wait(address) == 0.0
    second.failed(address)  # the third failure, in the other process
    wait = first.wait(address)
    assert 0 < wait <= 900.0  # throttled in both
    assert second.wait(address) > 0
    second.succeeded(address)  # a good log-in clears the address everywhere
    assert first.wait(address) == 0.0
