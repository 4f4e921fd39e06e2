"""How HubSpot's refusals and failures are told apart, and what a person can act on.

Kept apart from the transport so that the rules "which answers are worth repeating" and
"which id does a unique-value refusal name" read in one place and are table-tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from connector.adapters.base import AdapterError, UnknownProperty


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


class PropertyRefused(RequestRefused, UnknownProperty):
    """HubSpot's 400 for a search filter on a property the portal does not have."""

    def __init__(self, status: int, message: str, body: dict[str, Any], name: str) -> None:
        super().__init__(status, message, body)
        self.name = name


_NO_PROPERTY = re.compile(r'Property "([^"]+)" does not exist')


def refused(status: int, message: str, body: dict[str, Any]) -> RequestRefused:
    """The refusal an answer means: :class:`PropertyRefused` when a 400 says a property
    does not exist (``Property "x" does not exist``), else :class:`RequestRefused`."""
    found = _NO_PROPERTY.search(message or "") if status == 400 else None
    if found:
        return PropertyRefused(status, message, body, found.group(1))
    return RequestRefused(status, message, body)


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


class Unreachable(Exception):
    """The host could not be reached at all (``connect``: refused, unknown name or no
    connection within the connect timeout, worth one more try; otherwise it accepted
    the connection and did not answer within the read timeout, which is not repeated:
    a write may have landed, and a host that hangs once hangs again). ``reason`` is
    the short human part of the one-line message."""

    def __init__(self, reason: str, *, connect: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect = connect


def unreachable(
    exc: BaseException, connect_timeout: float, read_timeout: float
) -> Unreachable | None:
    """The :class:`Unreachable` a urllib3 failure means, or None for other failures
    (a connection dropped mid-answer is retried as before)."""
    import urllib3.exceptions as u3

    if isinstance(exc, u3.NameResolutionError):
        return Unreachable("host name not found", connect=True)
    if isinstance(exc, u3.NewConnectionError):
        text = str(exc).lower()
        why = "connection refused" if "refused" in text else f"cannot connect ({exc})"
        return Unreachable(why, connect=True)
    if isinstance(exc, u3.ConnectTimeoutError):
        return Unreachable(
            f"no connection within {connect_timeout:g} s (connect_timeout)", connect=True
        )
    if isinstance(exc, u3.ReadTimeoutError):
        return Unreachable(
            f"connected, but no answer within {read_timeout:g} s (read_timeout)", connect=False
        )
    return None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL) is this machine: then the thing to try is the sandbox."""
    from urllib.parse import urlsplit

    name = urlsplit(host).hostname or ""
    return name in ("localhost", "::1") or name.startswith("127.") or name.endswith(".localhost")


def unreachable_line(host: str, portal: str, failure: Unreachable) -> str:
    """The one line a person reads when a portal cannot be reached: host, portal, why,
    what to try."""
    if failure.connect:
        running = (
            "is the sandbox running?" if is_loopback_host(host) else "is it reachable from here?"
        )
        return (
            f"could not connect to {host} ({portal}): {failure.reason} — "
            f"is the portal's host right / {running}"
        )
    return (
        f"{host} ({portal}) {failure.reason} — is the portal's host a HubSpot API "
        "(https://api.hubapi.com or the sandbox)? if it is only slow, raise its read_timeout"
    )


def auth_line(host: str, portal: str, status: int, message: str, token_env: str | None) -> str:
    """The one line for refused credentials: names the variable the token comes from."""
    source = f"the token in {token_env}" if token_env else "its token"
    if status == 401:
        return (
            f"{host} ({portal}) refused {source} (401 {message}) — is {token_env or 'it'} "
            "this portal's private-app access token, current and not revoked?"
        )
    return (
        f"{host} ({portal}) refused {source} for this call (403 {message}) — give the "
        "portal's private app the scope it names (read and write per object), then retry"
    )
