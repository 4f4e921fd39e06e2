"""``dealsync partners add``: a connection appended to an existing ``dealsync.yaml``.

Scenarios on the shipped, commented ``dealsync.yaml``: the entry lands after the last
partner and every other line of the file stays as it was; the result passes
``check`` and the new connection syncs; a HubSpot partner's token variable is printed
and then required by ``check``; and each refusal (a taken or invalid id, an entry that
would not pass ``check``, a file that is invalid already or laid out as a flow list)
names the file, line and field and leaves the file byte for byte as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from connector.adapters.local import LocalCRM
from connector.cli import cli
from connector.testing.world import ann, counterpart, seed_deal

ROOT = Path(__file__).resolve().parents[2]


def run(config: Path, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args], env=env, catch_exceptions=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The shipped ``dealsync.yaml`` (local CRMs, comments, a commented-out example
    partner) with the shipped mappings."""
    shutil.copy(ROOT / "dealsync.yaml", tmp_path / "dealsync.yaml")
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    return tmp_path / "dealsync.yaml"


def test_an_added_partner_keeps_every_line_of_the_file_and_syncs(project: Path) -> None:
    before = project.read_text().splitlines(keepends=True)
    result = run(
        project, "partners", "add", "globex", "--name", "Globex Partners",
        "--adapter", "local", "--notify-email", "partners@globex.example",
        "--tier", "silver", "--schedule", "5m",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    after = project.read_text().splitlines(keepends=True)
    # the new lines come right after acme's entry; nothing else moved or changed
    acme_end = next(i for i, line in enumerate(before) if "path: .dealsync/partner-acme.db" in line)
    added = after[acme_end + 1 : acme_end + 1 + len(after) - len(before)]
    assert after[: acme_end + 1] == before[: acme_end + 1]
    assert after[acme_end + 1 + len(added) :] == before[acme_end + 1 :]
    assert "".join(added) == (
        "  - id: globex\n"
        "    name: Globex Partners\n"
        "    adapter: local\n"
        "    path: .dealsync/partner-globex.db\n"
        "    notify_email: partners@globex.example\n"
        "    tier: silver\n"
        "    schedule:\n"
        "      every_seconds: 300\n"
    )
    assert f"as partners[1], line {acme_end + 2}" in result.output
    assert "dealsync sync --connection globex" in result.output

    assert run(project, "check").exit_code == 0
    # the new connection works: a deal registered on globex's CRM reaches the vendor
    root = project.parent
    deal = seed_deal(
        LocalCRM(root / ".dealsync/partner-globex.db", name="globex"),
        contacts=[ann("initech.com", "Initech")],
        company="Initech",
        domain="initech.com",
    )
    assert run(project, "setup").exit_code == 0
    synced = run(project, "sync", "--connection", "globex")
    assert synced.exit_code == 0, synced.output
    vendor = LocalCRM(root / ".dealsync/vendor.db", name="vendor")
    assert counterpart(vendor, "globex", "deals", deal.id) is not None


def test_a_hubspot_partner_gets_its_token_variable_named(project: Path) -> None:
    env: dict[str, str | None] = {"DEALSYNC_PARTNER_BETA_EU_TOKEN": None}
    result = run(project, "partners", "add", "beta-eu", "--adapter", "hubspot", env=env)
    assert result.exit_code == 0, result.output
    assert "set DEALSYNC_PARTNER_BETA_EU_TOKEN in .env or the environment" in result.output
    assert "Private Apps" in result.output
    entry = yaml.safe_load(project.read_text())["partners"][-1]
    assert entry == {
        "id": "beta-eu",
        "name": "beta-eu",
        "adapter": "hubspot",
        "token_env": "DEALSYNC_PARTNER_BETA_EU_TOKEN",
    }
    missing = run(project, "check", env=env)
    assert missing.exit_code == 3
    assert "missing env var DEALSYNC_PARTNER_BETA_EU_TOKEN for partners[1].token_env" in (
        missing.output
    )
    assert run(project, "check", env={"DEALSYNC_PARTNER_BETA_EU_TOKEN": "pat-x"}).exit_code == 0
    # a second one: the variable named by --token-env, already set
    again = run(
        project, "partners", "add", "gamma", "--adapter", "hubspot",
        "--token-env", "GAMMA_PAT", env={"GAMMA_PAT": "pat-g"},
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "GAMMA_PAT is set already" in again.output
    assert [p["id"] for p in yaml.safe_load(project.read_text())["partners"]] == [
        "acme",
        "beta-eu",
        "gamma",
    ]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["acme"], "dealsync.yaml:{acme_line}: partners[0].id: partner id 'acme' is already used"),
        (["Globex Inc"], "dealsync.yaml: partners[1].id: partner id 'Globex Inc' is not valid"),
        (["globex", "--adapter", "hubspot", "--host", "http://crm.example.com"],
         "partner 'globex' would make"),
        (["globex", "--adapter", "hubspot", "--token-env", "pat-eu1-abc"],
         "partners[1].token_env: token_env must be the name of an environment variable"),
        (["globex", "--adapter", "salesforse"],
         "partners[1]: adapter 'salesforse' is not a known portal kind"),
        (["globex", "--adapter", "local", "--set", "colour=blue"],
         "partners[1]: adapter local has no key 'colour' (its keys: path)"),
        (["globex", "--set", "colour"], "--set 'colour': write KEY=VALUE"),
        (["globex", "--schedule", "every day"], "--schedule 'every day': give an interval"),
        (["globex", "--schedule", "0s"], "--schedule '0s':"),
        (["globex", "--adapter", "local", "--notify-email", "not-an-address"],
         "partners[1].notify_email"),
    ],
)  # fmt: skip
def test_a_refused_partner_leaves_the_file_as_it_was(
    project: Path, args: list[str], said: str
) -> None:
    before = project.read_bytes()
    acme_line = before.decode().splitlines().index("  - id: acme") + 1
    said = said.replace("{acme_line}", str(acme_line))
    result = run(project, "partners", "add", *args)
    assert result.exit_code == 3, result.output
    assert said in " ".join(result.output.split())
    assert project.read_bytes() == before
    assert sorted(p.name for p in project.parent.iterdir()) == ["dealsync.yaml", "mappings"]


def test_an_entry_that_would_not_pass_check_is_shown_with_its_line(project: Path) -> None:
    before = project.read_bytes()
    acme_end = before.decode().splitlines().index("    path: .dealsync/partner-acme.db")
    result = run(
        project, "partners", "add", "globex", "--adapter", "hubspot",
        "--host", "http://crm.example.com",
    )  # fmt: skip
    assert result.exit_code == 3
    lines = result.output.splitlines()
    assert "left unchanged" in lines[0]
    assert (
        lines[1]
        .strip()
        .startswith(f"{project}:{acme_end + 6}: partners[1].host: host is plain http://")
    )
    assert project.read_bytes() == before


def test_a_file_with_problems_is_not_edited(project: Path) -> None:
    broken = project.read_text().replace("max_attempts: 5", "max_attempts: 500")
    project.write_text(broken)
    result = run(project, "partners", "add", "globex", "--adapter", "local")
    assert result.exit_code == 3
    assert "has problems already; fix them first (`dealsync check`)" in result.output
    assert "sync.max_attempts" in result.output
    assert project.read_text() == broken


def test_a_flow_list_of_partners_is_refused_with_the_way_out(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    config = tmp_path / "dealsync.yaml"
    text = (
        "version: 1\nstate_url: sqlite:///state.db\n"
        "vendor: {adapter: local, path: v.db}\n"
        "partners: [{id: acme, name: Acme, adapter: local, path: a.db}]\n"
        "mappings: [mappings/shared_deals.yaml]\nrules: mappings/rules.yaml\n"
    )
    config.write_text(text)
    result = run(config, "partners", "add", "globex", "--adapter", "local")
    assert result.exit_code == 3
    assert f"{config}:4: partners is written as a flow list" in result.output
    assert config.read_text() == text


def test_crlf_line_endings_and_a_missing_last_newline_are_kept(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    config = tmp_path / "dealsync.yaml"
    lines = [
        "version: 1", "vendor:", "  adapter: local", "  path: v.db", "mappings:",
        "  - mappings/shared_deals.yaml", "rules: mappings/rules.yaml", "partners:",
        "- id: acme   # the first one", "  name: Acme", "  adapter: local", "  path: a.db",
    ]  # fmt: skip
    config.write_bytes("\r\n".join(lines).encode())  # no newline at the end
    result = run(config, "partners", "add", "globex", "--adapter", "local")
    assert result.exit_code == 0, result.output
    assert (
        config.read_bytes()
        == (
            "\r\n".join(lines)
            + "\r\n- id: globex\r\n  name: globex\r\n  adapter: local\r\n"
            + "  path: .dealsync/partner-globex.db\r\n"
        ).encode()
    )
    assert run(config, "check").exit_code == 0


def test_no_config_file_says_how_to_start(tmp_path: Path) -> None:
    result = run(tmp_path / "dealsync.yaml", "partners", "add", "globex")
    assert result.exit_code == 3
    assert "config file not found; create a project with `dealsync init`" in result.output
