"""The broken-file corpus: every bad file is reported with file, exact line, path, hint.

Each fixture under ``fixtures/broken/`` is one mistake an admin could make (a few
make several); the table says which problems it must produce. The kind of file is
its name's prefix: ``config_`` files are loaded as ``dealsync.yaml``, ``mapping_`` and
``rules_`` files are wired into a temporary config that points at them, so the
problems must name the broken file itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import ConfigError, Problem, load_mapping_text, load_project

BROKEN = Path(__file__).parent / "fixtures" / "broken"
SHIPPED = Path(__file__).resolve().parents[2] / "mappings"

# fixture -> the (line, YAML path) of every problem it must produce, nothing more.
EXPECTED: dict[str, list[tuple[int, str]]] = {
    # dealsync.yaml
    "config_yaml_syntax.yaml": [(5, "")],
    "config_tab_indent.yaml": [(4, "")],
    "config_duplicate_key.yaml": [(8, "state_url")],
    "config_unknown_key_root.yaml": [(2, "mappings"), (6, "mapings")],
    "config_unknown_key_partner.yaml": [(5, "partners[0].name"), (6, "partners[0].nmae")],
    "config_unknown_key_sync.yaml": [(9, "sync.batchsize")],
    "config_duplicate_partner_ids.yaml": [(7, "partners[2].id")],
    "config_missing_token_env_var.yaml": [(8, "partners[0].token_env")],
    "config_hubspot_without_token_env.yaml": [(3, "vendor")],
    "config_local_without_path.yaml": [(5, "partners[0]")],
    "config_missing_mapping_file.yaml": [(8, "mappings[1]")],
    "config_missing_rules_file.yaml": [(7, "rules")],
    "config_bad_partner_id.yaml": [(5, "partners[0].id")],
    "config_batch_size_500.yaml": [(8, "sync.batch_size")],
    "config_bad_state_url.yaml": [(3, "state_url")],
    "config_postgres_scheme.yaml": [(3, "state_url")],
    "config_partners_as_mapping.yaml": [(4, "partners")],
    "config_vendor_as_list.yaml": [(3, "vendor")],
    "config_empty.yaml": [(1, "")],
    "config_missing_vendor.yaml": [(2, "vendor")],
    "config_bad_version.yaml": [(2, "version")],
    "config_token_pasted_into_token_env.yaml": [(5, "vendor.token_env")],
    "config_base_dir.yaml": [(3, "base_dir")],
    "config_bad_adapter.yaml": [(7, "partners[0].adapter")],
    "config_no_partners.yaml": [(4, "partners")],
    "config_top_level_list.yaml": [(2, "")],
    "config_alias_bomb.yaml": [(7, "e[0]")],
    "config_recursive_alias.yaml": [(5, "partners[0].more[0]")],
    "config_several_errors.yaml": [
        (3, "state_url"),
        (4, "vendor"),
        (7, "partners[0]"),
        (10, "partners[1].id"),
        (16, "mappings[1]"),
        (18, "sync.batch_size"),
        (19, "sync.colour"),
    ],
    # mapping files
    "mapping_bad_direction.yaml": [(13, "objects[0].fields[0].direction")],
    "mapping_bad_policy.yaml": [(14, "objects[0].fields[0].conflict")],
    "mapping_bad_transform.yaml": [(13, "objects[0].fields[0].transform")],
    "mapping_bad_on_delete.yaml": [(7, "objects[0].on_delete")],
    "mapping_value_map_not_one_to_one.yaml": [(18, "objects[0].fields[0].value_map.demo")],
    "mapping_value_map_on_decimal.yaml": [(14, "objects[0].fields[0].value_map")],
    "mapping_bad_default_decimal.yaml": [(14, "objects[0].fields[0].default")],
    "mapping_bad_default_date.yaml": [(14, "objects[0].fields[0].default")],
    "mapping_two_fields_one_property.yaml": [(17, "objects[0].fields[2].vendor")],
    "mapping_missing_required_key.yaml": [(13, "objects[0].fields[1].vendor")],
    "mapping_fields_as_mapping.yaml": [(10, "objects[0].fields")],
    "mapping_via_unknown_object.yaml": [(16, "objects[1].share.via")],
    "mapping_association_unknown_object.yaml": [(12, "objects[0].associations[1]")],
    "mapping_share_neither.yaml": [(7, "objects[0].share")],
    "mapping_via_target_without_conditions.yaml": [(21, "objects[2].share.via")],
    "mapping_duplicate_object_names.yaml": [(12, "objects[1].name")],
    "mapping_unknown_key_root.yaml": [(2, "objects"), (3, "object")],
    "mapping_unknown_key_object.yaml": [(7, "objects[0].on_delet")],
    "mapping_unknown_key_field.yaml": [(13, "objects[0].fields[0].confilct")],
    "mapping_unknown_key_condition.yaml": [(10, "objects[0].share.partner[0].equal")],
    "mapping_unquoted_true.yaml": [(9, "objects[0].share.partner[0].equals")],
    "mapping_condition_without_test.yaml": [(9, "objects[0].share.partner[0]")],
    "mapping_empty.yaml": [(1, "")],
    "mapping_yaml_syntax.yaml": [(6, "")],
    "mapping_duplicate_key.yaml": [(15, "objects[0].fields[0].direction")],
    "mapping_alias_bomb.yaml": [(6, "e[0]")],
    # rules files
    "rules_unknown_key.yaml": [(4, "commision_rate")],
    "rules_commission_over_one.yaml": [(4, "commission_rate")],
    "rules_ownership_text.yaml": [(3, "ownership_months")],
    "rules_yaml_syntax.yaml": [(5, "")],
}


def test_every_fixture_is_in_the_table() -> None:
    on_disk = {p.name for p in BROKEN.glob("*.yaml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 30


def _wrapping_config(tmp_path: Path, fixture: Path) -> Path:
    """A valid config whose mapping or rules file is the broken fixture."""
    is_rules = fixture.name.startswith("rules_")
    mapping = SHIPPED / "shared_deals.yaml" if is_rules else fixture
    rules = fixture if is_rules else SHIPPED / "rules.yaml"
    config = tmp_path / "dealsync.yaml"
    config.write_text(
        "vendor: {adapter: local, path: vendor.db}\n"
        "partners: [{id: acme, name: Acme, adapter: local, path: acme.db}]\n"
        f"mappings: ['{mapping}']\n"
        f"rules: '{rules}'\n"
    )
    return config


def _problems(name: str, tmp_path: Path) -> list[Problem]:
    fixture = BROKEN / name
    path = fixture if name.startswith("config_") else _wrapping_config(tmp_path, fixture)
    with pytest.raises(ConfigError) as caught:
        load_project(path, env={})
    return caught.value.problems


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file_is_reported_precisely(name: str, tmp_path: Path) -> None:
    problems = _problems(name, tmp_path)
    assert sorted((p.line, p.path) for p in problems) == sorted(EXPECTED[name])
    for p in problems:
        assert Path(p.file).name == name
        assert p.message and p.hint
        text = str(p)
        assert text.startswith(f"{p.file}:{p.line}: ")
        assert p.hint in text
        assert "Traceback" not in text and 'File "' not in text


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.startswith("mapping_")))
def test_mapping_text_gives_the_same_problems(name: str) -> None:
    text = (BROKEN / name).read_text()
    with pytest.raises(ConfigError) as caught:
        load_mapping_text(text, name)
    problems = caught.value.problems
    assert sorted((p.line, p.path) for p in problems) == sorted(EXPECTED[name])
    assert {p.file for p in problems} == {name}


def test_several_errors_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(BROKEN / "config_several_errors.yaml", env={})
    error = caught.value
    assert len(error.problems) == 7
    # In reading order, and the rendered error lists every one of them.
    assert [p.line for p in error.problems] == sorted(p.line or 0 for p in error.problems)
    rendered = str(error)
    assert rendered.startswith("7 configuration problems:")
    assert all(str(p) in rendered for p in error.problems)


def test_problem_renders_like_an_editor_location(tmp_path: Path) -> None:
    problems = _problems("mapping_bad_direction.yaml", tmp_path)
    (problem,) = problems
    assert str(problem) == (
        f"{problem.file}:13: objects[0].fields[0].direction: 'sideways' is not one of "
        f"both, to_vendor, to_partner, create_only (hint: {problem.hint})"
    )


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("config_unknown_key_root.yaml", "did you mean 'mappings'?"),
        ("config_unknown_key_sync.yaml", "did you mean 'batch_size'?"),
        ("mapping_unknown_key_field.yaml", "did you mean 'conflict'?"),
        ("mapping_unknown_key_condition.yaml", "did you mean 'equals'?"),
        ("mapping_via_unknown_object.yaml", "did you mean 'deals'?"),
    ],
)
def test_typos_get_a_suggestion(name: str, suggestion: str, tmp_path: Path) -> None:
    hints = [p.hint for p in _problems(name, tmp_path)]
    assert any(suggestion in h for h in hints), hints


def test_unknown_key_hint_lists_allowed_keys(tmp_path: Path) -> None:
    (problem,) = _problems("config_unknown_key_sync.yaml", tmp_path)
    assert problem.message == "unknown key 'batchsize'"
    assert "overlap_seconds, batch_size, max_attempts" in problem.hint


def test_missing_env_var_names_the_variable_only(tmp_path: Path) -> None:
    (problem,) = _problems("config_missing_token_env_var.yaml", tmp_path)
    assert problem.message == (
        "missing env var DEALSYNC_PARTNER_ACME_TOKEN for partners[0].token_env"
    )
    assert problem.hint == "set it in the environment or .env"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("config_token_pasted_into_token_env.yaml", "pat-na1-0123abcd"),
        ("config_postgres_scheme.yaml", "hunter2"),
    ],
)
def test_secret_values_never_appear(name: str, secret: str, tmp_path: Path) -> None:
    problems = _problems(name, tmp_path)
    assert problems
    for p in problems:
        assert secret not in str(p)
