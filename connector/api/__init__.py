"""The Python API the CLI and the service are thin layers over.

``Dealsync(project)`` (:mod:`connector.api.app`) owns the state store and one adapter
per portal (the vendor portal's adapter is shared by every partner connection, so its
rate limiter sees the whole program's traffic). Its commands are grouped by concern:
the passes, setup and status in :mod:`connector.api.app`; e-mail in
:mod:`connector.api.mail`; registrations, commissions, partner settings and tokens in
:mod:`connector.api.program`; conflicts in :mod:`connector.api.conflicts`; the lead's
rights (source and erasure requests) in :mod:`connector.api.privacy`.

This package is light: its names are imported on first use (PEP 562), so a command
that needs only the config (``dealsync check``, the CLI's error handling) loads
neither the engine, nor the state store (SQLAlchemy), nor a CRM's client — the
engine's names come from :mod:`connector.api.app`, which loads all of them (issue 17;
tests/cli/test_check_light.py). ``from connector.api import Dealsync`` works as it
always did.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the light module it comes from; every other public name is the app's
_LIGHT = {
    "UNUSABLE": "connector.api.errors",
    "ConnectionUnusable": "connector.api.errors",
    "DealsyncError": "connector.api.errors",
    "DeliveryBusy": "connector.api.errors",
    "ConfigError": "connector.config",
    "Problem": "connector.config",
    "check_project": "connector.config",
    "shown": "connector.config",
    "errors_of": "connector.config.check",
    "check_config": "connector.api.check",
    "EXIT_FAILED": "connector.engine.exits",
    "EXIT_FATAL": "connector.engine.exits",
    "LOG_FORMATS": "connector.logs",
    "LOG_LEVELS": "connector.logs",
    "configure_logging": "connector.logs",
}
_APP = (
    "RegistrationRefused",
    "Withdrawal",
    "default_requester",
    "no_record",
    "consent_outlook",
    "register_lead",
    "registration_emails",
    "REJECT_CODES",
    "effect_summary",
    "Associate",
    "Update",
    "LockHeld",
    "PassResult",
    "AdapterFactory",
    "LOCK_TTL_ENV",
    "lock_ttl_from",
    "default_hooks",
    "default_adapter_factory",
    "ConnectionStatus",
    "credentials_of",
    "SetupReport",
    "Dealsync",
)

__all__ = sorted([*_LIGHT, *_APP])


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use and keep the name here (PEP 562)."""
    if name in _LIGHT:
        value = getattr(importlib.import_module(_LIGHT[name]), name)
    elif name in _APP:
        value = getattr(importlib.import_module("connector.api.app"), name)
    else:
        # a name the app gained and ``_APP`` does not list yet still resolves; what the
        # app lacks is an AttributeError, after which Python imports a submodule of
        # that name (``from connector.api import admin``)
        app = importlib.import_module("connector.api.app")
        if name.startswith("_") or not hasattr(app, name):
            raise AttributeError(f"module 'connector.api' has no attribute {name!r}")
        value = getattr(app, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what mypy sees: the same names, from where they are defined
    from connector.api.app import LOCK_TTL_ENV as LOCK_TTL_ENV
    from connector.api.app import REJECT_CODES as REJECT_CODES
    from connector.api.app import AdapterFactory as AdapterFactory
    from connector.api.app import Associate as Associate
    from connector.api.app import ConnectionStatus as ConnectionStatus
    from connector.api.app import Dealsync as Dealsync
    from connector.api.app import LockHeld as LockHeld
    from connector.api.app import RegistrationRefused as RegistrationRefused
    from connector.api.app import SetupReport as SetupReport
    from connector.api.app import Update as Update
    from connector.api.app import Withdrawal as Withdrawal
    from connector.api.app import consent_outlook as consent_outlook
    from connector.api.app import credentials_of as credentials_of
    from connector.api.app import default_adapter_factory as default_adapter_factory
    from connector.api.app import default_hooks as default_hooks
    from connector.api.app import default_requester as default_requester
    from connector.api.app import effect_summary as effect_summary
    from connector.api.app import lock_ttl_from as lock_ttl_from
    from connector.api.app import no_record as no_record
    from connector.api.app import register_lead as register_lead
    from connector.api.app import registration_emails as registration_emails
    from connector.api.check import check_config as check_config
    from connector.api.errors import UNUSABLE as UNUSABLE
    from connector.api.errors import ConnectionUnusable as ConnectionUnusable
    from connector.api.errors import DealsyncError as DealsyncError
    from connector.api.errors import DeliveryBusy as DeliveryBusy
    from connector.config import ConfigError as ConfigError
    from connector.config import Problem as Problem
    from connector.config import check_project as check_project
    from connector.config import shown as shown
    from connector.config.check import errors_of as errors_of
    from connector.engine.exits import EXIT_FAILED as EXIT_FAILED
    from connector.engine.exits import EXIT_FATAL as EXIT_FATAL
    from connector.engine.sync import PassResult as PassResult
    from connector.logs import LOG_FORMATS as LOG_FORMATS
    from connector.logs import LOG_LEVELS as LOG_LEVELS
    from connector.logs import configure_logging as configure_logging
