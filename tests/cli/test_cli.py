"""The ``dealsync`` command line, on a project built by ``dealsync demo``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from dotenv import dotenv_values

from connector.adapters.local import LocalCRM
from connector.cli import cli
from connector.testing.world import project_yaml, seed_deal

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


ALL_COMMANDS = list(_commands(cli))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One demo-built project for the module (its last pass leaves a conflict open)."""
    before = set(os.environ)
    root = tmp_path_factory.mktemp("demo")
    result = run("demo", "--dir", str(root))
    assert result.exit_code == 0, result.output
    yield root
    _forget_dotenv(root, before)


@pytest.fixture
def demo_project(demo_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the demo project, so tests may change it. Its portals ran in
    the demo's in-process sandbox, so only commands that read the state work on it."""
    before = set(os.environ)
    copy = tmp_path / "demo"
    shutil.copytree(demo_dir, copy)
    yield copy / "dealsync.yaml"
    _forget_dotenv(copy, before)


def _forget_dotenv(root: Path, before: set[str]) -> None:
    """A command on a project without an explicit environment loads its ``.env`` into
    ``os.environ`` (by design: the adapters read it there); the demo's holds
    ``DEALSYNC_MAIL_SINK``, which would give every later test in this process a mail
    transport. Take out what the project's ``.env`` added."""
    for key in dotenv_values(root / ".env"):
        if key not in before:
            os.environ.pop(key, None)


LOCAL_CONFIG = project_yaml()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project on two embedded CRM files: two registered deals synced once, then a
    two-sided edit of a manual field (one open conflict)."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "mappings", root / "mappings")
    config = root / "dealsync.yaml"
    config.write_text(LOCAL_CONFIG)
    assert run("--config", str(config), "setup").exit_code == 0
    partner = LocalCRM(root / "partner-acme.db")
    for n, domain in enumerate(("globex.com", "initech.com")):
        ann = {"firstname": "Ann", "lastname": f"Lee{n}", "email": f"ann@{domain}"}
        seed_deal(
            partner,
            company=f"Co {n}",
            domain=domain,
            country=None,
            contacts=[{**ann, "company": f"Co {n}"}],
            dealname=f"Deal {n}",
            amount="1000",
            currency=None,
            description="base",
        )
    first = CliRunner().invoke(cli, ["--config", str(config), "sync"])
    assert first.exit_code == 0, first.output
    vendor = LocalCRM(root / "vendor.db")
    [vdeal] = [d for d in vendor.all("deals") if d.get("dealsync_source_id") == "acme:1001"]
    partner.edit("deals", "1001", {"description": "partner text"})
    vendor.edit("deals", vdeal.id, {"description": "vendor text"})
    assert CliRunner().invoke(cli, ["--config", str(config), "sync"]).exit_code == 1
    return config


def _db_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


# ---------------------------------------------------------------------- help


def test_every_command_is_listed() -> None:
    names = {c[0] for c in ALL_COMMANDS}
    assert {"check", "sync", "status", "conflicts", "runs", "demo"} <= names
    assert ("conflicts", "show") in ALL_COMMANDS and ("conflicts", "resolve") in ALL_COMMANDS


@pytest.mark.parametrize("path", [(), *ALL_COMMANDS], ids=lambda p: " ".join(p) or "dealsync")
def test_every_command_has_help_text(path: tuple[str, ...]) -> None:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts} has no help"
    result = run(*path, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


# ---------------------------------------------------------------------- demo and check


def test_demo_exits_zero_and_tells_what_it_showed(demo_dir: Path) -> None:
    assert (demo_dir / "dealsync.yaml").is_file()
    assert (demo_dir / "state.db").is_file()


def test_check_passes_on_a_valid_project(project: Path) -> None:
    result = run("--config", str(project), "check")
    assert result.exit_code == 0, result.output


def test_check_on_a_broken_mapping_exits_3_naming_file_and_line(project: Path) -> None:
    mapping = project.parent / "mappings" / "shared_deals.yaml"
    lines = mapping.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "conflict: manual" in line)
    lines[index] = lines[index].replace("conflict: manual", "conflict: sometimes")
    mapping.write_text("\n".join(lines) + "\n")

    result = CliRunner().invoke(cli, ["--config", str(project), "check"])
    assert result.exit_code == 3
    assert "shared_deals.yaml" in result.output
    assert re.search(rf"shared_deals\.yaml:{index + 1}\b", result.output), result.output
    assert "Traceback" not in result.output


def test_sync_on_a_broken_mapping_is_a_clean_error(project: Path) -> None:
    mapping = project.parent / "mappings" / "shared_deals.yaml"
    text = mapping.read_text()
    assert "\n        direction: both\n" in text
    mapping.write_text(
        text.replace("\n        direction: both\n", "\n        direction: sideways\n", 1)
    )
    result = CliRunner().invoke(cli, ["--config", str(project), "sync"])
    assert result.exit_code == 3
    assert "Traceback" not in result.output
    assert "shared_deals.yaml:" in result.output


# ---------------------------------------------------------------------- sync


def test_sync_json_parses(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "sync", "--json"])
    payload = json.loads(result.stdout)
    assert isinstance(payload, list) and payload[0]["connection"] == "acme"
    assert {"status", "plan", "counts", "errors", "open_conflicts", "run_id"} <= set(payload[0])
    assert result.exit_code == {"ok": 0, "conflicts": 1, "failed": 2}[payload[0]["status"]]


def test_sync_dry_run_writes_nothing(project: Path) -> None:
    root = project.parent
    partner = root / "partner-acme.db"
    with sqlite3.connect(partner) as db:
        db.execute(
            "UPDATE record SET properties = json_set(properties, '$.amount', '123456'), "
            "updated_at = '2100-01-01T00:00:00.000Z' WHERE object_type='deals' AND id=1001"
        )
    before = {
        p: _db_rows(root / p, "SELECT * FROM record ORDER BY object_type, id")
        for p in ("vendor.db", "partner-acme.db")
    }
    cursors = _db_rows(root / "state.db", "SELECT * FROM cursor ORDER BY 1, 2, 3")
    links = _db_rows(root / "state.db", "SELECT * FROM link ORDER BY id")

    result = CliRunner().invoke(cli, ["--config", str(project), "sync", "--dry-run", "--json"])
    payload = json.loads(result.stdout)
    assert payload[0]["dry_run"] is True
    assert payload[0]["plan"].get("update vendor deals") == 1

    assert {
        p: _db_rows(root / p, "SELECT * FROM record ORDER BY object_type, id")
        for p in ("vendor.db", "partner-acme.db")
    } == before
    assert _db_rows(root / "state.db", "SELECT * FROM cursor ORDER BY 1, 2, 3") == cursors
    assert _db_rows(root / "state.db", "SELECT * FROM link ORDER BY id") == links


def test_unknown_connection_is_a_clean_one_line_error(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "sync", "--connection", "nope"])
    assert result.exit_code == 3
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "nope" in errors[0]
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(project: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(project), "--debug", "sync", "--connection", "nope"]
    )
    assert result.exit_code != 0
    assert result.exception is not None and not isinstance(result.exception, SystemExit)


def test_missing_config_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "absent.yaml"), "status"])
    assert result.exit_code == 3
    assert "Traceback" not in result.output and "Error:" in result.output


# ---------------------------------------------------------------------- status, runs, conflicts


def listed(result: Result) -> list[dict[str, str]]:
    """The rows of a listing printed with ``--format csv``."""
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_status(project: Path) -> None:
    result = run("--config", str(project), "status")
    assert result.exit_code == 0
    assert "acme: open conflicts: 1 (dealsync conflicts)" in result.output
    [row] = listed(run("--config", str(project), "status", "--format", "csv"))
    assert row["partner"] == "acme" and row["open_conflicts"] == "1"
    as_json = json.loads(run("--config", str(project), "status", "--json").stdout)
    assert as_json[0]["partner"] == "acme" and as_json[0]["open_conflicts"] == 1


def test_status_on_the_demo_project(demo_project: Path) -> None:
    result = run("--config", str(demo_project), "status")
    assert result.exit_code == 0
    assert "acme" in result.output and "deals:" in result.output


def test_conflicts_list_and_show_on_the_demo_project(demo_project: Path) -> None:
    listing = run("--config", str(demo_project), "conflicts", "--all", "--format", "csv")
    ids = [row["id"] for row in listed(listing)]
    for cid in ids:
        shown = run("--config", str(demo_project), "conflicts", "show", cid)
        assert shown.exit_code == 0 and "field" in shown.output


def test_runs_list_and_one_run(demo_project: Path) -> None:
    project = demo_project
    listing = run("--config", str(project), "runs", "--format", "csv")
    ids = [row["id"] for row in listed(listing) if row["connection"] == "acme"]
    assert ids, listing.output
    first = min(int(i) for i in ids)
    one = run("--config", str(project), "runs", str(first))
    assert one.exit_code == 0
    assert f"run #{first} acme" in one.output and "create" in one.output
    payload = json.loads(run("--config", str(project), "runs", str(first), "--json").stdout)
    assert payload["run"]["id"] == first and payload["records"]
    missing = CliRunner().invoke(cli, ["--config", str(project), "runs", "9999"])
    assert missing.exit_code == 3 and "no run #9999" in missing.output


def test_conflicts_list_show_resolve_then_quiet(project: Path) -> None:
    listing = run("--config", str(project), "conflicts", "--format", "csv")
    [cid] = [row["id"] for row in listed(listing) if row["status"] == "open"]
    shown = run("--config", str(project), "conflicts", "show", cid)
    assert shown.exit_code == 0 and "description>description" in shown.output

    resolved = run("--config", str(project), "conflicts", "resolve", cid, "--take", "vendor")
    assert resolved.exit_code == 0 and f"conflict #{cid} resolved" in resolved.output
    assert "no open conflicts" in run("--config", str(project), "conflicts").output
    every = listed(run("--config", str(project), "conflicts", "--all", "--format", "csv"))
    assert [(row["id"], row["status"]) for row in every] == [(cid, "resolved")]

    result = CliRunner().invoke(cli, ["--config", str(project), "sync", "--json"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload[0]["status"] == "ok"
    writes = {
        k: v
        for k, v in payload[0]["api_calls"].items()
        if k.endswith(("upsert", "update", "archive", "associate"))
    }
    assert writes == {}


def test_conflicts_resolve_needs_exactly_one_choice(project: Path) -> None:
    [cid] = [
        str(c["id"])
        for c in json.loads(run("--config", str(project), "conflicts", "--json").stdout)
    ]
    result = CliRunner().invoke(cli, ["--config", str(project), "conflicts", "resolve", cid])
    assert result.exit_code == 3 and "Error:" in result.output
    missing = CliRunner().invoke(cli, ["--config", str(project), "conflicts", "show", "999"])
    assert missing.exit_code == 3 and "no conflict #999" in missing.output


def test_exit_code_1_while_a_conflict_is_open(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(project), "sync"])
    assert result.exit_code == 1
    assert "open conflict" in result.output


# ---------------------------------------------------------------------- end to end


def test_end_to_end_in_a_subprocess(project: Path) -> None:
    """The entry point as a user runs it: real exit codes, JSON on stdout, and a
    clean one-line error with no traceback."""
    exe = [sys.executable, "-c", "from connector.cli import main; main()"]
    config = ["--config", str(project)]
    synced = subprocess.run(
        [*exe, *config, "sync", "--json"], capture_output=True, text=True, timeout=120
    )
    assert synced.returncode == 1, synced.stderr  # the fixture's conflict is open
    assert json.loads(synced.stdout)[0]["status"] == "conflicts"
    bad = subprocess.run(
        [*exe, *config, "sync", "--connection", "ghost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 3
    assert bad.stderr.strip().startswith("Error:") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr + bad.stdout
