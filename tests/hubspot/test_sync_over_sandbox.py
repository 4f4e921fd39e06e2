"""The engine end to end over two sandbox portals (partner and vendor), shipped mappings.

Records are made the way a partner's user makes them — with the plain
``hubspot-api-client`` — and the connector runs through the public ``Dealsync`` API with
HubSpot adapters built by a factory (small waits on fake time, generous budgets).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hs_support import FakeTime, make_adapter, settled_stats, write_project

from connector.adapters.hubspot import HubSpotAdapter
from connector.api import Dealsync
from connector.config import load_project
from connector.config.models import PortalConfig
from connector.demo import PortalUser
from connector.engine.sync import PassAborted, PassResult
from connector.sandbox import FaultSpec, PortalSpec, SandboxServer

SRC = "dealsync_source_id"
ENV = {"HS_VENDOR_TOKEN": "e2e-vendor", "HS_ACME_TOKEN": "e2e-acme"}
WRITES = ("created", "updated", "archived", "associated")


@dataclass
class World:
    srv: SandboxServer
    app: Dealsync
    partner: PortalUser
    vendor: PortalUser
    adapters: dict[str, HubSpotAdapter]
    time: FakeTime

    def vendor_deals(self) -> list[dict[str, object]]:
        return self.srv.portal("vendor").all("deals")

    def vendor_deal_of(self, partner_deal: str) -> str:
        return self.vendor.find_by("deals", SRC, f"acme:{partner_deal}")

    def vendor_deal_of_by_read(self, partner_deal: str) -> str:
        """:meth:`vendor_deal_of` without the search (which may lag)."""
        [deal] = [
            str(r["id"])
            for r in self.vendor_deals()
            if r["properties"].get(SRC) == f"acme:{partner_deal}"  # type: ignore[union-attr]
        ]
        return deal

    def seed_deal(self, n: int, registered: bool = True) -> tuple[str, str, str]:
        """A deal with a company and a contact, associated, on the partner portal."""
        c = self.partner.create("companies", {"name": f"Company {n}", "domain": f"c{n}.com"})
        p = self.partner.create(
            "contacts", {"firstname": f"F{n}", "lastname": f"L{n}", "email": f"p{n}@c{n}.com"}
        )
        props = {
            "dealname": f"Deal {n}",
            "amount": f"{1000 + n}",
            "dealstage": "qualifiedtobuy",
            "pipeline": "default",
            "closedate": "2027-06-30",
        }
        if registered:
            props["dealsync_register"] = "true"
        d = self.partner.create("deals", props)
        self.partner.associate("deals", d, "companies", c)
        self.partner.associate("deals", d, "contacts", p)
        return d, c, p


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """``indirect`` parameter: the vendor portal's search index lag in seconds (none)."""
    lag = float(getattr(request, "param", 0.0))
    specs = [
        PortalSpec("vendor", ENV["HS_VENDOR_TOKEN"], index_lag_s=lag),
        PortalSpec("acme", ENV["HS_ACME_TOKEN"]),
    ]
    with SandboxServer(specs, port=0, limits=False) as srv:
        project = load_project(write_project(tmp_path, srv.url), env=ENV)
        ft = FakeTime()
        adapters: dict[str, HubSpotAdapter] = {}

        def factory(name: str, portal: PortalConfig) -> HubSpotAdapter:
            assert portal.adapter == "hubspot" and portal.host == srv.url
            adapter = make_adapter(
                srv.url, ENV[portal.token_env or ""], name=name, ft=ft, max_wait=0.5
            )
            adapters[name] = adapter
            return adapter

        app = Dealsync(project, env=ENV, adapter_factory=factory)
        app.setup()
        w = World(
            srv,
            app,
            PortalUser(srv.url, ENV["HS_ACME_TOKEN"]),
            PortalUser(srv.url, ENV["HS_VENDOR_TOKEN"]),
            adapters,
            ft,
        )
        yield w
        app.close()


def _writes(result: PassResult) -> int:
    return sum(v for k, v in result.counts.items() if k.startswith(WRITES))


def _assert_no_duplicates(w: World, registered: list[str]) -> None:
    keys = [d["properties"].get(SRC) for d in w.vendor_deals()]  # type: ignore[union-attr]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    assert sorted(keys) == sorted(f"acme:{d}" for d in registered)  # type: ignore[type-var]
    for obj in ("companies", "contacts"):
        okeys = [r["properties"].get(SRC) for r in w.srv.portal("vendor").all(obj)]
        assert len(okeys) == len(set(okeys)) == len(registered)


def test_setup_is_idempotent(world: World) -> None:
    again = world.app.setup()
    assert again == {"vendor": [], "acme": []}


def test_first_pass_shares_deals_with_company_and_contacts(world: World) -> None:
    seeded = [world.seed_deal(i) for i in range(3)]
    hidden = world.seed_deal(99, registered=False)
    r = world.app.sync("acme")
    assert r.status == "ok", r.as_dict()
    assert world.srv.portal("vendor").count("deals") == 3
    assert world.srv.portal("vendor").count("companies") == 3
    assert world.srv.portal("vendor").count("contacts") == 3
    _assert_no_duplicates(world, [d for d, _, _ in seeded])
    for d, c, p in seeded:
        vid = world.vendor_deal_of(d)
        props = world.vendor.get("deals", vid, "dealname", "amount", "dealstage", "pipeline")
        assert props["dealname"] == world.partner.get("deals", d, "dealname")["dealname"]
        assert props["dealstage"] == "qualifiedtobuy" and props["pipeline"] == "default"
        (vc,) = world.vendor.associated("deals", vid, "companies")
        (vp,) = world.vendor.associated("deals", vid, "contacts")
        assert world.vendor.get("companies", vc, SRC)[SRC] == f"acme:{c}"
        assert world.vendor.get("contacts", vp, SRC)[SRC] == f"acme:{p}"
        assert (
            world.vendor.get("contacts", vp, "email")["email"]
            == world.partner.get("contacts", p, "email")["email"]
        )
    assert f"acme:{hidden[0]}" not in {
        d["properties"].get(SRC)  # type: ignore[union-attr]
        for d in world.vendor_deals()
    }
    # API-call accounting reached the run log
    assert r.api_calls.get("vendor.batch_upsert", 0) >= 3
    assert r.api_calls.get("partner.search", 0) >= 1
    # a pass right after writes nothing (no echo of our own writes)
    world.srv.reset_stats()
    again = world.app.sync("acme")
    assert again.status == "ok" and _writes(again) == 0, again.counts
    for name in ("vendor", "acme"):
        kinds = settled_stats(world.srv, name)["by_kind"]
        assert not any(
            k.startswith(("batch_upsert", "batch_update", "assoc_batch_create")) for k in kinds
        ), kinds


def test_stormy_passes_converge_without_duplicates_or_lost_updates(world: World) -> None:
    seeded = [world.seed_deal(i) for i in range(4)]
    assert world.app.sync("acme").status == "ok"
    d0, d1, d2 = seeded[0][0], seeded[1][0], seeded[2][0]
    v1, v2 = world.vendor_deal_of(d1), world.vendor_deal_of(d2)
    vc2 = world.vendor.associated("deals", v2, "companies")[0]
    # edits on both sides, a new registered deal, before the storm
    world.partner.edit("deals", d0, {"amount": "5555"})
    world.vendor.edit("deals", v1, {"dealstage": "contractsent"})
    world.partner.edit("deals", d2, {"closedate": "2027-12-31"})
    world.vendor.edit("companies", vc2, {"country": "NL"})
    world.partner.edit("contacts", seeded[3][2], {"lastname": "Renamed"})
    new_deal = world.seed_deal(10)
    registered = [d for d, _, _ in seeded] + [new_deal[0]]

    storm = FaultSpec(error_rate=0.2, storm_429_rate=0.05, storm_429_length=3, seed=1234)
    world.srv.portal("vendor").set_faults(storm)
    world.srv.portal("acme").set_faults(FaultSpec(**{**storm.to_dict(), "seed": 4321}))
    statuses = []
    try:
        for _ in range(6):
            r = world.app.sync("acme")
            statuses.append(r.status)
            if r.status == "ok":
                break
    finally:
        world.srv.portal("vendor").set_faults(FaultSpec())
        world.srv.portal("acme").set_faults(FaultSpec())
    assert statuses[-1] == "ok", statuses
    print("stormy pass statuses:", statuses)
    faults = sum(
        settled_stats(world.srv, n)["errors_5xx"] + settled_stats(world.srv, n)["rate_limited"]
        for n in ("vendor", "acme")
    )
    assert faults > 0  # the storm really happened
    assert sum(a.retries for a in world.adapters.values()) > 0

    _assert_no_duplicates(world, registered)
    # no lost updates, in either direction
    assert world.vendor.get("deals", world.vendor_deal_of(d0), "amount")["amount"] == "5555"
    assert world.partner.get("deals", d1, "dealstage")["dealstage"] == "contractsent"
    assert world.vendor.get("deals", v2, "closedate")["closedate"].startswith("2027-12-31")
    assert world.partner.get("companies", seeded[2][1], "country")["country"] == "NL"
    vp3 = world.vendor.associated("deals", world.vendor_deal_of(seeded[3][0]), "contacts")[0]
    assert world.vendor.get("contacts", vp3, "lastname")["lastname"] == "Renamed"
    vnew = world.vendor_deal_of(new_deal[0])
    assert len(world.vendor.associated("deals", vnew, "companies")) == 1
    assert len(world.vendor.associated("deals", vnew, "contacts")) == 1
    # and quiet afterwards
    r = world.app.sync("acme")
    assert r.status == "ok" and _writes(r) == 0, r.counts


def test_create_interrupted_after_upsert_is_adopted_on_rerun(world: World) -> None:
    seeded = [world.seed_deal(i) for i in range(3)]

    def crash(point: str) -> None:
        if point == "after_write:deals":
            raise PassAborted(point)

    with pytest.raises(PassAborted):
        world.app.sync("acme", crash_at=crash)
    # the vendor records exist, the links were not recorded
    assert world.srv.portal("vendor").count("deals") == 3
    pending = world.app.store.link_counts("acme").get("deals", {})
    assert pending.get("active", 0) == 0
    r = world.app.sync("acme")
    assert r.status == "ok", r.as_dict()
    _assert_no_duplicates(world, [d for d, _, _ in seeded])
    assert world.app.store.link_counts("acme")["deals"] == {"active": 3}
    assert r.counts["created vendor deals"] == 3  # adopted: upsert found them by source id
    for d, _, _ in seeded:
        vid = world.vendor_deal_of(d)
        assert len(world.vendor.associated("deals", vid, "companies")) == 1
        assert len(world.vendor.associated("deals", vid, "contacts")) == 1
    # a later pass changes nothing
    again = world.app.sync("acme")
    assert again.status == "ok" and _writes(again) == 0, again.counts


@pytest.mark.parametrize("point", ["after_intent:deals", "before_cursor", "after_cursor"])
def test_crash_elsewhere_then_rerun_converges(world: World, point: str) -> None:
    seeded = [world.seed_deal(i) for i in range(2)]

    def crash(at: str) -> None:
        if at == point:
            raise PassAborted(at)

    with pytest.raises(PassAborted):
        world.app.sync("acme", crash_at=crash)
    r = world.app.sync("acme")
    assert r.status == "ok", r.as_dict()
    _assert_no_duplicates(world, [d for d, _, _ in seeded])
    again = world.app.sync("acme")
    assert again.status == "ok" and _writes(again) == 0, again.counts


# ---------------------------------------------------------------------- re-created records


def _live(w: World, obj: str, prop: str, value: str) -> list[dict[str, object]]:
    return [
        r
        for r in w.srv.portal("vendor").all(obj)
        if str(r["properties"].get(prop) or "").lower() == value.lower()  # type: ignore[union-attr]
    ]


def test_partner_recreates_a_contact_it_is_relinked_not_stuck(world: World) -> None:
    """The vendor portal would refuse a second contact with the e-mail (409 "already
    exists. Existing ID: N") on every pass; the connector re-links N, the counterpart
    of the deleted contact, instead of leaving the new partner contact pending."""
    d, _, p = world.seed_deal(1)
    assert world.app.sync("acme").status == "ok"
    [before] = _live(world, "contacts", "email", "p1@c1.com")

    world.srv.portal("acme").archive("contacts", p)
    assert world.app.sync("acme").status == "ok"
    again = world.partner.create(
        "contacts", {"firstname": "Again", "lastname": "L1", "email": "p1@c1.com"}
    )
    world.partner.associate("deals", d, "contacts", again)
    world.partner.edit("deals", d, {"amount": "1500"})
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "contacts", "email", "p1@c1.com")
    assert after["id"] == before["id"]
    assert after["properties"][SRC] == f"acme:{again}"  # type: ignore[index]
    assert after["properties"]["firstname"] == "Again"  # type: ignore[index]
    assert r.counts["re-linked contacts"] == 1
    details = [x.detail or "" for x in world.app.store.run_records(r.run_id or 0)]
    assert any("adopted existing" in x and "same email" in x for x in details), details
    counts = world.app.store.link_counts("acme")["contacts"]
    assert counts == {"active": 1, "relinked": 1}
    quiet = world.app.sync("acme")
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def test_vendor_contact_never_linked_is_adopted_over_the_sandbox(world: World) -> None:
    known = world.vendor.create("contacts", {"firstname": "Known", "email": "P0@c0.com"})
    d, _, p = world.seed_deal(0)
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [only] = _live(world, "contacts", "email", "p0@c0.com")
    assert only["id"] == known
    assert only["properties"][SRC] == f"acme:{p}"  # type: ignore[index]
    assert r.counts["adopted vendor contacts"] == 1
    details = [x.detail or "" for x in world.app.store.run_records(r.run_id or 0)]
    assert any(f"Existing ID: {known}" in x for x in details), details
    assert world.vendor.associated("deals", world.vendor_deal_of(d), "contacts") == [known]
    quiet = world.app.sync("acme")
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def test_partner_recreates_a_company_no_second_vendor_company(world: World) -> None:
    d, c, _ = world.seed_deal(2)
    world.app.sync("acme")
    [before] = _live(world, "companies", "domain", "c2.com")

    world.srv.portal("acme").archive("companies", c)
    world.app.sync("acme")
    again = world.partner.create("companies", {"name": "Company 2 again", "domain": "c2.com"})
    world.partner.associate("deals", d, "companies", again)
    world.partner.edit("deals", d, {"amount": "1502"})
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "companies", "domain", "c2.com")
    assert after["id"] == before["id"]
    assert after["properties"][SRC] == f"acme:{again}"  # type: ignore[index]
    quiet = world.app.sync("acme")
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def test_both_sides_recreate_a_company_on_the_deal_one_vendor_company(world: World) -> None:
    """Both portals delete the shared deal's company and enter it again (same domain,
    on the deal) before a pass: the partner's new company pairs with the vendor's new
    one, its successor, through the real client — never a third company."""
    d, c, _ = world.seed_deal(4)
    world.app.sync("acme")
    [old] = _live(world, "companies", "domain", "c4.com")
    vdeal = world.vendor_deal_of(d)

    world.srv.portal("vendor").archive("companies", str(old["id"]))
    vnew = world.vendor.create("companies", {"name": "Company 4 by hand", "domain": "c4.com"})
    world.vendor.associate("deals", vdeal, "companies", vnew)
    world.srv.portal("acme").archive("companies", c)
    pnew = world.partner.create("companies", {"name": "Company 4 again", "domain": "c4.com"})
    world.partner.associate("deals", d, "companies", pnew)
    world.partner.edit("deals", d, {"amount": "1504"})
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "companies", "domain", "c4.com")
    assert after["id"] == vnew
    assert after["properties"][SRC] == f"acme:{pnew}"  # type: ignore[index]
    assert world.vendor.associated("deals", vdeal, "companies") == [vnew]
    counts = world.app.store.link_counts("acme")["companies"]
    assert counts == {"active": 1, "relinked": 1}
    quiet = world.app.sync("acme")
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


@pytest.mark.parametrize("world", [600.0], indirect=True)
def test_both_sides_recreate_a_company_the_vendor_search_does_not_show_yet(
    world: World,
) -> None:
    """The vendor's new company was entered moments before the pass, so HubSpot's
    search does not show it yet (index lag far longer than the test): it is found
    through the shared deal's associations, and the partner's new company adopts it
    without a search — still one vendor company."""
    d, c, _ = world.seed_deal(5)
    world.app.sync("acme")
    [old] = _live(world, "companies", "domain", "c5.com")
    vdeal = world.vendor_deal_of_by_read(d)

    world.srv.portal("vendor").archive("companies", str(old["id"]))
    vnew = world.vendor.create("companies", {"name": "Company 5 by hand", "domain": "c5.com"})
    world.vendor.associate("deals", vdeal, "companies", vnew)
    world.srv.portal("acme").archive("companies", c)
    pnew = world.partner.create("companies", {"name": "Company 5 again", "domain": "c5.com"})
    world.partner.associate("deals", d, "companies", pnew)
    world.partner.edit("deals", d, {"amount": "1505"})
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "companies", "domain", "c5.com")
    assert after["id"] == vnew
    assert after["properties"][SRC] == f"acme:{pnew}"  # type: ignore[index]
    assert world.app.store.link_counts("acme")["companies"] == {"active": 1, "relinked": 1}


def test_vendor_recreates_a_contact_the_link_follows_it(world: World) -> None:
    d, _, p = world.seed_deal(3)
    world.app.sync("acme")
    [old] = _live(world, "contacts", "email", "p3@c3.com")

    world.srv.portal("vendor").archive("contacts", str(old["id"]))
    new = world.vendor.create("contacts", {"firstname": "Vendor", "email": "p3@c3.com"})
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    assert r.counts["re-linked contacts"] == 1
    assert world.vendor.get("contacts", new, "dealsync_partner_id")["dealsync_partner_id"] == "acme"
    assert world.partner.get("contacts", p, "firstname")["firstname"] == "Vendor"
    assert world.vendor.associated("deals", world.vendor_deal_of(d), "contacts") == [new]
    partner_contacts = [
        c
        for c in world.srv.portal("acme").all("contacts")
        if c["properties"]["email"] == "p3@c3.com"
    ]
    assert len(partner_contacts) == 1
    quiet = world.app.sync("acme")
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts
