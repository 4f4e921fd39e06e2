"""The log lines of a ``dealsync`` command: one format with timestamps, a level, and the
pass's connection and run id on every line of the pass (issue 19, item 4).

A project on two embedded CRM files with one registered deal on the partner side;
``dealsync sync`` runs one pass and its stderr is read line by line.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest

from connector.adapters.local import LocalCRM
from connector.logs import configure_logging
from connector.testing.world import FileCRMWorld, project_yaml, seed_deal, write_project

CONTACT = "ann.lee@globex.com"


@pytest.fixture
def world(tmp_path: Path) -> FileCRMWorld:
    config = write_project(tmp_path, project_yaml())
    w = FileCRMWorld.open(config)
    partner = LocalCRM(tmp_path / "partner-acme.db")
    seed_deal(
        partner,
        company="Globex",
        domain="globex.com",
        contacts=[{"firstname": "Ann", "lastname": "Lee", "email": CONTACT}],
        dealname="Globex rollout",
        amount="1000",
    )
    return w


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    """The CLI configures the process's logging; later tests get the default back."""
    yield None
    configure_logging("warning", "text")


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_json_logs_are_one_object_per_line_with_time_level_run_and_connection(
    world: FileCRMWorld,
) -> None:
    result = world.cli("--log-format", "json", "--log-level", "info", "sync")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in _lines(result.stderr)]  # each line parses alone
    assert events, "an info-level pass logged nothing"
    for event in events:
        assert {"timestamp", "level", "logger", "event"} <= set(event), event
        assert datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).tzinfo
    run_id = world.app.store.runs("acme")[0].id
    started = [e for e in events if e["event"].startswith("pass started")]
    finished = [e for e in events if e["event"].startswith("pass finished")]
    assert len(started) == 1 and len(finished) == 1
    assert finished[0]["event"].startswith("pass finished: ok")
    # every line from the first of the pass to its last names the connection and the run
    first, last = events.index(started[0]), events.index(finished[0])
    for event in events[first : last + 1]:
        assert (event["connection"], event["run_id"], event["level"]) == ("acme", run_id, "info")
    assert CONTACT not in result.stderr


def test_text_logs_carry_a_timestamp_and_the_pass_context(world: FileCRMWorld) -> None:
    result = world.cli("--log-level", "info", "sync")
    assert result.exit_code == 0, result.output
    [line] = [x for x in _lines(result.stderr) if "pass finished" in x]
    stamp, level, logger = line.split()[:3]
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo
    assert (level, logger) == ("INFO", "dealsync.engine:")
    run_id = world.app.store.runs("acme")[0].id
    assert line.endswith(f"connection=acme run_id={run_id}")


def test_log_level_warning_hides_info_and_the_environment_sets_it(
    world: FileCRMWorld,
) -> None:
    quiet = world.cli("--log-level", "warning", "sync")
    assert quiet.exit_code == 0 and "pass started" not in quiet.stderr
    # DEALSYNC_LOG_LEVEL / DEALSYNC_LOG_FORMAT stand for the flags
    loud = world.cli("sync", env={"DEALSYNC_LOG_LEVEL": "info", "DEALSYNC_LOG_FORMAT": "json"})
    assert loud.exit_code == 0
    assert any(json.loads(x)["event"].startswith("pass started") for x in _lines(loud.stderr))


def test_a_line_quoting_an_address_or_a_bearer_token_is_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A library's or an SMTP server's message may quote an address: the line shows
    ``<e-mail>`` in its place, and a bearer token as ``<redacted>``."""
    configure_logging("info", "json")
    logging.getLogger("mail.smtp").warning(
        "550 <%s> mailbox unavailable; sent Authorization: Bearer %s",
        CONTACT,
        "pat-na1-0c2f9d1e-77aa",
    )
    [line] = _lines(capsys.readouterr().err)
    event = json.loads(line)
    assert event["event"] == (
        "550 <<e-mail>> mailbox unavailable; sent Authorization: Bearer <redacted>"
    )
