"""``dealsync serve`` logs in the one format too: the global ``--log-format`` /
``--log-level`` (or ``DEALSYNC_LOG_FORMAT`` / ``DEALSYNC_LOG_LEVEL``) reach the service,
it logs at info unless told otherwise, and uvicorn's lines go through the same
handler (issue 19, item 4).

The HTTP server itself is not started: ``uvicorn.run`` is replaced by a stand-in that
builds uvicorn's ``Config`` from the same arguments (which sets up its logging), logs
what uvicorn logs on start-up and one request line, then returns (the service then
stops, as on Ctrl-C).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from service_support import ENV, write_project

from connector.cli import cli
from connector.logs import configure_logging


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """What ``uvicorn.run`` was called with."""
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        uvicorn.Config(app, **kwargs)  # sets up logging as uvicorn.run does, no server
        logging.getLogger("uvicorn.error").info("Uvicorn running on http://127.0.0.1:0")
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /healthz HTTP/1.1" 200')

    monkeypatch.setattr(uvicorn, "run", fake_run)
    yield seen
    configure_logging("warning", "text")  # the process's default for the next tests


def _serve(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(
        cli,
        ["--config", str(config), *args, "serve", "--port", "0"],
        env={**ENV, **(env or {})},
        catch_exceptions=False,
    )


def test_serve_logs_json_lines_its_own_and_uvicorns(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    config = write_project(tmp_path)
    result = _serve(config, "--log-format", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    by_logger = {e["logger"]: e for e in events}
    assert by_logger["dealsync.service"]["level"] == "info"  # serve's default level: info
    assert by_logger["dealsync.service.http"]["event"].startswith("dealsync serving 2 conn")
    assert by_logger["uvicorn.error"]["event"].startswith("Uvicorn running")
    assert "GET /healthz" in by_logger["uvicorn.access"]["event"]
    assert all("timestamp" in e for e in events)
    # uvicorn configures no logging of its own: its lines are ours
    assert started["log_config"] is None and started["log_level"] == "info"


def test_serve_takes_the_level_from_the_environment(
    tmp_path: Path, started: dict[str, Any]
) -> None:
    config = write_project(tmp_path)
    result = _serve(config, env={"DEALSYNC_LOG_LEVEL": "warning"})
    assert result.exit_code == 0, result.output
    assert "dealsync serving" not in result.stderr and "Uvicorn running" not in result.stderr
    assert started["log_level"] == "warning"
