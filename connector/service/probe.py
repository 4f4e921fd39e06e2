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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from connector.adapters.base import AdapterError, CRMAdapter
from connector.api import DealsyncError

log = logging.getLogger("dealsync.service.probe")

MAX_SHOWN = 300  # characters of an adapter's message shown on /healthz


def probe(build: Callable[[], CRMAdapter], object_type: str, timeout: float) -> str | None:
    """Why the portal ``build`` makes an adapter for cannot be reached (within
    ``timeout`` seconds), or None when it answered. /healthz is public, so only an
    adapter's own message (an :class:`AdapterError` or :class:`DealsyncError`, written
    to be shown) is given;
    any other error is named by its type, with the traceback in the log."""
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            build().object_schema(object_type)
        except BaseException as exc:  # reported to the reload, never raised in the thread
            outcome.append(exc)

    thread = threading.Thread(target=attempt, name="dealsync-reload-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"did not answer within {timeout:g} s (service.reload_probe_seconds)"
    if not outcome:
        return None
    exc = outcome[0]
    if isinstance(exc, AdapterError | DealsyncError):
        return f"could not be reached: {str(exc)[:MAX_SHOWN]}"
    log.error("reload probe failed", exc_info=exc)
    return f"could not be reached ({type(exc).__name__}; the service log has the details)"
