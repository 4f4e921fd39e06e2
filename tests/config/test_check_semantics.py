"""``dealsync check`` offline: values that parse but cannot mean what the admin meant.

Each scenario is an admin's edit of the shipped project (issue 15): before these
checks ``check`` called every one of them valid. A value whose meaning is certain is
normalised with a warning (``check`` still exits 0, and the loaded project holds the
normalised value); one that cannot be used is an error naming file, line, YAML path
and the fix (exit 3).
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result

from connector.cli import cli
from connector.config import load_project
from connector.testing.world import project_yaml, write_project


def check(config: Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line of ``path`` containing ``text``."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def rules_path(config: Path) -> Path:
    return config.parent / "mappings" / "rules.yaml"


# --------------------------------------------------------------------------- rules


def test_an_at_sign_in_personal_domains_is_dropped_with_a_warning(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        project_yaml(),
        rules_edit=lambda t: t.replace("  - gmail.com\n", '  - "@gmail.com"\n'),
        edits_must_change=True,
    )
    result = check(config)
    assert result.exit_code == 0, result.output
    line = line_of(rules_path(config), "@gmail.com")
    assert f"rules.yaml:{line}: warning: personal_domains[0]: '@gmail.com'" in result.output
    assert "read as 'gmail.com'" in result.output and "write `gmail.com`" in result.output
    assert "1 warning(s)" in result.output
    assert load_project(config).rules.personal_domains[0] == "gmail.com"


def test_an_email_address_in_personal_domains_is_an_error(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        project_yaml(),
        rules_edit=lambda t: t.replace("  - gmail.com\n", "  - bob@gmail.com\n"),
        edits_must_change=True,
    )
    result = check(config)
    assert result.exit_code == 3
    line = line_of(rules_path(config), "bob@gmail.com")
    assert f"rules.yaml:{line}: personal_domains[0]: 'bob@gmail.com' is an e-mail" in result.output
    assert "write the domain only, e.g. `gmail.com`" in result.output


def test_country_names_in_consent_regions_become_iso_codes_with_a_warning(
    tmp_path: Path,
) -> None:
    config = write_project(
        tmp_path,
        project_yaml(),
        rules_edit=lambda t: t.replace("dach: [DE, AT, CH]", "dach: [Germany, Österreich, CH]"),
        edits_must_change=True,
    )
    result = check(config)
    assert result.exit_code == 0, result.output
    line = line_of(rules_path(config), "dach:")
    assert f"rules.yaml:{line}: warning: consent.dach[0]: 'Germany' is not an ISO" in result.output
    assert "read as DE (Germany)" in result.output and "write `DE`" in result.output
    assert "consent.dach[1]: 'Österreich'" in result.output and "read as AT" in result.output
    assert load_project(config).rules.consent.dach == ["DE", "AT", "CH"]


def test_an_unknown_country_is_an_error_with_did_you_mean(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        project_yaml(),
        rules_edit=lambda t: t.replace("dach: [DE, AT, CH]", "dach: [Germny, AT, CH]"),
        edits_must_change=True,
    )
    result = check(config)
    assert result.exit_code == 3
    assert re.search(
        r"rules\.yaml:\d+: consent\.dach\[0\]: 'Germny' is not a country", result.output
    )
    assert "did you mean DE (Germany)?" in result.output


def test_a_stage_label_in_won_stages_is_a_warning_naming_the_id(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        project_yaml(),
        rules_edit=lambda t: t.replace("won_stages: [closedwon]", "won_stages: [Closed Won]"),
        edits_must_change=True,
    )
    result = check(config)
    assert result.exit_code == 0, result.output
    line = line_of(rules_path(config), "won_stages:")
    assert (
        f"rules.yaml:{line}: warning: vendor_signals.won_stages[0]: 'Closed Won' looks like "
        "a stage label" in result.output
    )
    assert "did you mean 'closedwon'" in result.output
    assert "dealsync check --online" in result.output


def test_a_privacy_url_that_is_no_url_is_an_error(tmp_path: Path) -> None:
    config = write_project(
        tmp_path,
        project_yaml(),
        rules_edit=lambda t: t.replace(
            "privacy_url: https://example.com/privacy", "privacy_url: see our website"
        ),
        edits_must_change=True,
    )
    result = check(config)
    assert result.exit_code == 3
    line = line_of(rules_path(config), "privacy_url:")
    assert f"rules.yaml:{line}: consent.privacy_url: privacy_url is not a web address" in (
        result.output
    )
    assert "starting with https://" in result.output


# --------------------------------------------------------------------------- portals

HUBSPOT_CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: VENDOR_TOKEN
  host: {vendor_host}
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: {partner_env}
    host: {partner_host}
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""
TOKENS = {"VENDOR_TOKEN": "vendor-secret-1", "ACME_TOKEN": "acme-secret-2"}


def hubspot_project(
    root: Path,
    *,
    vendor_host: str = "https://api.hubapi.com",
    partner_host: str = "https://api.hubapi.com",
    partner_env: str = "ACME_TOKEN",
) -> Path:
    text = HUBSPOT_CONFIG.format(
        vendor_host=vendor_host, partner_host=partner_host, partner_env=partner_env
    )
    return write_project(root, text)


def test_a_host_without_https_is_an_error(tmp_path: Path) -> None:
    config = hubspot_project(tmp_path, partner_host="api.hubapi.com")
    result = check(config, TOKENS)
    assert result.exit_code == 3
    line = line_of(config, "host: api.hubapi.com")
    assert f"dealsync.yaml:{line}: partners[0].host: host is not a URL with https://" in (
        result.output
    )
    assert "`host: https://api.hubapi.com`" in result.output


def test_a_plain_http_host_is_an_error_because_the_token_travels_in_clear(
    tmp_path: Path,
) -> None:
    config = hubspot_project(tmp_path, vendor_host="http://crm-proxy.example.com")
    result = check(config, TOKENS)
    assert result.exit_code == 3
    line = line_of(config, "host: http://crm-proxy")
    assert f"dealsync.yaml:{line}: vendor.host: host is plain http://, which would send" in (
        result.output
    )
    assert "vendor-secret-1" not in result.output


def test_plain_http_to_loopback_is_allowed_with_a_note(tmp_path: Path) -> None:
    config = hubspot_project(tmp_path, vendor_host="http://127.0.0.1:8765")
    result = check(config, TOKENS)
    assert result.exit_code == 0, result.output
    assert "note: vendor.host: host is plain http:// on this machine (loopback)" in (result.output)


def test_a_partner_portal_that_is_the_vendors_is_an_error(tmp_path: Path) -> None:
    config = hubspot_project(tmp_path, partner_env="VENDOR_TOKEN")
    result = check(config, TOKENS)
    assert result.exit_code == 3
    line = line_of(config, "- id: acme")
    assert (
        f"dealsync.yaml:{line}: partners[0]: partner 'acme' is the vendor's portal (both "
        "use the token in VENDOR_TOKEN at the same host)" in result.output
    )
    assert "sync a CRM with itself" in result.output


def test_the_same_token_under_two_variable_names_is_the_same_portal(tmp_path: Path) -> None:
    config = hubspot_project(tmp_path)
    result = check(config, {"VENDOR_TOKEN": "one-token", "ACME_TOKEN": "one-token"})
    assert result.exit_code == 3
    assert "ACME_TOKEN and VENDOR_TOKEN hold the same token for the same host" in result.output
    assert "one-token" not in result.output


def test_a_local_partner_on_the_vendors_file_is_an_error(tmp_path: Path) -> None:
    text = project_yaml().replace("path: partner-acme.db", "path: vendor.db")
    config = write_project(tmp_path, text)
    result = check(config)
    assert result.exit_code == 3
    assert "partners[0]: partner 'acme' is the vendor's portal (both use the local CRM file" in (
        result.output
    )


def test_the_shipped_project_has_no_warnings(tmp_path: Path) -> None:
    result = check(write_project(tmp_path, project_yaml()))
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
