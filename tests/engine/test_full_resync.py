"""``sync --full`` and ``resync``: drift detection did not see is merged by the
fields' rules, reading every linked record by id (the batch minimum of calls), and a
pass with nothing drifted writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connector.api import DealsyncError
from connector.config.models import ObjectMapping
from connector.engine.sync import SyncPass
from connector.records import Record

if TYPE_CHECKING:
    from tests.conftest import MakeWorld, World

PARTNER = "acme"
HOUR = timedelta(hours=1)
OBJECTS = ("companies", "contacts", "deals")


def vendor_deal(world: World, partner_id: str) -> Record:
    record = world.counterpart("deals", partner_id)
    assert record is not None, f"no vendor deal for partner deal {partner_id}"
    return record


def edit_behind_the_back(world: World, obj: str, vendor_id: str, props: dict[str, str]) -> None:
    """A vendor edit detection never sees: the vendor cursor is moved past it (as when
    a search missed it and a later pass's cursor passed it)."""
    world.vendor.edit(obj, vendor_id, props)
    world.clock.advance(HOUR)
    world.store.set_cursors(PARTNER, {("vendor", o): world.vendor.now() for o in OBJECTS})


def quiet(world: World, **kwargs: object) -> None:
    """A pass (``kwargs``: full, ...) that writes nothing and touches no record."""
    before_writes, before = world.writes(), world.snapshot()
    result = world.sync(**kwargs)
    assert result.status == "ok", result.as_dict()
    assert world.writes() == before_writes, result.plan.summary()
    assert world.snapshot() == before


@pytest.mark.usefixtures("detect_chunk")
def test_full_pass_repairs_a_vendor_edit_detection_did_not_see(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    edit_behind_the_back(world, "deals", vid, {"amount": "2750.50"})

    quiet(world)  # a normal pass does not see it: the pair has drifted apart
    assert world.partner.get("deals", seeded.id).get("amount") == "1500.00"

    result = world.sync(full=True)
    assert result.status == "ok"
    assert result.plan.counts() == {"update partner deals": 1}
    assert result.counts["full_checked"] == 3  # one deal, its company, its contact
    # a vendor change (the partner still has the base's value) flows to the partner
    assert world.partner.get("deals", seeded.id).get("amount") == "2750.5"
    link = world.link("deals", seeded.id)
    assert link is not None and link.base["amount>amount"] == ["2750.5", "2750.5"]

    quiet(world, full=True)  # nothing drifted any more: a full pass writes nothing
    quiet(world)


@pytest.mark.usefixtures("detect_chunk")
def test_full_pass_merges_a_detected_change_with_its_counterparts_unseen_drift(
    world: World,
) -> None:
    """The partner's amount edit is detected; the vendor's later edit of the same field
    is not. A normal pass would take the vendor's value for the base and overwrite it;
    a full pass reads the counterpart too, sees both changed, and the field's policy
    (``newest``) keeps the vendor's later value."""
    seeded = world.seed_deal()
    world.sync()
    world.clock.advance(HOUR)
    world.partner.edit("deals", seeded.id, {"amount": "1600"})
    edit_behind_the_back(world, "deals", vendor_deal(world, seeded.id).id, {"amount": "1700"})

    result = world.sync(full=True)
    assert result.plan.counts() == {"update partner deals": 1}
    assert world.partner.get("deals", seeded.id).get("amount") == "1700"
    assert vendor_deal(world, seeded.id).get("amount") == "1700"
    quiet(world, full=True)


@pytest.mark.usefixtures("detect_chunk")
def test_full_pass_repairs_an_edit_that_cleared_the_connections_marker(world: World) -> None:
    """Detection finds a connection's vendor records by their partner marker (HubSpot
    searches filter on it); an unseen edit that also cleared it would stay unseen for
    good. A full pass reads the pair by id, merges the edit and puts the marker back,
    so the record's later edits are detected again."""
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    edit_behind_the_back(world, "deals", vid, {"amount": "3000", "dealsync_partner_id": ""})
    quiet(world)

    result = world.sync(full=True)
    assert result.plan.counts() == {"update partner deals": 1, "update vendor deals": 1}
    assert world.partner.get("deals", seeded.id).get("amount") == "3000"
    assert world.vendor.get("deals", vid).get("dealsync_partner_id") == PARTNER
    quiet(world, full=True)

    world.clock.advance(HOUR)
    world.vendor.edit("deals", vid, {"amount": "3100"})
    world.sync()  # a normal pass sees it again
    assert world.partner.get("deals", seeded.id).get("amount") == "3100"


def test_a_vendor_record_marked_for_another_partner_is_reported_not_taken(
    world: World,
) -> None:
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    world.vendor.edit("deals", vid, {"dealsync_partner_id": "beta"})
    world.clock.advance(HOUR)
    result = world.sync(full=True)
    assert result.counts["marker_foreign"] == 1
    assert world.vendor.get("deals", vid).get("dealsync_partner_id") == "beta"
    assert result.run_id is not None
    _, logged = world.app.run(result.run_id)
    [row] = [r for r in logged if r.outcome == "skipped"]
    assert row.record_id == vid and "marked for partner beta" in (row.detail or "")


def test_full_pass_sets_a_one_way_mirror_back_from_its_source(make_world: MakeWorld) -> None:
    world = make_world(
        lambda text: text.replace(
            "- partner: description\n        vendor: description\n        direction: both",
            "- partner: description\n        vendor: description\n        direction: to_vendor",
        )
    )
    seeded = world.seed_deal(description="partner's notes")
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    edit_behind_the_back(world, "deals", vid, {"description": "edited at the vendor"})
    quiet(world)

    result = world.sync(full=True)
    assert result.plan.counts() == {"update vendor deals": 1}
    assert world.vendor.get("deals", vid).get("description") == "partner's notes"
    quiet(world, full=True)


@pytest.mark.parametrize("stale_search", [False, True], ids=["fresh-search", "stale-search"])
def test_full_pass_reads_by_id_in_batches_and_finds_nothing_to_write(
    world: World, stale_search: bool
) -> None:
    """250 linked deals: the full pass reads each side's records by id, 100 per call
    (3 calls for the deals), and writes nothing when nothing drifted. On a CRM whose
    search may be stale (HubSpot) records just read by id are not read a second time."""
    if stale_search:
        for crm in (world.partner, world.vendor):
            crm.search_may_be_stale = True  # type: ignore[attr-defined]
    for _ in range(250):
        world.seed_deal(contacts=0)
    world.sync()
    for _ in range(2):  # past the detection overlap: a normal pass now detects nothing
        world.clock.advance(HOUR)
        world.sync()
    reads = {"p": world.partner.calls["batch_read"], "v": world.vendor.calls["batch_read"]}
    result = world.sync(full=True)
    assert result.counts["full_checked"] == 500  # 250 deals, 250 companies
    assert result.plan.summary() == "nothing to do"
    assert world.partner.calls["batch_read"] - reads["p"] == 6  # 3 for deals, 3 for companies
    assert world.vendor.calls["batch_read"] - reads["v"] == 6


def test_full_dry_run_plans_the_repair_and_writes_nothing(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    edit_behind_the_back(world, "deals", vendor_deal(world, seeded.id).id, {"amount": "99"})
    before_writes, before = world.writes(), world.snapshot()
    result = world.sync(full=True, dry_run=True)
    assert result.plan.counts() == {"update partner deals": 1}
    assert world.writes() == before_writes and world.snapshot() == before
    world.sync(full=True)
    assert world.partner.get("deals", seeded.id).get("amount") == "99"


def test_resync_repairs_one_pair_by_either_sides_id(world: World) -> None:
    one, two = world.seed_deal(), world.seed_deal()
    world.sync()
    v1, v2 = vendor_deal(world, one.id).id, vendor_deal(world, two.id).id
    edit_behind_the_back(world, "deals", v1, {"amount": "11"})
    edit_behind_the_back(world, "deals", v2, {"amount": "22"})

    dry = world.app.resync("deals", one.id, dry_run=True)
    assert dry.plan.counts() == {"update partner deals": 1}
    assert world.partner.get("deals", one.id).get("amount") == "1500.00"

    result = world.app.resync("deals", one.id)
    assert result.status == "ok"
    assert world.partner.get("deals", one.id).get("amount") == "11"
    assert world.partner.get("deals", two.id).get("amount") == "1500.00"  # only that pair

    world.app.resync("deals", v2, side="vendor")
    assert world.partner.get("deals", two.id).get("amount") == "22"
    again = world.app.resync("deals", v2, side="vendor")
    assert again.plan.summary() == "nothing to do"


def test_resync_of_an_unlinked_or_unknown_record_names_it(world: World) -> None:
    seeded = world.seed_deal(registered=False)
    world.sync()
    with pytest.raises(DealsyncError, match=rf"deals {seeded.id} \(partner id\) is not linked"):
        world.app.resync("deals", seeded.id)
    with pytest.raises(DealsyncError, match=r"deals 999999 \(vendor id\) is not linked"):
        world.app.resync("deals", "999999", side="vendor")
    with pytest.raises(DealsyncError, match="no mapping object 'dealz'"):
        world.app.resync("dealz", seeded.id)


@pytest.mark.parametrize("hooks", ["engine", "program"])
def test_full_pass_streams_linked_pairs_one_chunk_at_a_time(
    make_world: MakeWorld, hooks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five linked deals drifted behind dealsync's back, a chunk size of 2: the full
    pass reads the deals by id two pairs at a time (calls of 2, 2, 1 ids per side),
    writes each chunk's repairs before reading the next chunk, and keeps no record's
    properties once its chunk is applied — with the program's hooks (the CLI's
    default) as without: memory is one chunk of records, whatever is linked."""
    world = make_world(program_hooks=hooks == "program")
    deals = [world.seed_deal() for _ in range(5)]
    world.sync()
    for i, seeded in enumerate(deals):
        edit_behind_the_back(
            world, "deals", vendor_deal(world, seeded.id).id, {"amount": f"{2000 + i}.00"}
        )
    quiet(world)  # a normal pass sees none of it

    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 2)
    log: list[tuple[str, str, int]] = []
    for side, crm in (("partner", world.partner), ("vendor", world.vendor)):
        for call in ("read", "update"):
            inner = getattr(crm, call)

            def record(
                obj: str,
                items: Any,
                *a: Any,
                _c: str = call,
                _s: str = side,
                _f: Any = inner,
                **kw: Any,
            ) -> Any:
                if obj == "deals":
                    log.append((f"{_s}.{_c}", obj, len(list(items))))
                return _f(obj, items, *a, **kw)

            monkeypatch.setattr(crm, call, record)
    held: list[int] = []
    done = SyncPass._mapping_done

    def count_held(self: SyncPass, mapping: ObjectMapping) -> None:
        acc = self._acc.get(mapping.name, ({}, {}))
        held.append(sum(1 for recs in acc for r in recs.values() if r.properties))
        done(self, mapping)

    monkeypatch.setattr(SyncPass, "_mapping_done", count_held)
    result = world.sync(full=True)

    assert result.status == "ok", result.as_dict()
    assert result.plan.counts() == {"update partner deals": 5}
    assert [n for call, _, n in log if call == "vendor.read"] == [2, 2, 1]
    assert [n for call, _, n in log if call == "partner.read"] == [2, 2, 1]
    calls = [call for call, _, _ in log]
    # the first chunk's repair is written before the last chunk is read
    assert calls.index("partner.update") < len(calls) - 1 - calls[::-1].index("vendor.read")
    assert held and max(held) == 0  # nothing was detected: no record kept whole
    for i, seeded in enumerate(deals):
        assert world.partner.get("deals", seeded.id).get("amount") == f"{2000 + i}"
    quiet(world, full=True)
