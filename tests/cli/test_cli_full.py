"""``dealsync sync --full`` and ``dealsync resync`` as an admin runs them: a vendor edit
saved under an old modification time (no change search ever returns it) is repaired
by a full pass or by resyncing the one record, and dry runs write nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.adapters.local import LocalCRM
from connector.cli import cli
from connector.testing.world import project_yaml, seed_deal

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("upsert", "update", "archive", "associate")


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def records(root: Path) -> dict[str, list[tuple]]:
    out = {}
    for name in ("vendor.db", "partner-acme.db"):
        with sqlite3.connect(root / name) as db:
            out[name] = db.execute("SELECT * FROM record ORDER BY object_type, id").fetchall()
    return out


@pytest.fixture
def drifted(tmp_path: Path) -> tuple[Path, str, str]:
    """A synced deal whose vendor amount was then changed under a modification time of
    2000 (as an import tool might write it): ``(config, partner id, vendor id)``."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "mappings", root / "mappings")
    config = root / "dealsync.yaml"
    config.write_text(project_yaml())
    assert run(config, "setup").exit_code == 0
    partner = LocalCRM(root / "partner-acme.db")
    ann = {"firstname": "Ann", "lastname": "Lee", "email": "ann@globex.com", "company": "Co"}
    seeded = seed_deal(
        partner, company="Co", country=None, contacts=[ann], amount="1000", currency=None
    )
    first = run(config, "sync")
    assert first.exit_code == 0, first.output
    vendor = LocalCRM(root / "vendor.db")
    [vdeal] = [d for d in vendor.all("deals") if d.get("dealsync_source_id") == f"acme:{seeded.id}"]
    with sqlite3.connect(root / "vendor.db") as db:
        db.execute(
            "UPDATE record SET properties = json_set(properties, '$.amount', '2750'), "
            "updated_at = '2000-01-01T00:00:00.000Z' WHERE object_type='deals' AND id=?",
            (int(vdeal.id),),
        )
    return config, seeded.id, vdeal.id


def partner_amount(config: Path, partner_id: str) -> str | None:
    return LocalCRM(config.parent / "partner-acme.db").get("deals", partner_id).get("amount")


def test_sync_full_repairs_what_a_normal_pass_never_sees(drifted: tuple[Path, str, str]) -> None:
    config, pid, _ = drifted
    normal = json.loads(run(config, "sync", "--json").stdout)[0]
    assert not [k for k in normal["api_calls"] if k.endswith(WRITES)]
    assert partner_amount(config, pid) == "1000"  # the drift stays

    before = records(config.parent)
    dry = run(config, "sync", "--full", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "update partner deals: 1" in dry.output
    assert "full: 3 linked pair(s) re-read on both sides" in dry.output
    assert records(config.parent) == before

    full = run(config, "sync", "--full", "--connection", "acme")
    assert full.exit_code == 0, full.output
    assert "update partner deals: 1" in full.output
    assert partner_amount(config, pid) == "2750"

    again = json.loads(run(config, "sync", "--full", "--json").stdout)[0]
    assert again["plan"] == {} and again["counts"]["full_checked"] == 3
    assert not [k for k in again["api_calls"] if k.endswith(WRITES)]


def test_resync_one_record_prints_what_it_wrote(drifted: tuple[Path, str, str]) -> None:
    config, pid, vid = drifted
    before = records(config.parent)
    dry = run(config, "resync", "deals", pid, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would write partner deals {pid}: amount = '2750'" in dry.output
    assert records(config.parent) == before

    done = run(config, "resync", "deals", vid, "--side", "vendor", "--connection", "acme")
    assert done.exit_code == 0, done.output
    assert f"wrote partner deals {pid}: amount = '2750'" in done.output
    assert partner_amount(config, pid) == "2750"
    quiet = run(config, "resync", "deals", pid)
    assert "in agreement: no property to write" in quiet.output


def test_resync_of_an_unlinked_id_is_a_clean_error(drifted: tuple[Path, str, str]) -> None:
    config, _, _ = drifted
    result = run(config, "resync", "deals", "424242")
    assert result.exit_code == 3
    assert "deals 424242 (partner id) is not linked in any connection" in result.output
    other = run(config, "resync", "deals", "424242", "--side", "vendor", "-p", "acme")
    assert "deals 424242 (vendor id) is not linked in connection acme" in other.output
