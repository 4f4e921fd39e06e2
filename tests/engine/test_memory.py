"""A pass's memory is bounded by its chunk, not by the number of records (issue 17).

Scenarios on two embedded CRMs: the pass streams N deals, and what it holds on to
while it goes — the plan, the records it applied, the links the association step
reads — is one chunk's or one page's, while what it writes and reports is the same as
a pass that held everything. The memory figures themselves (peak RSS at N = 50,000)
are the benchmark's (``scripts/bench.py``, docs/benchmarks.md), not a test's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from connector.engine import associations
from connector.engine.effects import Decide, Keep, WriteProperties
from connector.engine.plan import Create
from connector.engine.sync import SOURCE_ID

if TYPE_CHECKING:
    from tests.conftest import World


def _seed(world: World, n: int) -> list[Any]:
    return [world.seed_deal(contacts=2) for _ in range(n)]


def test_a_real_pass_keeps_a_chunk_of_its_plan_and_counts_all_of_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6 registered deals (6 deals, 6 companies, 12 contacts to create) with a plan that
    keeps 4 actions: every record is created and counted, the summary and the run log
    tell the whole pass, and the plan holds 4 actions, saying how many it left out."""
    monkeypatch.setattr("connector.engine.sync.PLAN_KEEP", 4)
    _seed(world, 6)

    result = world.sync()

    assert result.status == "ok"
    assert len(world.vendor.all("deals")) == 6 and len(world.vendor.all("contacts")) == 12
    counts = result.plan.counts()
    assert counts["create vendor deals"] == 6
    assert counts["create vendor companies"] == 6
    assert counts["create vendor contacts"] == 12
    assert counts["associate vendor deals→contacts"] == 12
    assert len(result.plan.actions) == 4
    assert result.plan.omitted == sum(counts.values()) - 4 - 6  # 6 deals × 2 contacts: 6 actions
    assert "create vendor contacts: 12" in result.plan.summary()
    run = world.store.run(result.run_id or 0)
    assert run is not None and run.counts["plan"]["create vendor contacts"] == 12


def test_a_dry_run_keeps_every_action_it_plans(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run prints its plan, so it keeps all of it whatever the real pass's cap."""
    monkeypatch.setattr("connector.engine.sync.PLAN_KEEP", 4)
    _seed(world, 6)

    dry = world.sync(dry_run=True)

    creates = [a for a in dry.plan.actions if isinstance(a, Create)]
    assert len(creates) == 24 and dry.plan.omitted == 0
    assert world.vendor.all("deals") == []


def test_a_streamed_pass_keeps_ids_and_associations_not_properties(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the engine alone streams deals, companies and contacts, what it keeps of
    an applied record for its association step is its id and associations: at the
    pass's last association step no kept record carries a mapped property (only a
    deal's share-condition flag and source-id marker, which via-sharing reads), and
    the companies and contacts, which nothing reads again, are not kept at all."""
    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 2)
    seeded = _seed(world, 5)
    kept: dict[str, Any] = {}
    step = associations.sync_associations

    def look(sp: Any, finished: Any = None) -> None:
        if finished is None:  # the pass's last step: everything was applied
            kept.update({name: seen.partner for name, seen in sp.seen.items()})
        step(sp, finished)

    monkeypatch.setattr("connector.engine.sync.associations.sync_associations", look)

    result = world.sync()

    assert result.status == "ok"
    deals = kept["deals"]
    assert set(deals) == {s.id for s in seeded}
    # only what says whether a record is shared is kept (its flag, its source-id marker)
    assert {p for rec in deals.values() for p in rec.properties} <= {"dealsync_register", SOURCE_ID}
    assert all(len(rec.associations["contacts"]) == 2 for rec in deals.values())
    # nothing reads the companies and contacts again once applied: none is kept
    assert not kept.get("contacts") and not kept.get("companies")
    for s in seeded:  # and the associations were mirrored from those kept ids
        deal = world.counterpart("deals", s.id)
        assert deal is not None and len(deal.associations["contacts"]) == 2


def test_associations_planned_and_written_a_page_at_a_time_mirror_them_all(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 2 deals and flushes as small as one pair: 7 deals with 2 contacts each
    still get their company and both contacts at the vendor, and a second pass has
    nothing left to mirror."""
    monkeypatch.setattr(associations, "ASSOC_PAGE", 2)
    monkeypatch.setattr(associations, "ASSOC_FLUSH", 3)
    monkeypatch.setattr(associations, "ASSOC_CALL", 2)
    seeded = _seed(world, 7)

    result = world.sync()

    assert result.status == "ok"
    assert result.counts["associated deals→contacts"] == 14
    assert result.counts["associated deals→companies"] == 7
    for s in seeded:
        deal = world.counterpart("deals", s.id)
        company = world.counterpart("companies", s.company.id)
        contacts = {c.id for c in (world.counterpart("contacts", p.id) for p in s.contacts) if c}
        assert deal is not None and company is not None and len(contacts) == 2
        assert deal.associations["companies"] == (company.id,)
        assert set(deal.associations["contacts"]) == contacts
    again = world.quiet_sync()
    assert not [k for k in again.plan.counts() if k.startswith("associate")]


def test_a_product_pass_lets_go_of_the_records_it_applied(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the program's hooks on, 5 registered deals (each with a company and 2
    contacts) are decided and created as before, and once a mapping was applied the
    pass keeps of its records what the association step and via-sharing read — ids,
    associations, the share flag and source-id marker — not their properties, and no
    set of records stays "in hand": at the pass's last association step (after every
    mapping, before the hooks' ``after_pass``) no kept deal has a mapped property and
    no kept contact its e-mail."""
    world = make_world(program_hooks=True)
    seeded = _seed(world, 5)
    held: dict[str, Any] = {}
    step = associations.sync_associations

    def look(sp: Any, finished: Any = None) -> None:
        if finished is None:  # the pass's last step: everything was applied
            held["seen"] = {name: seen.partner for name, seen in sp.seen.items()}
            held["in_hand"] = dict(sp.in_hand)
        step(sp, finished)

    monkeypatch.setattr("connector.engine.sync.associations.sync_associations", look)

    result = world.sync()

    assert result.status == "ok"
    assert held["in_hand"] == {}
    deals = held["seen"]["deals"]
    assert set(deals) == {s.id for s in seeded}
    assert {p for rec in deals.values() for p in rec.properties} <= {"dealsync_register", SOURCE_ID}
    assert all(len(rec.associations["contacts"]) == 2 for rec in deals.values())
    assert all("email" not in rec.properties for rec in held["seen"]["contacts"].values())
    for s in seeded:  # the program decided, and everything was created and associated
        deal = world.counterpart("deals", s.id)
        company = world.counterpart("companies", s.company.id)
        assert deal is not None and company is not None
        assert deal.associations["companies"] == (company.id,)
        assert len(deal.associations["contacts"]) == 2
    regs = world.app.store.registry.find_many("acme", "deal", [s.id for s in seeded])
    assert {r.status for r in regs.values()} == {"accepted"}


def test_a_product_pass_shares_the_kept_flag_of_deals_flagged_alike(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 registered deals streamed in chunks of 2 keep the same share flag: the pass
    keeps one dictionary of it for all of them, not one per deal (issue 17), and
    via-sharing still reads each deal's flag."""
    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 2)
    world = make_world(program_hooks=True)
    seeded = _seed(world, 5)
    held: dict[str, Any] = {}
    step = associations.sync_associations

    def look(sp: Any, finished: Any = None) -> None:
        if finished is None:
            held["deals"] = dict(sp.seen["deals"].partner)
        step(sp, finished)

    monkeypatch.setattr("connector.engine.sync.associations.sync_associations", look)

    result = world.sync()

    assert result.status == "ok"
    deals = held["deals"]
    assert set(deals) == {s.id for s in seeded}
    assert all(rec.properties == {"dealsync_register": "true"} for rec in deals.values())
    assert len({id(rec.properties) for rec in deals.values()}) == 1
    for s in seeded:  # shared via the deals: every company was created
        assert world.counterpart("companies", s.company.id) is not None


def test_a_product_pass_logs_its_effects_without_their_records(make_world: Any) -> None:
    """5 registered deals, hooks on: the pass's effect log (what ``sync`` summarises)
    still counts 5 acceptances and 5 write-backs of the registration status, while
    what it holds per effect is the count's: no written properties, no CRM answer with
    its record, no decision's contacts, no bookkeeping entries. A dry run's log, which
    ``sync --dry-run`` lists, keeps its effects whole."""
    world = make_world(program_hooks=True)
    _seed(world, 5)

    dry = world.sync(dry_run=True)
    result = world.sync()

    assert result.status == "ok"
    assert result.summary()["registrations"] == {"accepted": 5}
    assert result.effect_counts()["write-backs: registration status"] == 5
    assert dry.effect_counts()["registrations: accepted"] == 5
    assert any(isinstance(d.effect, Keep) for d in dry.effects)
    assert all(d.effect.submission.contacts for d in dry.effects if isinstance(d.effect, Decide))
    assert not [d for d in result.effects if isinstance(d.effect, Keep)]
    writes = [d for d in result.effects if isinstance(d.effect, WriteProperties)]
    assert writes and all(d.effect.properties == {} for d in writes)
    assert all(d.outcome is None or d.outcome.record is None for d in writes)
    decided = [d.effect for d in result.effects if isinstance(d.effect, Decide)]
    assert len(decided) == 5
    assert all(not e.submission.contacts and not e.decision.contacts for e in decided)


def test_a_product_pass_shares_one_log_entry_per_kind_of_effect(make_world: Any) -> None:
    """5 registered deals, hooks on: the 5 acceptances and the 5 write-backs that went
    through are logged as one shared entry each (kind and outcome, no record id), so
    a pass over N registrations holds N references, not N entries; the counts and the
    summary are the same as with an entry each. A dry run's log keeps an entry per
    effect, with its record."""
    world = make_world(program_hooks=True)
    seeded = _seed(world, 5)

    dry = world.sync(dry_run=True)
    result = world.sync()

    assert result.summary()["registrations"] == {"accepted": 5}
    assert result.effect_counts()["write-backs: registration status"] == 5
    writes = [d for d in result.effects if isinstance(d.effect, WriteProperties)]
    decided = [d for d in result.effects if isinstance(d.effect, Decide)]
    assert len(writes) >= 5 and len({id(d) for d in writes}) == 1
    assert len(decided) == 5 and len({id(d) for d in decided}) == 1
    assert decided[0].effect.submission.partner_record_id == ""
    dry_ids = {
        d.effect.submission.partner_record_id for d in dry.effects if isinstance(d.effect, Decide)
    }
    assert dry_ids == {s.id for s in seeded}


def test_the_write_back_reads_and_marks_a_page_of_registrations_at_a_time(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 registered deals with a page of 2: the registration statuses are written back
    to all 5 partner deals a page at a time (no page holds more than 2 registrations)
    and every registration is marked written, so the next pass writes nothing back."""
    from connector.hooks import registration_crm

    world = make_world(program_hooks=True)
    seeded = _seed(world, 5)
    pages: list[int] = []
    page_of = registration_crm._write_back_page

    def spy(ctx: Any, registry: Any, pending: Any) -> None:
        pages.append(len(pending))
        page_of(ctx, registry, pending)

    monkeypatch.setattr(registration_crm, "WRITE_BACK_PAGE", 2)
    monkeypatch.setattr(registration_crm, "_write_back_page", spy)

    result = world.sync()

    assert result.status == "ok"
    assert pages == [2, 2, 1]
    assert result.effect_counts()["write-backs: registration status"] == 5
    assert world.app.store.registry.pending_write_back("acme") == []
    for s in seeded:
        deal = world.partner.get("deals", s.id)
        assert deal.properties.get("dealsync_registration_status") == "accepted"
    again = world.sync()
    assert again.effect_counts()["write-backs: registration status"] == 0


def test_the_last_childrens_via_sharing_reads_the_deals_links_a_page_at_a_time(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooks on, 5 registered deals streamed in chunks of 2 and via-sharing pages of 2:
    when the companies and contacts left to the pass's end learn which deals share
    them, the deals' links are read 2 at a time, not all 5 at once (at N = 100,000
    those N links were the pass's peak of memory) — and every deal, company and
    contact is created and associated as before."""
    from connector.engine import gather
    from connector.state.store import StateStore

    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 2)
    monkeypatch.setattr(gather, "VIA_PAGE", 2, raising=False)
    read: list[int] = []
    inside = [False]
    link_refs, via_candidates = StateStore.link_refs, gather.via_candidates

    def spy(self: Any, connection: str, obj: str, side: Any, ids: Any, **kw: Any) -> Any:
        ids = list(ids)
        if inside[0] and obj == "deals":
            read.append(len(ids))
        return link_refs(self, connection, obj, side, ids, **kw)

    def via(sp: Any, detected: Any) -> Any:
        inside[0] = True
        try:
            return via_candidates(sp, detected)
        finally:
            inside[0] = False

    monkeypatch.setattr(StateStore, "link_refs", spy)
    monkeypatch.setattr(gather, "via_candidates", via)
    world = make_world(program_hooks=True)
    seeded = _seed(world, 5)

    result = world.sync()

    assert result.status == "ok"
    assert 5 in [sum(read[i : i + 3]) for i in range(len(read))]  # the 5 deals, 2 + 2 + 1
    assert max(read) <= 2
    for s in seeded:
        deal = world.counterpart("deals", s.id)
        company = world.counterpart("companies", s.company.id)
        assert deal is not None and company is not None
        assert deal.associations["companies"] == (company.id,)
        assert len(deal.associations["contacts"]) == 2
