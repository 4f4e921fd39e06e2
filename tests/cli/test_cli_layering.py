"""The CLI is click over :mod:`connector.api`: a command parses its options, makes one
call and prints the answer. It never reaches past the API into the store, the registry,
the hooks, the engine or the config loader; the three long-running commands call the
one entry point of what they run (the sandbox, the demo, the service)."""

from __future__ import annotations

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "connector" / "cli"
ALLOWED = {"connector.api", "connector.cli", "connector.cli.base"}
ENTRY_POINTS = {
    "serve.py": {"connector.sandbox", "connector.demo", "connector.service"},
    # the process's logging is set up before any command (and any API) runs
    "base.py": {"connector.logs"},
}


def _connector_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "connector"}


def test_cli_modules_import_only_the_api_and_each_other() -> None:
    reaching = {
        path.name: sorted(_connector_imports(path) - ALLOWED - ENTRY_POINTS.get(path.name, set()))
        for path in sorted(CLI.glob("*.py"))
    }
    assert {name: mods for name, mods in reaching.items() if mods} == {}
