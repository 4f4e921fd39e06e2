"""Issue 17: program-wide vendor data is read once per ``sync --all``, not once per
partner; a quiet pass reads no registration beyond the ones with work due.

Through the CLI against the vendor's portal on the HubSpot sandbox (the real
hubspot-api-client; the partners' CRMs are embedded files): three partners, two of
them with a registered lead, the vendor's people winning deals on both companies.
The sandbox's request counter says how often the vendor's deals were searched.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from program_support import NOW, Program

from connector.demo import PortalUser
from connector.engine.cycle import Rounds
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.queries import count_queries
from connector.testing.registrations import seed_registrations
from connector.testing.world import HubSpotPortals, project_yaml, run_cli, write_project

ENV = {"CYCLE_VENDOR_TOKEN": "cycle-vendor-token"}
PARTNERS = ("acme", "beta", "globex")
T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


def at(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


class World:
    """The project (vendor on the sandbox), the vendor's user, the sandbox, the CLI."""

    def __init__(self, config: Path, vendor: PortalUser, srv: SandboxServer) -> None:
        self.config = config
        self.vendor = vendor
        self.srv = srv

    def cli(self, *args: str) -> Result:
        out = run_cli(self.config, *args, env=ENV)
        assert out.exit_code == 0, out.output
        return out

    def register(self, partner: str, domain: str) -> None:
        out = self.cli(
            "register", "lead", "--partner", partner, "--domain", domain,
            "--first", "Carol", "--last", "Jones", "--email", f"carol@{domain}",
            "--company", domain.split(".")[0].title(), "--country", "US",
            "--now", T0.isoformat(),
        )  # fmt: skip
        assert "accepted" in out.output

    def won_deal(self, domain: str, closed: timedelta) -> str:
        company = self.vendor.create("companies", {"name": domain, "domain": domain})
        deal = self.vendor.create(
            "deals",
            {
                "dealname": f"{domain} purchase",
                "pipeline": "default",
                "dealstage": "closedwon",
                "amount": "6000",
                "deal_currency_code": "EUR",
                "closedate": at(closed),
                "hubspot_owner_id": "4242",
            },
        )
        self.vendor.associate("deals", deal, "companies", company)
        return deal

    def deal_searches(self) -> int:
        """Searches of the vendor's deals since the counter was last reset."""
        return sum(
            1
            for c in self.srv.portal("vendor").calls
            if c["method"] == "POST" and c["path"].rstrip("/").endswith("deals/search")
        )

    def commissions(self) -> dict[str, str]:
        rows = json.loads(self.cli("commissions", "--format", "json").output)
        return {r["vendor_deal_id"]: r["partner"] for r in rows}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with SandboxServer(
        [PortalSpec("vendor", ENV["CYCLE_VENDOR_TOKEN"])], port=0, limits=False, search_lag=0
    ) as srv:
        portals = HubSpotPortals(srv.url, {"vendor": "CYCLE_VENDOR_TOKEN"})
        config = write_project(tmp_path, project_yaml(PARTNERS, hubspot=portals))
        w = World(config, PortalUser(srv.url, ENV["CYCLE_VENDOR_TOKEN"]), srv)
        w.cli("setup")
        yield w


def test_sync_all_scans_the_vendors_won_deals_once_for_every_partner(world: World) -> None:
    world.register("acme", "initech.com")
    world.register("beta", "hooli.com")
    world.cli("sync", "--all", "--now", at(timedelta(days=1)))  # every cursor set
    initech = world.won_deal("initech.com", timedelta(days=2))
    hooli = world.won_deal("hooli.com", timedelta(days=2))

    # one partner's pass alone: its own detection's deal searches and the won-deal scan
    world.srv.reset_stats()
    world.cli("sync", "--connection", "globex", "--now", at(timedelta(days=3)))
    alone = world.deal_searches()
    assert world.commissions() == {}  # neither company is globex's

    # every partner's pass: three detections, the won deals scanned once for all three
    world.srv.reset_stats()
    out = world.cli("sync", "--all", "--now", at(timedelta(days=3)))
    assert world.deal_searches() == 3 * (alone - 1) + 1
    # and each partner's pass still credited its own win, once
    assert world.commissions() == {initech: "acme", hooli: "beta"}
    assert out.output.count("commissions: 1 earned") == 2

    # the next cycle finds nothing new and credits nothing again
    world.cli("sync", "--all", "--now", at(timedelta(days=4)))
    assert world.commissions() == {initech: "acme", hooli: "beta"}


# ---------------------------------------------------------------- the quiet pass


def test_a_quiet_pass_reads_only_the_registrations_with_work_due(program: Program) -> None:
    """60 accepted leads of acme: a third in Germany (a consent request at once), a
    third in France (a notice 30 days after acceptance), a third in the US (nothing).
    Counted by the state store's rows loaded, never by time."""
    seed_registrations(program.registry, "acme", 60, decided_at=NOW, countries=("DE", "FR", "US"))
    program.sync("acme", now=NOW + timedelta(minutes=1))  # decides what is due now
    kinds = Counter(m.kind for m in program.app.outbox.messages())
    assert kinds == {"consent_request": 20}

    # nothing changed, nothing due: no registration and no contact of one is loaded
    with count_queries(program.app.store) as quiet:
        program.sync("acme", now=NOW + timedelta(hours=1))
    assert (quiet.rows("registration"), quiet.rows("registration_contact")) == (0, 0)

    # the French notices fall due: those 20 are read (and decided), no other
    with count_queries(program.app.store) as due:
        program.sync("acme", now=NOW + timedelta(days=31))
    assert (due.rows("registration"), due.rows("registration_contact")) == (20, 20)
    kinds = Counter(m.kind for m in program.app.outbox.messages())
    assert kinds == {"consent_request": 20, "data_notice": 20}

    # and once decided, they are not read again
    with count_queries(program.app.store) as after:
        program.sync("acme", now=NOW + timedelta(days=32))
    assert (after.rows("registration"), after.rows("registration_contact")) == (0, 0)


# ---------------------------------------------------------------- the service's rounds


def test_a_round_ends_when_a_connection_comes_round_again() -> None:
    """The service's passes share a cycle until a connection's next pass; a pass whose
    cursor the shared window does not cover (it moved past its end) reads its own."""
    rounds = Rounds()
    first = rounds.for_pass("acme", PARTNERS)
    assert rounds.for_pass("beta", PARTNERS) is first
    reads: list[datetime | None] = []

    def read(since: datetime | None) -> tuple[datetime, str]:
        reads.append(since)
        return T0 + timedelta(hours=len(reads)), f"read {len(reads)}"

    def earliest() -> datetime:
        return T0 - timedelta(hours=2)

    shared = first.window("won", T0 - timedelta(hours=1), earliest, read)
    assert (shared.since, shared.data) == (T0 - timedelta(hours=2), "read 1")
    # beta's cursor lies inside the window: taken from it, nothing read
    assert first.window("won", T0 - timedelta(hours=2), earliest, read) is shared
    # a cursor past the window's end reads a window of its own
    own = first.window("won", T0 + timedelta(hours=3), earliest, read)
    assert (own.since, own.data, reads[-1]) == (T0 + timedelta(hours=3), "read 2", own.since)

    second = rounds.for_pass("acme", PARTNERS)  # acme again: a new round
    assert second is not first and second.windows == {}
    assert rounds.for_pass("beta", PARTNERS) is second
    assert rounds.for_pass("beta", ("beta",)) is not second  # a reload changed the partners
