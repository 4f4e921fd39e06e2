"""Issue 18: the pass jobs of one enqueued round (``enqueue sync --all``) share the
program-wide vendor reads through the state store, as ``sync --all`` does in one
process — the won-deal window is read once per round, not once per partner job.

The vendor's portal is the HubSpot sandbox (its requests counted); the state and the
queue are on PostgreSQL; the jobs run by an in-process worker with two slots, so the
round's jobs run concurrently."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from connector.api import Dealsync
from connector.api import scale as queue_api
from connector.config import load_project
from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.state.round_windows import RoundWindows
from connector.state.tables import RoundWindow
from connector.testing.queue import QUEUE
from connector.testing.wins import register_lead, searches, win_deal
from connector.testing.world import HubSpotPortals, project_yaml, run_cli, write_project

TOKEN = "round-vendor-token"
ENV = {"ROUND_VENDOR_TOKEN": TOKEN}
PARTNERS = ("acme", "beta", "globex")
T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


@dataclass
class World:
    config: Path
    srv: SandboxServer
    vendor: PortalUser
    program: Dealsync

    def cli(self, *args: str) -> str:
        out = run_cli(self.config, *args, env=ENV)
        assert out.exit_code == 0, out.output
        return out.output

    def lead(self, partner: str, domain: str) -> None:
        register_lead(self.config, partner, domain, now=T0, env=ENV)

    def win(self, domain: str) -> str:
        return win_deal(self.vendor, domain, closed=T0 + timedelta(days=2))

    def deal_searches(self) -> int:
        return searches(self.srv, "vendor", "deals")

    def commissions(self) -> dict[str, str]:
        return {c.vendor_deal_id: c.partner for c in self.program.registry.commissions()}

    def round(self, partners: tuple[str, ...], now: datetime) -> None:
        """One enqueued round, run by a worker with two slots until the queue is empty."""
        lines = queue_api.enqueue_sync(self.program, list(partners), now=now.isoformat())
        assert all("queued" in line for line in lines), lines
        queue_api.run_worker(self.program, concurrency=2, until_empty=True, echo=lambda _: None)
        jobs = queue_api.pass_jobs(self.program)
        assert all(j.status == "succeeded" for j in jobs), [j.status for j in jobs]

    def rounds_kept(self) -> list[str]:
        windows = RoundWindows(self.program.store)
        return sorted({w.round_id for w in windows.rows(select(RoundWindow))})


@pytest.fixture
def world(tmp_path: Path, state_url_factory: Callable[[str], str]) -> Iterator[World]:
    with SandboxServer([PortalSpec("vendor", TOKEN)], port=0, limits=False, search_lag=0) as srv:
        portals = HubSpotPortals(srv.url, {"vendor": "ROUND_VENDOR_TOKEN"})
        text = project_yaml(
            PARTNERS, state_url=state_url_factory("round"), hubspot=portals, extra=QUEUE
        )
        config = write_project(tmp_path, text)
        assert run_cli(config, "setup", env=ENV).exit_code == 0
        done = run_cli(config, "worker", "--apply-schema", "--until-empty", env=ENV)
        assert done.exit_code == 0, done.output
        program = Dealsync(load_project(config, env=ENV), env=ENV)
        w = World(config, srv, PortalUser(srv.url, TOKEN), program)
        try:
            yield w
        finally:
            program.close()


def test_a_round_of_partner_jobs_reads_the_won_deals_once(world: World) -> None:
    for pid in PARTNERS:
        world.lead(pid, f"{pid}-one.com")
        world.lead(pid, f"{pid}-two.com")
    world.cli("sync", "--all", "--now", (T0 + timedelta(days=1)).isoformat())  # cursors set

    # the yardstick: sync --all in one process reads the won-deal window once
    first = {world.win(f"{pid}-one.com"): pid for pid in PARTNERS}
    world.srv.reset_stats()
    world.cli("sync", "--all", "--now", (T0 + timedelta(days=3)).isoformat())
    in_process = world.deal_searches()
    assert world.commissions() == first

    # the same work as one enqueued round of three jobs, two at a time: as many deal
    # searches (without the shared window: two more won-deal windows, one per job)
    second = {world.win(f"{pid}-two.com"): pid for pid in PARTNERS}
    world.srv.reset_stats()
    world.round(PARTNERS, T0 + timedelta(days=4))
    assert world.deal_searches() == in_process
    assert world.commissions() == first | second  # each earned once, none missed
    [round_one] = world.rounds_kept()

    # a later round reads a window of its own: a win since is found
    late = world.win("acme-one.com")
    world.srv.reset_stats()
    world.round(PARTNERS, T0 + timedelta(days=5))
    assert world.deal_searches() == in_process
    assert world.commissions() == first | second | {late: "acme"}
    rounds = world.rounds_kept()
    assert len(rounds) == 2 and round_one in rounds
