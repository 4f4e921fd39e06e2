"""Issue 17: ``dealsync --help`` starts without loading the engine. The CLI imports
:mod:`connector.api` (and through it SQLAlchemy, the HubSpot client, the program's
rules) only inside the commands that use it, so printing the help loads none of
them. Checked by what a fresh interpreter has imported, never by timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "sqlmodel", "hubspot", "tldextract", "connector.api", "connector.engine")

PROBE = """
import json, sys
from connector.cli import main
sys.argv = ["dealsync", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(*argv: str) -> tuple[set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    *shown, last = proc.stdout.strip().splitlines()
    return set(json.loads(last)), "\n".join(shown)


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize("argv", [("--help",), ("sync", "--help"), ("check", "--help")])
def test_help_loads_no_engine_store_or_hubspot_client(argv: tuple[str, ...]) -> None:
    modules, shown = _modules_after(*argv)
    assert "Usage: dealsync" in shown  # the help was printed
    assert _heavy(modules) == []


def test_a_command_still_reaches_the_api() -> None:
    """The other half: a command that runs loads the API it calls (here ``check`` of a
    missing config, which fails cleanly with exit 3, not an ImportError)."""
    proc = subprocess.run(
        [sys.executable, "-m", "connector.cli", "-c", "/nonexistent/dealsync.yaml", "check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Error" in proc.stderr and "Traceback" not in proc.stderr
