"""One rate budget per portal across processes: processes sending through their own
limiters of one sandbox portal (its HubSpot limits on) share the portal's windows in
the store — the state's PostgreSQL by default, Redis when ``DEALSYNC_LIMITS_URL``
names one — so together they never exceed the 10-second budget or the search budget
(counted per window at the sandbox) and draw no 429. The windows are on the store's
clock: a process whose wall clock is an hour behind still counts the others' slots.
Without the shared store each process spends the whole budget by itself (the same run
with ``DEALSYNC_LIMITS_URL=off`` draws 429s)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence

import pytest

from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.sandbox import server_factory

REDIS_URL = os.environ.get("DEALSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PER_10S, SEARCH_PER_S = 20, 5.0  # the sandbox portal's limits, as HubSpot's
# What the processes are told, lower: the slack absorbs network jitter between the
# limiters' clocks and the sandbox's on a loaded machine (a real deployment keeps the
# limiter's own margin); two processes alone would still exceed the portal's limits.
TOLD_PER_10S, TOLD_SEARCH_PER_S = 16, 3.0
REQUESTS, SEARCHES = 12, 8  # per process: together more than one window's budget


def redis_or_skip() -> str:
    """The test Redis (``DEALSYNC_TEST_REDIS_URL``, else 127.0.0.1:6379) or a skip."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2).ping()
    except Exception as exc:
        pytest.skip(f"no Redis answering at {REDIS_URL} ({exc})")
    return REDIS_URL


@pytest.fixture(params=["postgres", "redis"])
def store(request: pytest.FixtureRequest, state_url_factory: Callable[[str], str]) -> str:
    """The shared store: a fresh schema of the test PostgreSQL, or the test Redis."""
    if request.param == "redis":
        return redis_or_skip()
    return state_url_factory("budget")


def most_in_a_window(times: Sequence[float], window: float) -> int:
    """The largest number of requests the sandbox received within ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def burst(
    srv: SandboxServer, token: str, store: str, searches: int = SEARCHES, skew: float = 0.0
) -> subprocess.Popen[bytes]:
    """A process sending reads then searches through its limiter of the portal."""
    args = [
        sys.executable, "-m", "connector.testing.scale", "burst", srv.url, token,
        "--requests", str(REQUESTS), "--searches", str(searches),
        "--per-10s", str(TOLD_PER_10S), "--search-rate", str(TOLD_SEARCH_PER_S),
        "--skew", str(skew),
    ]  # fmt: skip
    env = {**os.environ, "DEALSYNC_LIMITS_URL": store}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    outputs = [p.communicate(timeout=180)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), outputs
    return outputs


def test_two_processes_sharing_the_store_stay_within_the_portal_budget(store: str) -> None:
    token = f"shared-{uuid.uuid4().hex[:8]}"
    with server_factory(limits=True) as make:
        srv = make(
            PortalSpec("vendor", token, rate_limit_per_10s=PER_10S, search_rate_per_s=SEARCH_PER_S)
        )
        outputs = finished([burst(srv, token, store) for _ in range(2)])
        calls = list(srv.portal("vendor").calls)
        stats = srv.stats("vendor")
    assert stats["by_kind"] == {"batch_read": 2 * REQUESTS, "search": 2 * SEARCHES}, stats
    assert stats["rate_limited"] == 0, outputs
    assert all("rate_limited=0" in out for out in outputs), outputs
    reads = [c["at"] for c in calls if c["kind"] == "batch_read"]
    searches = [c["at"] for c in calls if c["kind"] == "search"]
    assert most_in_a_window(reads, 10.0) <= PER_10S
    assert most_in_a_window(searches, 1.0) <= SEARCH_PER_S


def test_a_worker_whose_clock_is_an_hour_behind_still_shares_the_window(store: str) -> None:
    # the skewed process spends its window first; on its own clock its slots would be
    # an hour old to the next process, which would then spend a whole window more
    token = f"skew-{uuid.uuid4().hex[:8]}"
    with server_factory(limits=True) as make:
        srv = make(
            PortalSpec("vendor", token, rate_limit_per_10s=PER_10S, search_rate_per_s=SEARCH_PER_S)
        )
        first = finished([burst(srv, token, store, searches=0, skew=-3600.0)])
        second = finished([burst(srv, token, store, searches=0)])
        calls = list(srv.portal("vendor").calls)
        stats = srv.stats("vendor")
    assert stats["by_kind"] == {"batch_read": 2 * REQUESTS}, stats
    assert stats["rate_limited"] == 0, first + second
    assert most_in_a_window([c["at"] for c in calls], 10.0) <= PER_10S
