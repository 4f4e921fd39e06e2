"""Scenarios of mapping migrations: an admin edits the mapping YAML between passes and
the next pass migrates the records already linked (issue 15, Deliver 3;
``connector/engine/migrate.py``). Each world's mapping is edited on disk and the
project loaded again, as a restarted ``dealsync`` would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.cli import cli
from connector.cli.sync import print_result
from connector.config import load_project
from connector.config.models import PortalConfig

if TYPE_CHECKING:
    from tests.conftest import MakeWorld, World

PARTNER = "acme"

JOBTITLE = "      - partner: jobtitle\n        vendor: jobtitle\n        direction: both\n"


def add_jobtitle(text: str) -> str:
    """The contacts mapping gains ``jobtitle`` both ways (the last contacts field)."""
    out = text.replace("  - name: deals\n", JOBTITLE + "  - name: deals\n", 1)
    assert out != text
    return out


def swap_stages(text: str) -> str:
    """The deal stage value map sends ``qualifiedtobuy`` and ``presentationscheduled``
    to each other's vendor stage (still one-to-one)."""
    out = text.replace(
        "          qualifiedtobuy: qualifiedtobuy\n"
        "          presentationscheduled: presentationscheduled\n",
        "          qualifiedtobuy: presentationscheduled\n"
        "          presentationscheduled: qualifiedtobuy\n",
    )
    assert out != text
    return out


def remap(world: World, edit: Callable[[str], str] | None) -> None:
    """Rewrite the world's mapping from the shipped one (``None``: the shipped one
    as is) and reopen the project on the same CRMs and state, as after a restart."""
    from connector.testing.world import SHIPPED_MAPPINGS

    text = (SHIPPED_MAPPINGS / "shared_deals.yaml").read_text()
    (world.root / "mappings" / "shared_deals.yaml").write_text(edit(text) if edit else text)
    crms = {"vendor": world.vendor, PARTNER: world.partner}

    def factory(name: str, _portal: PortalConfig) -> LocalCRM:
        return crms[name]

    # the world's hooks: none, or the program's — built again on the new mapping, as a
    # restarted dealsync builds them (the registration hook reads the share condition)
    hooks = [] if not world.app.hooks else None
    world.app.close()
    world.project = load_project(world.root / "dealsync.yaml", env={})
    world.app = Dealsync(world.project, env={}, adapter_factory=factory, hooks=hooks)


def history(world: World) -> str:
    result = CliRunner().invoke(
        cli,
        ["--config", str(world.root / "dealsync.yaml"), "mapping", "history"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_an_added_field_is_backfilled_on_linked_records_untouched_since_the_last_pass(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = world.seed_deal(contacts=2)
    cto, buyer = seeded.contacts
    world.partner.edit("contacts", cto.id, {"jobtitle": "CTO"})
    world.sync()
    vendor_buyer = world.counterpart("contacts", buyer.id)
    assert vendor_buyer is not None
    world.vendor.edit("contacts", vendor_buyer.id, {"jobtitle": "Head of Buying"})
    world.sync()  # the vendor edit is seen, and jobtitle is not mapped yet: nothing moves
    assert not (world.counterpart("contacts", cto.id) or vendor_buyer).get("jobtitle")
    assert len(world.store.mapping_versions(PARTNER)) == 1

    remap(world, add_jobtitle)
    dry = world.sync(dry_run=True)
    assert "mapping change: +contacts.jobtitle → 2 linked records to backfill" in (
        dry.mapping_changes
    )
    assert not (world.counterpart("contacts", cto.id) or vendor_buyer).get("jobtitle")
    assert len(world.store.mapping_versions(PARTNER)) == 1  # a dry run records nothing
    print_result(dry, as_json=False)  # the CLI's summary shows the migration first
    assert "mapping change: +contacts.jobtitle → 2 linked records to backfill" in (
        capsys.readouterr().out
    )

    world.sync()
    after = world.counterpart("contacts", cto.id)
    assert after is not None and after.get("jobtitle") == "CTO"
    partner_buyer = world.partner.get("contacts", buyer.id)
    assert partner_buyer is not None and partner_buyer.get("jobtitle") == "Head of Buying"
    versions = world.store.mapping_versions(PARTNER)
    assert len(versions) == 2 and versions[-1].changes == ["+contacts.jobtitle"]
    quiet = world.quiet_sync()  # migrated once: the next pass has nothing to do
    assert quiet.mapping_changes == []
    assert "+contacts.jobtitle" in history(world)


def test_a_removed_field_leaves_no_base_and_writes_nothing(make_world: MakeWorld) -> None:
    world = make_world(add_jobtitle)
    seeded = world.seed_deal(contacts=1)
    world.partner.edit("contacts", seeded.contacts[0].id, {"jobtitle": "CTO"})
    world.sync()
    link = world.link("contacts", seeded.contacts[0].id)
    assert link is not None and "jobtitle>jobtitle" in link.base

    remap(world, None)
    dry = world.sync(dry_run=True)
    assert any(
        line.startswith("mapping change: -contacts.jobtitle") for line in dry.mapping_changes
    )
    link = world.link("contacts", seeded.contacts[0].id)
    assert link is not None and "jobtitle>jobtitle" in link.base  # a dry run drops nothing

    world.quiet_sync()
    for link in world.store.links(PARTNER, "contacts"):
        assert "jobtitle>jobtitle" not in link.base
    assert world.store.mapping_versions(PARTNER)[-1].changes == ["-contacts.jobtitle"]
    assert "-contacts.jobtitle" in history(world)


def test_a_changed_value_map_re_evaluates_the_field_on_linked_records(world: World) -> None:
    seeded = world.seed_deal(stage="qualifiedtobuy")
    world.sync()
    deal = world.counterpart("deals", seeded.id)
    assert deal is not None and deal.get("dealstage") == "qualifiedtobuy"

    remap(world, swap_stages)
    dry = world.sync(dry_run=True)
    assert "mapping change: ~deals.dealstage (value_map) → 1 linked records to re-evaluate" in (
        dry.mapping_changes
    )
    world.sync()
    # no base under the new map: both sides count as changed and the field's policy
    # (vendor_wins) decides — the partner's stage now says what the vendor's means
    partner_deal = world.partner.get("deals", seeded.id)
    assert partner_deal is not None and partner_deal.get("dealstage") == "presentationscheduled"
    deal = world.counterpart("deals", seeded.id)
    assert deal is not None and deal.get("dealstage") == "qualifiedtobuy"
    world.quiet_sync()


def test_the_first_pass_records_the_mapping_and_history_lists_every_version(
    world: World,
) -> None:
    assert "no mapping versions recorded yet" in history(world)
    world.seed_deal()
    world.sync(dry_run=True)
    assert world.store.mapping_versions(PARTNER) == []
    world.sync()
    remap(world, add_jobtitle)
    world.sync()
    remap(world, lambda text: swap_stages(add_jobtitle(text)))
    world.sync()
    result = CliRunner().invoke(
        cli, ["--config", str(world.root / "dealsync.yaml"), "mapping", "history", "-p", "nobody"]
    )
    assert result.exit_code != 0 and "nobody" in result.output
    out = history(world)
    assert out.index("first version recorded") < out.index("+contacts.jobtitle")
    assert out.index("+contacts.jobtitle") < out.index("~deals.dealstage (value_map)")
    assert out.count(f" {PARTNER} ") == 3


def gold_share(text: str) -> str:
    """Deals are shared when ``dealsync_tier`` is ``gold`` (no longer when registered)."""
    out = text.replace(
        '        - property: dealsync_register\n          equals: "true"\n',
        '        - property: dealsync_tier\n          equals: "gold"\n',
    )
    assert out != text
    return out


@pytest.mark.parametrize("hooks", ["engine", "program"])
def test_a_changed_share_condition_counts_what_is_and_is_no_longer_shared(
    make_world: MakeWorld, hooks: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deals were shared when registered; the admin changes that to ``tier = gold``.
    The registered deal no longer matches: it is counted, listed and kept in sync.
    A gold deal nobody touched since it was first seen now matches: counted, and
    shared (with its company and contact) by the pass — not left for its next edit."""
    world = make_world(program_hooks=hooks == "program")
    registered = world.seed_deal(name="Registered")
    gold = world.seed_deal(registered=False, name="Gold", dealsync_tier="gold")
    world.sync()
    assert world.counterpart("deals", gold.id) is None  # not registered: not shared
    world.clock.advance(timedelta(hours=1))
    world.sync()  # the gold deal is now outside every detection window
    remap(world, gold_share)

    before_writes, before = world.writes(), world.snapshot()
    dry = world.sync(dry_run=True)
    assert world.writes() == before_writes and world.snapshot() == before
    assert len(world.store.mapping_versions(PARTNER)) == 1  # a dry run records nothing
    lines = dry.mapping_changes
    assert any(
        line.startswith(
            "mapping change: ~deals share condition → 1 linked records no longer match it "
            "— kept in sync"
        )
        for line in lines
    ), lines
    assert (
        "mapping change: ~deals share condition → 1 records now match and are not linked "
        "— would be shared on this pass"
    ) in lines
    assert dry.plan.counts()["create vendor deals"] == 1
    print_result(dry, as_json=False)
    assert "1 linked records no longer match it" in capsys.readouterr().out
    out = json.loads(json.dumps(dry.as_dict()))  # what `sync --json` prints for it
    assert out["counts"]["share_no_longer_matching"] == 1
    assert out["counts"]["share_newly_matching"] == 1
    assert out["mapping_share"] == {
        "deals": {"no_longer_matching": 1, "newly_matching": 1, "stay_unlinked": 0}
    }

    result = world.sync()
    assert result.errors == [], result.as_dict()
    assert (
        "mapping change: ~deals share condition → 1 records now match and are not linked "
        "— shared on this pass"
    ) in result.mapping_changes
    shared = world.counterpart("deals", gold.id)
    assert shared is not None and shared.get("dealname") == "Gold"
    assert world.counterpart("companies", gold.company.id) is not None
    assert world.counterpart("contacts", gold.contacts[0].id) is not None
    kept = [
        o
        for o in world.store.run_records(result.run_id or 0)
        if o.action == "share" and o.outcome == "kept"
    ]
    assert [o.record_id for o in kept] == [registered.id]
    assert "no longer matches the share condition" in (kept[0].detail or "")
    # the registered deal no longer matches, but its link stays and it syncs on
    link = world.link("deals", registered.id)
    assert link is not None and link.status == "active"
    world.partner.edit("deals", registered.id, {"amount": "2500.00"})
    world.sync()
    deal = world.counterpart("deals", registered.id)
    assert deal is not None and deal.get("amount") == "2500"
    # a new deal that matches only the old condition is not shared any more
    other = world.seed_deal()
    world.sync()
    assert world.counterpart("deals", other.id) is None
    versions = world.store.mapping_versions(PARTNER)
    assert versions[-1].changes == [
        "~deals share condition (1 linked no longer matching: kept in sync; "
        "1 newly matching: shared)"
    ]
    assert "1 newly matching: shared" in history(world)


def test_a_pass_that_crashes_mid_migration_runs_it_again(world: World) -> None:
    from connector.engine.sync import PassAborted

    seeded = world.seed_deal(contacts=1)
    contact = seeded.contacts[0]
    world.partner.edit("contacts", contact.id, {"jobtitle": "CTO"})
    world.sync()
    remap(world, add_jobtitle)

    def crash(point: str) -> None:
        if point == "before_cursor":
            raise PassAborted(point)

    with contextlib.suppress(PassAborted):
        world.sync(crash_at=crash)
    assert len(world.store.mapping_versions(PARTNER)) == 1  # not recorded: re-run next pass
    again = world.sync()
    assert "mapping change: +contacts.jobtitle → 1 linked records to backfill" in (
        again.mapping_changes
    )
    after = world.counterpart("contacts", contact.id)
    assert after is not None and after.get("jobtitle") == "CTO"
    assert len(world.store.mapping_versions(PARTNER)) == 2


def test_an_added_field_is_backfilled_with_the_programs_hooks_running(
    make_world: MakeWorld,
) -> None:
    world = make_world(program_hooks=True)
    seeded = world.seed_deal(contacts=1)
    contact = seeded.contacts[0]
    world.partner.edit("contacts", contact.id, {"jobtitle": "CTO"})
    world.sync()
    assert world.counterpart("contacts", contact.id) is not None
    remap(world, add_jobtitle)
    result = world.sync()
    assert result.errors == []
    after = world.counterpart("contacts", contact.id)
    assert after is not None and after.get("jobtitle") == "CTO"
