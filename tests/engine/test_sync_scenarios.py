"""Scenarios of whole passes: put records on each side, sync, check both sides and the
state (Unison's ``test.ml`` style, on two embedded CRMs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connector.adapters.base import AdapterError
from connector.api import DealsyncError
from connector.cli.sync import print_result
from connector.engine.plan import Associate
from connector.engine.sync import SOURCE_ID, PassAborted, PassResult, crash_points
from connector.state.store import LockHeld

# every scenario also runs with detection streaming one record at a time
pytestmark = pytest.mark.usefixtures("detect_chunk")

if TYPE_CHECKING:
    from tests.conftest import MakeWorld, World

PARTNER = "acme"

HOUR = timedelta(hours=1)


def crash_on(point: str) -> Callable[[str], None]:
    def crash(at: str) -> None:
        if at == point:
            raise PassAborted(at)

    return crash


def quiet_pass(world: World) -> PassResult:
    """Run a pass and assert it wrote nothing and touched no record."""
    result = world.quiet_sync()
    assert result.counts.get("failed", 0) == 0
    assert not [k for k in result.counts if k.startswith(("created", "updated", "archived"))]
    return result


def both_edit(world: World, partner_id: str, field: str, on_partner: str, on_vendor: str) -> None:
    """Both sides change ``field`` of a synced deal before the next pass."""
    world.partner.edit("deals", partner_id, {field: on_partner})
    world.vendor.edit("deals", vendor_deal(world, partner_id).id, {field: on_vendor})


def vendor_deal(world: World, partner_id: str) -> Any:
    record = world.counterpart("deals", partner_id)
    assert record is not None, f"no vendor deal for partner deal {partner_id}"
    return record


# ---------------------------------------------------------------------- creation


def test_registered_deal_is_created_at_the_vendor_with_company_contacts_and_associations(
    world: World,
) -> None:
    seeded = world.seed_deal(contacts=2, amount="1500.00", description="first look")
    result = world.sync()

    assert result.status == "ok" and result.exit_code == 0
    deal = vendor_deal(world, seeded.id)
    assert deal.properties["dealname"] == seeded.deal.properties["dealname"]
    assert deal.properties["amount"] == "1500"
    assert deal.properties["closedate"] == "2027-03-31"
    assert deal.properties["dealstage"] == "qualifiedtobuy"
    assert deal.properties["pipeline"] == "default"
    assert deal.properties["description"] == "first look"
    assert deal.properties["dealsync_partner_id"] == PARTNER
    assert "dealsync_register" not in deal.properties  # not a mapped field

    company = world.counterpart("companies", seeded.company.id)
    contacts = [world.counterpart("contacts", c.id) for c in seeded.contacts]
    assert company is not None and company.properties["domain"] == "company1.com"
    assert all(c is not None for c in contacts)
    assert deal.associations["companies"] == (company.id,)
    assert set(deal.associations["contacts"]) == {c.id for c in contacts if c}
    assert len(world.vendor.all("deals")) == 1
    assert len(world.vendor.all("companies")) == 1
    assert len(world.vendor.all("contacts")) == 2

    link = world.link("deals", seeded.id)
    assert link is not None and link.status == "active" and link.vendor_id == deal.id
    assert link.base["amount>amount"] == ["1500", "1500"]
    assert link.base["@assoc:companies"] == [seeded.company.id]
    for c in seeded.contacts:
        contact_link = world.link("contacts", c.id)
        assert contact_link is not None and contact_link.status == "active"
    for side in ("partner", "vendor"):
        assert world.store.cursor(PARTNER, side, "deals") is not None  # type: ignore[arg-type]

    records = world.store.run_records(result.run_id or 0)
    assert {(r.object, r.action, r.outcome) for r in records} >= {
        ("deals", "create", "ok"),
        ("companies", "create", "ok"),
        ("contacts", "create", "ok"),
    }


def test_unregistered_deal_is_never_mirrored(world: World) -> None:
    private = world.seed_deal(registered=False)
    shared = world.seed_deal()
    world.sync()
    world.partner.edit("deals", private.id, {"amount": "99999"})
    world.partner.edit("companies", private.company.id, {"website": "private.example"})
    world.sync()

    assert world.counterpart("deals", private.id) is None
    assert world.counterpart("companies", private.company.id) is None
    assert world.counterpart("contacts", private.contacts[0].id) is None
    assert world.link("deals", private.id) is None
    assert [d.get(SOURCE_ID) for d in world.vendor.all("deals")] == [f"{PARTNER}:{shared.id}"]


def test_vendor_records_of_other_partners_are_left_alone(world: World) -> None:
    """The vendor portal holds every partner's deals; a connection only sees its own."""
    other = world.vendor.create(
        "deals", {"dealname": "Theirs", "amount": "5", "dealsync_partner_id": "globex"}
    )
    world.seed_deal()
    world.sync()
    world.vendor.edit("deals", other.id, {"amount": "6"})
    quiet_pass(world)
    assert len(world.partner.all("deals")) == 1


# ---------------------------------------------------------------------- changes


def test_vendor_change_flows_back_and_the_base_moves(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    world.vendor.edit(
        "deals",
        vendor_deal(world, seeded.id).id,
        {
            "amount": "2750.50",
            "dealstage": "contractsent",
            "closedate": "2027-06-30",
        },
    )
    result = world.sync()

    assert result.status == "ok"
    partner = world.partner.get("deals", seeded.id).properties
    assert (partner["amount"], partner["dealstage"], partner["closedate"]) == (
        "2750.5",
        "contractsent",
        "2027-06-30",
    )
    link = world.link("deals", seeded.id)
    assert link is not None
    assert link.base["amount>amount"] == ["2750.5", "2750.5"]
    assert link.base["dealstage>dealstage"] == ["contractsent", "contractsent"]
    quiet_pass(world)


def test_partner_change_flows_to_the_vendor(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    world.partner.edit("deals", seeded.id, {"description": "now with notes", "amount": "1600"})
    world.sync()
    vendor = vendor_deal(world, seeded.id).properties
    assert (vendor["description"], vendor["amount"]) == ("now with notes", "1600")
    quiet_pass(world)


def test_create_only_name_is_not_synced_after_creation(world: World) -> None:
    seeded = world.seed_deal(name="Original")
    world.sync()
    both_edit(world, seeded.id, "dealname", "Partner rename", "Vendor rename")
    world.sync()
    assert world.partner.get("deals", seeded.id).properties["dealname"] == "Partner rename"
    assert vendor_deal(world, seeded.id).properties["dealname"] == "Vendor rename"
    quiet_pass(world)


def test_two_sided_edit_is_settled_by_each_fields_policy(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    # amount (newest): the vendor edits last → vendor value; stage (vendor_wins) → vendor
    world.partner.edit("deals", seeded.id, {"amount": "1000", "dealstage": "closedlost"})
    world.vendor.edit("deals", vid, {"amount": "2000", "dealstage": "contractsent"})
    result = world.sync()
    assert result.status == "ok" and result.open_conflicts == 0
    for record in (world.partner.get("deals", seeded.id), world.vendor.get("deals", vid)):
        assert record.properties["amount"] == "2000"
        assert record.properties["dealstage"] == "contractsent"

    # closedate (newest): now the partner edits last → partner value
    world.vendor.edit("deals", vid, {"closedate": "2027-05-01"})
    world.partner.edit("deals", seeded.id, {"closedate": "2027-09-09"})
    world.sync()
    assert vendor_deal(world, seeded.id).properties["closedate"] == "2027-09-09"
    assert world.partner.get("deals", seeded.id).properties["closedate"] == "2027-09-09"
    quiet_pass(world)


def test_both_sides_making_the_same_edit_writes_nothing(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    both_edit(world, seeded.id, "amount", "3000.00", "3000")
    before = world.writes()
    world.sync()
    assert world.writes() == before
    link = world.link("deals", seeded.id)
    assert link is not None and link.base["amount>amount"] == ["3000", "3000"]


# ---------------------------------------------------------------------- quiet passes


def test_a_pass_right_after_a_pass_writes_nothing(world: World) -> None:
    for _ in range(3):
        world.seed_deal(contacts=2)
    world.seed_deal(registered=False)
    first = world.sync()
    assert first.counts["created vendor deals"] == 3
    result = quiet_pass(world)
    assert result.plan.actions == [] and result.status == "ok"
    quiet_pass(world)


def test_echo_of_the_connectors_own_writes_is_suppressed(world: World) -> None:
    """The partner write made for a vendor change comes back as a change equal to the
    base and does nothing, on either side."""
    seeded = world.seed_deal()
    world.sync()
    world.vendor.edit("deals", vendor_deal(world, seeded.id).id, {"amount": "4321"})
    world.sync()  # writes the partner side; that write is now in the partner's window
    result = quiet_pass(world)
    assert result.plan.summary() == "nothing to do"


def test_canonically_equal_values_are_not_echoed(world: World) -> None:
    """The partner keeps "1500.00", the vendor stores "1500": no change, no write."""
    seeded = world.seed_deal(amount="1500.00")
    world.sync()
    assert world.partner.get("deals", seeded.id).properties["amount"] == "1500.00"
    world.partner.edit("deals", seeded.id, {"amount": "1500.000"})
    quiet_pass(world)


# ---------------------------------------------------------------------- manual conflicts


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        pytest.param({"take": "partner"}, "Partner notes", id="take-partner"),
        pytest.param({"take": "vendor"}, "Vendor notes", id="take-vendor"),
        pytest.param({"value": "Agreed notes"}, "Agreed notes", id="value"),
    ],
)
def test_manual_conflict_opened_listed_resolved_then_quiet(
    world: World, how: dict[str, str], expected: str
) -> None:
    seeded = world.seed_deal(description="Base notes")
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    both_edit(world, seeded.id, "description", "Partner notes", "Vendor notes")

    result = world.sync()
    assert (result.status, result.exit_code, result.open_conflicts) == ("conflicts", 1, 1)
    [conflict] = world.store.conflicts(PARTNER)
    assert (conflict.object, conflict.partner_id, conflict.vendor_id) == ("deals", seeded.id, vid)
    assert conflict.field == "description>description"
    assert (conflict.partner_value, conflict.vendor_value) == ("Partner notes", "Vendor notes")
    assert (conflict.base_partner, conflict.base_vendor) == ("Base notes", "Base notes")
    # both sides left as they are, base unchanged
    assert world.partner.get("deals", seeded.id).properties["description"] == "Partner notes"
    assert world.vendor.get("deals", vid).properties["description"] == "Vendor notes"
    link = world.link("deals", seeded.id)
    assert link is not None and link.base["description>description"] == ["Base notes"] * 2

    # a pass with the conflict still open neither writes nor opens a second row
    again = quiet_pass(world)
    assert again.status == "conflicts" and len(world.store.conflicts(PARTNER)) == 1

    resolved = world.app.resolve_conflict(conflict.id or 0, **how)  # type: ignore[arg-type]
    assert resolved.status == "resolved" and resolved.resolution
    assert world.store.conflicts(PARTNER) == []
    assert world.partner.get("deals", seeded.id).properties["description"] == expected
    assert world.vendor.get("deals", vid).properties["description"] == expected

    after = quiet_pass(world)
    assert after.status == "ok" and after.exit_code == 0
    assert world.store.conflicts(PARTNER) == []


def test_resolving_twice_or_unknown_conflict_is_a_clean_error(world: World) -> None:
    seeded = world.seed_deal(description="x")
    world.sync()
    both_edit(world, seeded.id, "description", "p", "v")
    world.sync()
    [conflict] = world.store.conflicts(PARTNER)
    with pytest.raises(DealsyncError, match="exactly one"):
        world.app.resolve_conflict(conflict.id or 0)
    world.app.resolve_conflict(conflict.id or 0, take="vendor")
    with pytest.raises(DealsyncError, match="already resolved"):
        world.app.resolve_conflict(conflict.id or 0, take="vendor")
    with pytest.raises(DealsyncError, match="no conflict #999"):
        world.app.resolve_conflict(999, take="vendor")


def test_conflict_that_settles_by_itself_is_closed(world: World) -> None:
    seeded = world.seed_deal(description="x")
    world.sync()
    both_edit(world, seeded.id, "description", "p", "v")
    world.sync()
    assert len(world.store.conflicts(PARTNER)) == 1
    world.partner.edit("deals", seeded.id, {"description": "v"})  # the partner gives in
    result = world.sync()
    assert result.status == "ok"
    assert world.store.conflicts(PARTNER) == []
    quiet_pass(world)


# ---------------------------------------------------------------------- crashes


def test_crash_between_upsert_and_link_is_adopted_not_duplicated(world: World) -> None:
    seeded = world.seed_deal()
    with pytest.raises(PassAborted):
        world.sync(crash_at=crash_on("after_write:deals"))
    assert len(world.vendor.all("deals")) == 1  # the write happened...
    link = world.link("deals", seeded.id)
    assert link is not None and link.status == "pending"  # ...the link did not complete

    result = world.sync()
    assert result.status == "ok"
    assert len(world.vendor.all("deals")) == 1
    deal = vendor_deal(world, seeded.id)
    link = world.link("deals", seeded.id)
    assert link is not None and (link.status, link.vendor_id) == ("active", deal.id)
    details = [r.detail or "" for r in world.store.run_records(result.run_id or 0)]
    assert any("adopted existing" in d for d in details)
    quiet_pass(world)


def _scenario_before(world: World) -> None:
    """Some history, then pending work of every kind for the pass under test."""
    kept = world.seed_deal(contacts=2, description="notes")
    edited = world.seed_deal()
    gone = world.seed_deal()
    world.sync()
    world.clock.advance(HOUR)
    world.vendor.edit("deals", vendor_deal(world, kept.id).id, {"dealstage": "contractsent"})
    world.partner.edit("deals", edited.id, {"amount": "777", "closedate": "2027-12-01"})
    world.partner.edit("companies", edited.company.id, {"website": "edited.example"})
    world.partner.remove("deals", gone.id)
    world.seed_deal(contacts=2)  # a new registered deal: creates of every object


def _final_state(world: World) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for side, crm in (("partner", world.partner), ("vendor", world.vendor)):
        for obj in ("companies", "contacts", "deals"):
            state[f"{side}.{obj}"] = sorted(
                (
                    r.id,
                    r.archived,
                    sorted(r.properties.items()),
                    sorted((k, v) for k, v in r.associations.items() if v),
                )
                for r in crm.all(obj) + crm.all(obj, archived=True)
            )
    for obj in ("companies", "contacts", "deals"):
        state[f"links.{obj}"] = sorted(
            (lk.partner_id, lk.vendor_id, lk.status, sorted(lk.base.items()))
            for lk in world.store.links(
                PARTNER, obj, ("pending", "active", "flagged", "unlinked", "deleted")
            )
        )
    state["conflicts"] = [(c.field, c.status) for c in world.store.conflicts(PARTNER, None)]
    state["retries"] = world.store.retry_count(PARTNER)
    return state


def _points_of_an_uninterrupted_pass(make_world: MakeWorld) -> list[str]:
    world = make_world(name="probe")
    _scenario_before(world)
    seen: list[str] = []
    world.sync(crash_at=seen.append)
    return seen


CRASH_POINTS = crash_points(["companies", "contacts", "deals"])


def _reference_and_crashed(make_world: MakeWorld) -> tuple[World, World]:
    """Two worlds after the scenario: ``reference`` synced twice without a crash, and
    ``crashed``, about to be crashed and rerun until it should look the same."""
    reference = make_world(name="reference")
    _scenario_before(reference)
    reference.sync()
    reference.sync()
    crashed = make_world(name="crashed")
    _scenario_before(crashed)
    return reference, crashed


def test_the_crash_scenario_reaches_every_named_point(make_world: MakeWorld) -> None:
    assert set(CRASH_POINTS) <= set(_points_of_an_uninterrupted_pass(make_world))


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_any_point_then_rerun_converges_like_an_uninterrupted_run(
    make_world: MakeWorld, point: str
) -> None:
    reference, crashed = _reference_and_crashed(make_world)
    with pytest.raises(PassAborted):
        crashed.sync(crash_at=crash_on(point))
    result = crashed.sync()
    assert result.status == "ok", result.errors
    crashed.sync()

    assert _final_state(crashed) == _final_state(reference)
    quiet_pass(crashed)


def test_crash_on_every_pass_until_none_left_still_converges(make_world: MakeWorld) -> None:
    """Crash at each point in turn, one after the other, then finish."""
    reference, crashed = _reference_and_crashed(make_world)
    for point in CRASH_POINTS:
        with contextlib.suppress(PassAborted):
            crashed.sync(crash_at=crash_on(point))
    crashed.sync()
    crashed.sync()
    assert _final_state(crashed) == _final_state(reference)


# ---------------------------------------------------------------------- deletes


def test_archiving_a_partner_deal_archives_the_vendor_counterpart(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    world.partner.remove("deals", seeded.id)
    result = world.sync()
    assert result.status == "ok"
    assert world.vendor.get("deals", vid).archived
    assert world.vendor.all("deals") == []
    link = world.store.link(world.store.links(PARTNER, "deals", ("deleted",))[0].id or 0)
    assert link is not None and link.status == "deleted"
    assert world.link("deals", seeded.id) is None  # no longer live
    quiet_pass(world)


def test_archiving_a_vendor_deal_archives_the_partner_deal(world: World) -> None:
    seeded = world.seed_deal()
    world.sync()
    world.vendor.remove("deals", vendor_deal(world, seeded.id).id)
    world.sync()
    assert world.partner.get("deals", seeded.id).archived
    quiet_pass(world)


def _policy(policy: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert "on_delete: archive" in text
        return text.replace("on_delete: archive", f"on_delete: {policy}")

    return edit


def test_flag_policy_flags_the_link_and_never_recreates(make_world: MakeWorld) -> None:
    world = make_world(_policy("flag"))
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    world.vendor.remove("deals", vid)
    result = world.sync()
    assert result.counts["flagged deals"] == 1
    assert not world.partner.get("deals", seeded.id).archived
    [flagged] = world.store.links(PARTNER, "deals", ("flagged",))
    assert flagged.partner_id == seeded.id

    world.partner.edit("deals", seeded.id, {"amount": "1", "description": "still working it"})
    world.sync()
    assert world.vendor.all("deals") == []  # not re-created
    assert len(world.vendor.all("deals", archived=True)) == 1
    quiet_pass(world)


@pytest.mark.parametrize("gone", ["partner", "vendor"])
def test_unlink_policy_keeps_the_counterpart_and_stops_syncing(
    make_world: MakeWorld, gone: str
) -> None:
    world = make_world(_policy("unlink"))
    seeded = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    if gone == "partner":
        world.partner.remove("deals", seeded.id)
    else:
        world.vendor.remove("deals", vid)
    result = world.sync()
    assert result.counts["unlinked deals"] == 1
    survivor = (
        world.vendor.get("deals", vid)
        if gone == "partner"
        else world.partner.get("deals", seeded.id)
    )
    assert not survivor.archived
    assert world.store.links(PARTNER, "deals", ("unlinked",))

    # the survivor is edited later: nothing is synced, nothing re-created
    if gone == "partner":
        world.vendor.edit("deals", vid, {"amount": "5"})
    else:
        world.partner.edit("deals", seeded.id, {"amount": "5"})
    world.sync()
    assert len(world.vendor.all("deals")) == (1 if gone == "partner" else 0)
    assert world.partner.get("deals", seeded.id).archived == (gone == "partner")
    quiet_pass(world)


# ---------------------------------------------------------------------- failures


def test_failed_write_is_logged_retried_and_fixed_after_the_cursor_moved(world: World) -> None:
    seeded = world.seed_deal()
    other = world.seed_deal()
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    world.partner.edit("deals", seeded.id, {"amount": "9999"})
    world.partner.edit("deals", other.id, {"amount": "8888"})
    world.clock.advance(HOUR)

    world.vendor.fail = lambda op, obj, key: (
        "HTTP 500 from vendor" if (op, obj, key) == ("update", "deals", vid) else None
    )
    failed = world.sync()
    assert (failed.status, failed.exit_code) == ("failed", 2)
    [error] = failed.errors
    assert error.record_id == seeded.id and "HTTP 500 from vendor" in error.message
    [logged] = world.store.run_records(failed.run_id or 0, "failed")
    assert (logged.object, logged.record_id) == ("deals", seeded.id)
    assert "HTTP 500 from vendor" in (logged.detail or "")
    assert [(r.object, r.record_id) for r in world.store.retries(PARTNER, "deals")] == [
        ("deals", seeded.id)
    ]
    assert vendor_deal(world, seeded.id).properties["amount"] == "1500"
    assert vendor_deal(world, other.id).properties["amount"] == "8888"  # others went on
    assert world.store.run(failed.run_id or 0).status == "failed"  # type: ignore[union-attr]

    # an hour later, well past the overlap window: only the retry list finds it
    world.vendor.fail = None
    world.clock.advance(HOUR)
    fixed = world.sync()
    assert fixed.status == "ok", fixed.errors
    assert vendor_deal(world, seeded.id).properties["amount"] == "9999"
    assert world.store.retries(PARTNER, "deals") == []
    assert world.store.retry_count(PARTNER) == 0
    quiet_pass(world)


@pytest.mark.parametrize(
    ("op", "obj"),
    [("upsert", "deals"), ("upsert", "companies"), ("upsert", "contacts"), ("associate", "deals")],
)
def test_failed_create_or_association_is_retried(world: World, op: str, obj: str) -> None:
    seeded = world.seed_deal()
    world.vendor.fail = lambda o, t, key: "boom" if (o, t) == (op, obj) else None
    failed = world.sync()
    assert failed.status == "failed" or op == "associate"
    world.vendor.fail = None
    world.clock.advance(HOUR)
    world.sync()
    world.clock.advance(HOUR)
    final = world.sync()
    assert final.status == "ok", final.errors
    deal = vendor_deal(world, seeded.id)
    company = world.counterpart("companies", seeded.company.id)
    contact = world.counterpart("contacts", seeded.contacts[0].id)
    assert company is not None and contact is not None
    assert deal.associations["companies"] == (company.id,)
    assert deal.associations["contacts"] == (contact.id,)
    assert len(world.vendor.all("deals")) == 1
    assert world.store.retry_count(PARTNER) == 0
    quiet_pass(world)


def test_bad_value_is_a_record_error_and_other_records_go_on(world: World) -> None:
    bad = world.seed_deal()
    good = world.seed_deal()
    world.sync()
    world.partner.edit("deals", bad.id, {"amount": "abc"})
    world.partner.edit("deals", good.id, {"amount": "42"})
    result = world.sync()
    assert result.status == "failed"
    [error] = result.errors
    assert (error.side, error.record_id, error.field) == ("partner", bad.id, "amount")
    assert vendor_deal(world, good.id).properties["amount"] == "42"

    world.partner.edit("deals", bad.id, {"amount": "43"})
    assert world.sync().status == "ok"
    assert vendor_deal(world, bad.id).properties["amount"] == "43"


# ---------------------------------------------------------------------- dry run


def test_dry_run_lists_the_associations_it_would_mirror(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A partner adds an already shared contact to a shared deal: the dry run's plan
    names the association (and the CLI prints it), writes nothing; the real pass then
    mirrors exactly that."""
    first, second = world.seed_deal(), world.seed_deal()
    world.sync()
    contact = second.contacts[0]
    world.partner.associate("deals", "contacts", [(first.id, contact.id)])
    world.partner.edit("deals", first.id, {"description": "now with two people"})
    vid = vendor_deal(world, first.id).id
    vcontact = world.counterpart("contacts", contact.id)
    assert vcontact is not None
    before, writes = world.snapshot(), world.writes()

    dry = world.sync(dry_run=True)
    assert dry.plan.counts()["associate vendor deals→contacts"] == 1
    [assoc] = [a for a in dry.plan.actions if isinstance(a, Associate)]
    assert (assoc.object, assoc.to_object, assoc.counterpart_id) == ("deals", "contacts", vid)
    assert assoc.to_ids == (vcontact.id,)
    assert world.snapshot() == before and world.writes() == writes
    print_result(dry, as_json=False)
    out = capsys.readouterr().out
    assert "associate vendor deals→contacts: 1" in out
    assert f"associate deals → contacts: vendor {vid} (partner {first.id})" in out

    real = world.sync()
    assert real.plan.counts()["associate vendor deals→contacts"] == 1
    assert real.counts["associated deals→contacts"] == 1
    assert vcontact.id in world.vendor.read("deals", [vid], [], associations=["contacts"])[
        vid
    ].associations.get("contacts", ())


def test_dry_run_plans_but_writes_nothing_and_leaves_cursors(world: World) -> None:
    seeded = world.seed_deal()
    seeding_writes = world.writes()
    dry = world.sync(dry_run=True)
    assert dry.dry_run and dry.plan.counts()["create vendor deals"] == 1
    assert world.writes() == seeding_writes and world.vendor.all("deals") == []
    assert world.store.cursor(PARTNER, "partner", "deals") is None
    assert world.store.links(PARTNER, "deals", ("pending", "active")) == []

    world.sync()
    world.vendor.edit("deals", vendor_deal(world, seeded.id).id, {"amount": "5"})
    cursors = {
        (side, obj): world.store.cursor(PARTNER, side, obj)  # type: ignore[arg-type]
        for side in ("partner", "vendor")
        for obj in ("companies", "contacts", "deals")
    }
    before, writes = world.snapshot(), world.writes()
    dry = world.sync(dry_run=True)
    assert dry.plan.counts()["update partner deals"] == 1
    assert world.snapshot() == before and world.writes() == writes
    assert cursors == {
        (side, obj): world.store.cursor(PARTNER, side, obj)  # type: ignore[arg-type]
        for side in ("partner", "vendor")
        for obj in ("companies", "contacts", "deals")
    }
    run = world.store.run(dry.run_id or 0)
    assert run is not None and run.dry_run
    assert world.sync().counts["updated deals"] == 1  # the real pass still does it


# ---------------------------------------------------------------------- exit codes


def test_exit_codes(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    seeded = world.seed_deal(description="d")
    assert world.sync().exit_code == 0

    both_edit(world, seeded.id, "description", "p", "v")
    assert world.sync().exit_code == 1

    world.seed_deal()
    world.vendor.fail = lambda op, obj, key: "nope" if op == "upsert" else None
    assert world.sync().exit_code == 2  # failures outrank open conflicts
    world.vendor.fail = None

    def down(*args: object, **kwargs: object) -> None:
        raise AdapterError("partner portal unreachable", retriable=True)

    monkeypatch.setattr(world.partner, "changed_since", down)
    fatal = world.sync()
    assert (fatal.status, fatal.exit_code) == ("fatal", 3)
    assert fatal.error == "partner portal unreachable"
    run = world.store.run(fatal.run_id or 0)
    assert run is not None and (run.status, run.error) == ("fatal", "partner portal unreachable")


def test_a_held_lock_refuses_the_pass_and_leaves_no_dangling_run(world: World) -> None:
    world.seed_deal()
    owner = world.store.acquire_lock(PARTNER, owner="someone-else")
    runs_before = len(world.store.runs(PARTNER))
    with pytest.raises(LockHeld, match="someone-else"):
        world.sync()
    assert world.vendor.all("deals") == []
    assert [r.status for r in world.store.runs(PARTNER)][:1] != ["running"]
    assert len(world.store.runs(PARTNER)) == runs_before
    world.store.release_lock(PARTNER, owner)
    assert world.sync().status == "ok"


def test_run_log_counts_api_calls_of_that_run_only(world: World) -> None:
    world.seed_deal()
    world.sync()
    quiet = world.sync()
    run = world.store.run(quiet.run_id or 0)
    assert run is not None
    assert not [k for k in run.api_calls if k.endswith(("upsert", "update", "associate"))]
    assert quiet.api_calls == run.api_calls


@pytest.mark.parametrize("later", [False, True], ids=["same-window", "an-hour-later"])
def test_open_conflict_survives_an_edit_of_another_field(world: World, later: bool) -> None:
    """An unrelated change on the pair neither closes the conflict as "settled" nor
    lets one side's conflicting value overwrite the other's — also when the other
    side's record is no longer in the detection window."""
    seeded = world.seed_deal(description="Base notes")
    world.sync()
    vid = vendor_deal(world, seeded.id).id
    both_edit(world, seeded.id, "description", "Partner notes", "Vendor notes")
    world.sync()
    [conflict] = world.store.conflicts(PARTNER)
    if later:
        world.clock.advance(HOUR)
        quiet_pass(world)
        world.clock.advance(HOUR)

    world.partner.edit("deals", seeded.id, {"amount": "2222"})
    result = world.sync()
    assert result.status == "conflicts"
    assert vendor_deal(world, seeded.id).properties["amount"] == "2222"
    assert world.vendor.get("deals", vid).properties["description"] == "Vendor notes"
    assert world.partner.get("deals", seeded.id).properties["description"] == "Partner notes"
    assert [c.id for c in world.store.conflicts(PARTNER)] == [conflict.id]
    assert world.store.conflicts(PARTNER, "resolved") == []
    quiet_pass(world)


@pytest.mark.parametrize("policy", ["archive", "unlink", "flag"])
def test_deleting_a_deal_with_an_open_conflict_closes_it(
    make_world: MakeWorld, policy: str
) -> None:
    world = make_world(_policy(policy))
    seeded = world.seed_deal(description="d")
    world.sync()
    both_edit(world, seeded.id, "description", "p", "v")
    assert world.sync().status == "conflicts"
    world.partner.remove("deals", seeded.id)
    result = world.sync()
    assert (result.status, result.open_conflicts) == ("ok", 0)
    [closed] = world.store.conflicts(PARTNER, "resolved")
    assert closed.resolution and "deleted" in closed.resolution


@pytest.mark.parametrize("point", ["after_intent:deals", "after_write:deals", "before_cursor"])
def test_crash_and_rerun_converge_with_the_program_hooks_too(
    make_world: MakeWorld, point: str
) -> None:
    """The same guarantee with registration, consent, commission and notification
    hooks running, as ``dealsync sync`` runs them."""
    reference = make_world(name="reference", program_hooks=True)
    _scenario_before(reference)
    reference.sync()
    reference.sync()

    crashed = make_world(name="crashed", program_hooks=True)
    _scenario_before(crashed)
    with pytest.raises(PassAborted):
        crashed.sync(crash_at=crash_on(point))
    crashed.sync()
    crashed.sync()
    assert _final_state(crashed) == _final_state(reference)
    quiet_pass(crashed)


def test_detection_failing_midway_keeps_what_was_applied_and_the_rerun_finishes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming applies chunks while detection is still reading. When the partner's
    search fails after two chunks, those two deals are at the vendor, the pass is
    fatal with its cursor unmoved, and the rerun creates the rest without duplicates."""
    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 1)
    seeded = [world.seed_deal(name=f"Midway {i}") for i in range(4)]
    real = world.partner.changed_since

    def failing(object_type: str, *args: Any, **kwargs: Any) -> Any:
        for i, record in enumerate(real(object_type, *args, **kwargs)):
            if object_type == "deals" and i == 2:
                raise AdapterError("partner search failed", retriable=True)
            yield record

    monkeypatch.setattr(world.partner, "changed_since", failing)
    first = world.sync()
    assert (first.status, first.error) == ("fatal", "partner search failed")
    assert sorted(d.get("dealname") for d in world.vendor.all("deals")) == ["Midway 0", "Midway 1"]
    monkeypatch.setattr(world.partner, "changed_since", real)
    second = world.sync()
    assert second.status == "ok", second.errors
    carriers = [d.get(SOURCE_ID) for d in world.vendor.all("deals")]
    assert sorted(carriers) == sorted(f"{PARTNER}:{s.id}" for s in seeded)
    quiet_pass(world)
