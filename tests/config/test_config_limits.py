"""Hostile or runaway files are refused quickly, with one clear problem, never a hang.

A YAML "billion laughs" file (anchors whose aliases nest nine levels deep) is a few
hundred bytes on disk and 10^9 values once expanded; a file of hundreds of thousands
of unknown keys is an editor accident. Either used to make ``dealsync check`` and
``dealsync sync`` hang (and ``dealsync serve``'s reload spin). Each scenario writes the
file, runs the command, and checks what the admin sees: the file, the line, the limit
and the fix, in a bounded amount of output.

The timeout markers are a safety net that turns a regression into a failure instead
of a stuck run; nothing here measures speed.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import cli
from connector.config import ConfigError, check_project, load_mapping_text, load_project
from connector.config.check import MAX_SHOWN_PROBLEMS
from connector.config.loader import MAX_ALIAS_NODES, MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).parent / "fixtures" / "broken"
SHIPPED_MAPPING = ROOT / "mappings" / "shared_deals.yaml"

VALID_HEAD = (
    "version: 1\n"
    "vendor: {adapter: local, path: vendor.db}\n"
    "partners: [{id: acme, name: Acme, adapter: local, path: acme.db}]\n"
    f"mappings: ['{SHIPPED_MAPPING}']\n"
)


def _bomb(levels: int = 9, width: int = 9) -> str:
    letters = "abcdefghijklmnop"[:levels]
    lines = ["a: &a [" + ", ".join(["x"] * width) + "]"]
    for prev, cur in pairwise(letters):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _config(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "dealsync.yaml"
    config.write_text(text)
    return config


@pytest.mark.timeout(60)
def test_billion_laughs_config_is_refused_at_the_alias(tmp_path: Path) -> None:
    config = _config(tmp_path, VALID_HEAD + _bomb())
    (problem,) = check_project(config, env={})
    assert problem.file == str(config)
    # VALID_HEAD is 4 lines; a..d fit (90 + 819 + 7380 values via aliases), the first
    # *d on line e (line 9) would pass the limit.
    assert problem.line == 9
    assert problem.path == "e[0]"
    assert "alias *d" in problem.message and "anchor &d at line 8" in problem.message
    assert "write the values out" in problem.hint
    assert f"at most {MAX_ALIASES:,} aliases" in problem.hint
    assert f"{MAX_ALIAS_NODES:,} values" in problem.hint
    with pytest.raises(ConfigError):
        load_project(config, env={})


@pytest.mark.timeout(60)
def test_billion_laughs_in_a_mapping_file_names_that_file(tmp_path: Path) -> None:
    mapping = tmp_path / "bomb_mapping.yaml"
    mapping.write_text(_bomb())
    config = _config(
        tmp_path,
        VALID_HEAD.replace(f"mappings: ['{SHIPPED_MAPPING}']", f"mappings: ['{mapping}']"),
    )
    (problem,) = check_project(config, env={})
    assert (problem.file, problem.line) == (str(mapping), 5)
    with pytest.raises(ConfigError) as caught:
        load_mapping_text(_bomb(), "hot.yaml")
    assert [(p.file, p.line) for p in caught.value.problems] == [("hot.yaml", 5)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", [["check"], ["sync"], ["status"]])
def test_cli_commands_on_a_billion_laughs_file_fail_with_the_fix(
    tmp_path: Path, command: list[str]
) -> None:
    config = _config(tmp_path, VALID_HEAD + _bomb())
    result = CliRunner().invoke(cli, ["--config", str(config), *command])
    assert result.exit_code == 3, result.output
    assert f"{config}:9: e[0]: alias *d" in result.output
    assert "write the values out" in result.output
    assert "Traceback" not in result.output


@pytest.mark.timeout(60)
def test_many_aliases_of_a_small_anchor_are_refused_too(tmp_path: Path) -> None:
    uses = ", ".join(["*x"] * (MAX_ALIASES + 1))
    config = _config(tmp_path, VALID_HEAD + f"x: &x 1\nys: [{uses}]\n")
    (problem,) = check_project(config, env={})
    assert problem.line == 6 and problem.path == f"ys[{MAX_ALIASES}]"
    assert f"more than {MAX_ALIASES:,} aliases" in problem.message


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    """Anchors are legitimate YAML; a few of them (sharing portal settings) must load."""
    config = _config(
        tmp_path,
        "version: 1\n"
        "vendor: &local {adapter: local, path: vendor.db}\n"
        "partners:\n"
        "  - {<<: *local, id: acme, name: Acme, path: acme.db}\n"
        "  - {<<: *local, id: globex, name: Globex, path: globex.db}\n"
        f"mappings: ['{SHIPPED_MAPPING}']\n",
    )
    project = load_project(config, env={})
    assert [(p.id, p.adapter, p.path) for p in project.config.partners] == [
        ("acme", "local", "acme.db"),
        ("globex", "local", "globex.db"),
    ]


@pytest.mark.timeout(60)
def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    problems = check_project(BROKEN / "config_recursive_alias.yaml", env={})
    assert [(p.line, p.path) for p in problems] == [(5, "partners[0].more[0]")]
    assert "inside its own anchor &loop" in problems[0].message


@pytest.mark.timeout(60)
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    depth = 5000
    config = _config(tmp_path, VALID_HEAD + "deep: " + "[" * depth + "]" * depth + "\n")
    (problem,) = check_project(config, env={})
    assert problem.line == 5
    assert f"nested more than {MAX_DEPTH} levels deep" in problem.message
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 3 and "RecursionError" not in result.output


@pytest.mark.timeout(120)
def test_ten_megabyte_file_is_refused_by_size_with_one_line(tmp_path: Path) -> None:
    keys = "".join(f"unknown_setting_{i:06d}: some value\n" for i in range(300_000))
    config = _config(tmp_path, VALID_HEAD + keys)
    assert config.stat().st_size > 9_000_000
    (problem,) = check_project(config, env={})
    assert problem.file == str(config) and problem.line is None
    assert f"at most {MAX_FILE_BYTES // (1024 * 1024)} MB" in problem.message
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 3
    assert len(result.output) < 2_000, result.output[:2_000]


@pytest.mark.timeout(120)
def test_thousands_of_unknown_keys_print_a_capped_list(tmp_path: Path) -> None:
    count = 5_000
    keys = "".join(f"unknown_setting_{i:05d}: x\n" for i in range(count))
    config = _config(tmp_path, VALID_HEAD + keys)
    problems = check_project(config, env={})
    assert len(problems) == count  # the API still returns every problem
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) <= MAX_SHOWN_PROBLEMS + 2
    assert "unknown_setting_00000" in result.output
    assert f"... and {count - MAX_SHOWN_PROBLEMS:,} more problem(s)" in result.output
    assert f"{count:,} problem(s) found" in lines[-1]
    # the exception a sync or serve start raises renders the same capped list
    with pytest.raises(ConfigError) as caught:
        load_project(config, env={})
    rendered = str(caught.value)
    assert rendered.startswith(f"{count:,} configuration problems:")
    assert len(rendered.splitlines()) <= MAX_SHOWN_PROBLEMS + 2
    assert f"... and {count - MAX_SHOWN_PROBLEMS:,} more problem(s)" in rendered
    sync = CliRunner().invoke(cli, ["--config", str(config), "sync"])
    assert sync.exit_code == 3
    assert len(sync.output.strip().splitlines()) <= MAX_SHOWN_PROBLEMS + 2
