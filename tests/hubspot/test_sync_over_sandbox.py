"""The engine end to end over two sandbox portals (partner and vendor), shipped mappings.

Records are made the way a partner's user makes them — with the plain
``hubspot-api-client`` — and the connector runs through the public ``Dealsync`` API with
HubSpot adapters built by a factory (small waits on fake time, generous budgets).
"""

from __future__ import annotations

import time
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
# Search lag of both portals: on, as HubSpot's, but short, so a test waits a moment
# for the index instead of seconds (the sandbox's own default is 1-3 s).
LAG = (0.2, 0.5)


@dataclass
class World:
    srv: SandboxServer
    app: Dealsync
    partner: PortalUser
    vendor: PortalUser
    adapters: dict[str, HubSpotAdapter]
    time: FakeTime

    def indexed(self) -> bool:
        """Search shows every write made so far, on both portals."""
        return all(p.pending_index() == 0 for p in self.srv.portals)

    def wait_indexed(self, timeout: float = 60.0) -> None:
        """Wait (polling, never a fixed sleep) until search shows every write."""
        deadline = time.monotonic() + timeout
        while not self.indexed():
            assert time.monotonic() < deadline, "the sandbox's search index never caught up"
            time.sleep(0.05)

    def sync(self) -> PassResult:
        """A pass once search shows what the test just wrote, as a person's next
        scheduled pass would see it: the tests below are about what a pass does with
        changes, :func:`passes_until_quiet` about passes racing the index."""
        self.wait_indexed()
        return self.app.sync("acme")

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
    """Search lag ``LAG`` on both portals; an ``indirect`` parameter sets the vendor
    portal's lag instead (seconds)."""
    specs = [PortalSpec("vendor", ENV["HS_VENDOR_TOKEN"]), PortalSpec("acme", ENV["HS_ACME_TOKEN"])]
    with SandboxServer(specs, port=0, limits=False, search_lag=LAG) as srv:
        if hasattr(request, "param"):
            lag = float(request.param)
            srv.portal("vendor").search_lag = (lag, lag)
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


def passes_until_quiet(w: World, most: int = 12) -> list[PassResult]:
    """Passes back to back, racing the search index (a change not yet searchable at
    one pass must be found by a later one, through the cursor's overlap), until a pass
    that started with everything indexed is ok and writes nothing."""
    results: list[PassResult] = []
    for _ in range(most):
        settled = w.indexed()
        r = w.app.sync("acme")
        results.append(r)
        if settled and r.status == "ok" and _writes(r) == 0:
            return results
        time.sleep(0.05)
    raise AssertionError(f"no quiet pass in {most}: {[(r.status, r.counts) for r in results]}")


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
    r = world.sync()
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
    again = world.sync()
    assert again.status == "ok" and _writes(again) == 0, again.counts
    for name in ("vendor", "acme"):
        kinds = settled_stats(world.srv, name)["by_kind"]
        assert not any(
            k.startswith(("batch_upsert", "batch_update", "assoc_batch_create")) for k in kinds
        ), kinds


def test_stormy_passes_converge_without_duplicates_or_lost_updates(world: World) -> None:
    seeded = [world.seed_deal(i) for i in range(4)]
    assert world.sync().status == "ok"
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
            r = world.app.sync("acme")  # racing the search index: no waiting for it
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
    # edits not yet searchable at one pass are found by a later one (overlap window)
    passes_until_quiet(world)

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
    r = world.sync()
    assert r.status == "ok" and _writes(r) == 0, r.counts


def test_create_interrupted_after_upsert_is_adopted_on_rerun(world: World) -> None:
    seeded = [world.seed_deal(i) for i in range(3)]

    def crash(point: str) -> None:
        if point == "after_write:deals":
            raise PassAborted(point)

    world.wait_indexed()
    with pytest.raises(PassAborted):
        world.app.sync("acme", crash_at=crash)
    # the vendor records exist, the links were not recorded
    assert world.srv.portal("vendor").count("deals") == 3
    pending = world.app.store.link_counts("acme").get("deals", {})
    assert pending.get("active", 0) == 0
    r = world.sync()
    assert r.status == "ok", r.as_dict()
    _assert_no_duplicates(world, [d for d, _, _ in seeded])
    assert world.app.store.link_counts("acme")["deals"] == {"active": 3}
    assert r.counts["created vendor deals"] == 3  # adopted: upsert found them by source id
    for d, _, _ in seeded:
        vid = world.vendor_deal_of(d)
        assert len(world.vendor.associated("deals", vid, "companies")) == 1
        assert len(world.vendor.associated("deals", vid, "contacts")) == 1
    # a later pass changes nothing
    again = world.sync()
    assert again.status == "ok" and _writes(again) == 0, again.counts


@pytest.mark.parametrize("point", ["after_intent:deals", "before_cursor", "after_cursor"])
def test_crash_elsewhere_then_rerun_converges(world: World, point: str) -> None:
    seeded = [world.seed_deal(i) for i in range(2)]

    def crash(at: str) -> None:
        if at == point:
            raise PassAborted(at)

    world.wait_indexed()
    with pytest.raises(PassAborted):
        world.app.sync("acme", crash_at=crash)
    r = world.sync()
    assert r.status == "ok", r.as_dict()
    _assert_no_duplicates(world, [d for d, _, _ in seeded])
    again = world.sync()
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
    assert world.sync().status == "ok"
    [before] = _live(world, "contacts", "email", "p1@c1.com")

    world.srv.portal("acme").archive("contacts", p)
    assert world.sync().status == "ok"
    again, r = _entered_again_on_the_deal(
        world, d, "contacts", {"firstname": "Again", "lastname": "L1", "email": "p1@c1.com"}, "1500"
    )

    [after] = _live(world, "contacts", "email", "p1@c1.com")
    assert after["id"] == before["id"]
    assert after["properties"][SRC] == f"acme:{again}"  # type: ignore[index]
    assert after["properties"]["firstname"] == "Again"  # type: ignore[index]
    assert r.counts["re-linked contacts"] == 1
    details = [x.detail or "" for x in world.app.store.run_records(r.run_id or 0)]
    assert any("adopted existing" in x and "same email" in x for x in details), details
    counts = world.app.store.link_counts("acme")["contacts"]
    assert counts == {"active": 1, "relinked": 1}
    quiet = world.sync()
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def test_vendor_contact_never_linked_is_adopted_over_the_sandbox(world: World) -> None:
    known = world.vendor.create("contacts", {"firstname": "Known", "email": "P0@c0.com"})
    d, _, p = world.seed_deal(0)
    r = world.sync()

    assert r.status == "ok", r.as_dict()
    [only] = _live(world, "contacts", "email", "p0@c0.com")
    assert only["id"] == known
    assert only["properties"][SRC] == f"acme:{p}"  # type: ignore[index]
    assert r.counts["adopted vendor contacts"] == 1
    details = [x.detail or "" for x in world.app.store.run_records(r.run_id or 0)]
    assert any(f"Existing ID: {known}" in x for x in details), details
    assert world.vendor.associated("deals", world.vendor_deal_of(d), "contacts") == [known]
    quiet = world.sync()
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def test_partner_recreates_a_company_no_second_vendor_company(world: World) -> None:
    d, c, _ = world.seed_deal(2)
    world.sync()
    [before] = _live(world, "companies", "domain", "c2.com")

    world.srv.portal("acme").archive("companies", c)
    world.sync()
    again, _ = _entered_again_on_the_deal(
        world, d, "companies", {"name": "Company 2 again", "domain": "c2.com"}, "1502"
    )

    [after] = _live(world, "companies", "domain", "c2.com")
    assert after["id"] == before["id"]
    assert after["properties"][SRC] == f"acme:{again}"  # type: ignore[index]
    quiet = world.sync()
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def _entered_again_on_the_deal(
    world: World, d: str, obj: str, props: dict[str, str], amount: str
) -> tuple[str, PassResult]:
    """The partner enters a record again by hand on deal ``d`` (and edits the deal's
    amount); the pass after must succeed. Returns the new record's id and that pass."""
    again = world.partner.create(obj, props)
    world.partner.associate("deals", d, obj, again)
    world.partner.edit("deals", d, {"amount": amount})
    r = world.sync()
    assert r.status == "ok", r.as_dict()
    return again, r


def _both_recreate_the_company(
    world: World, n: int, vold: str, vdeal: str, d: str, c: str
) -> tuple[str, str]:
    """Both portals archive deal ``n``'s company (``vold`` on the vendor, ``c`` on the
    partner) and enter it again by hand on the deal, same domain; the partner also
    edits the deal. Returns the new vendor and partner company ids."""
    world.srv.portal("vendor").archive("companies", vold)
    vnew = world.vendor.create("companies", {"name": f"Company {n} by hand", "domain": f"c{n}.com"})
    world.vendor.associate("deals", vdeal, "companies", vnew)
    world.srv.portal("acme").archive("companies", c)
    pnew = world.partner.create("companies", {"name": f"Company {n} again", "domain": f"c{n}.com"})
    world.partner.associate("deals", d, "companies", pnew)
    world.partner.edit("deals", d, {"amount": f"150{n}"})
    return vnew, pnew


def test_both_sides_recreate_a_company_on_the_deal_one_vendor_company(world: World) -> None:
    """Both portals delete the shared deal's company and enter it again (same domain,
    on the deal) before a pass: the partner's new company pairs with the vendor's new
    one, its successor, through the real client — never a third company."""
    d, c, _ = world.seed_deal(4)
    world.sync()
    [old] = _live(world, "companies", "domain", "c4.com")
    vdeal = world.vendor_deal_of(d)

    vnew, pnew = _both_recreate_the_company(world, 4, str(old["id"]), vdeal, d, c)
    r = world.sync()

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "companies", "domain", "c4.com")
    assert after["id"] == vnew
    assert after["properties"][SRC] == f"acme:{pnew}"  # type: ignore[index]
    assert world.vendor.associated("deals", vdeal, "companies") == [vnew]
    counts = world.app.store.link_counts("acme")["companies"]
    assert counts == {"active": 1, "relinked": 1}
    quiet = world.sync()
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


def _wait_partner_indexed(world: World, timeout: float = 60.0) -> None:
    """Wait (polling) until the partner portal's search shows every write; the vendor
    portal's lag is the test's subject and is left alone."""
    deadline = time.monotonic() + timeout
    while world.srv.portal("acme").pending_index():
        assert time.monotonic() < deadline, "the partner portal's search never caught up"
        time.sleep(0.05)


@pytest.mark.parametrize("world", [600.0], indirect=True)
def test_both_sides_recreate_a_company_the_vendor_search_does_not_show_yet(
    world: World,
) -> None:
    """The vendor's new company was entered moments before the pass, so HubSpot's
    search does not show it yet (index lag far longer than the test): it is found
    through the shared deal's associations, and the partner's new company adopts it
    without a search — still one vendor company."""
    d, c, _ = world.seed_deal(5)
    _wait_partner_indexed(world)
    world.app.sync("acme")
    [old] = _live(world, "companies", "domain", "c5.com")
    vdeal = world.vendor_deal_of_by_read(d)

    vnew, pnew = _both_recreate_the_company(world, 5, str(old["id"]), vdeal, d, c)
    _wait_partner_indexed(world)
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "companies", "domain", "c5.com")
    assert after["id"] == vnew
    assert after["properties"][SRC] == f"acme:{pnew}"  # type: ignore[index]
    assert world.app.store.link_counts("acme")["companies"] == {"active": 1, "relinked": 1}


@pytest.mark.parametrize("world", [600.0], indirect=True)
def test_partner_recreates_a_company_its_counterpart_not_searchable_yet_no_second(
    world: World,
) -> None:
    """``scripts/chaos.py`` (``--seed 13``, campaign 89): the vendor company was
    written by the pass just before, so HubSpot's search does not show it yet; the
    partner deletes its company and enters it again (same domain) before the next
    pass. The ended link names that counterpart, so it is read by id and adopted —
    not a second vendor company beside it."""
    d, c, _ = world.seed_deal(6)
    _wait_partner_indexed(world)
    world.app.sync("acme")
    [before] = _live(world, "companies", "domain", "c6.com")

    world.srv.portal("acme").archive("companies", c)
    again = world.partner.create("companies", {"name": "Company 6 again", "domain": "c6.com"})
    world.partner.associate("deals", d, "companies", again)
    world.partner.edit("deals", d, {"amount": "1506"})
    _wait_partner_indexed(world)
    r = world.app.sync("acme")

    assert r.status == "ok", r.as_dict()
    [after] = _live(world, "companies", "domain", "c6.com")
    assert after["id"] == before["id"]
    assert after["properties"][SRC] == f"acme:{again}"  # type: ignore[index]
    assert world.app.store.link_counts("acme")["companies"] == {"active": 1, "relinked": 1}


def test_vendor_recreates_a_contact_the_link_follows_it(world: World) -> None:
    d, _, p = world.seed_deal(3)
    world.sync()
    [old] = _live(world, "contacts", "email", "p3@c3.com")

    world.srv.portal("vendor").archive("contacts", str(old["id"]))
    new = world.vendor.create("contacts", {"firstname": "Vendor", "email": "p3@c3.com"})
    r = world.sync()

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
    quiet = world.sync()
    assert quiet.status == "ok" and _writes(quiet) == 0, quiet.counts


# ---------------------------------------------------------------- search lag, merges


def test_a_change_not_yet_searchable_is_found_by_the_next_pass(world: World) -> None:
    """HubSpot's search shows a write only after a lag. A deal registered on the
    partner side but not searchable yet when a pass runs is missed by that pass, whose
    cursor moves past the deal's time; the next pass reads from the cursor minus the
    overlap window and finds it. (The lag here is long and ended by hand, so the test
    cannot race.)"""
    first, _, _ = world.seed_deal(7)
    assert world.sync().status == "ok"
    acme = world.srv.portal("acme")
    acme.search_lag = (600.0, 600.0)
    try:
        d, _, _ = world.seed_deal(8)
        missed = world.app.sync("acme")
        assert missed.status == "ok"
        assert world.srv.portal("vendor").count("deals") == 1  # not seen yet
        acme.index_now()  # the index catches up
        found = world.app.sync("acme")
    finally:
        acme.search_lag = LAG
    assert found.status == "ok", found.as_dict()
    assert found.counts["created vendor deals"] == 1
    _assert_no_duplicates(world, [first, d])


def test_an_edit_search_found_is_not_read_again_by_id(world: World) -> None:
    """Issue 17: a linked record's search hit modified after the version its base was
    taken from is an edit made since, not a stale copy of the last pass's write, so the
    pass uses it as found: no second read by id (one call per 100 of each side) — the
    edits still reach the other side."""
    d, _, p = world.seed_deal(3)
    assert world.sync().status == "ok"
    vdeal = world.vendor_deal_of_by_read(d)
    world.vendor.edit("deals", vdeal, {"amount": "4321"})
    world.partner.edit("contacts", p, {"lastname": "Edited"})

    r = world.sync()

    assert r.status == "ok", r.as_dict()
    assert r.counts["updated deals"] == 1 and r.counts["updated contacts"] == 1, r.counts
    assert world.partner.get("deals", d, "amount")["amount"] == "4321"
    vcontact = world.vendor.find_by("contacts", SRC, f"acme:{p}")
    assert world.vendor.get("contacts", vcontact, "lastname")["lastname"] == "Edited"
    assert r.api_calls.get("partner.batch_read", 0) == 0, r.api_calls
    assert r.api_calls.get("vendor.batch_read", 0) == 0, r.api_calls


def test_a_stale_copy_of_the_passs_own_write_is_read_again_not_written_back(
    world: World,
) -> None:
    """The other half of the rule above: the vendor's search still shows a deal as it
    was before the last pass wrote it (index lag far longer than the test), older than
    the write's answer; the next pass reads it again by id instead of taking its old
    amount for a vendor edit — nothing is written back, the partner's edit stays."""
    d, _, _ = world.seed_deal(4)
    assert world.sync().status == "ok"
    vendor = world.srv.portal("vendor")
    # the first pass's writes are searchable before the long lag starts: else a write of
    # the next pass that lands within the short lag of the first pass's last write finds
    # the deal not yet indexed at all, and search never shows the stale copy
    vendor.index_now()
    vendor.search_lag = (600.0, 600.0)
    try:
        world.partner.edit("deals", d, {"amount": "7777"})
        _wait_partner_indexed(world)
        wrote = world.app.sync("acme")
        assert wrote.counts["updated deals"] == 1, wrote.counts
        assert vendor.pending_index() > 0  # its search still shows the old amount
        again = world.app.sync("acme")
    finally:
        vendor.search_lag = LAG
    assert again.status == "ok", again.as_dict()
    assert _writes(again) == 0, again.counts
    assert again.api_calls.get("vendor.batch_read", 0) >= 1, again.api_calls
    assert world.partner.get("deals", d, "amount")["amount"] == "7777"
    vdeal = world.vendor_deal_of_by_read(d)
    assert world.vendor.get("deals", vdeal, "amount")["amount"] == "7777"


def _merge(w: World, side: str, primary: str, merged: str) -> str:
    """A person merges two contacts in HubSpot (the real client's merge call); HubSpot
    merges both into a new record and answers its id."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import PublicMergeInput

    token = ENV["HS_VENDOR_TOKEN"] if side == "vendor" else ENV["HS_ACME_TOKEN"]
    client = HubSpot(access_token=token, host=w.srv.url)
    out = client.crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=primary, object_id_to_merge=merged)
    )
    return str(out.id)


def _assert_told(world: World, results: list[PassResult], *parts: str) -> None:
    """One run record of ``results`` says every one of ``parts``."""
    details = _details(world, results)
    assert any(all(part in x for part in parts) for x in details), details


def _details(w: World, results: list[PassResult]) -> list[str]:
    return [x.detail or "" for r in results for x in w.app.store.run_records(r.run_id or 0)]


def _link_of(w: World, partner_id: str) -> tuple[str, str | None]:
    (link,) = [
        x for x in w.app.store.links("acme", "contacts", ("active",)) if x.partner_id == partner_id
    ] or [None]  # type: ignore[list-item]
    return ("active", link.vendor_id) if link is not None else ("none", None)


def test_vendor_merges_two_linked_contacts_no_duplicate_link_follows(world: World) -> None:
    """The vendor merges the counterparts of two partner contacts (HubSpot makes a
    new record of them). The primary's link follows the new record; the other link is
    closed and its partner contact is not shared again (re-creating it on the vendor
    side would undo the merge). Reading an old id answers with the new record: the
    pass does not take that for a delete."""
    _, _, p1 = world.seed_deal(21)
    _, _, p2 = world.seed_deal(22)
    assert world.sync().status == "ok"
    [v1] = _live(world, "contacts", "email", "p21@c21.com")
    [v2] = _live(world, "contacts", "email", "p22@c22.com")
    survivor = _merge(world, "vendor", str(v1["id"]), str(v2["id"]))
    merged = world.vendor.get("contacts", survivor, "hs_merged_object_ids")
    assert merged["hs_merged_object_ids"] == f"{v1['id']};{v2['id']}"

    results = passes_until_quiet(world)

    assert all(r.status == "ok" for r in results), [r.as_dict() for r in results]
    sources = [c["properties"].get(SRC) for c in world.srv.portal("vendor").all("contacts")]
    assert sorted(s for s in sources if s) == [f"acme:{p1}"]  # no duplicate of p2
    assert _link_of(world, p1) == ("active", survivor)  # the link follows the survivor
    assert _link_of(world, p2) == ("none", None)
    assert world.app.store.link_counts("acme")["contacts"] == {"active": 1, "relinked": 1}
    assert len(world.srv.portal("acme").all("contacts")) == 2  # nothing lost or added
    assert world.srv.portal("acme").get("contacts", p2)["archived"] is False  # type: ignore[index]
    _assert_told(
        world,
        results,
        f"vendor {v2['id']} was merged into vendor {survivor}",
        f"partner {p2} is no longer synced",
    )


def test_vendor_merges_a_linked_contact_into_an_unlinked_one_the_link_follows(
    world: World,
) -> None:
    _, _, p = world.seed_deal(23)
    assert world.sync().status == "ok"
    [old] = _live(world, "contacts", "email", "p23@c23.com")
    native = world.vendor.create(
        "contacts", {"firstname": "Vendor", "lastname": "Side", "email": "other@c23.com"}
    )
    survivor = _merge(world, "vendor", native, str(old["id"]))

    results = passes_until_quiet(world)

    assert all(r.status == "ok" for r in results)
    assert _link_of(world, p) == ("active", survivor)
    assert world.partner.get("contacts", p, "firstname")["firstname"] == "Vendor"
    assert world.vendor.get("contacts", survivor, SRC)[SRC] == f"acme:{p}"
    assert len(world.srv.portal("vendor").all("contacts")) == 1
    assert len(world.srv.portal("acme").all("contacts")) == 1
    details = _details(world, results)
    assert any(f"the link of partner {p} follows vendor {survivor}" in x for x in details), details


def test_partner_merges_two_linked_contacts_no_duplicate_link_follows(world: World) -> None:
    _, _, p1 = world.seed_deal(24)
    _, _, p2 = world.seed_deal(25)
    assert world.sync().status == "ok"
    [v1] = _live(world, "contacts", "email", "p24@c24.com")
    [v2] = _live(world, "contacts", "email", "p25@c25.com")
    survivor = _merge(world, "partner", p1, p2)
    # a read of a merged id answers with the new record, as HubSpot's
    assert world.partner.get("contacts", p2, "email")["email"] == "p24@c24.com"

    results = passes_until_quiet(world)

    assert all(r.status == "ok" for r in results)
    # the link follows the survivor on the partner side, to the same vendor contact
    assert _link_of(world, survivor) == ("active", str(v1["id"]))
    assert _link_of(world, p1) == ("none", None)
    assert world.app.store.link_counts("acme")["contacts"] == {"active": 1, "relinked": 1}
    # nothing archived, nothing re-created on either side
    assert len(world.srv.portal("vendor").all("contacts")) == 2
    assert len(world.srv.portal("acme").all("contacts")) == 1
    assert world.srv.portal("vendor").all("contacts", archived=True) == []
    _assert_told(
        world,
        results,
        f"partner {p2} was merged into partner {survivor}",
        f"vendor {v2['id']} is no longer synced",
    )


def test_a_409_refusing_a_whole_batch_adopts_the_right_contact_and_writes_the_rest(
    world: World,
) -> None:
    """HubSpot refuses the pass's whole contact upsert (409) because the vendor
    already has one of the e-mails; the split isolates that contact, which is
    adopted, and the others are created."""
    known = world.vendor.create("contacts", {"firstname": "Known", "email": "p31@c31.com"})
    seeded = [world.seed_deal(n) for n in (30, 31, 32)]
    r = world.sync()

    assert r.status == "ok", r.as_dict()
    assert r.counts["adopted vendor contacts"] == 1
    assert r.counts["created vendor contacts"] == 2
    [adopted] = _live(world, "contacts", "email", "p31@c31.com")
    assert adopted["id"] == known
    assert adopted["properties"][SRC] == f"acme:{seeded[1][2]}"  # type: ignore[index]
    sources = sorted(
        c["properties"].get(SRC) or "" for c in world.srv.portal("vendor").all("contacts")
    )
    assert sources == sorted(f"acme:{p}" for _, _, p in seeded)
    _assert_no_duplicates(world, [d for d, _, _ in seeded])
    later = passes_until_quiet(world)
    assert all(_writes(q) == 0 for q in later), [q.counts for q in later]  # settled at once
