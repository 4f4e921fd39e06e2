"""The Salesforce transport: one org's login, client, governor, retry policy and counts.

Every call goes through :meth:`SalesforceTransport._call`: the budget governor admits
it (or refuses it with the usage and the reserve), ``tenacity`` repeats what is worth
repeating (5xx, dropped connections; a host that refuses the connection twice, or
does not answer within the read timeout, ends in
:class:`~connector.adapters.base.PortalUnreachable`), an expired session
(``INVALID_SESSION_ID``) logs in again once and the call is repeated, and
``REQUEST_LIMIT_EXCEEDED`` is a retriable :class:`~connector.adapters.base.AdapterError`.
The ``Sforce-Limit-Info`` header is read off every answer, refusals included, by a
response hook on the ``requests`` session the client uses, so the usage is current
even when simple-salesforce raises before looking at headers.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
from simple_salesforce import Salesforce
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from connector.adapters.base import PortalAuthRefused, PortalUnreachable
from connector.adapters.salesforce_auth import Credentials, login
from connector.adapters.salesforce_errors import (
    GaveUp,
    LimitExceeded,
    Relogged,
    RequestRefused,
    Retriable,
    SessionExpired,
    Unreachable,
    auth_line,
    classify,
    unreachable_line,
)
from connector.adapters.salesforce_limits import HEADER, BudgetGovernor, register_governor
from connector.records import utcnow

DEFAULT_VERSION = "61.0"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0  # a 2,000-row query page or a 200-record collection takes seconds
CONNECT_ATTEMPTS = 2


class PinnedSession(requests.Session):
    """A session whose ``ca_bundle`` wins over ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    (plain requests lets those override ``session.verify``, psf/requests#3829): the
    CA a portal's config names is the one its certificate is checked with."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings


class SalesforceTransport:
    """One org: its session, client, governor and counters."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        name: str = "salesforce",
        portal: str | None = None,
        api_version: str = DEFAULT_VERSION,
        ca_bundle: str | None = None,
        api_reserve_percent: float = 20.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = 5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] | None = None,
        query_batch: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``query_batch``: rows per query page (``Sforce-Query-Options: batchSize``,
        200–2,000; Salesforce's default 2,000)."""
        self.name = name
        self.query_headers = (
            {"Sforce-Query-Options": f"batchSize={query_batch}"} if query_batch else {}
        )
        self.portal = portal or name
        self.credentials = credentials
        self.host = credentials.login_url.rstrip("/")
        self.api_version = api_version
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._sleep = sleep or time.sleep
        self.session: requests.Session = PinnedSession() if ca_bundle else requests.Session()
        if ca_bundle:
            self.session.verify = ca_bundle
        self.governor = BudgetGovernor(api_reserve_percent, portal=self.portal, clock=clock)
        register_governor(name, self.governor)
        self.session.hooks["response"].append(self._observe)
        self.calls: Counter[str] = Counter()
        self.retries = 0
        self.logins = 0
        self.wait_seconds = 0.0
        self._sf: Salesforce | None = None
        self._rng = random.Random()

    # ------------------------------------------------------------------ session

    def _observe(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Read the org's API usage off every answer (a ``requests`` response hook)."""
        self.governor.observe(resp.headers.get(HEADER))

    def _login(self) -> Salesforce:
        self.logins += 1
        self.calls["login"] += 1
        token = login(self.session, self.credentials, timeout=self.timeout, portal=self.portal)
        self.instance_url = token.instance_url
        self._sf = Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,
            session=self.session,
            version=self.api_version,
        )
        return self._sf

    @property
    def sf(self) -> Salesforce:
        """The client, logged in on first use."""
        return self._sf or self._login()

    # ------------------------------------------------------------------ calls

    def _call(
        self, kind: str, fn: Callable[[Salesforce], Any], *, cost: int = 1, repeat: bool = True
    ) -> Any:
        """``fn(client)`` as one counted call under the governor and retry policy.
        ``repeat=False``: a call that is not idempotent (a create without an External
        ID) is not sent again after a failure that may have followed its effect; only
        after an expired session, which Salesforce refuses before doing anything."""
        self.governor.admit(kind, cost)
        relogged = False

        def attempt() -> Any:
            nonlocal relogged
            self.calls[kind] += 1
            try:
                return fn(self.sf)
            except Exception as exc:
                failure = classify(exc, *self.timeout)
                if isinstance(failure, SessionExpired) and not relogged:
                    relogged = True
                    self._login()
                    raise Relogged("session expired, logged in again") from exc
                raise failure from exc

        again = (Retriable, Unreachable) if repeat else (Relogged,)
        retrying = Retrying(
            retry=retry_if_exception_type(again),
            stop=self._stop,
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda s: self._count_retry(),
        )
        try:
            return retrying(attempt)
        except Unreachable as exc:
            raise PortalUnreachable(unreachable_line(self.host, self.portal, exc)) from None
        except Retriable as exc:
            tries = (
                f"after {self.max_attempts} attempts"
                if repeat
                else "(not repeated: not idempotent)"
            )
            raise GaveUp(f"{self.portal}: {kind} failed {tries}: {exc}") from None
        except SessionExpired as exc:
            raise PortalAuthRefused(
                auth_line(
                    self.host,
                    self.portal,
                    f"the session was refused again after a fresh login: {exc}",
                    self.credentials.sources,
                )
            ) from None
        except LimitExceeded as exc:
            self.governor.limit_exceeded += 1
            raise LimitExceeded(self._limit_line(kind, str(exc))) from None
        except RequestRefused as exc:
            if exc.status == 403 and exc.code in ("INSUFFICIENT_ACCESS", "API_DISABLED_FOR_ORG"):
                raise PortalAuthRefused(
                    f"{self.host} ({self.portal}) refused {kind} ({exc}) — give the connected "
                    "app's run-as user API access and read/edit on Opportunity, Account, "
                    "Contact and OpportunityContactRole"
                ) from None
            raise

    def _limit_line(self, kind: str, message: str) -> str:
        org = self.governor.org
        usage = f" ({org.used:,} of {org.total:,} calls)" if org else ""
        return (
            f"{self.portal}: Salesforce refused {kind} with REQUEST_LIMIT_EXCEEDED{usage}: "
            f"{message} — the org's 24-hour API allocation is spent; calls free up as "
            "those of the last 24 h age out and the next pass resumes by itself (raise "
            "api_reserve_percent so dealsync stops earlier)"
        )

    def _stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Unreachable):
            return not exc.connect or state.attempt_number >= CONNECT_ATTEMPTS
        return state.attempt_number >= self.max_attempts

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, Relogged):
            return 0.0
        delay = min(0.25 * 2 ** (state.attempt_number - 1), 8.0)
        delay = min(delay, self.max_wait) * (1 + self._rng.random() * 0.1)
        self.wait_seconds += delay
        return delay

    def _count_retry(self) -> None:
        self.retries += 1

    def api_calls(self) -> dict[str, int]:
        out = dict(self.calls)
        out["retries"] = self.retries
        out["wait_ms"] = int(self.wait_seconds * 1000)
        out |= self.governor.counts()
        return out
