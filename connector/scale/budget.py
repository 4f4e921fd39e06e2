"""One rate budget per portal across processes and machines: rolling windows kept in a
shared store by the ``pyrate-limiter`` library, that every process takes a slot from
before each request (:class:`SharedWindow`).

The store (:func:`store_url`):

- ``DEALSYNC_LIMITS_URL`` when set: ``redis://HOST:6379/0`` (pyrate-limiter's
  ``RedisBucket``) or ``postgresql://…`` (its ``PostgresBucket``);
- else the state's database when it is PostgreSQL — the default of a deployment with
  workers: no other server;
- else none: the embedded default (SQLite, one process) keeps its in-process windows.
  ``DEALSYNC_LIMITS_URL=off`` turns sharing off on PostgreSQL too.

Each window is a bucket of the store: a table ``ratelimit___dealsync_…`` per window on
PostgreSQL (the library's own, created on first use), a sorted set on Redis. Items are
stamped with **the store's clock** (PostgreSQL's ``clock_timestamp()``, Redis
``TIME``), never the worker's, so skew between worker machines does not matter.

Failure semantics: a store that does not answer makes the request *wait* (a back-off,
then ask again), never go unshared — nothing exceeds the budget (fail closed); the
outage is logged once per outage and shown as ``dealsync_budget_store_up 0`` on
``/metrics``; the first answer after it is logged and sharing resumes."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("dealsync.scale")

LIMITS_URL_ENV = "DEALSYNC_LIMITS_URL"
UNREACHABLE_BACKOFF = 1.0  # seconds a request waits when the store does not answer
CONTENDED_WAIT = 0.02  # another process holds the window's lock: ask again soon
CONNECT_TIMEOUT = 3.0  # seconds the store may take to give a connection
LEAK_EVERY_MS = 5_000  # how often a window's expired slots are deleted
REDIS_PREFIXES = ("redis://", "rediss://", "unix://")
METRICS_RETRY_AFTER = 30.0  # seconds /metrics leaves a store that did not answer alone


# the PostgreSQL budget store's clock (:meth:`BudgetStore.now_ms`)
NOW_MS = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"


class BudgetStoreMissing(Exception):
    """A store is configured but the ``[scale]`` extra (pyrate-limiter, psycopg-pool,
    redis) is not installed."""


def store_url(state_url: str, env: Mapping[str, str] | None = None) -> str | None:
    """Where the shared budgets live: ``DEALSYNC_LIMITS_URL``, else the state's
    PostgreSQL, else nowhere (``off``/``none`` in the variable: nowhere)."""
    env = os.environ if env is None else env
    explicit = env.get(LIMITS_URL_ENV, "").strip()
    if explicit.lower() in ("off", "none", "memory"):
        return None
    if explicit:
        return explicit
    if state_url.startswith("postgresql"):
        return state_url
    return None


def missing_packages(url: str) -> str | None:
    """What the store at ``url`` needs that is not installed (None: nothing)."""
    import importlib.util

    needed = ["pyrate_limiter", "redis" if url.startswith(REDIS_PREFIXES) else "psycopg_pool"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    return ", ".join(missing) or None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class BudgetStore:
    """The shared store at ``url``: its connection (a small psycopg pool, or a Redis
    client), its clock and its buckets, one per window key. Whether it answered last
    is :attr:`up` (None: not asked yet) — ``/metrics`` shows it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind = "redis" if url.startswith(REDIS_PREFIXES) else "postgres"
        self.up: bool | None = None
        self.failures = 0
        self._conn: Any = None
        self._buckets: dict[str, Any] = {}
        self._leaked: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._quiet_until = 0.0  # monotonic: /metrics does not ask a down store before

    @property
    def shown(self) -> str:
        """The URL without its user and password (logs, ``/metrics``)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        return urlunsplit(parts._replace(netloc="…@" + parts.netloc.rsplit("@", 1)[1]))

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        try:
            if self.kind == "redis":
                import redis

                self._conn = redis.Redis.from_url(
                    self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
                )
            else:
                from psycopg_pool import ConnectionPool

                from connector.scale.app import conninfo

                self._conn = ConnectionPool(
                    conninfo(self.url),
                    min_size=0,
                    max_size=4,
                    max_idle=60,
                    timeout=CONNECT_TIMEOUT,
                    kwargs={"connect_timeout": int(CONNECT_TIMEOUT)},
                    open=True,
                    name="dealsync-budgets",
                )
        except ImportError as exc:
            raise BudgetStoreMissing(
                f"the shared rate budgets' store is {self.shown} but its packages are "
                f"missing: pip install 'dealsync[scale]' ({exc})"
            ) from None
        return self._conn

    def now_ms(self) -> int:
        """The store's clock, epoch milliseconds: every worker's windows on one clock,
        so a worker machine whose clock is off does not move its requests into another
        window. Asked of the store itself (Redis ``TIME``, PostgreSQL's
        ``clock_timestamp()`` over the store's own pool, next to pyrate-limiter's bucket
        queries): the budget store is not the state store, whose queries live in
        :mod:`connector.state`. An error propagates: a store that does not answer must
        hold requests back, never fall back to the local clock."""
        conn = self._connection()
        if self.kind == "redis":
            seconds, micros = conn.time()
            return int(seconds) * 1000 + int(micros) // 1000
        with conn.connection() as db, db.cursor() as cur:
            cur.execute(NOW_MS)
            row = cur.fetchone()
        if row is None:
            raise RuntimeError("the budget store's database returned no time")
        return int(row[0])

    def _bucket(self, key: str, rates: list[Any]) -> Any:
        bucket = self._buckets.get(key)
        if bucket is None:
            from pyrate_limiter import PostgresBucket, RedisBucket

            conn = self._connection()
            if self.kind == "redis":
                bucket = RedisBucket.init(rates, conn, key)
            else:
                bucket = PostgresBucket(conn, key, rates)
            self._buckets[key] = bucket
        elif [(r.limit, r.interval) for r in bucket.rates] != [
            (r.limit, r.interval) for r in rates
        ]:
            bucket.rates = rates  # the portal told us a lower budget
        return bucket

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def _answered(self) -> None:
        if self.up is False:
            log.warning(
                "the shared rate budgets' store (%s) answers again after %d failed "
                "attempt(s); requests are shared again",
                self.shown,
                self.failures,
            )
        self.up, self.failures = True, 0

    def _failed(self, exc: Exception) -> None:
        if self.up is not False:
            log.warning(
                "the shared rate budgets' store (%s) did not answer (%s: %s); requests "
                "are held back (%.0f s, then asked again) until it answers — none goes "
                "unshared. Check that the store is running and reachable.",
                self.shown,
                type(exc).__name__,
                exc,
                UNREACHABLE_BACKOFF,
            )
        self.up = False
        self.failures += 1

    # ------------------------------------------------------------------ windows

    def take(self, key: str, rates: list[Any], weight: int = 1) -> float:
        """Take ``weight`` slots of the window ``key``: 0.0 when taken, else the
        seconds to wait before asking again (its oldest slot expires then; the store
        unreachable: :data:`UNREACHABLE_BACKOFF`)."""
        from pyrate_limiter import RateItem

        with self._key_lock(key):
            try:
                bucket = self._bucket(key, rates)
                item = RateItem(key, self.now_ms(), weight)
                if bucket.put(item):
                    self._answered()
                    self._leak(key, bucket, item.timestamp)
                    return 0.0
                wait_ms = bucket.waiting(item)
                self._answered()
            except BudgetStoreMissing:
                raise
            except Exception as exc:  # down, restarting, refusing: wait, never go unshared
                self._failed(exc)
                return UNREACHABLE_BACKOFF
        if wait_ms < 0:  # more than the window holds: wait a whole window
            return max(r.interval for r in rates) / 1000
        return max(CONTENDED_WAIT, wait_ms / 1000)

    def _leak(self, key: str, bucket: Any, now: int) -> None:
        """Delete the window's expired slots now and then (the library leaves them)."""
        if now - self._leaked.get(key, 0) >= LEAK_EVERY_MS:
            self._leaked[key] = now
            bucket.leak(now)

    def used(self, key: str, rates: list[Any]) -> int | None:
        """Slots taken in the window ``key`` over its longest rate (None: the store
        did not answer) — ``/metrics``' budget use, every process's requests. A store
        that did not answer is not asked again for :data:`METRICS_RETRY_AFTER` seconds
        (requests keep probing it), so a scrape never waits on it window by window."""
        import time

        if self.up is False and time.monotonic() < self._quiet_until:
            return None
        with self._key_lock(key):
            try:
                bucket = self._bucket(key, rates)
                bucket.leak(self.now_ms())
                count = int(bucket.count())
                self._answered()
                return count
            except BudgetStoreMissing:
                raise
            except Exception as exc:
                self._failed(exc)
                self._quiet_until = time.monotonic() + METRICS_RETRY_AFTER
                return None

    def wait_if_full(self, key: str, rates: list[Any]) -> float:
        """Seconds until the window ``key`` has room again, 0.0 when it has room now
        — without taking a slot (the admin log-in throttle counts failures only);
        the store unreachable: :data:`UNREACHABLE_BACKOFF` (fail closed)."""
        [rate] = rates
        with self._key_lock(key):
            try:
                bucket = self._bucket(key, rates)
                now = self.now_ms()
                bucket.leak(now)
                if int(bucket.count()) < rate.limit:
                    self._answered()
                    return 0.0
                oldest = bucket.peek(rate.limit - 1)  # newest first: the limit-th newest
                self._answered()
            except BudgetStoreMissing:
                raise
            except Exception as exc:
                self._failed(exc)
                return UNREACHABLE_BACKOFF
        if oldest is None:
            return 0.0
        return max(CONTENDED_WAIT, (oldest.timestamp + rate.interval - now) / 1000)

    def clear(self, key: str, rates: list[Any]) -> None:
        """Forget the window ``key`` (a good log-in clears its address)."""
        with self._key_lock(key):
            try:
                self._bucket(key, rates).flush()
                self._answered()
            except BudgetStoreMissing:
                raise
            except Exception as exc:
                self._failed(exc)


_STORES: dict[str, BudgetStore] = {}
_STORES_LOCK = threading.Lock()


def store_at(url: str) -> BudgetStore:
    """The process's one :class:`BudgetStore` for ``url``."""
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = BudgetStore(url)
        return store


def stores() -> list[BudgetStore]:
    """The stores this process uses (``/metrics``: ``dealsync_budget_store_up``)."""
    with _STORES_LOCK:
        return list(_STORES.values())


@dataclass
class SharedWindow:
    """At most ``budget`` slots in any ``window`` seconds under ``key``, across every
    process using ``store``. ``block`` > 1 takes that many slots at once and spends
    them here (the daily budget: one store round trip per block; a process that stops
    leaves its unspent slots counted, which errs on the safe side)."""

    store: BudgetStore
    key: str
    budget: int
    window: float
    block: int = 1
    _left: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def named(cls, url: str, name: str, budget: int, window: float, block: int = 1) -> SharedWindow:
        """A window of the store at ``url``, its key made of ``name`` (a digest: a
        table name on PostgreSQL)."""
        return cls(store_at(url), f"dealsync_{_digest(name)}", budget, window, block)

    def rates(self) -> list[Any]:
        from pyrate_limiter import Rate

        return [Rate(max(1, self.budget), max(1, round(self.window * 1000)))]

    def resize(self, budget: int, window: float) -> None:
        """The portal told a lower budget (or a longer window): use it from now on."""
        self.budget, self.window = budget, window

    def take(self) -> float:
        """0.0 when a slot was taken, else the seconds to wait before asking again."""
        with self._lock:
            if self._left > 0:
                self._left -= 1
                return 0.0
            block = max(1, min(self.block, self.budget))
            wait = self.store.take(self.key, self.rates(), block)
            if wait == 0.0:
                self._left = block - 1
            return wait

    def used(self) -> int | None:
        """Slots every process took in the last window (None: the store is down)."""
        return self.store.used(self.key, self.rates())

    def wait_if_full(self) -> float:
        """Seconds until the window has room, without taking a slot (0.0: room now)."""
        return self.store.wait_if_full(self.key, self.rates())

    def clear(self) -> None:
        """Forget every slot of the window."""
        self.store.clear(self.key, self.rates())
