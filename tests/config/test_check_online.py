"""``dealsync check --online``: the mappings and rules against sandbox portals' schemas.

An admin's typo in a property name parses fine and, before this check, was found only
by a sync writing bad data (``partner: dealnmae``: vendor deals without a name) or by a
write failing half-way (``vendor: amout``). ``--online`` reads each portal's properties
and pipelines through its adapter and names every such problem with file, line, YAML
path and a "did you mean" from the portal's real names. The portals are the project's
HubSpot sandbox, reached through the real ``hubspot-api-client``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import cli
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import project_yaml, write_project

ENV = {"CHK_VENDOR_TOKEN": "chk-vendor-token", "CHK_ACME_TOKEN": "chk-acme-token"}
CUSTOM_ENV = {"CHK_CUSTOM_TOKEN": "chk-custom-token", "CHK_ACME_TOKEN": "chk-acme-token"}

CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: {vendor_env}
  host: {url}
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: CHK_ACME_TOKEN
    host: {url}
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""

# A vendor portal whose only pipeline has its own stage ids, as real portals do.
CUSTOM_STAGES = [
    ("1001", "Discovery", 0.2, False),
    ("1002", "Proposal", 0.6, False),
    ("1003", "Won", 1.0, True),
    ("1004", "Lost", 0.0, True),
]


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    """One sandbox for the module: the checks only read schemas (and ``setup`` is
    idempotent), so the scenarios cannot disturb each other."""
    specs = [
        PortalSpec("vendor", ENV["CHK_VENDOR_TOKEN"]),
        PortalSpec("acme", ENV["CHK_ACME_TOKEN"]),
        PortalSpec("custom", CUSTOM_ENV["CHK_CUSTOM_TOKEN"], deal_stages=CUSTOM_STAGES),  # type: ignore[arg-type]
    ]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:  # type: ignore[arg-type]
        yield server


def project(
    root: Path, srv: SandboxServer, vendor_env: str = "CHK_VENDOR_TOKEN", **edits: object
) -> Path:
    return write_project(
        root,
        CONFIG.format(url=srv.url, vendor_env=vendor_env),
        edits_must_change=True,
        **edits,  # type: ignore[arg-type]
    )


def invoke(config: Path, *args: str, env: dict[str, str] = ENV) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], env=env)


def online(config: Path, env: dict[str, str] = ENV) -> Result:
    """``check --online`` after ``setup``; setup runs the same checks once it has
    installed dealsync's properties, so it fails (or passes) with the same errors."""
    setup = invoke(config, "setup", env=env)
    result = invoke(config, "check", "--online", env=env)
    assert setup.exit_code == result.exit_code, setup.output
    assert error_lines(setup.output) == error_lines(result.output), setup.output
    return result


def error_lines(output: str) -> list[str]:
    """The problems that are errors, as printed (file:line: path: message (hint: …))."""
    return [
        line
        for line in output.splitlines()
        if "(hint: " in line and ": warning: " not in line and ": note: " not in line
    ]


def mapping_line(config: Path, text: str, after: str = "") -> int:
    """1-based line of the first line containing ``text`` (after one containing ``after``)."""
    lines = (config.parent / "mappings" / "shared_deals.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines[start:], start + 1) if text in line)


def test_the_shipped_mappings_pass_against_real_portals(tmp_path: Path, srv: SandboxServer) -> None:
    config = write_project(tmp_path, CONFIG.format(url=srv.url, vendor_env="CHK_VENDOR_TOKEN"))
    result = online(config)
    assert result.exit_code == 0, result.output
    assert "valid against the portals' real properties and pipelines" in result.output
    assert re.search(r"^\S+: (?!warning|note)", result.output, re.M) is None, result.output


def test_a_misspelt_partner_property_is_named_with_did_you_mean(
    tmp_path: Path, srv: SandboxServer
) -> None:
    config = project(
        tmp_path, srv, mapping_edit=lambda t: t.replace("partner: dealname", "partner: dealnmae")
    )
    offline = invoke(config, "check")
    assert offline.exit_code == 0  # the name parses: only the portal knows it is wrong
    result = online(config)
    assert result.exit_code == 3
    line = mapping_line(config, "partner: dealnmae")
    assert (
        f"shared_deals.yaml:{line}: objects[2].fields[0].partner: partner property "
        "'dealnmae' does not exist on deals in portal 'acme'" in result.output
    )
    assert "did you mean 'dealname'?" in result.output


def test_a_misspelt_vendor_property_is_found_before_any_write(
    tmp_path: Path, srv: SandboxServer
) -> None:
    config = project(
        tmp_path, srv, mapping_edit=lambda t: t.replace("vendor: amount", "vendor: amout")
    )
    result = online(config)
    assert result.exit_code == 3
    line = mapping_line(config, "vendor: amout")
    assert (
        f"shared_deals.yaml:{line}: objects[2].fields[1].vendor: vendor property 'amout' "
        "does not exist on deals in portal 'vendor'" in result.output
    )
    assert "did you mean 'amount'?" in result.output


def test_a_value_map_naming_a_stage_the_vendor_lacks(tmp_path: Path, srv: SandboxServer) -> None:
    config = project(
        tmp_path,
        srv,
        vendor_env="CHK_CUSTOM_TOKEN",
        mapping_edit=lambda t: t.replace("closedwon: closedwon", "closedwon: Won"),
    )
    result = online(config, CUSTOM_ENV)
    assert result.exit_code == 3
    line = mapping_line(config, "closedwon: Won")
    assert (
        f"shared_deals.yaml:{line}: objects[2].fields[3].value_map.closedwon: value_map "
        "names vendor stage 'Won', which deals.dealstage in portal 'vendor' does not have"
        in result.output
    )
    assert "'Won' is the label of stage '1003': write the id '1003'" in result.output
    # the other stages of the shipped map are missing there too, each named
    assert "value_map.qualifiedtobuy: value_map names vendor stage 'qualifiedtobuy'" in (
        result.output
    )


def test_a_value_map_key_naming_a_stage_the_partner_lacks(
    tmp_path: Path, srv: SandboxServer
) -> None:
    config = project(
        tmp_path,
        srv,
        mapping_edit=lambda t: t.replace(
            "contractsent: contractsent", "contractsigned: contractsent"
        ),
    )
    result = online(config)
    assert result.exit_code == 3
    assert (
        "value_map.contractsigned: value_map names partner stage 'contractsigned', which "
        "deals.dealstage in portal 'acme' does not have" in result.output
    )
    assert "did you mean 'contractsent'?" in result.output


def test_won_stages_must_be_stage_ids_of_the_vendor(tmp_path: Path, srv: SandboxServer) -> None:
    config = project(
        tmp_path,
        srv,
        rules_edit=lambda t: t.replace("won_stages: [closedwon]", "won_stages: [Closed Won]"),
    )
    result = online(config)
    assert result.exit_code == 3
    rules = (config.parent / "mappings" / "rules.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(rules, 1) if "won_stages:" in text)
    assert (
        f"rules.yaml:{line}: vendor_signals.won_stages[0]: won_stages names 'Closed Won', "
        "which is not a stage of the vendor's deal pipelines" in result.output
    )
    assert "'Closed Won' is the label of stage 'closedwon': write the id 'closedwon'" in (
        result.output
    )


def test_a_typed_transform_on_a_text_property_is_an_error(
    tmp_path: Path, srv: SandboxServer
) -> None:
    config = project(
        tmp_path,
        srv,
        mapping_edit=lambda t: t.replace(
            "      - partner: description\n        vendor: description\n",
            "      - partner: description\n        vendor: description\n        transform: decimal\n",
        ),
    )
    result = online(config)
    assert result.exit_code == 3
    assert (
        "transform decimal does not fit deals.description in portal 'acme', a string property"
        in result.output
    )


def test_a_read_only_property_is_not_a_write_target(tmp_path: Path, srv: SandboxServer) -> None:
    config = project(
        tmp_path,
        srv,
        mapping_edit=lambda t: t.replace(
            "      - partner: description\n        vendor: description\n        direction: both\n",
            "      - partner: description\n        vendor: hs_lastmodifieddate\n"
            "        direction: both\n",
        ),
    )
    result = online(config)
    assert result.exit_code == 3
    assert (
        "deals.hs_lastmodifieddate in portal 'vendor' is read-only, but this field writes it"
        in result.output
    )
    assert "`direction: to_partner`" in result.output


def test_a_portal_that_cannot_be_read_is_one_error_naming_it(
    tmp_path: Path, srv: SandboxServer
) -> None:
    config = write_project(tmp_path, CONFIG.format(url=srv.url, vendor_env="CHK_VENDOR_TOKEN"))
    result = invoke(config, "check", "--online", env={**ENV, "CHK_ACME_TOKEN": "wrong-token"})
    assert result.exit_code == 3
    assert "partners[0]: could not read the properties of" in result.output
    assert "in portal 'acme'" in result.output and "wrong-token" not in result.output


def test_local_portals_say_the_online_check_is_not_available(tmp_path: Path) -> None:
    config = write_project(tmp_path, project_yaml())
    result = invoke(config, "check", "--online", env={})
    assert result.exit_code == 0, result.output
    assert "warning: vendor.adapter: online check not available for portal 'vendor'" in (
        result.output
    )
    assert "online check not available for portal 'acme'" in result.output
