"""The HubSpot adapter against the sandbox, through the unmodified hubspot-api-client.

Every call the adapter makes (search, list of the recycle bin, batch read / upsert /
update / archive, associations v4 batch read / create, properties read / create), the
10,000-result search cap, retries under injected faults, and the rate limiter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hs_support import FakeTime, make_adapter, settled_stats, unique_token

from connector.adapters.base import AdapterError, CRMAdapter
from connector.adapters.hubspot import HubSpotAdapter
from connector.adapters.ratelimit import Reserve, SlidingWindowLimiter, background
from connector.records import PropertySpec
from connector.sandbox import FaultSpec, PortalSpec, SandboxServer
from connector.sandbox.limits import RateLimiter

TOKEN = "adapter-token"
SRC = "dealsync_source_id"
SPECS = [
    PropertySpec("deals", SRC, "dealsync source id", unique=True),
    PropertySpec("deals", "dealsync_partner_id", "dealsync partner"),
    PropertySpec("deals", "dealsync_register", "registered", type="bool"),
    PropertySpec("companies", SRC, "dealsync source id", unique=True),
]
DEAL = {"pipeline": "default", "dealstage": "appointmentscheduled"}


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    with SandboxServer([PortalSpec("main", TOKEN)], port=0, limits=False, search_lag=0) as server:
        yield server


@pytest.fixture(scope="module")
def hs(srv: SandboxServer) -> HubSpotAdapter:
    adapter = make_adapter(srv.url, TOKEN, name="main")
    adapter.ensure_properties(SPECS)
    return adapter


def _deal(name: str, **extra: str) -> dict[str, str]:
    return {"dealname": name, **DEAL, **extra}


def _kinds(srv: SandboxServer, name: str = "main") -> dict[str, int]:
    return dict(settled_stats(srv, name)["by_kind"])


# ---------------------------------------------------------------------------- calls


def test_adapter_satisfies_protocol(hs: HubSpotAdapter) -> None:
    assert isinstance(hs, CRMAdapter)


def test_ensure_properties_is_idempotent(srv: SandboxServer) -> None:
    srv.portal("main").reset_stats()
    adapter = make_adapter(srv.url, TOKEN)
    specs = [
        PropertySpec("contacts", "ds_test_prop", "a test property"),
        PropertySpec("deals", "ds_tier", "tier", type="enumeration", options=("gold", "silver")),
    ]
    assert sorted(adapter.ensure_properties(specs)) == ["contacts.ds_test_prop", "deals.ds_tier"]
    assert _kinds(srv).get("properties_create") == 2
    assert adapter.ensure_properties(specs) == []
    assert _kinds(srv).get("properties_create") == 2  # second call created nothing
    # the enumeration's options really exist: a value outside them is refused
    res = adapter.upsert("deals", SRC, [("enum:1", _deal("tiered", ds_tier="platinum"))])
    assert not res[0].ok and "ds_tier" in (res[0].error or "")


def test_upsert_creates_then_adopts(hs: HubSpotAdapter, srv: SandboxServer) -> None:
    first = hs.upsert("deals", SRC, [("u:1", _deal("Upsert one", amount="100"))])
    assert first[0].ok and first[0].created and first[0].record is not None
    rid = first[0].record.id
    again = hs.upsert("deals", SRC, [("u:1", _deal("Upsert one", amount="150"))])
    assert again[0].ok and not again[0].created
    assert again[0].record is not None and again[0].record.id == rid
    live = [d for d in srv.portal("main").all("deals") if d["properties"].get(SRC) == "u:1"]
    assert len(live) == 1
    assert live[0]["properties"]["amount"] == "150"


def test_update(hs: HubSpotAdapter, srv: SandboxServer) -> None:
    (res,) = hs.upsert("deals", SRC, [("upd:1", _deal("To update"))])
    assert res.record is not None
    rid = res.record.id
    (out,) = hs.update("deals", [(rid, {"amount": "42.5", "dealstage": "closedwon"})])
    assert out.ok and out.key == rid
    props = srv.portal("main").get("deals", rid)["properties"]  # type: ignore[index]
    assert props["amount"] == "42.5" and props["dealstage"] == "closedwon"
    (missing,) = hs.update("deals", [("99999999", {"amount": "1"})])
    assert not missing.ok and missing.key == "99999999"


def test_one_bad_input_fails_the_batch_whole_and_the_split_isolates_it(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    """HubSpot answers 207 only for traced batch creates; an upsert with one bad value
    is refused whole (400). The adapter halves the batch until the bad input is alone:
    the other four are written, the bad one fails with the property's own message."""
    srv.portal("main").reset_stats()
    items = [(f"p:{i}", _deal(f"Partial {i}", amount="abc" if i == 2 else "10")) for i in range(5)]
    results = hs.upsert("deals", SRC, items)
    assert [r.key for r in results] == [k for k, _ in items]
    bad = [r for r in results if not r.ok]
    assert [r.key for r in bad] == ["p:2"]
    assert "amount" in (bad[0].error or "") and "isValid" not in (bad[0].error or "")
    assert all(r.record is not None and r.created for r in results if r.ok)
    # [0..4] refused, [0,1] ok, [2,3,4] refused, [2] refused, [3,4] ok
    assert _kinds(srv).get("batch_upsert") == 5
    # the same on update
    ids = [r.record.id for r in results if r.ok and r.record is not None]
    out = hs.update("deals", [(ids[0], {"amount": "5"}), (ids[1], {"amount": "x1"})])
    assert out[0].ok and not out[1].ok and "amount" in (out[1].error or "")


def test_100_updates_with_one_invalid_stage_99_written_1_failed_readably(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    """A batch of 100 updates where one deal gets a stage its pipeline does not have:
    HubSpot refuses the batch whole (400 VALIDATION_ERROR, the property errors as JSON
    inside ``message`` and in ``errors``). 99 are written, the one fails with
    HubSpot's readable message, in a bounded number of calls (a binary split: at most
    1 + 2·log2(100) ≈ 15)."""
    made = hs.upsert("deals", SRC, [(f"st:{i}", _deal(f"Stage {i}")) for i in range(100)])
    ids = [r.record.id for r in made if r.record is not None]
    assert len(ids) == 100
    srv.portal("main").reset_stats()
    items = [
        (rid, {"dealstage": "nosuchstage" if i == 37 else "contractsent"})
        for i, rid in enumerate(ids)
    ]
    out = hs.update("deals", items)
    assert [r.key for r in out] == ids
    failed = [r for r in out if not r.ok]
    assert [r.key for r in failed] == [ids[37]]
    assert failed[0].error is not None
    assert "nosuchstage was not one of the allowed options" in failed[0].error
    assert '"isValid"' not in failed[0].error  # the readable errors[].message, not JSON
    calls = _kinds(srv).get("batch_update", 0)
    assert 2 <= calls <= 15, calls
    stages = {rid: srv.portal("main").get("deals", rid)["properties"]["dealstage"] for rid in ids}  # type: ignore[index]
    assert sum(1 for v in stages.values() if v == "contractsent") == 99
    assert stages[ids[37]] == "appointmentscheduled"


def test_a_409_inside_a_batch_upsert_isolates_the_contact_and_names_its_owner(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    """One contact of a 100-input upsert has an e-mail another contact already has:
    HubSpot refuses the batch whole with 409 ("Existing ID: N"). The split writes the
    99 and hands back the one with ``existing_id`` N, which the engine adopts."""
    hs.ensure_properties([PropertySpec("contacts", SRC, "dealsync source id", unique=True)])
    owner = srv.portal("main").create("contacts", {"email": "owner@dup409.example"})["id"]
    items = [
        (f"dup409:{i}", {"email": "OWNER@dup409.example" if i == 61 else f"c{i}@dup409.example"})
        for i in range(100)
    ]
    srv.portal("main").reset_stats()
    out = hs.upsert("contacts", SRC, items)
    assert sum(1 for r in out if r.ok) == 99
    (clash,) = [r for r in out if not r.ok]
    assert clash.key == "dup409:61" and clash.existing_id == owner
    assert "409" in (clash.error or "") and f"Existing ID: {owner}" in (clash.error or "")
    assert 2 <= _kinds(srv).get("batch_upsert", 0) <= 15
    emails = {c["properties"]["email"] for c in srv.portal("main").all("contacts")}
    assert {f"c{i}@dup409.example" for i in range(100) if i != 61} <= emails


def test_a_409_for_an_existing_email_names_the_existing_contact(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    """HubSpot refuses a second contact with an e-mail (409 CONFLICT, "... already
    exists. Existing ID: N"); the result carries N so the engine can adopt it."""
    hs.ensure_properties([PropertySpec("contacts", SRC, "dealsync source id", unique=True)])
    known = srv.portal("main").create("contacts", {"email": "known@adopt.example"})["id"]
    out = hs.upsert(
        "contacts",
        SRC,
        [("c:1", {"email": "Known@Adopt.example"}), ("c:2", {"email": "new@adopt.example"})],
    )
    assert not out[0].ok and out[0].existing_id == known
    assert "already exists" in (out[0].error or "")
    assert out[1].ok and out[1].existing_id is None
    # the same on update: giving another contact that e-mail is refused the same way
    assert out[1].record is not None
    (clash,) = hs.update("contacts", [(out[1].record.id, {"email": "known@adopt.example"})])
    assert not clash.ok and clash.existing_id == known


@pytest.mark.parametrize(
    ("message", "context", "expected"),
    [
        ("Contact already exists. Existing ID: 12345", None, "12345"),
        ('A contact with email "a@b.c" already exists. Existing ID: 77', {}, "77"),
        ("Conflict", {"existingId": ["901"]}, "901"),
        ("Property values were not valid", {"propertyName": ["amount"]}, None),
    ],
)
def test_existing_id_is_read_from_hubspots_409_answers(
    message: str, context: dict[str, list[str]] | None, expected: str | None
) -> None:
    from connector.adapters.hubspot import _existing_id

    assert _existing_id(message, context) == expected


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, 'Property "dealsync_register_lead" does not exist', "dealsync_register_lead"),
        (400, "There was a problem with the request.", None),
        (404, 'Property "x" does not exist', None),
    ],
)
def test_a_search_on_a_missing_property_is_told_apart(
    status: int, message: str, expected: str | None
) -> None:
    """Only a 400 naming the property is :class:`UnknownProperty` (a detection filtered
    on it then finds nothing); every other refusal stays a plain refusal."""
    from connector.adapters.base import UnknownProperty
    from connector.adapters.hubspot_errors import RequestRefused, refused

    exc = refused(status, message, {"message": message})
    assert isinstance(exc, RequestRefused)
    assert (exc.name if isinstance(exc, UnknownProperty) else None) == expected


def test_whole_batch_400_is_split_to_isolate_the_bad_input(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    (res,) = hs.upsert("deals", SRC, [("dup:1", _deal("Duplicate ids"))])
    assert res.record is not None
    rid = res.record.id
    srv.portal("main").reset_stats()
    # a batch update naming one id twice is refused whole (400); the adapter splits it
    out = hs.update("deals", [(rid, {"amount": "1"}), (rid, {"description": "d"})])
    assert [r.ok for r in out] == [True, True]
    assert _kinds(srv).get("batch_update") == 3
    props = srv.portal("main").get("deals", rid)["properties"]  # type: ignore[index]
    assert props["amount"] == "1" and props["description"] == "d"


def test_batch_of_250_goes_in_three_calls(hs: HubSpotAdapter, srv: SandboxServer) -> None:
    srv.portal("main").reset_stats()
    before = hs.api_calls().get("batch_upsert", 0)
    items = [(f"b:{i}", _deal(f"Bulk {i}", amount=str(i))) for i in range(250)]
    results = hs.upsert("deals", SRC, items)
    assert len(results) == 250 and all(r.ok and r.created for r in results)
    assert _kinds(srv) == {"batch_upsert": 3}
    assert hs.api_calls()["batch_upsert"] - before == 3
    ids = [r.record.id for r in results if r.record is not None]
    srv.portal("main").reset_stats()
    got = hs.read("deals", ids, ["amount"])
    assert len(got) == 250 and got[ids[7]].properties["amount"] == "7"
    assert _kinds(srv) == {"batch_read": 3}


def test_read_missing_and_archived_ids_are_absent(hs: HubSpotAdapter) -> None:
    res = hs.upsert("deals", SRC, [("r:1", _deal("Read a")), ("r:2", _deal("Read b"))])
    a, b = (r.record.id for r in res if r.record is not None)
    assert all(r.ok for r in hs.archive("deals", [b]))
    got = hs.read("deals", [a, "99999998", b], ["dealname", "amount"])
    assert list(got) == [a]
    rec = got[a]
    assert rec.properties["dealname"] == "Read a"
    assert "amount" in rec.properties and rec.properties["amount"] is None
    assert rec.updated_at.tzinfo is not None and not rec.archived
    assert hs.read("deals", [], ["dealname"]) == {}


def test_archive_found_by_changed_since_with_modification_time_unchanged(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    (res,) = hs.upsert("deals", SRC, [("arch:1", _deal("To archive"))])
    assert res.record is not None
    rid = res.record.id
    before = srv.portal("main").get("deals", rid)["properties"]["hs_lastmodifieddate"]  # type: ignore[index]
    time.sleep(0.005)
    since = hs.now()
    time.sleep(0.005)
    assert [r.ok for r in hs.archive("deals", [rid])] == [True]
    after = srv.portal("main").get("deals", rid)
    assert after is not None and after["archived"]
    assert after["properties"]["hs_lastmodifieddate"] == before
    found = [r for r in hs.changed_since("deals", since, ["dealname"]) if r.id == rid]
    assert len(found) == 1 and found[0].archived
    assert found[0].updated_at >= since
    assert found[0].properties["dealname"] == "To archive"
    # the archive is not in a window that ended before it happened
    assert rid not in {r.id for r in hs.changed_since("deals", None, [], until=since)}
    # nor in a window that starts after it
    later = hs.now() + timedelta(seconds=1)
    assert rid not in {r.id for r in hs.changed_since("deals", later, [])}
    # archiving again and archiving unknown ids are harmless
    assert all(r.ok for r in hs.archive("deals", [rid, "99999997"]))


def test_associate_and_changed_since_returns_associations(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    since = hs.now() - timedelta(milliseconds=5)
    (deal,) = hs.upsert("deals", SRC, [("as:1", _deal("Associated"))])
    comps = hs.upsert("companies", SRC, [("as:c1", {"name": "Alpha"}), ("as:c2", {"name": "Beta"})])
    contact = srv.portal("main").seed("contacts", [{"email": "assoc@example.com"}])[0]
    assert deal.record is not None
    did = deal.record.id
    cids = [c.record.id for c in comps if c.record is not None]
    srv.portal("main").reset_stats()
    out = hs.associate("deals", "companies", [(did, cids[0]), (did, cids[1])])
    assert [r.ok for r in out] == [True, True]
    assert [r.ok for r in hs.associate("deals", "contacts", [(did, contact)])] == [True]
    # idempotent
    assert [r.ok for r in hs.associate("deals", "companies", [(did, cids[0])])] == [True]
    assert _kinds(srv) == {"assoc_batch_create": 3}
    recs = {
        r.id: r
        for r in hs.changed_since(
            "deals", since, ["dealname"], associations=["companies", "contacts"]
        )
    }
    assert recs[did].associations == {
        "companies": tuple(sorted(cids, key=int)),
        "contacts": (contact,),
    }
    got = hs.read("deals", [did], ["dealname"], associations=["companies"])
    assert got[did].associations == {"companies": tuple(sorted(cids, key=int))}
    # the reverse direction is there too (HubSpot associations are two-way)
    back = hs.read("companies", [cids[0]], ["name"], associations=["deals"])
    assert back[cids[0]].associations == {"deals": (did,)}
    # an association to a record that does not exist is an error of that pair only
    mixed = hs.associate("deals", "companies", [(did, cids[1]), (did, "99999996")])
    assert [r.ok for r in mixed] == [True, False]
    assert "association refused" in (mixed[1].error or "")


def test_find_by_property(hs: HubSpotAdapter) -> None:
    res = hs.upsert("deals", SRC, [(f"find:{i}", _deal(f"Find {i}")) for i in range(3)])
    ids = {r.key: r.record.id for r in res if r.record is not None}
    found = hs.find_by_property("deals", SRC, ["find:0", "find:2", "find:none"], ["dealname"])
    assert set(found) == {"find:0", "find:2"}
    assert found["find:2"].id == ids["find:2"]
    assert found["find:0"].properties["dealname"] == "Find 0"
    # archived records are not found (search never shows them)
    hs.archive("deals", [ids["find:1"]])
    assert hs.find_by_property("deals", SRC, ["find:1"], []) == {}
    assert hs.find_by_property("deals", SRC, [], []) == {}


def test_find_by_property_puts_500_values_in_one_search_and_pages_its_matches(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    """600 values: one search of 5 filter groups × 100 values (its 500 matches over three
    pages of 200), one of the last 100 (issue 17: it was a search per 100 values)."""
    items = [(f"many:{i}", _deal(f"Many {i}")) for i in range(600)]
    assert all(r.ok for r in hs.upsert("deals", SRC, items))
    srv.portal("main").reset_stats()
    found = hs.find_by_property("deals", SRC, [k for k, _ in items] + ["many:none"], ["dealname"])
    assert sorted(found) == sorted(k for k, _ in items)
    assert found["many:599"].properties["dealname"] == "Many 599"
    assert _kinds(srv) == {"search": 3 + 1}


def test_read_searched_reads_200_ids_a_search_and_skips_missing_and_archived(
    hs: HubSpotAdapter, srv: SandboxServer
) -> None:
    """Reads by id through search (issue 17: a first sync's companies, read with their
    deals): 450 ids in three searches of one page each (two IN groups of 100 and 200
    results a page), what ``read`` would return for them, archived and unknown absent."""
    items = [(f"searched:{i}", _deal(f"Searched {i}")) for i in range(450)]
    res = hs.upsert("deals", SRC, items)
    ids = [r.record.id for r in res if r.record is not None]
    assert len(ids) == 450
    assert all(r.ok for r in hs.archive("deals", [ids[7]]))
    srv.portal("main").reset_stats()
    got = hs.read_searched("deals", [*ids, "99999997"], ["dealname", "amount"])
    assert _kinds(srv) == {"search": 3}
    assert sorted(got) == sorted(i for i in ids if i != ids[7])
    rec = got[ids[0]]
    assert rec.properties["dealname"] == "Searched 0"
    assert "amount" in rec.properties and rec.properties["amount"] is None
    batch = hs.read("deals", [ids[0]], ["dealname", "amount"])[ids[0]]
    assert (rec.id, rec.updated_at, rec.archived) == (batch.id, batch.updated_at, False)


def test_changed_since_where_and_until(hs: HubSpotAdapter, srv: SandboxServer) -> None:
    portal = srv.portal("main")
    t0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    stamps = [t0 + timedelta(minutes=i) for i in range(4)]
    ids: list[str] = []
    real = portal.clock
    try:
        for i, moment in enumerate(stamps):
            portal.clock = lambda m=moment: m  # type: ignore[misc]
            ids += portal.seed(
                "deals",
                [_deal(f"W{i}", dealsync_register="true" if i % 2 == 0 else "false")],
            )
    finally:
        portal.clock = real
    got = {r.id for r in hs.changed_since("deals", stamps[0], ["dealname"])}
    assert set(ids) <= got
    got = [r.id for r in hs.changed_since("deals", stamps[0], ["dealname"], until=stamps[2])]
    assert got == ids[:3]  # both bounds inclusive, oldest first
    got = [
        r.id
        for r in hs.changed_since(
            "deals", stamps[1], ["dealname"], where={"dealsync_register": "true"}
        )
    ]
    assert got == [ids[2]]
    recs = list(hs.changed_since("deals", stamps[3], ["dealname", "amount"], until=stamps[3]))
    assert [r.id for r in recs] == [ids[3]]
    assert recs[0].updated_at == stamps[3]
    assert recs[0].properties["amount"] is None and recs[0].properties["dealname"] == "W3"


def test_api_calls_counts_by_kind(srv: SandboxServer) -> None:
    adapter = make_adapter(srv.url, TOKEN)
    assert adapter.api_calls() == {"retries": 0, "wait_ms": 0}
    res = adapter.upsert("deals", SRC, [("calls:1", _deal("Calls"))])
    assert res[0].record is not None
    adapter.read("deals", [res[0].record.id], ["dealname"])
    adapter.find_by_property("deals", SRC, ["calls:1"], [])
    list(adapter.changed_since("deals", adapter.now(), []))
    calls = adapter.api_calls()
    assert calls["batch_upsert"] == 1
    assert calls["batch_read"] == 1
    assert calls["search"] == 2
    assert calls["list_archived"] >= 1
    assert calls["retries"] == 0


# ---------------------------------------------------------------------------- 10k cap


def _seed_at(portal: object, batches: list[tuple[datetime, int]], tag: str) -> list[str]:
    ids: list[str] = []
    real = portal.clock  # type: ignore[attr-defined]
    for moment, n in batches:
        portal.clock = lambda m=moment: m  # type: ignore[attr-defined]
        ids += portal.seed(  # type: ignore[attr-defined]
            "deals", [{"dealname": f"{tag} {len(ids) + i}", **DEAL} for i in range(n)]
        )
    portal.clock = real  # type: ignore[attr-defined]
    return ids


@pytest.mark.parametrize(
    ("layout", "since_days"),
    [
        # 12,000 deals over three instants, everything asked for: the lower bound moves
        ([(0, 4000), (1, 4000), (2, 4000)], None),
        # 10,500 share one instant (more than one search can page through): walked by id
        ([(0, 10_500), (1, 700), (2, 800)], 1),
    ],
    ids=["spread", "same-instant"],
)
def test_changed_since_walks_past_the_10k_search_cap(
    make_server: object, layout: list[tuple[int, int]], since_days: int | None
) -> None:
    srv: SandboxServer = make_server(PortalSpec("big", "big-token"))  # type: ignore[operator]
    portal = srv.portal("big")
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    ids = _seed_at(portal, [(t0 + timedelta(seconds=s), n) for s, n in layout], "Cap")
    assert len(ids) == 12_000
    adapter = make_adapter(srv.url, "big-token")
    since = None if since_days is None else t0 - timedelta(days=since_days)
    portal.reset_stats()
    got = [r.id for r in adapter.changed_since("deals", since, ["dealname"])]
    assert len(got) == 12_000
    assert len(set(got)) == 12_000  # every deal exactly once
    assert set(got) == set(ids)
    stats = settled_stats(srv, "big")
    assert stats["by_kind"]["search"] >= 60  # 12,000 / 200 at least
    assert stats["errors_5xx"] == 0
    assert all(c["status"] == 200 for c in portal.calls)  # never a 400 for paging past 10k
    if since_days is None:
        # a window that starts and ends on one crowded instant sees exactly that instant
        t1 = t0 + timedelta(seconds=1)
        got = [r.id for r in adapter.changed_since("deals", t1, [], until=t1)]
        assert got == ids[4000:8000]


@pytest.mark.parametrize("writes", ["this pass's updates", "a user's archive"])
def test_a_record_written_while_the_search_pages_skips_none_of_the_others(
    make_server: object, caplog: pytest.LogCaptureFixture, writes: str
) -> None:
    """The search pages by offset within the pass's window (modified ≤ until). A record
    of it written while the pages are read — the pass applying a chunk while detection
    searches on, or a user meanwhile — leaves the window, so every later record moves
    up one place: one record nobody changed would be skipped at each write. The
    adapter sees the query's count of matches fall and reads the page again from that
    many records earlier (one search more per such page), so all 450 come, once each,
    and the log says why a page was read again."""
    srv: SandboxServer = make_server(PortalSpec("moving", "moving-token"))  # type: ignore[operator]
    portal = srv.portal("moving")
    t0 = datetime.now(UTC) - timedelta(hours=2)
    ids = _seed_at(portal, [(t0 + timedelta(seconds=i), 1) for i in range(450)], "Moving")
    adapter = make_adapter(srv.url, "moving-token")
    until = datetime.now(UTC) - timedelta(minutes=1)  # the pass's window, frozen
    portal.reset_stats()
    got: list[str] = []
    with caplog.at_level("INFO", logger="dealsync.hubspot"):
        for chunk in adapter.changed_since_chunks(
            "deals", None, ["dealname"], until=until, chunk_size=200, live=True
        ):
            got += [r.id for r in chunk]
            if len(got) < 450:  # written now: its modification time passes `until`
                if writes == "a user's archive":
                    portal.archive("deals", chunk[0].id)
                else:
                    adapter.update("deals", [(chunk[0].id, {"dealname": "edited"})])
    assert sorted(got, key=int) == sorted(ids, key=int)  # none skipped, none twice
    searches = settled_stats(srv, "moving")["by_kind"]["search"]
    assert searches == 3 + 2  # 3 pages, each of the 2 later ones read again once
    assert sum("left the search's window" in r.getMessage() for r in caplog.records) == 2


# ---------------------------------------------------------------------------- retries


@pytest.fixture
def flaky(make_server: object) -> SandboxServer:
    return make_server(PortalSpec("flaky", "flaky-token"))  # type: ignore[operator,no-any-return]


def test_calls_succeed_under_30_percent_5xx(flaky: SandboxServer) -> None:
    portal = flaky.portal("flaky")
    ft = FakeTime()
    adapter = make_adapter(flaky.url, "flaky-token", ft=ft)
    portal.set_faults(FaultSpec(error_rate=0.3, seed=11))
    created = adapter.ensure_properties(SPECS[:1])
    assert created == ["deals.dealsync_source_id"]
    items = [(f"f:{i}", _deal(f"Flaky {i}", amount=str(i))) for i in range(150)]
    results = adapter.upsert("deals", SRC, items)
    assert all(r.ok for r in results)
    ids = [r.record.id for r in results if r.record is not None]
    assert len(adapter.read("deals", ids, ["amount"])) == 150
    assert all(r.ok for r in adapter.update("deals", [(ids[0], {"amount": "999"})]))
    assert len(list(adapter.changed_since("deals", None, ["amount"]))) == 150
    assert len(adapter.find_by_property("deals", SRC, ["f:3", "f:4"], [])) == 2
    assert all(r.ok for r in adapter.associate("deals", "deals", []))
    stats = settled_stats(flaky, "flaky")
    assert stats["errors_5xx"] > 0
    assert adapter.retries == stats["errors_5xx"]
    assert adapter.api_calls()["retries"] == adapter.retries
    assert ft.sleeps and max(ft.sleeps) <= 8.0 * 1.1  # exponential backoff, capped
    portal.set_faults(FaultSpec())
    assert portal.count("deals") == 150  # no duplicates from retried upserts


def test_429_storm_is_waited_out_honouring_retry_after(flaky: SandboxServer) -> None:
    portal = flaky.portal("flaky")
    ft = FakeTime()
    adapter = make_adapter(flaky.url, "flaky-token", ft=ft)
    portal.seed("deals", [_deal("Storm")])
    portal.set_faults(FaultSpec(storm_429_rate=1.0, storm_429_length=3))

    retry_waits: list[float] = []

    def sleep(seconds: float) -> None:  # tenacity's sleep: stop the storm after 3 waits
        retry_waits.append(seconds)
        ft.sleep(seconds)
        if len(retry_waits) == 3:
            portal.set_faults(FaultSpec())

    adapter._sleep = sleep
    ids = [d["id"] for d in portal.all("deals")]
    got = adapter.read("deals", ids, ["dealname"])
    assert len(got) == 1
    assert len(retry_waits) == 3
    assert all(1.0 <= w <= 1.1 for w in retry_waits)  # Retry-After: 1, plus jitter
    assert adapter.rate_limited == 3 and adapter.api_calls()["429"] == 3
    assert settled_stats(flaky, "flaky")["rate_limited"] == 3
    assert adapter.api_calls()["wait_ms"] >= 3000


def test_429_without_retry_after_uses_the_policy_and_gives_up_retriably(
    make_server: object,
) -> None:
    srv: SandboxServer = make_server(PortalSpec("tight", "tight-token"), limits=True)  # type: ignore[operator]
    portal = srv.portal("tight")
    portal.limiter = RateLimiter(3)  # 3 per 10 s, real time: the 4th call is refused
    ft = FakeTime()
    adapter = make_adapter(srv.url, "tight-token", ft=ft, max_attempts=2)
    for _ in range(3):
        adapter.read("deals", ["1"], [])
    # learnt from X-HubSpot-RateLimit-Max
    assert adapter.limits.requests.budget == 3
    adapter.limits = type(adapter.limits)(
        requests=SlidingWindowLimiter(1000, 10.0, clock=ft.clock, sleep=ft.sleep),
        search=adapter.limits.search,
    )
    ft.sleeps.clear()
    with pytest.raises(AdapterError) as info:
        adapter.read("deals", ["1"], [])
    assert info.value.retriable
    assert "429" in str(info.value)
    # TEN_SECONDLY_ROLLING without Retry-After: 10 s, as HubSpot's own SDK waits
    assert ft.sleeps and 10.0 <= ft.sleeps[0] <= 11.0
    assert settled_stats(srv, "tight")["rate_limited"] == 2


def test_validation_errors_are_not_retried(flaky: SandboxServer) -> None:
    portal = flaky.portal("flaky")
    ft = FakeTime()
    adapter = make_adapter(flaky.url, "flaky-token", ft=ft)
    portal.reset_stats()
    with pytest.raises(AdapterError) as info:
        list(adapter.changed_since("deals", None, [], where={"no_such_property": "x"}))
    assert not info.value.retriable
    assert "no_such_property" in str(info.value)
    assert settled_stats(flaky, "flaky")["by_kind"] == {"search": 1}
    # a 207 per-input validation error is not retried either
    portal.reset_stats()
    portal.seed("deals", [_deal("Valid")])
    rid = portal.all("deals")[-1]["id"]
    (res,) = adapter.update("deals", [(rid, {"amount": "not a number"})])
    assert not res.ok
    assert settled_stats(flaky, "flaky")["by_kind"] == {"batch_update": 1}
    assert adapter.retries == 0 and ft.sleeps == []


def test_bad_token_fails_promptly(flaky: SandboxServer) -> None:
    ft = FakeTime()
    adapter = make_adapter(flaky.url, "not-a-token", ft=ft)
    with pytest.raises(AdapterError) as info:
        adapter.read("deals", ["1"], [])
    assert "401" in str(info.value) and not info.value.retriable
    with pytest.raises(AdapterError):
        list(adapter.changed_since("deals", None, []))
    with pytest.raises(AdapterError):
        adapter.ensure_properties(SPECS[:1])
    assert adapter.retries == 0 and ft.sleeps == []


def test_dropped_connections_are_retried_and_upserts_stay_idempotent(
    flaky: SandboxServer,
) -> None:
    portal = flaky.portal("flaky")
    adapter = make_adapter(flaky.url, "flaky-token")
    adapter.ensure_properties(SPECS[:1])
    portal.reset_stats()
    portal.set_faults(FaultSpec(drop_rate=0.35, error_rate=0.1, seed=5))
    items = [(f"drop:{i}", _deal(f"Dropped {i}")) for i in range(120)]
    for _ in range(3):
        assert all(r.ok for r in adapter.upsert("deals", SRC, items))
    assert len(adapter.find_by_property("deals", SRC, [k for k, _ in items[:50]], [])) == 50
    portal.set_faults(FaultSpec())
    assert settled_stats(flaky, "flaky")["dropped"] > 0
    keys = [d["properties"].get(SRC) for d in portal.all("deals")]
    assert len(keys) == 120 and len(set(keys)) == 120


def test_persistent_5xx_becomes_a_retriable_adapter_error(flaky: SandboxServer) -> None:
    portal = flaky.portal("flaky")
    ft = FakeTime()
    adapter = make_adapter(flaky.url, "flaky-token", ft=ft, max_attempts=3)
    portal.reset_stats()
    portal.set_faults(FaultSpec(error_rate=1.0, seed=1))
    try:
        with pytest.raises(AdapterError) as info:
            adapter.upsert("deals", SRC, [("gone:1", _deal("Never"))])
    finally:
        portal.set_faults(FaultSpec())
    assert info.value.retriable
    assert settled_stats(flaky, "flaky")["errors_5xx"] == 3
    assert len(ft.sleeps) == 2


# ---------------------------------------------------------------------------- rate limiter


class _Warp:
    """Real time run ``factor`` times faster, shared by the sandbox's limiter and the
    adapter's, so a 10-second window takes 10/factor real seconds."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.start = time.monotonic()

    def clock(self) -> float:
        return (time.monotonic() - self.start) * self.factor

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds / self.factor)


def test_limiter_keeps_the_adapter_under_the_portal_budget(make_server: object) -> None:
    token = unique_token("limited")
    srv: SandboxServer = make_server(  # type: ignore[operator]
        PortalSpec("limited", token, rate_limit_per_10s=20, search_rate_per_s=5), limits=True
    )
    portal = srv.portal("limited")
    warp = _Warp(5.0)
    portal.limiter = RateLimiter(20, now=warp.clock)
    adapter = HubSpotAdapter(
        token=token, host=srv.url, name="limited", rate_limit_per_10s=20, search_rate_per_s=5
    )
    adapter.limits.requests.clock = warp.clock
    adapter.limits.requests.sleep = warp.sleep
    ids = portal.seed("deals", [_deal(f"L{i}") for i in range(5)])
    for i in range(45):
        adapter.read("deals", [ids[i % 5]], ["dealname"])
    # and the search limit (5/s, real time): a burst of 12 searches
    for _ in range(12):
        adapter.find_by_property("deals", "dealname", ["L1"], [])
    stats = settled_stats(srv, "limited")
    assert stats["by_kind"] == {"batch_read": 45, "search": 12}
    assert stats["rate_limited"] == 0
    assert adapter.rate_limited == 0 and adapter.retries == 0
    assert adapter.limits.requests.waited > 0  # it had to hold back


def test_sliding_window_limiter_respects_budget_in_any_window() -> None:
    ft = FakeTime()
    lim = SlidingWindowLimiter(budget=10, window=10.0, margin=1, clock=ft.clock, sleep=ft.sleep)
    sent: list[float] = []
    for i in range(100):
        lim.acquire()
        sent.append(ft.now)
        if i % 7 == 0:
            ft.now += 0.3  # some think time between calls
    for t in sent:
        in_window = [s for s in sent if t <= s < t + 10.0]
        assert len(in_window) <= 9  # budget minus the safety margin
    assert lim.waited > 0 and sum(ft.sleeps) == pytest.approx(lim.waited)
    # nothing waits while under budget
    fresh = SlidingWindowLimiter(budget=5, window=10.0, clock=ft.clock, sleep=ft.sleep)
    assert [fresh.acquire() for _ in range(5)] == [0.0] * 5
    assert fresh.acquire() > 0


def test_sliding_window_limiter_learns_from_headers() -> None:
    ft = FakeTime()
    lim = SlidingWindowLimiter(budget=100, window=10.0, margin=5, clock=ft.clock, sleep=ft.sleep)
    lim.learn({"X-HubSpot-RateLimit-Max": "40", "X-HubSpot-RateLimit-Remaining": "30"})
    assert lim.budget == 40 and lim.effective_budget == 35
    lim.learn({"x-hubspot-ratelimit-max": "190"})  # never raised above what was configured
    assert lim.budget == 40
    lim.learn({"X-HubSpot-RateLimit-Interval-Milliseconds": "20000"})
    assert lim.window == 20.0
    lim.learn({"X-HubSpot-RateLimit-Max": "junk"})  # ignored
    lim.learn(None)
    assert lim.budget == 40
    # somebody else is spending the portal: Remaining at or under the margin pauses
    assert lim.acquire() == 0.0
    lim.learn({"X-HubSpot-RateLimit-Max": "40", "X-HubSpot-RateLimit-Remaining": "0"})
    assert lim.acquire() > 0
    # pause() after a 429 holds everything back for that long
    t = ft.now
    lim.pause(3.0)
    lim.acquire()
    assert ft.now >= t + 3.0


# ---------------------------------------------------------------------------- streaming


def test_changed_since_chunks_hands_over_every_record_once_with_associations(
    make_server: object,
) -> None:
    """2,300 changed deals come in chunks of at most 1,000 (the association batch read),
    each with its associations, the recycle bin's archived records in the last chunk;
    streaming costs no call more than reading the whole window at once."""
    srv: SandboxServer = make_server(PortalSpec("chunks", "chunks-token"))  # type: ignore[operator]
    portal = srv.portal("chunks")
    deals = portal.seed("deals", [{"dealname": f"Chunk {i}", **DEAL} for i in range(2300)])
    company = portal.seed("companies", [{"name": "Chunk Co"}])[0]
    for d in deals[::250]:
        portal.associate("deals", d, "companies", company)
    adapter = make_adapter(srv.url, "chunks-token")
    since = adapter.now() - timedelta(days=1)
    assert all(r.ok for r in adapter.archive("deals", [deals[7]]))
    portal.reset_stats()
    chunks = list(
        adapter.changed_since_chunks(
            "deals", since, ["dealname"], associations=["companies"], chunk_size=1000
        )
    )
    streamed = dict(_kinds(srv, "chunks"))
    assert [len(c) for c in chunks] == [1000, 1000, 300]
    ids = [r.id for c in chunks for r in c]
    assert len(ids) == len(set(ids)) == 2300
    assert [r.id for r in chunks[-1] if r.archived] == [deals[7]]
    assert not any(r.archived for c in chunks[:-1] for r in c)
    with_company = {r.id for c in chunks for r in c if r.associations.get("companies")}
    assert with_company == set(deals[::250]) - {deals[7]}
    portal.reset_stats()
    whole = list(adapter.changed_since("deals", since, ["dealname"], associations=["companies"]))
    assert sorted(r.id for r in whole) == sorted(ids)
    assert streamed == dict(_kinds(srv, "chunks"))  # same calls, chunked or not
    assert streamed["assoc_batch_read"] == 3


def test_associations_are_created_2000_per_call(make_server: object) -> None:
    srv: SandboxServer = make_server(PortalSpec("assoc", "assoc-token"))  # type: ignore[operator]
    portal = srv.portal("assoc")
    deals = portal.seed("deals", [{"dealname": f"A {i}", **DEAL} for i in range(2500)])
    companies = portal.seed("companies", [{"name": f"A {i}"} for i in range(2500)])
    adapter = make_adapter(srv.url, "assoc-token")
    portal.reset_stats()
    out = adapter.associate("deals", "companies", list(zip(deals, companies, strict=True)))
    assert len(out) == 2500 and all(r.ok for r in out)
    assert _kinds(srv, "assoc") == {"assoc_batch_create": 2}
    got = adapter.read("deals", deals[-3:], [], associations=["companies"])
    assert [got[d].associations["companies"] for d in deals[-3:]] == [(c,) for c in companies[-3:]]


def test_background_calls_leave_the_pass_half_of_the_window() -> None:
    """The background writer's calls (a pass's status write-back) stop at half the
    window's budget while the pass still reads, so a burst of them never holds the
    pass's own calls up a whole window; once the pass waits for them they take it all."""
    ft = FakeTime()
    limiter = SlidingWindowLimiter(100, 10.0, margin=4, clock=ft.clock, sleep=ft.sleep)
    reserve = Reserve()
    with background(reserve):
        for _ in range(48):
            assert limiter.acquire() == 0.0
        ft.sleeps.clear()
        limiter.acquire()  # the 49th waits for the window to roll
    assert ft.sleeps and ft.sleeps[0] > 0
    before = ft.now
    for _ in range(47):  # the pass's own calls still have their half (96 - 49)
        assert limiter.acquire() == 0.0
    assert ft.now == before
    ft2 = FakeTime()
    limiter2 = SlidingWindowLimiter(100, 10.0, margin=4, clock=ft2.clock, sleep=ft2.sleep)
    reserve.divisor = 0  # the pass waits on the writes now
    with background(reserve):
        for _ in range(96):
            assert limiter2.acquire() == 0.0
