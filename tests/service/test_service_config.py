"""Schedules in the config (cron validated by `dealsync check`), scheduled passes with
backoff, hot reload of mapping edits (an invalid edit keeps the last good version, is
shown on /healthz and the admin page, and never stops the reload loop), and the token
commands."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner
from service_support import ADMIN_TOKEN, ENV, Harness, finished, wait_for, write_project
from starlette.testclient import TestClient

import connector.service.core as service_core
from connector.cli import cli
from connector.config import check_project
from connector.config.check import MAX_SHOWN_PROBLEMS
from connector.service import Service, build_app
from connector.service.runner import backoff_delay
from connector.state.tokens import PartnerTokens


def _with_schedule(config: Path, schedule: str) -> None:
    text = config.read_text()
    config.write_text(
        text.replace("    portal_id: 2001\n", f"    portal_id: 2001\n    schedule: {schedule}\n")
    )


def test_check_validates_cron(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    _with_schedule(config, "{cron: '*/5 * * * *', jitter_seconds: 30}")
    assert check_project(config, env=ENV) == []
    config = write_project(tmp_path)
    _with_schedule(config, "{cron: '61 * * * *'}")
    problems = check_project(config, env=ENV)
    assert len(problems) == 1 and "cron" in problems[0].message and problems[0].line
    result = CliRunner().invoke(cli, ["check", str(config)])
    assert result.exit_code != 0 and "cron" in result.output


def test_schedule_needs_exactly_one_kind(tmp_path: Path) -> None:
    config = write_project(tmp_path)
    _with_schedule(config, "{every_seconds: 60, cron: '* * * * *'}")
    assert any("exactly one" in p.message for p in check_project(config, env=ENV))


def test_backoff_grows_and_caps() -> None:
    assert [backoff_delay(n, 10, 60) for n in range(5)] == [0, 10, 20, 40, 60]


def test_scheduled_passes_run_and_back_off(harness: Harness) -> None:
    _with_schedule(harness.config, "{every_seconds: 1, backoff_seconds: 600}")
    svc = harness.service()
    svc.start()
    wait_for(lambda: [r for r in svc.store.runs("acme") if r.trigger == "schedule"])
    assert svc.store.runs("globex") == []  # no schedule: on demand only
    # a failing pass pushes the next scheduled run back by the backoff
    job = svc.schedules.scheduler.get_job("pass:acme")
    before = job.next_run_time
    assert svc.schedules.after_pass("acme", failed=True) == 600
    assert svc.schedules.scheduler.get_job("pass:acme").next_run_time > before
    assert svc.schedules.after_pass("acme", failed=False) == 0


def test_broken_mapping_edit_keeps_last_good_version(harness: Harness) -> None:
    svc = harness.service()
    good = svc.project
    mapping = harness.root / "mappings" / "shared_deals.yaml"
    text = mapping.read_text()
    mapping.write_text(text.replace("conflict: manual", "conflict: sometimes", 1))
    assert svc.check_reload() is False
    assert svc.project is good
    assert any("sometimes" in p and "shared_deals.yaml" in p for p in svc.reload.problems)
    # syncing goes on with the last good mapping
    deal = harness.seed_deal("acme")
    job, _ = svc.request_pass("acme", "partner")
    wait_for(lambda: finished(svc, job.run_id))
    assert svc.store.run(job.run_id).status == "ok"
    assert harness.vendor_deal("acme", deal.id) is not None
    # a valid edit is picked up and clears the report
    mapping.write_text(text.replace("conflict: manual", "conflict: partner_wins", 1))
    assert svc.check_reload() is True
    assert svc.reload.valid and svc.project is not good
    fields = {f.partner: f for f in svc.project.object("deals").fields}
    assert fields["description"].conflict == "partner_wins"
    assert svc.app_for("acme").project is svc.project


def test_token_commands(tmp_path: Path, monkeypatch) -> None:
    config = write_project(tmp_path)
    runner = CliRunner()
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    created = runner.invoke(cli, ["-c", str(config), "partners", "token", "create", "-p", "acme"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("dsk_")
    listed = runner.invoke(cli, ["-c", str(config), "partners", "token", "list"])
    assert "acme" in listed.output and token not in listed.output
    svc = Service(config, env=ENV, hooks=[])
    try:
        assert PartnerTokens(svc.store).verify(token) == "acme"
        token_id = PartnerTokens(svc.store).list("acme")[0].id
        wrong = runner.invoke(
            cli, ["-c", str(config), "partners", "token", "revoke", "-p", "globex", str(token_id)]
        )
        assert wrong.exit_code != 0
        revoked = runner.invoke(
            cli, ["-c", str(config), "partners", "token", "revoke", "-p", "acme", str(token_id)]
        )
        assert revoked.exit_code == 0, revoked.output
        assert PartnerTokens(svc.store).verify(token) is None
    finally:
        svc.stop()
    unknown = runner.invoke(cli, ["-c", str(config), "partners", "token", "create", "-p", "zzz"])
    assert unknown.exit_code != 0


# ---------------------------------------------------------------------- refused reloads


def _bomb() -> str:
    """A "billion laughs": nine levels of nine aliases, 10^9 values once expanded."""
    letters = "abcdefghi"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, cur in pairwise(letters):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _health_when(client: TestClient, valid: bool) -> dict[str, object] | None:
    """/healthz's body once it reports ``config_valid == valid`` (for polling)."""
    body: dict[str, object] = client.get("/healthz").json()
    return body if body["config_valid"] is valid else None


def _admin_page(client: TestClient) -> str:
    page = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert page.status_code == 200, page.text
    return page.text


@pytest.mark.timeout(120)
def test_alias_bomb_edit_is_refused_on_healthz_and_the_next_fix_is_picked_up(
    harness: Harness,
) -> None:
    """The scheduled reload loop itself: a bomb must neither hang it nor read as valid."""
    config = harness.config
    config.write_text(config.read_text() + "  reload_seconds: 0.05\n")
    good_text = config.read_text()
    svc = harness.service()
    good = svc.project
    svc.start()
    client = TestClient(build_app(svc))
    assert client.get("/healthz").json()["config_valid"] is True

    config.write_text(good_text + _bomb())
    body = wait_for(lambda: _health_when(client, valid=False), 60)
    assert body["status"] == "ok" and body["connections"] == 2  # still serving
    [problem] = body["config_problems"]
    assert problem.startswith(f"{config}:") and "alias *d" in problem
    assert "write the values out" in problem
    assert svc.project is good  # the last valid version keeps running
    page = _admin_page(client)
    assert "still using the last valid version" in page and "alias *d" in page

    config.write_text(good_text.replace("trigger_limit: 50", "trigger_limit: 7"))
    body = wait_for(lambda: _health_when(client, valid=True), 60)
    assert body["config_problems"] == []
    assert svc.project is not good and svc.project.config.service.trigger_limit == 7


def test_reload_survives_an_unexpected_loader_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a load raises is reported as a refused edit; the next change reloads."""
    svc = harness.service()
    good = svc.project
    client = TestClient(build_app(svc))

    def explode(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(service_core, "load_project", explode)
    assert svc.check_reload(force=True) is False
    assert svc.project is good
    body = client.get("/healthz").json()
    assert body["config_valid"] is False
    [problem] = body["config_problems"]
    assert "could not be loaded (RecursionError)" in problem
    assert "maximum recursion" not in problem  # /healthz is public: the type, not the text
    assert str(harness.config) in problem and "hint:" in problem
    monkeypatch.undo()

    harness.config.write_text(harness.config.read_text().replace("limit: 50", "limit: 9"))
    assert svc.check_reload() is True
    assert client.get("/healthz").json()["config_valid"] is True
    assert svc.project.config.service.trigger_limit == 9


def test_fixing_a_newly_referenced_broken_mapping_is_picked_up(harness: Harness) -> None:
    """The refused edit points at a new mapping file; fixing only that file must reload,
    though the version in use never watched it."""
    mappings = harness.root / "mappings"
    good_mapping = (mappings / "shared_deals.yaml").read_text()
    (mappings / "deals_v2.yaml").write_text(_bomb())
    svc = harness.service()
    good = svc.project
    harness.config.write_text(
        harness.config.read_text().replace("mappings/shared_deals.yaml", "mappings/deals_v2.yaml")
    )
    assert svc.check_reload() is False
    assert any("deals_v2.yaml" in p and "alias" in p for p in svc.reload.problems)
    assert svc.check_reload() is False  # nothing changed: still refused, still reported
    assert not svc.reload.valid

    (mappings / "deals_v2.yaml").write_text(
        good_mapping.replace("conflict: manual", "conflict: partner_wins", 1)
    )
    assert svc.check_reload() is True
    assert svc.reload.valid and svc.project is not good
    fields = {f.partner: f for f in svc.project.object("deals").fields}
    assert fields["description"].conflict == "partner_wins"


def test_thousands_of_problems_are_capped_on_healthz_and_the_admin_page(
    harness: Harness,
) -> None:
    svc = harness.service()
    client = TestClient(build_app(svc))
    count = 3_000
    keys = "".join(f"unknown_setting_{i:04d}: x\n" for i in range(count))
    harness.config.write_text(harness.config.read_text() + keys)
    assert svc.check_reload() is False
    problems = client.get("/healthz").json()["config_problems"]
    assert len(problems) == MAX_SHOWN_PROBLEMS + 1
    assert "unknown_setting_0000" in problems[0]
    assert problems[-1].startswith(f"... and {count - MAX_SHOWN_PROBLEMS:,} more problem(s)")
    page = _admin_page(client)
    assert page.count("unknown key") == MAX_SHOWN_PROBLEMS
    assert f"... and {count - MAX_SHOWN_PROBLEMS:,} more problem(s)" in page
