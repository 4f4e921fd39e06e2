"""The org's API allocation: what ``Sforce-Limit-Info`` says, and the budget governor
that keeps a reserve of it for the partner's other integrations.

Salesforce counts an org's REST/SOAP/Bulk calls in a rolling 24-hour window
(``DailyApiRequests``) shared by every integration of the org, and tells the usage
on every answer: ``Sforce-Limit-Info: api-usage=18/15000`` (a connected app's own
cap adds ``per-app-api-usage=17/250(appName=x)``). Past the allocation it refuses
calls with ``403 REQUEST_LIMIT_EXCEEDED`` — for the partner's ERP, marketing tool
and support desk too, not only for dealsync. So dealsync stops *before* that: the
governor refuses to start a call that would take usage past
``allocation × (1 − api_reserve_percent/100)``, with a retriable
:class:`~connector.adapters.base.AdapterError` saying the usage, the reserve and
when it frees up; the pass ends cleanly and a later pass resumes where the cursor is.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.adapters.base import AdapterError
from connector.records import utcnow

HEADER = "Sforce-Limit-Info"
WINDOW = timedelta(hours=24)
# a usage older than this is not trusted to refuse a call: the call goes and its
# answer tells the usage anew (else a governor that refuses everything would never
# learn that the window rolled on)
STALE = timedelta(minutes=10)
_USAGE = re.compile(r"(?<![-\w])api-usage=(\d+)/(\d+)")
_PER_APP = re.compile(r"per-app-api-usage=(\d+)/(\d+)\(appName=([^)]*)\)")


@dataclass(frozen=True)
class Usage:
    """Calls used of an allocation (``total``), as one answer reported them."""

    used: int
    total: int
    app: str | None = None  # a connected app's own cap (per-app-api-usage)


def parse_limit_info(value: str | None) -> tuple[Usage | None, Usage | None]:
    """The org's usage and the connected app's (each None when absent) from a
    ``Sforce-Limit-Info`` value; anything unreadable is ignored, never an error."""
    if not value:
        return None, None
    org = per_app = None
    if m := _USAGE.search(value):
        org = Usage(int(m.group(1)), int(m.group(2)))
    if m := _PER_APP.search(value):
        per_app = Usage(int(m.group(1)), int(m.group(2)), m.group(3))
    return org, per_app


class BudgetExhausted(AdapterError):
    """The governor would not start a call (retriable: the window rolls on)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class BudgetGovernor:
    """One org's usage as last reported, and the ceiling dealsync keeps under.

    Usage is learnt from every answer (:meth:`observe`); before a call,
    :meth:`admit` refuses when ``used + cost`` would pass the ceiling. Until an
    answer told the usage nothing is refused (the first call tells it), nor when the
    last answer is older than :data:`STALE` (the call tells it anew)."""

    def __init__(
        self,
        reserve_percent: float,
        *,
        portal: str = "salesforce",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.reserve_percent = reserve_percent
        self.portal = portal
        self.clock = clock
        self.org: Usage | None = None
        self.per_app: Usage | None = None
        self.observed_at: datetime | None = None
        self.refused = 0
        self.limit_exceeded = 0
        self._first_near: datetime | None = None  # when usage first reached the ceiling
        self._lock = threading.Lock()

    def ceiling(self, usage: Usage) -> int:
        """The calls dealsync may let the org's usage reach."""
        return int(usage.total * (1 - self.reserve_percent / 100))

    def observe(self, header: str | None) -> None:
        org, per_app = parse_limit_info(header)
        with self._lock:
            if org is not None or per_app is not None:
                self.observed_at = self.clock()
            if org is not None:
                self.org = org
                if org.used < self.ceiling(org):
                    self._first_near = None
                elif self._first_near is None:
                    self._first_near = self.clock()
            if per_app is not None:
                self.per_app = per_app

    def admit(self, kind: str, cost: int = 1) -> None:
        """Raise :class:`BudgetExhausted` when ``cost`` more calls would eat into the
        reserve (or pass a connected app's own cap)."""
        with self._lock:
            org, app = self.org, self.per_app
            if self.observed_at is not None and self.clock() - self.observed_at >= STALE:
                return  # an old usage: let this call go and tell the current one
            if org is not None and org.used + cost > self.ceiling(org):
                self.refused += 1
                raise BudgetExhausted(self._line(kind, org, cost))
            if app is not None and app.used + cost > app.total:
                self.refused += 1
                raise BudgetExhausted(
                    f"{self.portal}: the connected app {app.app!r} has used {app.used:,} of "
                    f"its {app.total:,} calls per 24 h; {kind} is not started — it frees up "
                    "as the calls of the last 24 hours age out (raise the app's cap in "
                    "Setup → Connected Apps, or wait)"
                )

    def _line(self, kind: str, org: Usage, cost: int) -> str:
        since = self._first_near or self.clock()
        frees = (since + WINDOW).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"{self.portal}: the Salesforce org has used {org.used:,} of its {org.total:,} "
            f"API calls per rolling 24 h; {kind} ({cost} call{'s' * (cost != 1)}) would eat "
            f"into the {self.reserve_percent:g}% kept for the org's other integrations "
            f"(dealsync stops at {self.ceiling(org):,}). Not started: calls free up as "
            f"those of the last 24 h age out (all of today's by {frees} at the latest); "
            "the next pass resumes by itself — lower api_reserve_percent to allow more"
        )

    def counts(self) -> dict[str, int]:
        """For ``api_calls()`` and the run log: calls refused by the governor and by
        Salesforce, and the org's usage (its growth over a pass is the calls every
        integration of the org made meanwhile). The allocation and the ceiling are
        gauges on ``/metrics`` (:func:`named_governors`)."""
        out = {"budget_refused": self.refused, "limit_exceeded": self.limit_exceeded}
        if self.org is not None:
            out["api_usage_used"] = self.org.used
        return out


_GOVERNORS: dict[str, BudgetGovernor] = {}
_GOVERNORS_LOCK = threading.Lock()


def register_governor(name: str, governor: BudgetGovernor) -> None:
    """Make a portal's governor the one ``/metrics`` reports under ``name`` (the last
    adapter built for the portal)."""
    with _GOVERNORS_LOCK:
        _GOVERNORS[name] = governor


def named_governors() -> dict[str, BudgetGovernor]:
    """This process's Salesforce governors by portal name."""
    with _GOVERNORS_LOCK:
        return dict(_GOVERNORS)
