"""The reload's reachability probe: one cheap read through a portal's adapter, bounded.

An edit that adds a partner (or changes a portal's settings) is refused on reload when
that portal cannot be reached, so a typo in a host or a wrong token is found while the
admin is looking, not at the first scheduled pass. The probe reads the schema of one
mapped object type (what ``dealsync check --online`` reads too: for HubSpot one
properties call, the adapter's own retries included) in a daemon thread, and the
reload waits ``service.reload_probe_seconds`` at most: a portal that does not answer
is refused as "did not answer within N s" and can never hang reloads (the thread is
left to finish on its own; it writes nothing). Portals whose settings the edit did
not change are not probed: one partner's outage must not block everyone's edits.

The same probe tells /healthz whether each portal is reachable and takes its token
(:class:`PortalHealth`): cached, so a load balancer polling /healthz every second
does not become a HubSpot call per poll; a portal's answer is kept for
``service.portal_check_seconds``, and a pass refreshes it (a pass that completed
proves both; one that stopped marks its portals to be probed again at the next
/healthz, as does a reload that took an edit). Portals are probed in parallel, each bounded like the reload's probe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.adapters.base import AdapterError, CRMAdapter, PortalAuthRefused, PortalUnreachable
from connector.api import DealsyncError

log = logging.getLogger("dealsync.service.probe")

MAX_SHOWN = 300  # characters of an adapter's message shown on /healthz


def probe(build: Callable[[], CRMAdapter], object_type: str, timeout: float) -> str | None:
    """Why the portal ``build`` makes an adapter for cannot be reached (within
    ``timeout`` seconds), or None when it answered. /healthz is public, so only an
    adapter's own message (an :class:`AdapterError` or :class:`DealsyncError`, written
    to be shown) is given;
    any other error is named by its type, with the traceback in the log."""
    attempt = _Attempt(build, object_type)
    attempt.thread.join(timeout)
    if attempt.thread.is_alive():
        return f"did not answer within {timeout:g} s (service.reload_probe_seconds)"
    if not attempt.outcome:
        return None
    return _said(attempt.outcome[0])


class _Attempt:
    """One probe read in a daemon thread (started at once): ``outcome`` holds what it
    raised, if anything, once the thread ended."""

    def __init__(self, build: Callable[[], CRMAdapter], object_type: str) -> None:
        self.outcome: list[BaseException] = []
        self.thread = threading.Thread(
            target=self._run, args=(build, object_type), name="dealsync-probe", daemon=True
        )
        self.thread.start()

    def _run(self, build: Callable[[], CRMAdapter], object_type: str) -> None:
        try:
            build().object_schema(object_type)
        except BaseException as exc:  # reported to the caller, never raised in the thread
            self.outcome.append(exc)


def _said(exc: BaseException) -> str:
    """What may be shown of a probe's failure (/healthz is public)."""
    if isinstance(exc, AdapterError | DealsyncError):
        return f"could not be reached: {str(exc)[:MAX_SHOWN]}"
    log.error("reload probe failed", exc_info=exc)
    return f"could not be reached ({type(exc).__name__}; the service log has the details)"


@dataclass(frozen=True)
class PortalCheck:
    """What the last probe (or pass) found about one portal. ``reachable`` / ``authenticated``
    are None when it could not be told (the probe did not get that far)."""

    reachable: bool | None
    authenticated: bool | None
    error: str | None
    checked_at: float  # wall clock

    @property
    def ok(self) -> bool:
        return bool(self.reachable and self.authenticated)

    def view(self) -> dict[str, Any]:
        """As /healthz shows it."""
        return {
            "reachable": self.reachable,
            "authenticated": self.authenticated,
            "error": self.error,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.checked_at)),
        }


def _check_of(attempt: _Attempt, timeout: float, now: float) -> PortalCheck:
    if attempt.thread.is_alive():
        reason = f"did not answer within {timeout:g} s (the /healthz probe's bound)"
        return PortalCheck(False, None, reason, now)
    if not attempt.outcome:
        return PortalCheck(True, True, None, now)
    exc = attempt.outcome[0]
    said = _said(exc)
    if isinstance(exc, PortalUnreachable):
        return PortalCheck(False, None, said, now)
    if isinstance(exc, PortalAuthRefused):
        return PortalCheck(True, False, said, now)
    if isinstance(exc, DealsyncError):  # it cannot be built: its token variable is not set
        return PortalCheck(None, False, said, now)
    return PortalCheck(True, None, said, now)  # it answered, with an error


Probe = tuple[Callable[[], CRMAdapter], str]
"""How to reach one portal: its adapter's builder and the object type to read."""


class PortalHealth:
    """Per-portal reachability and authentication for /healthz, cached (see the module
    docstring). ``max_age`` seconds between probes of a portal; ``timeout`` bounds each
    probe; ``probes`` counts the probes made (what the cache saves is visible)."""

    def __init__(
        self, max_age: float, timeout: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_age, self.timeout, self._clock = max_age, timeout, clock
        self._lock = threading.Lock()
        self._checks: dict[str, PortalCheck] = {}
        self._stale: set[str] = set()
        self.probes = 0

    def current(self, portals: Mapping[str, Probe]) -> dict[str, PortalCheck]:
        """Every portal's check, probing (in parallel) those never checked, marked
        stale by a failed pass, or older than ``max_age``. One caller probes at a
        time; callers meanwhile wait and then read the fresh answers."""
        with self._lock:
            now = self._clock()
            due = {
                key: how
                for key, how in portals.items()
                if key not in self._checks
                or key in self._stale
                or now - self._checks[key].checked_at >= self.max_age
            }
            attempts = {key: _Attempt(build, obj) for key, (build, obj) in due.items()}
            self.probes += len(attempts)
            deadline = time.monotonic() + self.timeout
            for attempt in attempts.values():
                attempt.thread.join(max(0.0, deadline - time.monotonic()))
            now = self._clock()
            for key, attempt in attempts.items():
                self._checks[key] = _check_of(attempt, self.timeout, now)
                self._stale.discard(key)
            for gone in set(self._checks) - set(portals):
                del self._checks[gone]
            return {key: self._checks[key] for key in portals}

    def passed(self, keys: Iterable[str], completed: bool) -> None:
        """A pass over these portals ended: one that completed reached them with their
        tokens (fresh, no probe needed); one that stopped marks them to be probed at
        the next /healthz."""
        with self._lock:
            for key in keys:
                if completed:
                    self._checks[key] = PortalCheck(True, True, None, self._clock())
                    self._stale.discard(key)
                else:
                    self._stale.add(key)

    def invalidate(self, keys: Iterable[str]) -> None:
        """Probe these portals again at the next /healthz (a reload changed them)."""
        with self._lock:
            self._stale.update(keys)
