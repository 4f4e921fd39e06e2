"""How HubSpot's refusals and failures are told apart, and what a person can act on.

Kept apart from the transport so that the rules "which answers are worth repeating" and
"which id does a unique-value refusal name" read in one place and are table-tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from connector.adapters.base import AdapterError


class Retriable(Exception):
    """A call worth repeating; ``wait`` is what the server asked for, if anything."""

    def __init__(self, message: str, wait: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.rate_limited = rate_limited


class RequestRefused(AdapterError):
    """HubSpot refused the request (4xx other than 429): repeating cannot help.

    An :class:`AdapterError` (not retriable), so a refused read or search that is not
    handled per record inside the adapter stops the pass cleanly instead of escaping
    the adapter boundary as an unknown exception."""

    def __init__(self, status: int, message: str, body: dict[str, Any]) -> None:
        super().__init__(message, retriable=False)
        self.status = status
        self.body = body


def _is_api_exception(exc: BaseException) -> bool:
    return any(c.__name__ == "ApiException" for c in type(exc).__mro__)


def _body(exc: Any) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": str(raw)[:500]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:500]}


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == name.lower():
            return str(v)
    return None


def _readable(exc: RequestRefused) -> str:
    """What a person can act on in a refusal: the property errors' own messages
    (HubSpot's ``message`` embeds them as JSON: ``Property values were not valid:
    [{"isValid":false, ...}]``), else the message."""
    messages = [
        str(e.get("message"))
        for e in exc.body.get("errors") or []
        if isinstance(e, Mapping) and e.get("message")
    ]
    return "; ".join(dict.fromkeys(messages)) if messages else str(exc)


_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)", re.IGNORECASE)


def _existing_id(message: str, context: Any) -> str | None:
    """The id HubSpot names when it refuses a write for a unique value that another
    record already has: ``Contact already exists. Existing ID: 12345`` (contacts'
    e-mail), ``... already has that value. Existing ID: 12345`` (unique custom
    properties); newer answers also carry it as ``context.existingId``."""
    if isinstance(context, Mapping):
        ids = context.get("existingId") or []
        if ids and str(ids[0]).isdigit():
            return str(ids[0])
    found = _EXISTING_ID.search(message or "")
    return found.group(1) if found else None
