"""A project on HubSpot sandbox portals, driven through the CLI as a user types it.

The scenario tests of the program's commands (registrations, privacy, review) all need
the same world: one sandbox server with a portal per token, a project written for it,
``dealsync setup`` run once, and a way to run commands with the tokens in the
environment. Kept here so those tests say only what their scenario is about::

    CLI = ProjectCli({"X_VENDOR_TOKEN": "t1", "X_ACME_TOKEN": "t2"},
                     {"vendor": "X_VENDOR_TOKEN", "acme": "X_ACME_TOKEN"})

    with CLI.sandbox() as srv:
        config = CLI.project(tmp_path, srv, ("acme",))
        CLI.ok(config, "sync", "--connection", "acme")
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, write_project


@dataclass(frozen=True)
class ProjectCli:
    """The tokens of a scenario (``env``: variable → token) and which portal reads which
    variable (``token_env``: portal name → variable; ``vendor`` and the partners)."""

    env: Mapping[str, str]
    token_env: Mapping[str, str]

    @contextmanager
    def sandbox(self) -> Iterator[SandboxServer]:
        """A sandbox with one portal per entry of ``token_env``: no limits and no search
        lag, since these scenarios are about the program, not about consistency."""
        specs = [PortalSpec(name, self.env[var]) for name, var in self.token_env.items()]
        with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:
            yield server

    def project(
        self,
        tmp_path: Path,
        srv: SandboxServer,
        partners: Sequence[str],
        *,
        notify: Mapping[str, str] | None = None,
    ) -> Path:
        """The project's config file for ``partners`` on ``srv``, after ``dealsync
        setup`` installed its properties on every portal."""
        path = write_project(
            tmp_path,
            project_yaml(
                tuple(partners),
                notify=dict(notify) if notify else False,
                hubspot=HubSpotPortals(srv.url, self.token_env),
            ),
        )
        self.ok(path, "setup")
        return path

    def invoke(self, config: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
        """``dealsync --config CONFIG ARGS…`` with the tokens (and ``env``) set."""
        from connector.cli import cli

        return CliRunner().invoke(
            cli, ["--config", str(config), *args], env={**self.env, **(env or {})}
        )

    def ok(self, config: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
        """As :meth:`invoke`, asserting the command succeeded (its output on failure)."""
        result = self.invoke(config, *args, env=env)
        assert result.exit_code == 0, result.output
        return result

    def rows(self, config: Path, *args: str) -> list[dict[str, Any]]:
        """The rows a listing command prints with ``--format json``."""
        return list(json.loads(self.ok(config, *args, "--format", "json").output))
