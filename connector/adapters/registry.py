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
