"""A partner connection with its own mapping files (``partners[].mappings``, issue 20):
the Salesforce partner syncs its file's objects, the others the project's; a missing
file or two connections' files mapping one partner object differently are errors with
file, line and fix; projects without the key load as before; ``dealsync check``
validates the shipped Salesforce mapping offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.config import ConfigError, check_project, load_project
from connector.testing.world import project_yaml, write_project

OWN = "    mappings: [mappings/salesforce_partner.yaml]\n"


def _config(root: Path, own: dict[str, str]) -> Path:
    """acme and beta on embedded CRMs; ``own``: partner id → its ``mappings`` line."""
    text = project_yaml(("acme", "beta"))
    for pid, line in own.items():
        text = text.replace(f"    path: partner-{pid}.db\n", f"    path: partner-{pid}.db\n{line}")
    return write_project(root, text)


def test_a_partner_with_its_own_mapping_syncs_those_objects(tmp_path: Path) -> None:
    project = load_project(_config(tmp_path, {"beta": OWN}), env={})
    assert [m.name for m in project.mappings_for("acme")] == ["companies", "contacts", "deals"]
    assert [m.name for m in project.mappings_for("beta")] == [
        "sf_companies",
        "sf_contacts",
        "sf_deals",
    ]
    # every object of the project (the program's rules pick each connection's by type)
    assert {m.name for m in project.mappings} == {
        "companies", "contacts", "deals", "sf_companies", "sf_contacts", "sf_deals",
    }  # fmt: skip
    assert project.mapping_files() == [
        tmp_path / "mappings" / "shared_deals.yaml",
        tmp_path / "mappings" / "salesforce_partner.yaml",
    ]


def test_without_partner_mappings_every_connection_syncs_the_projects(tmp_path: Path) -> None:
    project = load_project(_config(tmp_path, {}), env={})
    assert project.mappings_for("acme") == project.mappings_for("beta") == project.mappings
    assert project.partner_mappings == {}


def test_two_partners_may_share_one_salesforce_mapping_file(tmp_path: Path) -> None:
    project = load_project(_config(tmp_path, {"acme": OWN, "beta": OWN}), env={})
    assert project.mappings_for("acme") == project.mappings_for("beta")
    assert len([m for m in project.mappings if m.name == "sf_deals"]) == 1  # read once


def test_a_missing_partner_mapping_file_is_an_error_at_its_line(tmp_path: Path) -> None:
    config = _config(tmp_path, {"beta": "    mappings: [mappings/salesforce_partnr.yaml]\n"})
    with pytest.raises(ConfigError) as err:
        load_project(config, env={})
    text = str(err.value)
    assert "mapping file 'mappings/salesforce_partnr.yaml' not found" in text
    assert "partners[1].mappings[0]" in text


def test_two_connections_mapping_one_partner_object_differently_is_refused(
    tmp_path: Path,
) -> None:
    config = _config(
        tmp_path,
        {"acme": OWN, "beta": "    mappings: [mappings/salesforce_other.yaml]\n"},
    )
    text = (tmp_path / "mappings" / "salesforce_partner.yaml").read_text()
    (tmp_path / "mappings" / "salesforce_other.yaml").write_text(text.replace("sf_", "sf2_"))
    with pytest.raises(ConfigError) as err:
        load_project(config, env={})
    message = str(err.value)
    assert "partner object 'Opportunity' is also mapped by object 'sf_deals'" in message
    assert "list the same file in each partner's `mappings`" in message


def test_dealsync_check_validates_the_shipped_salesforce_mapping(tmp_path: Path) -> None:
    problems = check_project(_config(tmp_path, {"beta": OWN}), env={})
    assert [p for p in problems if p.is_error] == []
