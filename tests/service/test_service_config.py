"""Schedules in the config (cron validated by `dealsync check`), scheduled passes with
backoff, hot reload of mapping edits (an invalid edit keeps the last good version),
and the token commands."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from service_support import ENV, Harness, finished, wait_for, write_project

from connector.cli import cli
from connector.config import check_project
from connector.service import Service
from connector.service.runner import backoff_delay
from connector.service.tokens import PartnerTokens


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
