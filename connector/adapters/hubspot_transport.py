"""The HubSpot transport: one API call with the portal's limiter and our retry policy.

The client does not retry POSTs, so retries are ours (``tenacity``), in this one layer:
urllib3's own retries are off (the client's ``retry=False``), so a stopped portal is
not tried 3 times per attempt with a "Retrying" warning each. 429 and 5xx and dropped
connections are retried with the server's ``Retry-After`` or policy honoured, 4xx
validation errors never are. Every call has a connect and a read timeout; a host that
cannot be connected to is tried ``connect_attempts`` times (a blip, not an outage),
one that accepted the connection and did not answer within the read timeout is not
repeated; either ends in :class:`~connector.adapters.base.PortalUnreachable`, one line
naming the host, the portal and what to try. A refused token (401/403) ends in
:class:`~connector.adapters.base.PortalAuthRefused` naming its variable. The hot
calls parse the JSON answer themselves (:class:`_View`). The search, association and
write halves of the adapter build on it.

Up to ``max_in_flight`` requests of one adapter are on the wire at once
(:meth:`HubSpotTransport.fan_out`: the batches of one read or write sent side by side,
their results in input order). Each request takes an in-flight slot *before* the
portal's limiter, so the limiter's log holds the moment a request really went and
every request, concurrent or not, is gated by it. Counters are kept under a lock: the
adapter is safe to share between threads (``thread_safe``), so the detection thread
needs no lock around it.
"""

from __future__ import annotations

import contextvars
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from hubspot import HubSpot
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from connector.adapters.base import AdapterError, PortalAuthRefused, PortalUnreachable
from connector.adapters.hubspot_errors import (
    RequestRefused,
    Retriable,
    Unreachable,
    _body,
    _header,
    _is_api_exception,
    auth_line,
    refused,
    unreachable,
    unreachable_line,
)
from connector.adapters.naming import HUBSPOT_NAMING
from connector.adapters.ratelimit import limiter_for
from connector.records import Record

DEFAULT_HOST = "https://api.hubapi.com"
CONNECT_TIMEOUT = 5.0  # seconds to establish a connection (HubSpot answers in well under 1)
READ_TIMEOUT = 60.0  # seconds to wait for an answer (a 100-input batch takes a few)
CONNECT_ATTEMPTS = 2  # tries of a host that cannot be connected to
BATCH = 100
SEARCH_PAGE = 200
SEARCH_CAP = 10_000
ASSOC_READ_BATCH = 1000
ASSOC_CREATE_BATCH = 2000  # v4 association batch create takes up to 2,000 inputs
MAX_IN_FLIGHT = 3  # requests of one portal on the wire at once (docs/benchmarks.md)

T = TypeVar("T")
R = TypeVar("R")

MODIFIED = {"contacts": "lastmodifieddate"}  # everything else: hs_lastmodifieddate
# Ids merged into a record (semicolon-separated): read with every record, so the engine
# can follow a merge made in HubSpot (engine/merges.py, follow_merges, by naming.merged_ids).
MERGED_IDS = HUBSPOT_NAMING.merged_ids


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return datetime.fromtimestamp(0, UTC)


class _View(dict[str, Any]):
    """A JSON object read with the generated models' attribute names.

    The hot calls (search, batch read/write, association reads) ask the client for the
    undecoded response (``_preload_content=False``) and parse it with ``json``: the
    generated models validate and convert every field of every record, which costs
    about ten times the HTTP round trip on a 200-record page. ``obj.updated_at`` reads
    ``updatedAt``, ``obj._from`` reads ``from``; a missing key reads as ``None``, as an
    unset model attribute does. Dates stay ISO strings (``_aware`` parses them)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        head, *rest = name.lstrip("_").split("_")
        value = self.get(head + "".join(w.title() for w in rest))
        if isinstance(value, dict) and not isinstance(value, _View):
            return _View(value)
        if isinstance(value, list):
            return [_View(v) if isinstance(v, dict) else v for v in value]
        return value


class HubSpotTransport:
    """One HubSpot portal's client, limiter, retry policy and call counters."""

    # the counters are locked and the client's connection pool is thread-safe: the
    # detection thread and the applying thread may call it at once (engine/detect.py)
    thread_safe = True

    def __init__(
        self,
        *,
        token: str,
        host: str | None = None,
        name: str = "hubspot",
        rate_limit_per_10s: int = 100,
        search_rate_per_s: float = 5.0,
        max_attempts: int = 8,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        connect_attempts: int = CONNECT_ATTEMPTS,
        token_env: str | None = None,
        portal: str | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        """``token_env`` (the variable the token came from) and ``portal`` (how
        messages name it: "partner acme", "vendor") only shape the failure lines.
        ``max_in_flight``: requests on the wire at once (1: one at a time)."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._local = threading.local()
        self.name = name
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.token_env = token_env
        self.portal = portal or name
        self.timeout = (connect_timeout, read_timeout)
        self.connect_attempts = connect_attempts
        # retry=False: urllib3 raises the connection error itself, once; tenacity retries
        self._client = HubSpot(access_token=token, host=self.host, retry=False)
        # Each attribute access of the SDK builds a new ApiClient and pool: keep them.
        crm = self._client.crm
        self._basic = crm.objects.basic_api
        self._batch = crm.objects.batch_api
        self._search = crm.objects.search_api
        self._assoc = crm.associations.v4.batch_api
        self._props = crm.properties.core_api
        self._events = self._client.events.events_api
        self._prefs = self._client.communication_preferences.status_api
        self.limits = limiter_for(self.host, token, rate_limit_per_10s, search_rate_per_s, name)
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._sleep = sleep
        self.calls: Counter[str] = Counter()
        self.rate_limited = 0
        self.retries = 0
        self.wait_seconds = 0.0
        self._rng = random.Random()

    # ------------------------------------------------------------------ transport

    def fan_out(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` of each item, up to ``max_in_flight`` at once, results in the items'
        order. The first exception (in item order) is raised once every item has
        finished, so no request is left running behind the caller's back. Called from
        inside a fanned-out item (a nested read), it runs the items one by one: the
        in-flight slots are already the cap."""
        if self.max_in_flight == 1 or len(items) < 2 or getattr(self._local, "inside", False):
            return [fn(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.max_in_flight, thread_name_prefix=f"dealsync-{self.name}"
                )
            pool = self._pool

        def run(item: T) -> R:
            self._local.inside = True
            try:
                return fn(item)
            finally:
                self._local.inside = False

        # each in the caller's logging context (connection, run id: connector/logs.py)
        futures = [pool.submit(contextvars.copy_context().run, run, item) for item in items]
        errors = [f.exception() for f in futures]  # waits for all of them
        for exc in errors:
            if exc is not None:
                raise exc
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the fan-out threads (they also end with the process)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _add_wait(self, seconds: float) -> None:
        with self._count_lock:
            self.wait_seconds += seconds

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        attempt = state.attempt_number
        if isinstance(exc, Retriable) and exc.wait is not None:
            delay = exc.wait
        elif isinstance(exc, Retriable) and exc.rate_limited:
            delay = 1.0 * attempt
        else:
            delay = min(0.25 * 2 ** (attempt - 1), 8.0)
        delay = min(delay, self.max_wait) * (1 + self._rng.random() * 0.1)
        self._add_wait(delay)
        return delay

    def _call(
        self,
        kind: str,
        fn: Callable[..., Any],
        *args: Any,
        search: bool = False,
        raw: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One API call with the portal's limiter and our retry policy. ``raw``: parse
        the JSON answer ourselves into a :class:`_View` instead of the client's models."""

        def attempt() -> Any:
            with self._slots:  # a slot first: the limiter logs when the request goes
                return send()

        def send() -> Any:
            limiter = self.limits.search if search else self.limits.requests
            waited = limiter.acquire()
            with self._count_lock:
                self.wait_seconds += waited
                self.calls[kind] += 1
            kwargs.setdefault("_request_timeout", self.timeout)
            try:
                if raw:
                    resp = fn(*args, _preload_content=False, **kwargs)
                    try:
                        payload = resp.data
                        headers = resp.headers
                    finally:
                        resp.release_conn()
                    data = _View(json.loads(payload)) if payload else _View()
                else:
                    data, _status, headers = fn(*args, _return_http_data_only=False, **kwargs)
            except Exception as exc:
                raise self._classify(kind, exc) from exc
            if not search:
                self.limits.requests.learn(dict(headers or {}))
            return data

        retrying = Retrying(
            retry=retry_if_exception_type((Retriable, Unreachable)),
            stop=self._stop,
            wait=self._wait,
            sleep=self._sleep or __import__("time").sleep,
            reraise=True,
            before_sleep=lambda s: self._count_retry(),
        )
        try:
            return retrying(attempt)
        except Unreachable as exc:
            raise PortalUnreachable(unreachable_line(self.host, self.portal, exc)) from None
        except Retriable as exc:
            raise AdapterError(
                f"{self.name}: {kind} still failing after {self.max_attempts} attempts: {exc}",
                retriable=True,
            ) from None
        except RequestRefused as exc:
            if exc.status in (401, 403):
                raise PortalAuthRefused(
                    auth_line(self.host, self.portal, exc.status, str(exc), self.token_env)
                ) from None
            raise

    def _stop(self, state: RetryCallState) -> bool:
        """Whether to give up: a host that cannot be connected to after
        ``connect_attempts``, one that did not answer at once, anything else after
        ``max_attempts``."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Unreachable):
            return not exc.connect or state.attempt_number >= self.connect_attempts
        return state.attempt_number >= self.max_attempts

    def _count_retry(self) -> None:
        with self._count_lock:
            self.retries += 1

    def _classify(self, kind: str, exc: Exception) -> Exception:
        if _is_api_exception(exc):
            status = int(getattr(exc, "status", 0) or 0)
            body = _body(exc)
            message = str(body.get("message") or getattr(exc, "reason", "") or "error")
            headers = getattr(exc, "headers", None)
            if status == 429:
                with self._count_lock:
                    self.rate_limited += 1
                    self.calls["429"] += 1
                retry_after = _header(headers, "Retry-After")
                wait: float | None = float(retry_after) if retry_after else None
                if wait is None and body.get("policyName") == "TEN_SECONDLY_ROLLING":
                    wait = 10.0 if not kind.startswith("search") else 1.0
                if wait:
                    (
                        self.limits.search if kind.startswith("search") else self.limits.requests
                    ).pause(wait)
                return Retriable(f"429 {message}", wait=wait, rate_limited=True)
            if status >= 500 or status in (408, 423) or status == 0:
                return Retriable(f"{status} {message}")
            return refused(status, message, body)
        failure = unreachable(exc, *self.timeout)
        if failure is not None:
            return failure
        if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError):
            return Retriable(f"connection error: {type(exc).__name__}: {exc}")
        return exc

    # ------------------------------------------------------------------ records

    def _record(
        self, object_type: str, obj: Any, properties: Sequence[str] | None = None
    ) -> Record:
        props: dict[str, str | None] = dict(obj.properties or {})
        if properties is not None:
            for p in properties:
                props.setdefault(p, None)
        updated = obj.updated_at or props.get(MODIFIED.get(object_type, "hs_lastmodifieddate"))
        return Record(object_type, str(obj.id), props, _aware(updated), bool(obj.archived))

    def api_calls(self) -> dict[str, int]:
        with self._count_lock:
            out = dict(self.calls)
            out["retries"] = self.retries
            out["wait_ms"] = int(self.wait_seconds * 1000)
        return out
