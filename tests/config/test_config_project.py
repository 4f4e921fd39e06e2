"""The shipped files load, and the Project API behaves as the CLI and engine expect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.config import (
    ConfigError,
    Project,
    check_project,
    load_mapping_text,
    load_project,
)
from connector.testing.world import DEAL_STAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shipped() -> Project:
    return load_project(ROOT / "dealsync.yaml", env={})


def test_shipped_config_loads(shipped: Project) -> None:
    config = shipped.config
    assert config.state_url == "sqlite:///.dealsync/state.db"
    assert config.vendor.adapter == "local"
    assert config.vendor.path == ".dealsync/vendor.db"
    assert [(p.id, p.name, p.adapter) for p in config.partners] == [
        ("acme", "Acme Agency", "local")
    ]
    assert config.base_dir == ROOT
    assert shipped.config_path == ROOT / "dealsync.yaml"
    assert shipped.rules.ownership_months == 6
    assert shipped.rules.commission_rate == pytest.approx(0.20)


def test_shipped_mapping_follows_the_shared_deal_pattern(shipped: Project) -> None:
    assert [o.name for o in shipped.mappings] == ["companies", "contacts", "deals"]
    assert shipped.object("companies").share.via == "deals"
    assert shipped.object("contacts").share.via == "deals"
    deals = shipped.object("deals")
    assert deals.on_delete == "archive"
    assert deals.associations == ["companies", "contacts"]
    (condition,) = deals.share.partner or []
    assert (condition.property, condition.equals) == ("dealsync_register", "true")
    fields = {f.partner: f for f in deals.fields}
    required = ["dealname", "amount", "closedate", "dealstage", "pipeline", "deal_currency_code"]
    # In this order; examples of other features may follow.
    assert list(fields)[: len(required)] == required
    assert fields["dealname"].direction == "create_only"
    assert (fields["amount"].transform, fields["amount"].conflict) == ("decimal", "newest")
    assert (fields["closedate"].transform, fields["closedate"].conflict) == ("date", "newest")
    stage = fields["dealstage"]
    assert stage.value_map == {s: s for s in DEAL_STAGES}
    assert (stage.transform, stage.conflict) == ("enum", "vendor_wins")
    assert fields["pipeline"].value_map == {"default": "default"}
    assert fields["pipeline"].default == "default"


def test_object_lookup_and_path_resolution(shipped: Project) -> None:
    with pytest.raises(KeyError, match="no mapping object 'tickets'"):
        shipped.object("tickets")
    assert shipped.resolve(".dealsync/vendor.db") == ROOT / ".dealsync" / "vendor.db"
    assert shipped.resolve("/abs/state.db") == Path("/abs/state.db")


def test_shipped_mapping_text_loads_on_its_own() -> None:
    objects = load_mapping_text((ROOT / "mappings" / "shared_deals.yaml").read_text())
    assert [o.name for o in objects] == ["companies", "contacts", "deals"]


def _write_config(folder: Path, partner: str, **extra: str) -> Path:
    mapping = ROOT / "mappings" / "shared_deals.yaml"
    lines = [
        "vendor: {adapter: local, path: vendor.db}",
        f"partners: [{partner}]",
        f"mappings: ['{mapping}']",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = folder / "dealsync.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


HUBSPOT_PARTNER = "{id: globex, name: Globex, adapter: hubspot, token_env: GLOBEX_TOKEN}"


def test_token_from_dotenv_next_to_the_config(tmp_path: Path) -> None:
    config = _write_config(tmp_path, HUBSPOT_PARTNER)
    assert [p.path for p in check_project(config, env={})] == ["partners[0].token_env"]
    (tmp_path / ".env").write_text("GLOBEX_TOKEN=from-dotenv\n")
    project = load_project(config, env={})
    assert project.config.partner("globex").token_env == "GLOBEX_TOKEN"


def test_real_env_wins_over_dotenv(tmp_path: Path) -> None:
    config = _write_config(tmp_path, HUBSPOT_PARTNER)
    (tmp_path / ".env").write_text("GLOBEX_TOKEN=\n")  # empty in .env, set for real
    assert check_project(config, env={"GLOBEX_TOKEN": "real"}) == []


def test_default_env_loads_dotenv_into_process_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Adapters read tokens from os.environ, so .env must land there.
    monkeypatch.delenv("GLOBEX_TOKEN", raising=False)
    config = _write_config(tmp_path, HUBSPOT_PARTNER)
    (tmp_path / ".env").write_text("GLOBEX_TOKEN=from-dotenv\n")
    load_project(config)
    assert os.environ["GLOBEX_TOKEN"] == "from-dotenv"
    monkeypatch.delenv("GLOBEX_TOKEN")


def test_check_env_false_skips_credentials(tmp_path: Path) -> None:
    config = _write_config(tmp_path, HUBSPOT_PARTNER)
    with pytest.raises(ConfigError):
        load_project(config, env={})
    assert load_project(config, env={}, check_env=False).config.partners[0].id == "globex"


def test_state_url_env_override(tmp_path: Path) -> None:
    config = _write_config(tmp_path, "{id: acme, name: Acme, adapter: local, path: a.db}")
    env = {"DEALSYNC_STATE_URL": "postgresql://dealsync@db/dealsync"}
    project = load_project(config, env=env)
    assert project.config.state_url == "postgresql://dealsync@db/dealsync"


def test_bad_state_url_from_env_is_reported_without_its_value(tmp_path: Path) -> None:
    config = _write_config(tmp_path, "{id: acme, name: Acme, adapter: local, path: a.db}")
    problems = check_project(config, env={"DEALSYNC_STATE_URL": "s3cret garbage"})
    (problem,) = problems
    assert problem.path == "DEALSYNC_STATE_URL"
    assert "s3cret" not in str(problem)


def test_config_path_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write_config(tmp_path, "{id: acme, name: Acme, adapter: local, path: a.db}")
    assert load_project(env={"DEALSYNC_CONFIG": str(config)}).config_path == config
    monkeypatch.chdir(tmp_path)
    assert load_project(env={}).config_path == config


def test_missing_config_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path / "nope.yaml", env={})
    (problem,) = caught.value.problems
    assert problem.message == "config file not found"
    assert "DEALSYNC_CONFIG" in problem.hint


def test_names_and_via_are_checked_across_mapping_files(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "objects:\n"
        "  - name: deals\n"  # clashes with shared_deals.yaml
        "    partner_object: deals\n"
        "    vendor_object: deals\n"
        "    share: {via: companies}\n"  # companies is shared via deals itself
        "    fields: [{partner: x, vendor: x}]\n"
        "  - name: tickets\n"
        "    partner_object: tickets\n"
        "    vendor_object: tickets\n"
        "    share: {via: deals}\n"  # resolves to shared_deals.yaml's deals
        "    fields: [{partner: subject, vendor: subject}]\n"
    )
    mapping = ROOT / "mappings" / "shared_deals.yaml"
    config = tmp_path / "dealsync.yaml"
    config.write_text(
        "vendor: {adapter: local, path: v.db}\n"
        "partners: [{id: acme, name: Acme, adapter: local, path: a.db}]\n"
        f"mappings: ['{mapping}', extra.yaml]\n"
    )
    problems = check_project(config, env={})
    assert [(Path(p.file).name, p.line, p.path) for p in problems] == [
        ("extra.yaml", 2, "objects[0].name"),
        ("extra.yaml", 5, "objects[0].share.via"),
    ]
    assert "shared_deals.yaml:" in problems[0].message


def test_valid_defaults_and_value_maps_pass() -> None:
    objects = load_mapping_text(
        "objects:\n"
        "  - name: deals\n"
        "    partner_object: deals\n"
        "    vendor_object: deals\n"
        "    share:\n"
        "      vendor: [{property: dealsync_partner, present: true}]\n"
        "    fields:\n"
        "      - {partner: amount, vendor: amount, transform: decimal, default: '0.00'}\n"
        "      - {partner: n, vendor: n, transform: integer, default: '3'}\n"
        "      - {partner: d, vendor: d, transform: date, default: '2024-12-31'}\n"
        "      - {partner: t, vendor: t, transform: datetime, default: '2024-12-31T00:00:00Z'}\n"
        "      - {partner: b, vendor: b, transform: bool, default: 'false'}\n"
        "      - {partner: s, vendor: s, transform: enum}\n"
        # many-to-one is fine when the field only flows one way
        "      - partner: stage\n"
        "        vendor: stage\n"
        "        direction: to_vendor\n"
        "        transform: enum\n"
        "        value_map: {a: x, b: x}\n"
        # the same vendor property read by two fields is fine: only writes clash
        "      - {partner: amount_copy, vendor: amount, direction: to_partner}\n"
    )
    assert len(objects[0].fields) == 8
