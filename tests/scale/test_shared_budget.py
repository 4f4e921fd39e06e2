"""One rate budget per portal across processes: two processes sending through their
own limiters of one sandbox portal (its HubSpot limits on) share the portal's windows
in Redis (``DEALSYNC_LIMITS_URL``), so together they never exceed the 10-second
budget or the search budget — counted per window at the sandbox — and draw no 429.
Without the shared store each process would spend the whole budget by itself (the
same run with ``DEALSYNC_LIMITS_URL`` unset draws 429s)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence

import pytest

from connector.sandbox import PortalSpec
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


def most_in_a_window(times: Sequence[float], window: float) -> int:
    """The largest number of requests the sandbox received within ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_two_processes_sharing_the_limiter_stay_within_the_portal_budget() -> None:
    url = redis_or_skip()
    token = f"shared-{uuid.uuid4().hex[:8]}"
    with server_factory(limits=True) as make:
        srv = make(
            PortalSpec("vendor", token, rate_limit_per_10s=PER_10S, search_rate_per_s=SEARCH_PER_S)
        )
        args = [
            sys.executable, "-m", "connector.testing.scale", "burst", srv.url, token,
            "--requests", str(REQUESTS), "--searches", str(SEARCHES),
            "--per-10s", str(TOLD_PER_10S), "--search-rate", str(TOLD_SEARCH_PER_S),
        ]  # fmt: skip
        env = {**os.environ, "DEALSYNC_LIMITS_URL": url}
        procs = [
            subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        portal = srv.portal("vendor")
        calls = list(portal.calls)
        stats = srv.stats("vendor")
    assert stats["by_kind"] == {"batch_read": 2 * REQUESTS, "search": 2 * SEARCHES}, stats
    assert stats["rate_limited"] == 0, outputs
    assert all("rate_limited=0" in out for out in outputs), outputs
    reads = [c["at"] for c in calls if c["kind"] == "batch_read"]
    searches = [c["at"] for c in calls if c["kind"] == "search"]
    assert most_in_a_window(reads, 10.0) <= PER_10S
    assert most_in_a_window(searches, 1.0) <= SEARCH_PER_S
