"""The tree reads like the architecture: folders depend one way, and the pure reconciler
stays pure.

These hold the layout promised in ``README.md`` (Layout): a newcomer can read
``connector/`` from the bottom (records, config, state, adapters, engine) up (program,
mail, hooks, api, service, cli) without meeting a folder that needs one above it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "connector"
HEAVY = {"sqlalchemy", "sqlmodel", "yaml", "dotenv", "requests", "urllib3", "httpx", "hubspot"}


def _room(module: str) -> str | None:
    """The top-level room of ``connector.x.y`` (``x``), or None outside the package."""
    parts = module.split(".")
    if parts[0] != "connector" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    """Every ``connector.*`` module a file imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("connector.")}


def _is_room(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        room = rel.parts[0].removesuffix(".py")  # a module at the top is a room of one file
        if room == "__init__":
            continue
        for module in _imports(path):
            target = _room(module)
            if target and target != room and _is_room(target):
                graph.setdefault(room, set()).add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path, or None when it is acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_the_folders_of_connector() -> None:
    graph = _room_graph()
    assert graph, "the import graph of connector/ came out empty: the parser is broken"
    assert _cycle(graph) is None, f"folders import each other in a circle: {_cycle(graph)}"


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_importing_the_pure_reconciler_loads_no_database_yaml_dotenv_or_http() -> None:
    code = (
        "import connector.engine.reconcile, sys; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout
