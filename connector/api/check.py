"""``dealsync check``: the project's problems, offline and (``--online``) against the
portals. Its own light module, apart from :mod:`connector.api.app`: an offline check
reads the files and loads neither the engine, nor the state store (SQLAlchemy), nor a
CRM's client, so it starts in a fraction of a second (issue 17,
tests/cli/test_check_light.py); only ``--online`` builds the program to reach the
portals."""

from __future__ import annotations

import logging
from pathlib import Path

from connector.config import ConfigError, Problem, check_project, config_path_from, load_project


def check_config(config: str | Path | None, *, online: bool = False) -> list[Problem]:
    """Every problem of the project at ``config`` (errors, warnings, notes), in reading
    order; with ``online`` and no errors offline, also the problems found against each
    portal's real properties and pipelines (``dealsync check --online``)."""
    problems = check_project(config)
    if not online:
        return problems
    quiet = logging.getLogger("dealsync.config")  # its warnings are already in ``problems``
    quiet.disabled = True
    try:
        # a partner's missing credentials (an error above) do not stop the others'
        # online check: only that partner is not read
        project = load_project(config, partner_env=False)
    except ConfigError:
        return problems
    finally:
        quiet.disabled = False
    from connector.api.app import Dealsync  # here: only the online check needs it

    app = Dealsync(project)
    try:
        return problems + app.check_online(config_path_from(config))
    finally:
        app.close()
