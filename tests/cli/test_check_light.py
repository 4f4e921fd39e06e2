"""Issue 17: ``dealsync check`` starts in a fraction of a second. An offline check reads
the config, the mappings and the rules; it loads neither the engine, nor the state store
(SQLAlchemy, sqlmodel), nor a CRM's client (hubspot), nor tldextract — whether the
check passes or finds problems. :mod:`connector.api` exposes its names lazily
(PEP 562), so ``from connector.api import Dealsync`` still works for everyone else.
Checked by what a fresh interpreter has imported after the command, never by timing
(the seconds are in docs/benchmarks.md, measured by scripts/startup_time.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "sqlmodel", "hubspot", "tldextract", "connector.engine", "connector.state")
# the exit codes' module holds two integers and imports nothing: not the engine
LIGHT_ENGINE = {"connector.engine", "connector.engine.exits"}

PROBE = """
import json, sys
from connector.cli import main
sys.argv = ["dealsync", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _run(*argv: str, cwd: Path = ROOT) -> tuple[int, set[str], str]:
    """Exit code, the modules loaded by the end, and what the command printed."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    *_, last = proc.stdout.strip().splitlines()
    out = json.loads(last)
    return out["code"], set(out["modules"]), proc.stdout + proc.stderr


def _heavy(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules - LIGHT_ENGINE if any(m == h or m.startswith(h + ".") for h in HEAVY)
    )


def test_checking_the_shipped_config_loads_no_engine_store_or_crm_client() -> None:
    code, modules, shown = _run("--config", str(ROOT / "dealsync.yaml"), "check")
    assert code == 0, shown
    assert "configuration, mappings and rules are valid" in shown
    assert "connector.config.check" in modules  # the check did run
    assert _heavy(modules) == []


def test_a_check_that_finds_problems_exits_3_and_stays_light(tmp_path: Path) -> None:
    """A HubSpot vendor whose token variable is misspelt as a token and a partner with
    an unknown field: the problems are named, exit 3, and still no engine or client."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    text = (ROOT / "dealsync.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "vendor:\n  adapter: local\n  path: .dealsync/vendor.db\n",
        "vendor:\n  adapter: hubspot\n  token_env: DEALSYNC_VENDOR_TOKEN\n",
    )
    text = text.replace("    name: Acme Agency\n", "    name: Acme Agency\n    colour: blue\n")
    assert "adapter: hubspot" in text and "colour" in text
    (tmp_path / "dealsync.yaml").write_text(text, encoding="utf-8")

    code, modules, shown = _run("--config", str(tmp_path / "dealsync.yaml"), "check", cwd=tmp_path)
    assert code == 3, shown
    assert "colour" in shown and "problem(s) found" in shown
    assert "Traceback" not in shown
    assert _heavy(modules) == []


def test_a_state_url_sqlalchemy_must_judge_still_loads_it(tmp_path: Path) -> None:
    """The other half: a check that needs SQLAlchemy (a state_url that is not a plain
    SQLite file) still asks it, and its verdict is shown."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    text = (ROOT / "dealsync.yaml").read_text(encoding="utf-8")
    text = text.replace("state_url: sqlite:///.dealsync/state.db", "state_url: postgres://db/x")
    (tmp_path / "dealsync.yaml").write_text(text, encoding="utf-8")
    code, modules, shown = _run("--config", str(tmp_path / "dealsync.yaml"), "check", cwd=tmp_path)
    assert code == 3, shown
    assert "postgresql://" in shown  # SQLAlchemy refused postgres://; the hint says why
    assert "sqlalchemy" in modules
    assert "connector.engine.sync" not in modules


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///.dealsync/state.db",
        "sqlite:////var/lib/dealsync/state.db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///state.db",
    ],
)
def test_a_plain_sqlite_url_is_judged_as_sqlalchemy_would(url: str) -> None:
    """The check skips SQLAlchemy for plain SQLite URLs: only because SQLAlchemy
    accepts every one of them (asked here, in this process)."""
    from sqlalchemy.engine import make_url

    from connector.config.check import PLAIN_SQLITE, state_url_error

    assert PLAIN_SQLITE.fullmatch(url)
    make_url(url).get_dialect()  # raises if SQLAlchemy disagreed
    assert state_url_error(url) is None
    assert state_url_error("sqlite+nosuchdriver:///state.db") is not None  # still asked


def test_every_name_of_the_api_still_resolves() -> None:
    """``from connector.api import X`` works for each public name, gives the object
    where it is defined, and an unknown name is an AttributeError, not a silent None."""
    import connector.api as api
    from connector.api import app

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert api.Dealsync is app.Dealsync
    assert api.check_config.__module__ == "connector.api.check"
    assert set(api.__all__) <= set(dir(api))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = api.no_such_name
    # a name the app has but the package's list does not (a merge adding one) resolves
    assert "ProgramCommands" not in api.__all__
    assert api.ProgramCommands is app.ProgramCommands
    from connector.api import admin  # a submodule is still imported by name

    assert admin.__name__ == "connector.api.admin"


def test_the_cli_layering_rule_still_holds_for_check() -> None:
    """The CLI's ``check`` imports only :mod:`connector.api` (tests/cli/test_cli_layering.py);
    its names come from the light modules, not the app."""
    source = (ROOT / "connector" / "cli" / "sync.py").read_text(encoding="utf-8")
    body = source.split("def check(", 1)[1].split("\ndef ", 1)[0]
    names = re.findall(r"from connector\.api import ([\w, ]+)", body)
    assert names, body
    import connector.api as api

    light = {n.strip() for group in names for n in group.split(",")}
    assert light <= set(api._LIGHT), light - set(api._LIGHT)
