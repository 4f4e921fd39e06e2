"""A deployment with a queue for the scale-out job tests: a project whose state is on
PostgreSQL and whose ``serve`` queues passes (``service.queue: procrastinate``), its
CRM files, its service, and an in-process ``dealsync worker`` run until no job is due."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.api import scale as queue_api
from connector.config import load_project
from connector.service import Service
from connector.testing.world import HubSpotPortals, project_yaml, run_cli, write_project

QUEUE = "service:\n  queue: procrastinate\n"


@dataclass
class Deployment:
    """A project on PostgreSQL with a queue, its CRM files and its ``serve``."""

    config: Path
    service: Service
    program: Dealsync
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        state_url: str,
        partners: tuple[str, ...] = ("acme", "globex"),
        *,
        portal_ids: bool = True,
        edit: Callable[[str], str] | None = None,
        hubspot: HubSpotPortals | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Deployment:
        """``portal_ids``: the HubSpot portal ids webhooks are routed by (two of the
        test partners share one: leave them out to run all three); ``edit`` rewrites
        the ``dealsync.yaml`` text first (e.g. a partner's schedule); ``hubspot``: the
        portals on the HubSpot sandbox, their tokens in ``env``."""
        env = dict(env or {})
        text = project_yaml(
            partners, state_url=state_url, portal_ids=portal_ids, extra=QUEUE, hubspot=hubspot
        )
        config = write_project(root, edit(text) if edit else text)
        done = run_cli(config, "setup", env=env)
        assert done.exit_code == 0, done.output
        service = Service(config, env=env)
        return cls(config, service, Dealsync(load_project(config, env=env), env=env), env)

    def close(self) -> None:
        self.service.stop()
        self.program.close()

    def crm(self, name: str) -> LocalCRM:
        path = self.config.parent / ("vendor.db" if name == "vendor" else f"partner-{name}.db")
        return LocalCRM(path, name=name)

    def apply_schema(self) -> None:
        done = run_cli(self.config, "worker", "--apply-schema", "--until-empty", env=self.env)
        assert done.exit_code == 0, done.output

    def work(self, concurrency: int = 1, program: Dealsync | None = None) -> None:
        """A worker of this project until no job is due."""
        queue_api.run_worker(
            program or self.program, concurrency=concurrency, until_empty=True, echo=lambda _: None
        )
