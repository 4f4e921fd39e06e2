"""Fast, clear failures of a portal that cannot be used, through the CLI as an operator
runs it (a subprocess: real exit codes, real logging, urllib3's own warnings visible).

The vendor portal is the project's HubSpot sandbox; partner acme's portal is wrong in
one way per scenario: its host is a port nothing listens on, its token is not the one
the sandbox knows (401), or its host accepts connections and never answers. Before,
the first took ~30 s of 24 urllib3 "Retrying" warnings and ended in a raw
``MaxRetryError``, and the last hung for good (no HTTP timeout). Now each command ends
in one line naming the host, the portal and what to try, and exits non-zero; the
offline ``check`` stays offline. Each scenario sets a short ``read_timeout`` in its
config so the hanging host is quick to find, and the subprocess timeout is generous:
nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.adapters.base import PortalUnreachable
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.dead_hosts import closed_port_url, silent_host
from connector.testing.hubspot import unthrottled_adapter
from connector.testing.world import write_project

VENDOR_TOKEN, ACME_TOKEN = "ff-vendor-token", "ff-acme-token"
ENV = {"FF_VENDOR_TOKEN": VENDOR_TOKEN, "FF_ACME_TOKEN": ACME_TOKEN}

CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: FF_VENDOR_TOKEN
  host: {vendor}
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: FF_ACME_TOKEN
    host: {acme}
    connect_timeout: 5
    read_timeout: 0.5
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""

CLI = [sys.executable, "-c", "from connector.cli import main; main()"]
COMMANDS = [["check", "--online"], ["sync"], ["setup"]]
NOISE = ("Retrying", "MaxRetryError", "Traceback", "urllib3", "NewConnectionError")


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    specs = [PortalSpec("vendor", VENDOR_TOKEN), PortalSpec("acme", ACME_TOKEN)]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:  # type: ignore[arg-type]
        yield server


def dealsync(root: Path, *args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    """``dealsync --config root/dealsync.yaml ARGS`` in a subprocess (its own
    environment: the tokens only), given two minutes: a hang fails the test."""
    base = {"PATH": "/usr/bin:/bin", "HOME": str(root)}
    if "PYTHONPATH" in os.environ:  # the code under test, wherever the test imports it
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [*CLI, "--config", str(root / "dealsync.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**base, **env},
    )


def run(
    root: Path, command: list[str], env: dict[str, str] = ENV
) -> subprocess.CompletedProcess[str]:
    """``command``; a ``sync`` after a ``setup`` (which sets the vendor portal up and
    fails on acme), so the pass gets as far as the partner's portal."""
    if command == ["sync"]:
        dealsync(root, "setup", env=env)
    return dealsync(root, *command, env=env)


def last_line(out: subprocess.CompletedProcess[str], needle: str) -> str:
    """The one line of the output that says ``needle``, after asserting the output
    carries no retry noise or traceback."""
    text = out.stdout + out.stderr
    for noise in NOISE:
        assert noise not in text, text
    lines = [line for line in text.splitlines() if needle in line]
    assert lines, text
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_closed_port_fails_at_once_naming_host_portal_and_what_to_try(
    tmp_path: Path, srv: SandboxServer, command: list[str]
) -> None:
    dead = closed_port_url()
    write_project(tmp_path, CONFIG.format(vendor=srv.url, acme=dead))
    out = run(tmp_path, command)
    assert out.returncode != 0
    line = last_line(out, f"could not connect to {dead}")
    assert (
        f"could not connect to {dead} (partner acme): connection refused — "
        "is the portal's host right / is the sandbox running?"
    ) in line


def test_the_offline_check_stays_offline_on_a_closed_port(
    tmp_path: Path, srv: SandboxServer
) -> None:
    write_project(tmp_path, CONFIG.format(vendor=srv.url, acme=closed_port_url()))
    out = dealsync(tmp_path, "check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "could not connect" not in out.stdout + out.stderr
    assert "valid" in out.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_wrong_token_names_its_variable(
    tmp_path: Path, srv: SandboxServer, command: list[str]
) -> None:
    write_project(tmp_path, CONFIG.format(vendor=srv.url, acme=srv.url))
    out = run(tmp_path, command, env={**ENV, "FF_ACME_TOKEN": "not-the-token"})
    assert out.returncode != 0
    line = last_line(out, "refused the token in FF_ACME_TOKEN")
    assert f"{srv.url} (partner acme) refused the token in FF_ACME_TOKEN (401" in line
    assert "is FF_ACME_TOKEN this portal's private-app access token" in line
    assert "not-the-token" not in out.stdout + out.stderr  # the token itself is never shown


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_host_that_never_answers_ends_with_the_read_timeout(
    tmp_path: Path, srv: SandboxServer, command: list[str]
) -> None:
    with silent_host() as silent:
        write_project(tmp_path, CONFIG.format(vendor=srv.url, acme=silent))
        out = run(tmp_path, command)
    assert out.returncode != 0
    line = last_line(out, f"{silent} (partner acme)")
    assert (f"{silent} (partner acme) connected, but no answer within 0.5 s (read_timeout)") in line
    assert "raise its read_timeout" in line


def test_sync_records_the_failed_pass_with_the_line(tmp_path: Path, srv: SandboxServer) -> None:
    """The failure is not only printed: the run is recorded failed with that line, so
    ``runs`` and ``status`` say it later."""
    dead = closed_port_url()
    write_project(tmp_path, CONFIG.format(vendor=srv.url, acme=dead))
    run(tmp_path, ["sync"])
    runs = dealsync(tmp_path, "runs", "--json")
    assert f"could not connect to {dead} (partner acme)" in runs.stdout, runs.stdout + runs.stderr


def test_retries_are_one_layer_a_refused_host_is_tried_twice_a_silent_one_once() -> None:
    """Below the CLI: the adapter's own counters. A closed port is tried
    ``connect_attempts`` (2) times in all — not 8 attempts × urllib3's 3 — and a host
    that never answers once (a second wait would only double the hang)."""
    dead = unthrottled_adapter("t", closed_port_url(), "partner-x", portal="partner x")
    with pytest.raises(PortalUnreachable, match=r"\(partner x\): connection refused"):
        dead.object_schema("deals")
    assert dead.api_calls()["properties_read"] == 2
    with silent_host() as silent:
        mute = unthrottled_adapter("t", silent, "partner-y", read_timeout=0.2)
        with pytest.raises(PortalUnreachable, match=r"no answer within 0\.2 s"):
            mute.object_schema("deals")
    assert mute.api_calls()["properties_read"] == 1
