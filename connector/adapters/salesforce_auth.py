"""Logging in to a Salesforce org: the OAuth token POST, done here with ``requests``.

simple-salesforce's own login only knows ``*.salesforce.com`` hosts, and dealsync must
also log in to a My Domain URL or the offline sandbox, so the adapter posts to
``<login_url>/services/oauth2/token`` itself and hands the client the instance URL and
access token. Two server-to-server flows, no password stored anywhere:

- **client credentials** (``grant_type=client_credentials``): the connected app's
  consumer key and secret; the app's *run-as* user is whose access the calls have.
- **JWT bearer** (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``): an
  RS256 assertion signed with the private key whose certificate the connected app
  holds, for a pre-authorised ``username``.

A refused login is :class:`~connector.adapters.base.PortalAuthRefused` naming the
variables the secrets come from; a host that does not answer is
:class:`~connector.adapters.base.PortalUnreachable`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from connector.adapters.base import AdapterError, PortalAuthRefused, PortalUnreachable
from connector.adapters.salesforce_errors import (
    Unreachable,
    auth_line,
    classify,
    first_error,
    unreachable_line,
)

TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_S = 180  # Salesforce accepts assertions valid for at most 3 minutes


@dataclass(frozen=True)
class Credentials:
    """How to log in to one org (secrets as values, their variables for messages)."""

    login_url: str
    client_id: str
    client_secret: str | None = None
    username: str | None = None
    private_key: str | None = None  # PEM
    sources: tuple[str, ...] = field(default=())  # the env vars they came from
    audience: str | None = None  # JWT ``aud``; None: login_url

    @property
    def flow(self) -> str:
        return "jwt-bearer" if self.private_key else "client-credentials"


@dataclass(frozen=True)
class Token:
    instance_url: str
    access_token: str


def jwt_assertion(creds: Credentials, *, now: float | None = None) -> str:
    """The signed assertion of the JWT bearer flow: issued by the connected app
    (``iss``: its consumer key) for ``sub`` (the username), to the login host
    (``aud``: ``audience``, else ``login_url``; Salesforce wants
    ``https://login.salesforce.com`` for a production org, ``https://test.salesforce.com``
    for a sandbox org, whatever host the token is posted to), valid for three minutes."""
    import jwt

    issued = int(now if now is not None else time.time())
    claims = {
        "iss": creds.client_id,
        "sub": creds.username or "",
        "aud": (creds.audience or creds.login_url).rstrip("/"),
        "exp": issued + JWT_LIFETIME_S,
    }
    try:
        return jwt.encode(claims, creds.private_key or "", algorithm="RS256")
    except (ValueError, TypeError) as exc:
        raise PortalAuthRefused(
            f"the private key for the JWT bearer login is not a PEM private key ({exc}); "
            f"check {' and '.join(creds.sources) or 'private_key_env'}"
        ) from None


def login(
    session: requests.Session,
    creds: Credentials,
    *,
    timeout: tuple[float, float],
    portal: str,
) -> Token:
    """One token POST; the instance URL and access token it grants."""
    form: dict[str, Any]
    if creds.private_key:
        form = {"grant_type": JWT_GRANT, "assertion": jwt_assertion(creds)}
    else:
        form = {
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret or "",
        }
    host = creds.login_url.rstrip("/")
    try:
        resp = session.post(host + TOKEN_PATH, data=form, timeout=timeout)
    except requests.RequestException as exc:
        failure = classify(exc, *timeout)
        if isinstance(failure, Unreachable):
            raise PortalUnreachable(unreachable_line(host, portal, failure)) from None
        raise PortalUnreachable(
            f"could not reach {host} ({portal}) to log in: {exc} — is login_url right?"
        ) from None
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if resp.status_code in (400, 401, 403):
        code, message, _ = first_error(body)
        raise PortalAuthRefused(
            auth_line(host, portal, f"{resp.status_code} {code}: {message}", creds.sources)
        )
    if resp.status_code >= 300 or not isinstance(body, dict) or "access_token" not in body:
        raise AdapterError(
            f"{host} ({portal}) answered the OAuth login with {resp.status_code} and no "
            "access token — is login_url the org's login host?",
            retriable=resp.status_code >= 500,
        )
    return Token(str(body.get("instance_url") or host).rstrip("/"), str(body["access_token"]))
