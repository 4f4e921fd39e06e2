"""The shared budget's store gone under a running limiter (PostgreSQL behind a proxy
that is cut, then restored): requests wait and ask again — none goes unshared, so
nothing can exceed the budget while it is down — the outage is logged and shown
(``dealsync_budget_store_up`` 0), and the first answer after it gives the slot."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from connector.adapters.ratelimit import SlidingWindowLimiter
from connector.scale.budget import UNREACHABLE_BACKOFF, SharedWindow, stores
from connector.service.metrics import _budgets
from connector.testing.scale import TcpProxy


def store_up_samples() -> dict[str, float]:
    [family] = [f for f in _budgets() if f.name == "dealsync_budget_store_up"]
    return {s.labels["store"]: s.value for s in family.samples}


@pytest.fixture
def through_proxy(state_url_factory: Callable[[str], str]) -> Iterator[tuple[TcpProxy, str]]:
    """A fresh PostgreSQL schema reached through a proxy the test can cut."""
    url = make_url(state_url_factory("down"))
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.stop()


def test_store_gone_holds_requests_back_then_they_go_once_it_answers(
    through_proxy: tuple[TcpProxy, str], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, url = through_proxy
    window = SharedWindow.named(url, f"down-{uuid.uuid4().hex}", 10, 600.0)
    seen_up: list[bool | None] = []
    seen_used: list[int | None] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # no real sleep: the store's timeouts pace it
        slept.append(seconds)
        seen_up.append(window.store.up)
        if len(slept) == 1:  # a scrape while it is down: no number, and no wait on it
            failures = window.store.failures
            seen_used.append(window.used())
            seen_used.append(window.used())
            assert window.store.failures <= failures + 1
        if len(slept) == 3:
            proxy.start()  # the store is back

    limiter = SlidingWindowLimiter(budget=10, window=600.0, sleep=sleep, shared=window)
    limiter.acquire()
    assert window.store.up is True and not slept

    proxy.stop()  # the store is gone: connections cut, new ones refused
    with caplog.at_level(logging.WARNING, logger="dealsync.scale"):
        limiter.acquire()
    assert len(slept) >= 3 and set(slept) == {UNREACHABLE_BACKOFF}  # held back, not sent
    assert seen_up[0] is False  # shown while it was down
    assert seen_used == [None, None]
    assert window.store.up is True  # and up once it answered
    assert window.used() == 2  # both requests counted in the shared window
    assert len(limiter._sent) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not answer" in m and "none goes unshared" in m for m in messages)
    assert any("answers again" in m for m in messages)
    assert window.store in stores()
    assert store_up_samples()[window.store.shown] == 1.0


def test_a_postgres_state_without_the_scale_packages_says_its_budgets_are_not_shared(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from connector.adapters import ratelimit
    from connector.scale import budget

    monkeypatch.delenv("DEALSYNC_LIMITS_URL", raising=False)
    monkeypatch.setattr(budget, "missing_packages", lambda url: "psycopg_pool")
    url = f"postgresql://dealsync@db.internal:5432/state_{uuid.uuid4().hex[:6]}"
    with caplog.at_level(logging.WARNING, logger="dealsync.ratelimit"):
        ratelimit.use_store(url)
    try:
        assert ratelimit.current_store() is None  # in-process windows, as before
        # only this logger's lines: another module's pool may still log its own retries
        [line] = [r.getMessage() for r in caplog.records if r.name == "dealsync.ratelimit"]
        assert "kept in this process only" in line and "dealsync[scale]" in line
    finally:
        ratelimit.use_store(None)
