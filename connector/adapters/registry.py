"""Portal kinds: what a portal's ``adapter:`` may name, the keys of its own it takes in
``dealsync.yaml``, how they are checked and how its adapter is built.

Adding a CRM is one adapter module plus one :func:`register` call (the built-in kinds
are registered at the bottom of this module): the config loader validates a portal's
own keys with the kind's :attr:`PortalKind.settings` model (every YAML problem with its
line), ``dealsync check`` runs the kind's :attr:`PortalKind.check`, and
:class:`connector.api.Dealsync` builds adapters with :attr:`PortalKind.build`. The
adapter modules themselves are imported only when an adapter is built, so loading a
config never loads an SDK.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from connector.adapters.base import CRMAdapter


class PortalUnusable(Exception):
    """The portal's settings cannot make an adapter now (a secret is missing, the
    adapter's library is not installed); the message says what to do."""


@dataclass(frozen=True)
class Setting:
    """Where a kind's check found a problem: ``key`` of the portal (None: the portal
    as a whole), what is wrong and how to fix it."""

    key: str | None
    message: str
    hint: str
    severity: Literal["error", "warning", "note"] = "error"


@dataclass(frozen=True)
class CheckContext:
    """What a kind's check may look at besides the settings."""

    env: Mapping[str, str]
    check_env: bool  # False: do not require the secrets' variables to be set
    suggested_env: str  # a good name for this portal's token variable
    at: str  # the portal's YAML path, e.g. partners[0], for messages


@dataclass(frozen=True)
class BuildContext:
    """What building an adapter may use besides the settings."""

    env: Mapping[str, str]
    resolve: Callable[[str], Path]  # a path of the config, relative to its folder
    portal: str = ""  # how failure messages name the portal ("partner acme", "vendor")


@dataclass(frozen=True)
class PortalKind:
    """One kind of CRM portal."""

    name: str
    """What ``adapter:`` says in ``dealsync.yaml``."""
    describe: str
    """One line for the hint listing the kinds."""
    settings: type[BaseModel]
    """The portal's own keys (``extra="forbid"``: a typo is an error)."""
    build: Callable[[str, Any, BuildContext], CRMAdapter]
    """(portal name, validated settings, context) → adapter; raises
    :class:`PortalUnusable`."""
    check: Callable[[Any, CheckContext], list[Setting]] = lambda settings, ctx: []
    """What the schema cannot say (a secret's variable set, a file named, a token that
    would travel unencrypted)."""
    same: Callable[[Any, Any, Mapping[str, str]], str | None] = lambda a, b, env: None
    """Why two portals of this kind (their settings) are one and the same portal, or
    None: a partner on the vendor's own portal would sync a CRM with itself. Never
    names a secret, only the variables holding it."""


_KINDS: dict[str, PortalKind] = {}


def register(kind: PortalKind) -> PortalKind:
    """Make ``adapter: <kind.name>`` valid (replacing a kind of the same name)."""
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Forget a kind (tests that registered one of their own)."""
    _KINDS.pop(name, None)


def kinds() -> dict[str, PortalKind]:
    """Every registered kind by name."""
    return dict(_KINDS)


def kind_of(name: str) -> PortalKind:
    """The kind ``adapter:`` names; KeyError with the known kinds when there is none."""
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(unknown_kind(name).message()) from None


def unknown_kind(name: str) -> PydanticCustomError:
    """The error for an ``adapter:`` naming no kind, with the kinds and what they are
    (the config loader shows them as the choices and the hint)."""
    meaning = ", ".join(f"{k.name} for {k.describe}" for k in _KINDS.values())
    return PydanticCustomError(
        "unknown_kind",
        "adapter {name!r} is not a known portal kind ({meaning})",
        {"name": name, "known": list(_KINDS), "meaning": meaning},
    )


class KindSettings(BaseModel):
    """Base of a kind's settings model: strict and frozen like the rest of the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- built-in kinds

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LocalSettings(KindSettings):
    path: str | None = None  # SQLite file of the embedded local CRM


def _check_local(settings: LocalSettings, ctx: CheckContext) -> list[Setting]:
    if settings.path:
        return []
    return [
        Setting(
            None,
            "adapter local needs path",
            "add `path: .dealsync/<name>.db`, the SQLite file of the embedded "
            "local CRM (relative to the config file)",
        )
    ]


def _same_local(a: LocalSettings, b: LocalSettings, env: Mapping[str, str]) -> str | None:
    if a.path and b.path and os.path.normpath(a.path) == os.path.normpath(b.path):
        return f"both use the local CRM file {a.path!r}"
    return None


def _build_local(name: str, settings: LocalSettings, ctx: BuildContext) -> CRMAdapter:
    from connector.adapters.local import LocalCRM

    if not settings.path:
        raise PortalUnusable(f"portal {name!r}: adapter local needs path")
    return LocalCRM(ctx.resolve(settings.path), name=name)


class HubSpotSettings(KindSettings):
    token_env: str | None = None  # env var holding the private app's access token
    host: str | None = None  # API host override, e.g. the sandbox's URL
    rate_limit_per_10s: int = Field(default=100, ge=1, le=1000)
    search_rate_per_s: float = Field(default=5.0, gt=0, le=100)
    # seconds to establish a connection / to wait for an answer, per call
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=60.0, gt=0, le=3600)
    # requests of this portal on the wire at once (1: one at a time); the rate
    # limiter still gates every one of them (docs/adapters.md, docs/benchmarks.md)
    max_in_flight: int = Field(default=3, ge=1, le=16)


HUBSPOT_HOST = "https://api.hubapi.com"


def _check_hubspot(settings: HubSpotSettings, ctx: CheckContext) -> list[Setting]:
    return _hubspot_host(settings.host) + _hubspot_token(settings, ctx)


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _hubspot_host(host: str | None) -> list[Setting]:
    """A host that would carry the access token unencrypted, or is no URL at all."""
    if host is None:
        return []
    host = host.strip()
    parts = urlsplit(host)
    shown = "" if "@" in host else host  # never echo credentials written into a URL
    if parts.scheme == "https" and parts.hostname:
        return []
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return [
            Setting(
                "host",
                "host is plain http:// on this machine (loopback); fine for the local "
                "sandbox, the access token never leaves the machine",
                f"a real HubSpot portal is {HUBSPOT_HOST} (remove `host:` to use it)",
                "note",
            )
        ]
    if parts.scheme == "http":
        return [
            Setting(
                "host",
                "host is plain http://, which would send the portal's access token unencrypted",
                "use https:// (plain http is allowed only for localhost/127.0.0.1, the "
                "local sandbox)",
            )
        ]
    if not parts.scheme or not parts.hostname:
        fixed = f"https://{shown}" if shown and "://" not in shown else "https://<host>"
        return [
            Setting(
                "host",
                "host is not a URL with https://, so it is not clear how the access token "
                "would be sent",
                f"write the full base URL, e.g. `host: {fixed}`, or remove `host:` for "
                f"{HUBSPOT_HOST}",
            )
        ]
    return [
        Setting(
            "host",
            f"host has scheme {parts.scheme!r}; a HubSpot portal is reached over https://",
            f"write https://…, or remove `host:` for {HUBSPOT_HOST}",
        )
    ]


def _same_hubspot(a: HubSpotSettings, b: HubSpotSettings, env: Mapping[str, str]) -> str | None:
    def base(s: HubSpotSettings) -> str:
        return (s.host or HUBSPOT_HOST).strip().rstrip("/").lower()

    if base(a) != base(b) or not a.token_env or not b.token_env:
        return None
    if a.token_env == b.token_env:
        return f"both use the token in {a.token_env} at the same host"
    token = env.get(a.token_env, "").strip()
    if token and token == env.get(b.token_env, "").strip():
        return f"{a.token_env} and {b.token_env} hold the same token for the same host"
    return None


def _hubspot_token(settings: HubSpotSettings, ctx: CheckContext) -> list[Setting]:
    token_env = settings.token_env
    if not token_env:
        return [
            Setting(
                None,
                "adapter hubspot needs token_env",
                f"add `token_env: {ctx.suggested_env}` and put the private app token in "
                "that environment variable (or .env)",
            )
        ]
    if not _ENV_NAME.match(token_env):
        # Deliberately not echoed: people paste the token itself here.
        return [
            Setting(
                "token_env",
                "token_env must be the name of an environment variable, not a token",
                f"write `token_env: {ctx.suggested_env}` and put the token in that variable "
                "(environment or .env)",
            )
        ]
    if ctx.check_env and not ctx.env.get(token_env, "").strip():
        return [
            Setting(
                "token_env",
                f"missing env var {token_env} for {ctx.at}.token_env",
                "set it in the environment or .env",
            )
        ]
    return []


def _build_hubspot(name: str, settings: HubSpotSettings, ctx: BuildContext) -> CRMAdapter:
    try:
        from connector.adapters.hubspot import HubSpotAdapter
    except ImportError as exc:  # pragma: no cover - packaging problem
        raise PortalUnusable(f"the HubSpot adapter is not available: {exc}") from exc
    token = ctx.env.get(settings.token_env or "", "")
    if not token:
        raise PortalUnusable(
            f"portal {name!r}: environment variable {settings.token_env} is not set; "
            "set it in the environment or in .env"
        )
    return HubSpotAdapter(
        token=token,
        host=settings.host,
        name=name,
        rate_limit_per_10s=settings.rate_limit_per_10s,
        search_rate_per_s=settings.search_rate_per_s,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_in_flight=settings.max_in_flight,
        token_env=settings.token_env,
        portal=ctx.portal or name,
    )


register(
    PortalKind(
        "hubspot",
        "a HubSpot portal",
        HubSpotSettings,
        _build_hubspot,
        _check_hubspot,
        _same_hubspot,
    )
)
register(
    PortalKind(
        "local", "the embedded demo CRM", LocalSettings, _build_local, _check_local, _same_local
    )
)


# --------------------------------------------------------------------------- salesforce


class SalesforceSettings(KindSettings):
    """A Salesforce org (docs/salesforce.md): its login host, the connected app's
    consumer key and secret — or, for the JWT bearer flow, a username and the private
    key — each named by environment variable."""

    login_url: str | None = None  # https://<my-domain>.my.salesforce.com, or the sandbox's
    client_id_env: str | None = None  # the connected app's consumer key
    client_secret_env: str | None = None  # its consumer secret (client credentials flow)
    username: str | None = None  # JWT bearer: the pre-authorised user
    private_key_env: str | None = None  # JWT bearer: the PEM private key
    # JWT bearer: the assertion's audience (https://login.salesforce.com for a
    # production org, https://test.salesforce.com for a sandbox org); default login_url
    jwt_audience: str | None = None
    ca_bundle: str | None = None  # PEM to verify TLS with (relative to the config file)
    api_version: str = Field(default="61.0", pattern=r"^\d{2,3}\.0$")
    # share of the org's 24 h API allocation left for the partner's other integrations
    api_reserve_percent: float = Field(default=20.0, ge=0, lt=100)
    bulk_threshold: int = Field(default=10_000, ge=0)  # first syncs above: Bulk API 2.0
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    read_timeout: float = Field(default=120.0, gt=0, le=3600)


def _sf_env(key: str, value: str | None, ctx: CheckContext, what: str) -> list[Setting]:
    """A variable named by ``key``: a name, not the secret itself, and set."""
    if value is None:
        return []
    if not _ENV_NAME.match(value):  # deliberately not echoed: people paste the secret here
        return [
            Setting(
                key,
                f"{key} must be the name of an environment variable, not {what}",
                f"write `{key}: DEALSYNC_PARTNER_<ID>_SF_...` and put {what} in that variable",
            )
        ]
    if ctx.check_env and not ctx.env.get(value, "").strip():
        return [
            Setting(
                key,
                f"missing env var {value} for {ctx.at}.{key}",
                f"set it in the environment or .env to {what}",
            )
        ]
    return []


def _check_salesforce(settings: SalesforceSettings, ctx: CheckContext) -> list[Setting]:
    out: list[Setting] = []
    url = (settings.login_url or "").strip()
    parts = urlsplit(url)
    if not url:
        out.append(
            Setting(
                None,
                "adapter salesforce needs login_url",
                "add `login_url: https://<my-domain>.my.salesforce.com` (the org's My Domain "
                "login host, or the Salesforce sandbox's URL)",
            )
        )
    elif parts.scheme != "https" or not parts.hostname:
        out.append(
            Setting(
                "login_url",
                "login_url must be an https:// URL (Salesforce is reached over TLS only)",
                "write `login_url: https://<my-domain>.my.salesforce.com`",
            )
        )
    if not settings.client_id_env:
        out.append(
            Setting(
                None,
                "adapter salesforce needs client_id_env",
                "add `client_id_env: DEALSYNC_PARTNER_<ID>_SF_CLIENT_ID` and put the connected "
                "app's consumer key in it",
            )
        )
    jwt = settings.private_key_env is not None or settings.username is not None
    if jwt and not (settings.private_key_env and settings.username):
        out.append(
            Setting(
                None,
                "the JWT bearer login needs both username and private_key_env",
                "add the pre-authorised user's `username:` and `private_key_env:` (the PEM "
                "key in that variable), or use client_secret_env instead",
            )
        )
    if not jwt and not settings.client_secret_env:
        out.append(
            Setting(
                None,
                "adapter salesforce needs client_secret_env (or username and private_key_env)",
                "add `client_secret_env: DEALSYNC_PARTNER_<ID>_SF_CLIENT_SECRET` for the client "
                "credentials flow, or `username:` and `private_key_env:` for JWT bearer",
            )
        )
    out += _sf_env("client_id_env", settings.client_id_env, ctx, "the consumer key")
    out += _sf_env("client_secret_env", settings.client_secret_env, ctx, "the consumer secret")
    out += _sf_env("private_key_env", settings.private_key_env, ctx, "the PEM private key")
    return out


def _same_salesforce(
    a: SalesforceSettings, b: SalesforceSettings, env: Mapping[str, str]
) -> str | None:
    def host(s: SalesforceSettings) -> str:
        return (s.login_url or "").strip().rstrip("/").lower()

    if not host(a) or host(a) != host(b) or not a.client_id_env or not b.client_id_env:
        return None
    key_a = env.get(a.client_id_env, "").strip()
    same_app = a.client_id_env == b.client_id_env or (
        bool(key_a) and key_a == env.get(b.client_id_env, "").strip()
    )
    if same_app and a.username == b.username:
        return f"both log in to {host(a)} with the connected app in {a.client_id_env}"
    return None


def _build_salesforce(name: str, settings: SalesforceSettings, ctx: BuildContext) -> CRMAdapter:
    try:
        from connector.adapters.salesforce import SalesforceAdapter
        from connector.adapters.salesforce_auth import Credentials
    except ImportError as exc:  # pragma: no cover - packaging problem
        raise PortalUnusable(f"the Salesforce adapter is not available: {exc}") from exc
    if not settings.login_url:
        raise PortalUnusable(f"portal {name!r}: adapter salesforce needs login_url")
    named = [
        n
        for n in (settings.client_id_env, settings.client_secret_env, settings.private_key_env)
        if n
    ]
    missing = [n for n in named if not ctx.env.get(n, "").strip()]
    if missing or not settings.client_id_env:
        what = ", ".join(missing) or "client_id_env"
        raise PortalUnusable(
            f"portal {name!r}: environment variable {what} is not set; set it in the "
            "environment or in .env"
        )
    ca_bundle = ctx.resolve(settings.ca_bundle) if settings.ca_bundle else None
    if ca_bundle is not None and not ca_bundle.is_file():
        raise PortalUnusable(
            f"portal {name!r}: ca_bundle {settings.ca_bundle!r} is not a file ({ca_bundle}); "
            "name the PEM that signs the org's certificate (the Salesforce sandbox prints "
            "its CA file), or remove ca_bundle for Salesforce's own certificates"
        )
    creds = Credentials(
        login_url=settings.login_url.strip(),
        client_id=ctx.env[settings.client_id_env].strip(),
        client_secret=ctx.env.get(settings.client_secret_env or "", "").strip() or None,
        username=settings.username,
        private_key=ctx.env.get(settings.private_key_env or "", "").strip() or None,
        sources=tuple(named),
        audience=settings.jwt_audience,
    )
    return SalesforceAdapter(
        creds,
        name=name,
        portal=ctx.portal or name,
        api_version=settings.api_version,
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        api_reserve_percent=settings.api_reserve_percent,
        bulk_threshold=settings.bulk_threshold,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )


register(
    PortalKind(
        "salesforce",
        "a Salesforce org (partner side)",
        SalesforceSettings,
        _build_salesforce,
        _check_salesforce,
        _same_salesforce,
    )
)
