"""Configuration: ``dealsync.yaml``, mapping files and the rules file, validated together.

Callers (CLI, engine, service) use :func:`load_project`; anything wrong with the files
comes back as one :class:`ConfigError` listing every :class:`Problem` with its file,
line, YAML path and a hint.
"""

from __future__ import annotations

from connector.config.check import ConfigError, Problem, shown
from connector.config.loader import (
    Project,
    check_project,
    config_path_from,
    load_mapping_text,
    load_project,
)
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
