"""One partner's missing token fails that connection only, through the CLI.

Before, a partner whose token variable was not set made every command refuse the
whole program ("missing env var ..."), so the other partners stopped syncing too. Now
``sync --all`` syncs the good partners, reports the broken one naming the variable and
exits non-zero; ``sync --connection good`` works; ``status`` shows the broken one's
reason; ``setup`` and ``check --online`` report the broken partner (missing variable,
refused token: named, with the host) and still set up and check the others. The
vendor's token is still required by every command (it is every connection's). The portals are sandbox HubSpot portals reached through the real
``hubspot-api-client``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import cli
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, write_project

ENV = {
    "ISO_VENDOR_TOKEN": "iso-vendor-token",
    "ISO_ACME_TOKEN": "iso-acme-token",
    "ISO_BETA_TOKEN": "iso-beta-token",
}
WITHOUT_BETA = {**ENV, "ISO_BETA_TOKEN": ""}

TOKEN_ENV = {"vendor": "ISO_VENDOR_TOKEN", "acme": "ISO_ACME_TOKEN", "beta": "ISO_BETA_TOKEN"}

BETA_MISSING = "missing env var ISO_BETA_TOKEN for partners[1].token_env"


@pytest.fixture(scope="module")
def srv() -> Iterator[SandboxServer]:
    specs = [
        PortalSpec("vendor", ENV["ISO_VENDOR_TOKEN"]),
        PortalSpec("acme", ENV["ISO_ACME_TOKEN"]),
        PortalSpec("beta", ENV["ISO_BETA_TOKEN"]),
    ]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, srv: SandboxServer) -> Path:
    path = write_project(
        tmp_path, project_yaml(("acme", "beta"), hubspot=HubSpotPortals(srv.url, TOKEN_ENV))
    )
    installed = invoke(path, "setup", env=ENV)  # every token set: every portal set up
    assert installed.exit_code == 0, installed.output
    return path


def invoke(config: Path, *args: str, env: dict[str, str] = WITHOUT_BETA) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], env=env)


def test_sync_all_syncs_the_good_partner_and_names_the_missing_variable(config: Path) -> None:
    result = invoke(config, "sync", "--all")
    assert result.exit_code == 3, result.output  # not clean: one connection could not run
    assert "acme: ok" in result.output
    assert "beta: cannot run" in result.output
    assert BETA_MISSING in result.output
    assert "set it in the environment or .env" in result.output
    assert result.output.count("Error:") == 1  # once, after the others were synced
    runs = invoke(config, "runs", "--format", "csv")
    assert runs.exit_code == 0, runs.output
    listed = [(r["connection"], r["status"]) for r in csv.DictReader(io.StringIO(runs.output))]
    assert listed == [("acme", "ok")]  # beta never started


def test_sync_of_the_good_connection_works_and_of_the_broken_one_says_why(config: Path) -> None:
    good = invoke(config, "sync", "--connection", "acme")
    assert good.exit_code == 0, good.output
    assert "acme: ok" in good.output
    broken = invoke(config, "sync", "--connection", "beta")
    assert broken.exit_code == 3
    assert f"Error: connection 'beta' cannot run: {BETA_MISSING}" in broken.output


def test_sync_all_as_json_gives_the_broken_connection_status_unusable(config: Path) -> None:
    result = invoke(config, "sync", "--all", "--json")
    assert result.exit_code == 3
    assert '"status": "unusable"' in result.output and BETA_MISSING in result.output
    assert "Error: 1 connection(s) could not run (beta); the others were synced" in result.output


def test_status_shows_the_broken_connections_reason(config: Path) -> None:
    result = invoke(config, "status")
    assert result.exit_code == 0, result.output
    assert f"beta: cannot run: {BETA_MISSING}" in result.output  # said below the table
    assert "acme: cannot run" not in result.output
    rows = csv.DictReader(io.StringIO(invoke(config, "status", "--format", "csv").output))
    cannot = {r["partner"]: r["cannot_run"] for r in rows}
    assert cannot["acme"] == "" and BETA_MISSING in cannot["beta"]


def test_the_vendors_missing_token_still_refuses_every_command(config: Path) -> None:
    result = invoke(config, "sync", "--connection", "acme", env={**ENV, "ISO_VENDOR_TOKEN": ""})
    assert result.exit_code == 3
    assert "missing env var ISO_VENDOR_TOKEN for vendor.token_env" in result.output


# ---------------------------------------------------------------------- setup, check --online


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[SandboxServer, Path]]:
    """Portals nothing was installed in yet, and a project on them whose deals
    mapping has a misspelt partner property (so an online check of acme has one
    error to find)."""
    specs = [PortalSpec(name, token) for name, token in zip(TOKEN_ENV, ENV.values(), strict=True)]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:
        path = write_project(
            tmp_path,
            project_yaml(("acme", "beta"), hubspot=HubSpotPortals(server.url, TOKEN_ENV)),
            mapping_edit=lambda t: t.replace("partner: dealname", "partner: dealnmae"),
            edits_must_change=True,
        )
        yield server, path


def dealsync_properties(srv: SandboxServer, portal: str) -> set[str]:
    return {
        p["name"]
        for p in srv.portal(portal).list_properties("deals")
        if p["name"].startswith("dealsync_")
    }


ACME_TYPO = "partner property 'dealnmae' does not exist on deals in portal 'acme'"


def test_setup_sets_up_the_others_and_names_a_partners_missing_variable(
    fresh: tuple[SandboxServer, Path],
) -> None:
    srv, config = fresh
    result = invoke(config, "setup")  # beta's token variable is not set
    assert result.exit_code == 3, result.output
    assert (
        f"beta: not set up: {BETA_MISSING}; set it in the environment or .env; "
        "then run `dealsync setup` again" in result.output
    )
    assert "vendor: companies.dealsync_source_id" in result.output
    assert "acme: companies.dealsync_source_id" in result.output
    assert "dealsync_source_id" in dealsync_properties(srv, "vendor")
    assert "dealsync_source_id" in dealsync_properties(srv, "acme")
    assert dealsync_properties(srv, "beta") == set()
    # the online check ran for the portals that were set up: acme's typo is named,
    # dealsync's own properties (just installed) are not reported missing
    assert ACME_TYPO in result.output and "did you mean 'dealname'?" in result.output
    assert "does not exist yet" not in result.output
    assert "Error: 1 portal(s) not set up (beta); 1 problem(s) found against the portals" in (
        result.output
    )


def test_setup_with_a_token_the_portal_refuses_names_the_variable_and_host(
    fresh: tuple[SandboxServer, Path],
) -> None:
    srv, config = fresh
    result = invoke(config, "setup", env={**ENV, "ISO_BETA_TOKEN": "not-betas-token"})
    assert result.exit_code == 3, result.output
    assert (
        f"beta: not set up: could not install its properties (token from ISO_BETA_TOKEN, "
        f"host {srv.url})" in result.output
    )
    assert "401" in result.output and "not-betas-token" not in result.output
    assert "run `dealsync setup` again" in result.output
    assert "dealsync_source_id" in dealsync_properties(srv, "acme")
    assert ACME_TYPO in result.output


def test_check_online_checks_the_others_when_a_partners_variable_is_missing(
    fresh: tuple[SandboxServer, Path],
) -> None:
    _srv, config = fresh
    assert invoke(config, "setup", env=ENV).exit_code == 3  # acme's typo; all set up
    result = invoke(config, "check", "--online")
    assert result.exit_code == 3, result.output
    assert "ISO_BETA_TOKEN" in result.output  # beta's problem, named
    assert ACME_TYPO in result.output  # and acme was still checked online


def test_check_online_checks_the_others_when_a_partners_token_is_refused(
    fresh: tuple[SandboxServer, Path],
) -> None:
    srv, config = fresh
    assert invoke(config, "setup", env=ENV).exit_code == 3
    result = invoke(config, "check", "--online", env={**ENV, "ISO_BETA_TOKEN": "not-betas"})
    assert result.exit_code == 3, result.output
    assert (
        f"partners[1]: could not read the properties of companies in portal 'beta' "
        f"(token from ISO_BETA_TOKEN, host {srv.url}): " in result.output
    )
    assert ACME_TYPO in result.output
