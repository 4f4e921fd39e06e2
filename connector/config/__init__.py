"""Configuration: ``dealsync.yaml``, mapping files and the rules file, validated together.

Callers (CLI, engine, service) use :func:`load_project`; anything wrong with the files
comes back as one :class:`ConfigError` listing every :class:`Problem` with its file,
line, YAML path and a hint.

The models are plain pydantic and load eagerly; the loader and the checks (YAML, dotenv,
SQLAlchemy URLs) load on first use, so that the pure engine modules, which need only the
models, import none of those libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from connector.config.models import (
    AppConfig,
    Condition,
    FieldMapping,
    MappingFile,
    ObjectMapping,
    PartnerConfig,
    RulesFile,
    ShareRule,
    SyncSettings,
    VendorConfig,
)

if TYPE_CHECKING:
    from connector.config.check import ConfigError, Problem, shown
    from connector.config.loader import (
        Project,
        check_project,
        config_path_from,
        load_mapping_text,
        load_project,
    )

_LAZY = {
    "ConfigError": "connector.config.check",
    "Problem": "connector.config.check",
    "shown": "connector.config.check",
    "Project": "connector.config.loader",
    "check_project": "connector.config.loader",
    "config_path_from": "connector.config.loader",
    "load_mapping_text": "connector.config.loader",
    "load_project": "connector.config.loader",
}


def __getattr__(name: str) -> Any:
    """Load the loader or the checks when one of their names is first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AppConfig",
    "Condition",
    "ConfigError",
    "FieldMapping",
    "MappingFile",
    "ObjectMapping",
    "PartnerConfig",
    "Problem",
    "Project",
    "RulesFile",
    "ShareRule",
    "SyncSettings",
    "VendorConfig",
    "check_project",
    "config_path_from",
    "load_mapping_text",
    "load_project",
    "shown",
]
