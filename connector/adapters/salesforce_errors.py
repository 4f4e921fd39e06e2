"""How Salesforce's answers and failures are told apart, and the lines a person reads.

Salesforce answers a refused call with a JSON list of ``{"errorCode", "message",
"fields"}``; simple-salesforce raises one exception class per status. This module
turns both, and ``requests``' connection failures, into what the transport acts on:
worth repeating (:class:`Retriable`), an expired session (:class:`SessionExpired`,
log in again once), the org's allocation spent (``REQUEST_LIMIT_EXCEEDED``, retriable
later, never a crash), a host that cannot be reached, or a refusal
(:class:`RequestRefused`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.adapters.base import AdapterError


class Retriable(Exception):
    """A call worth repeating now (5xx, a dropped connection)."""


class Relogged(Retriable):
    """The session had expired and a fresh login is in place: the call, which
    Salesforce refused before doing anything, is sent again (even one not repeated
    otherwise)."""


class GaveUp(AdapterError):
    """A call still failing after its attempts (retriable: a later pass may succeed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class SessionExpired(Exception):
    """401 ``INVALID_SESSION_ID``: the access token expired or was revoked."""


class LimitExceeded(AdapterError):
    """403 ``REQUEST_LIMIT_EXCEEDED``: the org's 24-hour allocation is spent.
    Retriable (the window rolls on), not repeated within the pass."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class RequestRefused(AdapterError):
    """Salesforce refused the call (4xx): repeating it cannot help."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(f"{status} {code}: {message}" if code else f"{status} {message}")
        self.status = status
        self.code = code
        self.fields = tuple(fields)


class Unreachable(Exception):
    """The host could not be reached: ``connect`` (refused, unknown name, no connection
    in time: worth one more try) or no answer within the read timeout (not repeated)."""

    def __init__(self, reason: str, *, connect: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect = connect


def first_error(content: Any) -> tuple[str, str, list[str]]:
    """(errorCode, message, fields) of a Salesforce error body: a list of errors, one
    error object, OAuth's ``{"error", "error_description"}`` or plain text."""
    if isinstance(content, list) and content:
        content = content[0]
    if isinstance(content, dict):
        code = str(
            content.get("errorCode") or content.get("statusCode") or content.get("error") or ""
        )
        message = str(content.get("message") or content.get("error_description") or code)
        fields = [str(f) for f in content.get("fields") or []]
        return code, message, fields
    text = str(content or "").strip()
    return "", text[:300] or "no message", []


def classify(exc: BaseException, connect_timeout: float, read_timeout: float) -> BaseException:
    """What a failure of one call means for the transport (``exc`` itself when it is
    none of the known kinds)."""
    import requests
    from simple_salesforce.exceptions import SalesforceError

    if isinstance(exc, SalesforceError):
        status = int(getattr(exc, "status", 0) or 0)
        code, message, fields = first_error(getattr(exc, "content", None))
        if status == 401 or code == "INVALID_SESSION_ID":
            return SessionExpired(message)
        if code == "REQUEST_LIMIT_EXCEEDED" and "concurrent" in message.lower():
            # too many long-running requests at once (20 s+): frees up in seconds
            return Retriable(f"{status} {code}: {message}")
        if code == "REQUEST_LIMIT_EXCEEDED":
            return LimitExceeded(message)
        if status >= 500 or status in (408, 429) or code in ("SERVER_UNAVAILABLE",):
            return Retriable(f"{status} {code or message}")
        return RequestRefused(status, code, message, fields)
    if type(exc).__name__.startswith("SalesforceBulkV2") or type(exc).__name__ == (
        "SalesforceOperationError"
    ):  # a Bulk API job that failed or timed out
        return RequestRefused(0, "BULK_JOB_FAILED", str(exc)[:300])
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Unreachable(
            f"no connection within {connect_timeout:g} s (connect_timeout)", connect=True
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Unreachable(
            f"connected, but no answer within {read_timeout:g} s (read_timeout)", connect=False
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return Unreachable(f"TLS verification failed ({_short(exc)})", connect=False)
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return Unreachable("connection refused", connect=True)
        if "name or service not known" in text or "nodename" in text or "resolve" in text:
            return Unreachable("host name not found", connect=True)
        return Retriable(f"connection error: {_short(exc)}")
    if isinstance(exc, requests.exceptions.RequestException):  # a broken answer, mid-way
        return Retriable(f"{type(exc).__name__}: {_short(exc)}")
    if isinstance(exc, ValueError):  # an answer that is not the JSON it should be
        return RequestRefused(0, "BAD_ANSWER", f"the answer could not be read: {_short(exc)}")
    return exc


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."


def unreachable_line(host: str, portal: str, failure: Unreachable) -> str:
    """One line: the host, the portal, why, what to try."""
    from connector.adapters.hubspot_errors import is_loopback_host

    if failure.reason.startswith("TLS"):
        return (
            f"could not connect to {host} ({portal}): {failure.reason} — set the portal's "
            "ca_bundle to the PEM that signs its certificate (the sandbox prints its CA file)"
        )
    if failure.connect:
        running = (
            "is the Salesforce sandbox running?"
            if is_loopback_host(host)
            else "is it reachable from here?"
        )
        return (
            f"could not connect to {host} ({portal}): {failure.reason} — is login_url "
            f"right (https://<my-domain>.my.salesforce.com) / {running}"
        )
    return (
        f"{host} ({portal}) {failure.reason} — is login_url a Salesforce org? if it is only "
        "slow, raise the portal's read_timeout"
    )


def auth_line(host: str, portal: str, message: str, sources: Sequence[str]) -> str:
    """One line for refused credentials, naming the variables they come from."""
    where = " and ".join(sources) if sources else "its credentials"
    return (
        f"{host} ({portal}) refused the OAuth login ({message}) — check {where}: the "
        "connected app's consumer key and secret (or the JWT certificate and username), "
        "that the app allows this flow and that its run-as user is set"
    )
