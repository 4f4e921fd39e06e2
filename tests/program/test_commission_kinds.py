"""Issue 16, item 1: commission on any purchase by a registered domain, through the CLI
on sandbox HubSpot portals (a partner's and the vendor's, the real hubspot-api-client),
the program's clock moved with ``--now``.

A partner registers a lead (``dealsync register lead``); the vendor's people then win
deals on that company in their own portal — one run by their sales team, one bought
online without anyone — and ``dealsync sync`` credits the partner with each, once,
by kind. A deal that closed after the ownership ended (or before it began), or on a
domain nobody registered, credits no one, and ``sync``, ``commissions`` and
``status`` say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import Result

from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, run_cli, write_project

ENV = {"KIND_VENDOR_TOKEN": "kind-vendor-token", "KIND_ACME_TOKEN": "kind-acme-token"}
TOKEN_ENV = {"vendor": "KIND_VENDOR_TOKEN", "acme": "KIND_ACME_TOKEN"}

# the registration is decided at T0: acme owns initech.com for 6 months from then
T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


def at(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


class World:
    """The project on the sandbox portals, the vendor's user, and the CLI."""

    def __init__(self, config: Path, vendor: PortalUser) -> None:
        self.config = config
        self.vendor = vendor

    def cli(self, *args: str) -> Result:
        return run_cli(self.config, *args, env=ENV)

    def sync(self, when: timedelta) -> Result:
        out = self.cli("sync", "--connection", "acme", "--now", at(when))
        assert out.exit_code == 0, out.output
        return out

    def register(self, domain: str = "initech.com") -> None:
        out = self.cli(
            "register", "lead", "--partner", "acme", "--domain", domain,
            "--first", "Carol", "--last", "Jones", "--email", f"carol@{domain}",
            "--company", "Initech", "--country", "US", "--now", T0.isoformat(),
        )  # fmt: skip
        assert out.exit_code == 0, out.output
        assert "accepted" in out.output

    def won_deal(self, domain: str, closed: timedelta, amount: str, **props: str) -> str:
        """A deal the vendor won on its own company for ``domain``, closed at T0 + closed."""
        company = self.vendor.create("companies", {"name": domain, "domain": domain})
        deal = self.vendor.create(
            "deals",
            {
                "dealname": f"{domain} purchase",
                "pipeline": "default",
                "dealstage": "closedwon",
                "amount": amount,
                "deal_currency_code": "EUR",
                "closedate": at(closed),
                **props,
            },
        )
        self.vendor.associate("deals", deal, "companies", company)
        return deal

    def commissions(self, *args: str) -> list[dict[str, str]]:
        out = self.cli("commissions", "--format", "json", *args)
        assert out.exit_code == 0, out.output
        rows: list[dict[str, str]] = json.loads(out.output)
        return rows


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    specs = [
        PortalSpec("vendor", ENV["KIND_VENDOR_TOKEN"]),
        PortalSpec("acme", ENV["KIND_ACME_TOKEN"]),
    ]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as srv:
        config = write_project(
            tmp_path, project_yaml(("acme",), hubspot=HubSpotPortals(srv.url, TOKEN_ENV))
        )
        w = World(config, PortalUser(srv.url, ENV["KIND_VENDOR_TOKEN"]))
        installed = w.cli("setup")
        assert installed.exit_code == 0, installed.output
        yield w


def test_a_deal_won_by_the_vendors_sales_team_credits_the_owner_once(world: World) -> None:
    world.register()
    deal = world.won_deal("initech.com", timedelta(days=20), "6000", hubspot_owner_id="4242")
    out = world.sync(timedelta(days=21))
    assert "commissions: 1 earned" in out.output

    [c] = world.commissions()
    assert (c["partner"], c["kind"], c["vendor_deal_id"], c["domain"], c["currency"]) == (
        "acme",
        "vendor_led",
        deal,
        "initech.com",
        "EUR",
    )
    assert c["partner_deal_id"] is None  # nothing to write back: not a shared deal
    assert (Decimal(c["commission"]), Decimal(c["mrr"])) == (Decimal("1200.00"), Decimal("500.00"))
    assert [r["kind"] for r in world.commissions("--kind", "vendor_led")] == ["vendor_led"]
    assert world.commissions("--kind", "self_serve") == []

    # reruns, later passes and another edit of the deal earn nothing more
    again = world.sync(timedelta(days=21, minutes=1))
    assert "commissions:" not in again.output
    world.vendor.edit("deals", deal, {"amount": "9000"})
    world.sync(timedelta(days=40))
    [c] = world.commissions()
    assert Decimal(c["commission"]) == Decimal("1200.00")

    status = world.cli("status")
    assert "vendor_led: 1" in status.output  # the commissions column
    assert "won deals not credited" not in status.output  # no hint: nothing missed
    [row] = json.loads(world.cli("status", "--json").output)
    assert (row["commissions"], row["not_credited"]) == ({"vendor_led": 1}, 0)


def test_a_purchase_without_sales_interaction_credits_as_self_serve(world: World) -> None:
    world.register()
    # no owner, no engagement: self-serve by the rules' reading
    quiet = world.won_deal("initech.com", timedelta(days=3), "1200")
    # the purchase-channel property still says self-serve, owner or not
    online = world.won_deal(
        "initech.com",
        timedelta(days=4),
        "2400",
        hubspot_owner_id="4242",
        dealsync_purchase_channel="self_serve",
    )
    world.sync(timedelta(days=5))
    rows = {c["vendor_deal_id"]: c for c in world.commissions("--kind", "self_serve")}
    assert set(rows) == {quiet, online}
    assert {c["partner"] for c in rows.values()} == {"acme"}
    assert Decimal(rows[quiet]["commission"]) == Decimal("240.00")
    world.sync(timedelta(days=6))
    assert len(world.commissions()) == 2


def test_a_deal_won_after_the_ownership_ended_credits_no_one_and_says_so(world: World) -> None:
    world.register()
    late = world.won_deal("initech.com", timedelta(days=200), "6000", hubspot_owner_id="1")
    early = world.won_deal("initech.com", -timedelta(days=10), "3000", hubspot_owner_id="1")
    out = world.sync(timedelta(days=201))
    assert "commissions: 1 not credited (won after ownership ended)" in out.output
    assert "1 not credited (won before the registration)" in out.output
    assert world.commissions() == []

    refused = {r["vendor_deal_id"]: r for r in world.commissions("--not-credited")}
    assert (refused[late]["code"], refused[late]["partner"]) == ("won_after_ownership", "acme")
    assert refused[late]["reason"].startswith("not credited: won after ownership ended")
    assert "ended 2027-07-04" in refused[late]["reason"]
    assert refused[early]["code"] == "won_before_registration"
    table = world.cli("commissions")
    assert "won deals not credited: 2" in table.output
    assert f"vendor deal {late} (vendor_led, initech.com" in table.output
    assert "not credited: won after ownership ended" in table.output
    assert "won deals not credited: 2" in world.cli("status").output

    # decided once: the next pass reports nothing new and still credits no one
    again = world.sync(timedelta(days=202))
    assert "not credited" not in again.output
    assert world.commissions() == []


def test_a_win_on_a_domain_nobody_registered_credits_no_one(world: World) -> None:
    world.register()  # initech.com is owned; hooli.com is not
    deal = world.won_deal("hooli.com", timedelta(days=5), "6000", hubspot_owner_id="1")
    out = world.sync(timedelta(days=6))
    assert "commissions: 1 not credited (domain not registered)" in out.output
    assert world.commissions() == []
    [refused] = world.commissions("--not-credited")
    assert (refused["vendor_deal_id"], refused["code"], refused["partner"]) == (
        deal,
        "not_registered",
        None,
    )
    assert refused["reason"] == "not credited: hooli.com was not registered by any partner"
