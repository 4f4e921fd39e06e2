"""Tables people can read (issue 19 item 6): every listing is a table fitted to the
terminal, or CSV or JSON with one flag (``--format``, ``--json`` its alias); global
options after the subcommand; quiet when the reader of a pipe stops reading; ``runs
--failed`` across runs. The project: two registered deals on embedded CRM files,
synced, then a pass whose vendor writes are refused."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from connector.cli import cli
from connector.testing.world import FileCRMWorld, ann, project_yaml, seed_deal, write_project

NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)  # the CRMs' tick clock starts at 09:00
EXE = [sys.executable, "-c", "from connector.cli import main; main()"]
REFUSED = "the vendor refused the write: property dealname is read-only"


@pytest.fixture
def world(tmp_path: Path) -> FileCRMWorld:
    """Two registered deals synced (two accepted registrations, one clean run), then a
    third deal whose pass fails: the vendor refuses its writes (one failed run)."""
    w = FileCRMWorld.open(write_project(tmp_path / "project", project_yaml()))
    for company, domain in (("Globex", "globex.com"), ("Initech", "initech.com")):
        seed_deal(w.crm(), company=company, domain=domain, contacts=[ann(domain, company)])
    assert w.app.sync("acme", now=NOW).exit_code == 0
    seed_deal(
        w.crm(),
        company="Umbrella",
        domain="umbrella.com",
        contacts=[ann("umbrella.com", "Umbrella")],
    )
    w.vendor.fail = lambda op, obj, key: REFUSED if op == "upsert" else None
    assert w.app.sync("acme", now=NOW).exit_code == 2
    w.vendor.fail = None
    return w


def cli_on(w: FileCRMWorld, *args: str, env: dict[str, str] | None = None) -> Result:
    return w.cli(*args, env=env)


def rows_of(result: Result) -> list[dict[str, str]]:
    """The rows of a listing printed with ``--format csv``."""
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


LISTINGS = [
    ("runs",),
    ("runs", "--failed"),
    ("status",),
    ("conflicts", "--all"),
    ("registrations",),
    ("commissions",),
    ("commissions", "--not-credited"),
    ("outbox",),
    ("mapping", "history"),
    ("privacy", "audit"),
    ("partners", "token", "list"),
]


@pytest.mark.parametrize("listing", LISTINGS, ids=" ".join)
def test_every_listing_prints_csv_and_json_with_the_same_rows(
    world: FileCRMWorld, listing: tuple[str, ...]
) -> None:
    as_json = cli_on(world, *listing, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    payload = json.loads(as_json.stdout)
    assert cli_on(world, *listing, "--json").stdout == as_json.stdout  # the alias
    as_csv = cli_on(world, *listing, "--format", "csv")
    header = next(csv.reader(io.StringIO(as_csv.stdout)))
    assert header and all(re.fullmatch(r"[a-z_]+", name) for name in header), header
    assert len(rows_of(as_csv)) == len(payload)
    table = cli_on(world, *listing)
    assert table.exit_code == 0, table.output
    assert not re.search(r"\{'|\[\{|datetime\.", table.output), table.output  # no reprs


def test_one_run_as_csv_json_and_table(world: FileCRMWorld) -> None:
    [failed_run, clean_run] = [
        int(r["id"]) for r in rows_of(cli_on(world, "runs", "--format", "csv"))
    ]
    one = json.loads(cli_on(world, "runs", str(clean_run), "--format", "json").stdout)
    assert one["run"]["id"] == clean_run and one["records"]
    listed = rows_of(cli_on(world, "runs", str(clean_run), "--format", "csv"))
    assert [r["record_id"] for r in listed] == [r["record_id"] for r in one["records"]]
    table = cli_on(world, "runs", str(failed_run), "--failed")
    assert f"run #{failed_run} acme failed" in table.output and REFUSED in table.output
    assert "{" not in table.output  # its counts are ``name: value`` lines


def test_runs_failed_without_a_run_id_lists_what_failed_across_runs(
    world: FileCRMWorld,
) -> None:
    runs = {r.id: r for r in world.app.runs("acme")}
    [failed] = [r for r in runs.values() if r.status == "failed"]
    assert failed.id is not None
    _, records = world.app.run(failed.id, failed_only=True)
    assert records  # the refused writes of the third deal
    stopped = world.app.store.start_run("acme", dry_run=False)
    world.app.store.finish_run(
        stopped, status="fatal", counts={}, api_calls={}, error="partner portal unreachable"
    )

    listed = rows_of(cli_on(world, "runs", "--failed", "--format", "csv"))
    assert [
        (r["run_id"], r["action"], r["detail"]) for r in listed if r["run_id"] == str(stopped)
    ] == [(str(stopped), "run", "partner portal unreachable")]
    by_record = [
        (r["run_id"], r["object"], r["record_id"]) for r in listed if r["run_id"] == str(failed.id)
    ]
    assert by_record == [(str(failed.id), rec.object, rec.record_id) for rec in records]
    assert {r["run_id"] for r in listed} == {str(stopped), str(failed.id)}  # not the clean run
    table = cli_on(world, "runs", "--failed")
    assert REFUSED in table.output and "partner portal unreachable" in table.output
    one = rows_of(cli_on(world, "runs", "--failed", "--limit", "1", "--format", "csv"))
    assert {r["run_id"] for r in one} == {str(stopped)}


@pytest.mark.parametrize("listing", [("registrations",), ("status",)], ids=" ".join)
def test_a_table_at_60_columns_wraps_and_keeps_every_id_and_word(
    world: FileCRMWorld, listing: tuple[str, ...]
) -> None:
    table = cli_on(world, *listing, env={"COLUMNS": "60"})
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60, table.stdout
    words = set(table.stdout.split())
    for row in json.loads(cli_on(world, *listing, "--format", "json").stdout):
        ids = [row.get("partner"), row.get("partner_record_id"), row.get("domain")]
        ids += [str(row["id"])] if "id" in row else []
        assert all(i in words for i in ids if i), (ids, table.stdout)
        for text in (row.get("reason"), row.get("name")):
            assert set((text or "").split()) <= words, (text, table.stdout)
    assert "{" not in table.stdout and "'" not in table.stdout


def test_global_options_after_the_subcommand(world: FileCRMWorld) -> None:
    config = str(world.root / "dealsync.yaml")
    world.app.close()
    runner = CliRunner()
    synced = runner.invoke(cli, ["sync", "-c", config, "--dry-run"], catch_exceptions=False)
    assert synced.exit_code == 0, synced.output
    assert "acme: ok (dry run" in synced.output
    for args in (
        ["runs", "--config", config, "--format", "csv"],
        ["runs", f"--config={config}", "--format", "csv"],
        ["runs", "--format", "csv", f"-c{config}", "--debug"],
        ["--debug", "runs", "--format", "csv", "-c", config],
    ):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0 and result.stdout.startswith("id,connection"), args
    moved = cli.hoisted(click.Context(cli), ["serve", "--config", "x.yaml"])  # type: ignore[attr-defined]
    assert moved == ["serve", "--config", "x.yaml"]  # serve's own --config stays its own


def test_runs_piped_to_head_exits_quietly(world: FileCRMWorld) -> None:
    """``dealsync runs | head -1`` on a long history: the reader stops after one line
    while dealsync is still writing; no traceback, no error, exit 0."""
    for _ in range(400):  # passes that stopped, each with a long reason: > 64 KiB listed
        run_id = world.app.store.start_run("acme", dry_run=False)
        world.app.store.finish_run(
            run_id,
            status="fatal",
            counts={},
            api_calls={},
            error="cannot reach the partner portal at https://api.hubapi.example: the "
            "connection timed out after 10 s; check the host, the network and the proxy, "
            "then run `dealsync sync --connection acme` again",
        )
    runs = [*EXE, "--config", str(world.root / "dealsync.yaml"), "runs", "--limit", "500"]
    env = {**os.environ, "COLUMNS": ""}
    piped = subprocess.run(
        ["bash", "-c", f'{shlex.join(runs)} 2>stderr.txt | head -1; exit "${{PIPESTATUS[0]}}"'],
        capture_output=True,
        text=True,
        cwd=world.root,
        env=env,
        timeout=120,
    )
    stderr = (world.root / "stderr.txt").read_text()
    assert piped.returncode == 0, stderr
    assert piped.stdout.split()[:3] == ["id", "connection", "status"]
    assert stderr == ""
    # the reader already gone when dealsync writes: the write fails for certain
    reader, writer = os.pipe()
    os.close(reader)
    try:
        gone = subprocess.run(runs, stdout=writer, stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(writer)
    assert (gone.returncode, gone.stderr.decode()) == (0, "")


def test_plain_output_off_a_terminal_or_with_no_color(world: FileCRMWorld) -> None:
    """On a terminal the header is bold; piped, or on a terminal with NO_COLOR set,
    no escape codes and no box drawing."""
    config = str(world.root / "dealsync.yaml")
    world.app.close()

    def on_terminal(env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [*EXE, "--config", config, "registrations"],
            stdout=follower,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200", "TERM": "xterm-256color", **env},
        )
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            out += chunk
        os.close(leader)
        assert proc.wait(timeout=120) == 0
        return out.decode()

    coloured = on_terminal({"NO_COLOR": ""})
    assert "\x1b[" in coloured and "globex.com" in coloured
    plain = on_terminal({"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "─" not in plain and "globex.com" in plain
    piped = CliRunner().invoke(cli, ["--config", config, "registrations"]).stdout
    assert "\x1b[" not in piped and "─" not in piped and "globex.com" in piped


def test_a_records_conflicts_are_listed_in_mapping_order(tmp_path: Path) -> None:
    """A deal's description conflicts first, its amount (made a manual field, and
    listed before description in the mapping) later: the listing shows amount first,
    as the mapping reads, not in the order they were opened."""
    config = write_project(
        tmp_path / "project",
        project_yaml(),
        mapping_edit=lambda text: text.replace(
            "        transform: decimal\n        conflict: newest",
            "        transform: decimal\n        conflict: manual",
        ),
        edits_must_change=True,
    )
    w = FileCRMWorld.open(config)
    deal = seed_deal(w.crm(), contacts=[ann("globex.com", "Globex")]).id
    assert w.app.sync("acme", now=NOW).exit_code == 0
    vendor_deal = w.counterpart("acme", "deals", deal)
    assert vendor_deal is not None
    for field, ours, theirs in (("description", "ours", "theirs"), ("amount", "13000", "14000")):
        w.crm().edit("deals", deal, {field: ours})
        w.vendor.edit("deals", vendor_deal.id, {field: theirs})
        assert w.app.sync("acme", now=NOW).exit_code == 1
    opened = [
        c.field for c in sorted(w.app.store.conflicts("acme", "open"), key=lambda c: c.id or 0)
    ]
    assert opened == ["description>description", "amount>amount"]
    listed = rows_of(w.cli("conflicts", "--format", "csv"))
    assert [r["field"] for r in listed] == ["amount>amount", "description>description"]
