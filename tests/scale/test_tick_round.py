"""Issue 17/18: the scheduled passes one schedule tick enqueues (several connections due
at the same tick) form one round, so their program-wide vendor reads (the won-deal
window) are made once per tick, not once per connection — through the round machinery
of ``enqueue sync --all`` (:class:`~connector.engine.cycle.RoundCycle`). The round's id
is the tick's, the same in every ``serve`` process: here two processes share the
tick's enqueues and their jobs are still one round. A connection held back by its
backoff, or whose schedule does not fire at the tick, is not in the round; a tick with
one connection due makes no round.

The vendor's portal is the HubSpot sandbox (its requests counted); the state and the
queue are on PostgreSQL (skipped without it); the jobs are run by an in-process worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.api import scale as queue_api
from connector.config.models import Schedule
from connector.demo import PortalUser
from connector.records import utcnow
from connector.sandbox import PortalSpec, SandboxServer
from connector.service import Service
from connector.service.scheduler import fires_at
from connector.state.round_windows import RoundWindows
from connector.testing.queue import Deployment
from connector.testing.wins import register_lead, searches, win_deal
from connector.testing.world import HubSpotPortals, run_cli

TOKEN = "tick-vendor-token"
ENV = {"TICK_VENDOR_TOKEN": TOKEN}
PARTNERS = ("acme", "beta", "globex")
#: a tick of `every_seconds: 600` (the schedules are aligned on the epoch)
TICK = datetime(2026, 12, 1, 12, 10, tzinfo=UTC)
#: the passes run at the machine's time (a scheduled job carries no `now`)
T0 = utcnow().replace(microsecond=0) - timedelta(days=3)


def schedules(every: dict[str, int]) -> Callable[[str], str]:
    """A ``dealsync.yaml`` edit: each named partner's schedule every N seconds."""

    def edit(text: str) -> str:
        for pid, seconds in every.items():
            schedule = f"    schedule:\n      every_seconds: {seconds}\n      jitter_seconds: 20\n"
            text = text.replace(f"  - id: {pid}\n", f"  - id: {pid}\n{schedule}", 1)
        return text

    return edit


class World:
    def __init__(self, deployment: Deployment, srv: SandboxServer) -> None:
        self.d, self.srv = deployment, srv
        self.vendor = PortalUser(srv.url, TOKEN)

    def cli(self, *args: str) -> str:
        out = run_cli(self.d.config, *args, env=ENV)
        assert out.exit_code == 0, out.output
        return out.output

    def lead(self, partner: str, domain: str) -> None:
        register_lead(self.d.config, partner, domain, now=T0, env=ENV)

    def win(self, domain: str) -> str:
        return win_deal(self.vendor, domain, closed=T0 + timedelta(days=2))

    def deal_searches(self) -> int:
        return searches(self.srv, "vendor", "deals")

    def commissions(self) -> dict[str, str]:
        return {c.vendor_deal_id: c.partner for c in self.d.program.registry.commissions()}

    def fire(self, service: Service, connection: str, at: datetime) -> None:
        """``service``'s schedule of ``connection`` fires at ``at``."""
        service.schedules.clock = lambda: at
        service.schedules._job(connection)


@pytest.fixture
def world(tmp_path: Path, state_url_factory: Callable[[str], str]) -> Iterator[World]:
    with SandboxServer([PortalSpec("vendor", TOKEN)], port=0, limits=False, search_lag=0) as srv:
        deployment = Deployment.create(
            tmp_path,
            state_url_factory("tick"),
            PARTNERS,
            portal_ids=False,
            edit=schedules(dict.fromkeys(PARTNERS, 600)),
            hubspot=HubSpotPortals(srv.url, {"vendor": "TICK_VENDOR_TOKEN"}),
            env=ENV,
        )
        try:
            deployment.apply_schema()
            deployment.service.schedules.configure(deployment.service.project.config.partners)
            yield World(deployment, srv)
        finally:
            deployment.close()


def test_a_tick_of_three_due_connections_reads_the_won_deals_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    for pid in PARTNERS:
        world.lead(pid, f"{pid}-one.com")
        world.lead(pid, f"{pid}-two.com")
    world.cli("sync", "--all", "--now", (T0 + timedelta(days=1)).isoformat())  # cursors set

    # the yardstick: sync --all in one process reads the won-deal window once
    first = {world.win(f"{pid}-one.com"): pid for pid in PARTNERS}
    world.srv.reset_stats()
    world.cli("sync", "--all")
    in_process = world.deal_searches()
    assert world.commissions() == first

    # one tick: acme fired by one serve process, beta and globex by another (the tick
    # is claimed once per connection across them); one worker runs the three jobs
    second = {world.win(f"{pid}-two.com"): pid for pid in PARTNERS}
    other = Service(world.d.config, env=ENV)
    try:
        other.schedules.configure(other.project.config.partners)
        caplog.set_level(logging.INFO, logger="dealsync")
        world.fire(world.d.service, "acme", TICK)
        world.fire(other, "beta", TICK + timedelta(seconds=7))  # its jitter
        world.fire(other, "globex", TICK + timedelta(seconds=19))
        world.fire(world.d.service, "globex", TICK + timedelta(seconds=19))  # claimed: skipped
    finally:
        other.stop()
    world.srv.reset_stats()
    world.d.work()
    searched = world.deal_searches()
    print(f"deal searches: tick of 3 jobs {searched}, sync --all in one process {in_process}")
    # as many deal searches as sync --all in one process: the won-deal window read once
    # for the tick's three jobs (before: once per job, two searches more per won stage)
    assert searched == in_process
    assert world.commissions() == first | second  # each earned once, none missed
    round_id = f"tick-{int(TICK.timestamp())}"
    jobs = queue_api.pass_jobs(world.d.program)
    assert [(j.connection, j.round, j.status) for j in jobs] == [
        (p, round_id, "succeeded") for p in PARTNERS
    ], jobs
    assert RoundWindows(world.d.program.store).kept(round_id) >= 1
    said = [r.getMessage() for r in caplog.records if "scheduled pass of" in r.getMessage()]
    assert sum(f"queued in round {round_id} with 3 connections" in m for m in said) == 3, said
    ran = [r.getMessage() for r in caplog.records if r.name == "dealsync.scale"]
    assert sum(f"in round {round_id} (3 connections)" in m for m in ran) == 3, ran

    # the next tick: a win made since is found (a new round, its own window)
    late = world.win("acme-one.com")
    world.srv.reset_stats()
    for pid in PARTNERS:
        world.fire(world.d.service, pid, TICK + timedelta(minutes=10))
    world.d.work()
    assert world.deal_searches() == in_process
    assert world.commissions() == first | second | {late: "acme"}


def test_a_connection_held_back_or_not_due_is_not_in_the_round(
    tmp_path: Path, state_url_factory: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """acme and beta every 10 min, globex every 15 min: at 12:10 globex is not due; beta
    failed at 12:05 and its backoff (an hour) holds it past 12:10 — so acme is alone at
    12:10 (no round, said so); at 12:00 all three were due: one round of three."""
    edit = schedules({"acme": 600, "beta": 600, "globex": 900})
    world = Deployment.create(
        tmp_path, state_url_factory("held"), PARTNERS, portal_ids=False, edit=edit
    )
    try:
        world.apply_schema()
        service = world.service
        service.schedules.configure(service.project.config.partners)
        noon = TICK.replace(minute=0)
        due = service.schedules.due_at("acme", int(noon.timestamp()), noon)
        assert due is not None and due.connections == PARTNERS and due.round_of is not None

        service.schedules.clock = lambda: noon + timedelta(minutes=5)
        service.schedules.failures["beta"] = 6  # backoff 60 s × 2^6: past the next tick
        service.schedules.after_pass("beta", failed=True)
        caplog.set_level(logging.INFO, logger="dealsync")
        service.schedules.clock = lambda: TICK + timedelta(seconds=3)
        service.schedules._job("acme")
        [job] = queue_api.pass_jobs(world.program)
        assert (job.connection, job.round) == ("acme", None)
        said = [
            r.getMessage() for r in caplog.records if "scheduled pass of acme" in r.getMessage()
        ]
        assert any(
            "queued on its own" in m and "the only connection due" in m and "beta" in m
            for m in said
        ), said

        # a backoff's retry fires between ticks: on its own, whatever is due next
        early = TICK + timedelta(minutes=3)
        assert (
            service.schedules.due_at("beta", int((TICK + timedelta(minutes=10)).timestamp()), early)
            is None
        )
    finally:
        world.close()


def test_which_schedules_fire_at_a_tick() -> None:
    """The round's connections are those whose un-jittered fire times include the tick
    (interval schedules aligned on the epoch; cron in UTC); the jitter plays no part."""
    noon = int(TICK.replace(minute=0).timestamp())
    ten, fifteen = Schedule(every_seconds=600, jitter_seconds=30), Schedule(every_seconds=900)
    cron = Schedule(cron="*/15 * * * *", jitter_seconds=20)
    assert [fires_at(s, noon) for s in (ten, fifteen, cron)] == [True, True, True]
    assert [fires_at(s, noon + 600) for s in (ten, fifteen, cron)] == [True, False, False]
    assert [fires_at(s, noon + 900) for s in (ten, fifteen, cron)] == [False, True, True]
    assert not fires_at(ten, noon + 7)
