"""Issue 17: the commission hook's won-deal scan reads only live deals. The vendor's
recycle bin (HubSpot lists archived deals in a call of its own: search never shows
them) held nothing the scan used — an archived deal is never commissioned — so the
scan no longer lists it; the engine's detection still does, for its deletions.

Through the CLI against the vendor's portal on the HubSpot sandbox (the real
hubspot-api-client; the partners' CRMs are embedded files): two partners, a lead of
acme's, the vendor's people winning a deal on its company and archiving another won
deal. The sandbox's request log says how often the recycle bin was listed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from hubspot import HubSpot

from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, run_cli, write_project

ENV = {"CALLS_VENDOR_TOKEN": "calls-vendor-token"}
PARTNERS = ("acme", "beta")
T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


def at(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


class World:
    def __init__(self, config: Path, vendor: PortalUser, srv: SandboxServer) -> None:
        self.config = config
        self.vendor = vendor
        self.srv = srv

    def cli(self, *args: str) -> Result:
        out = run_cli(self.config, *args, env=ENV)
        assert out.exit_code == 0, out.output
        return out

    def won_deal(self, domain: str) -> str:
        company = self.vendor.create("companies", {"name": domain, "domain": domain})
        deal = self.vendor.create(
            "deals",
            {
                "dealname": f"{domain} purchase",
                "pipeline": "default",
                "dealstage": "closedwon",
                "amount": "6000",
                "deal_currency_code": "EUR",
                "closedate": at(timedelta(days=2)),
                "hubspot_owner_id": "4242",
            },
        )
        self.vendor.associate("deals", deal, "companies", company)
        return deal

    def recycle_bin_listings(self) -> int:
        """Listings of the vendor's deals since the counter was reset: dealsync lists
        deals (``GET /crm/v3/objects/deals``, no id) only to read the recycle bin —
        live deals are searched or read by id."""
        return sum(
            1
            for c in self.srv.portal("vendor").calls
            if c["method"] == "GET" and c["path"].rstrip("/") == "/crm/v3/objects/deals"
        )

    def commissions(self) -> dict[str, str]:
        rows = json.loads(self.cli("commissions", "--format", "json").output)
        return {r["vendor_deal_id"]: r["partner"] for r in rows}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with SandboxServer(
        [PortalSpec("vendor", ENV["CALLS_VENDOR_TOKEN"])], port=0, limits=False, search_lag=0
    ) as srv:
        portals = HubSpotPortals(srv.url, {"vendor": "CALLS_VENDOR_TOKEN"})
        config = write_project(tmp_path, project_yaml(PARTNERS, hubspot=portals))
        w = World(config, PortalUser(srv.url, ENV["CALLS_VENDOR_TOKEN"]), srv)
        w.cli("setup")
        yield w


def test_the_won_deal_scan_does_not_list_the_recycle_bin(world: World) -> None:
    out = world.cli(
        "register", "lead", "--partner", "acme", "--domain", "initech.com",
        "--first", "Carol", "--last", "Jones", "--email", "carol@initech.com",
        "--company", "Initech", "--country", "US", "--now", T0.isoformat(),
    )  # fmt: skip
    assert "accepted" in out.output
    world.cli("sync", "--all", "--now", at(timedelta(days=1)))  # every cursor set

    # a win on acme's company, and another won deal there that the vendor's people
    # archived again (it sits in the recycle bin: never credited)
    initech = world.won_deal("initech.com")
    binned = world.won_deal("initech.com")
    HubSpot(access_token=ENV["CALLS_VENDOR_TOKEN"], host=world.srv.url).crm.deals.basic_api.archive(
        binned
    )
    assert world.srv.portal("vendor").count("deals", archived=True) == 1

    world.srv.reset_stats()
    out = world.cli("sync", "--all", "--now", at(timedelta(days=3)))
    # the engine's detection lists the bin once per partner pass (its deletions);
    # the won-deal scan (once per cycle) lists it no more
    assert world.recycle_bin_listings() == len(PARTNERS)
    # the same commissions: acme's win, once; the archived deal credits nobody
    assert world.commissions() == {initech: "acme"}
    assert out.output.count("commissions: 1 earned") == 1

    # a quiet cycle: still only the detection's listings
    world.srv.reset_stats()
    world.cli("sync", "--all", "--now", at(timedelta(days=4)))
    assert world.recycle_bin_listings() == len(PARTNERS)
    assert world.commissions() == {initech: "acme"}
