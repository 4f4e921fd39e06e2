"""``dealsync init``: a new operator's project folder, from flags or questions.

Scenarios: init into an empty folder, then ``check``, ``setup`` and a real pass on the
embedded CRM files, as the operator would type them; the HubSpot defaults naming the
tokens' variables (never values); questions answered at the prompt; files kept unless
``--force``; refusals that leave the folder untouched; a portal kind registered by
someone else, written from its own settings model; and the deploy guide naming only
commands and flags that exist."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result
from dotenv import dotenv_values

from connector.adapters.local import LocalCRM
from connector.adapters.registry import KindSettings, PortalKind, register, unregister
from connector.api.onboarding import shipped_mappings
from connector.cli import cli
from connector.testing.world import ann, counterpart, seed_deal

ROOT = Path(__file__).resolve().parents[2]
NO_TOKENS = {"DEALSYNC_VENDOR_TOKEN": None, "DEALSYNC_PARTNER_ACME_TOKEN": None}


def run(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def files_of(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_then_check_setup_and_sync_on_the_embedded_crms(tmp_path: Path) -> None:
    root = tmp_path / "program"
    result = run(
        "init", str(root), "--no-input", "--vendor-adapter", "local",
        "--partner", "acme:Acme Agency", "--partner-adapter", "local",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("dealsync.yaml", ".env", "mappings/shared_deals.yaml", "mappings/rules.yaml"):
        assert f"wrote {root / name}" in result.output
    assert "dealsync check --online" in result.output
    assert "dealsync setup" in result.output and "dealsync sync --all" in result.output
    # the shipped mappings, byte for byte
    assert (root / "mappings/shared_deals.yaml").read_text() == (
        ROOT / "mappings/shared_deals.yaml"
    ).read_text()
    config = yaml.safe_load((root / "dealsync.yaml").read_text())
    assert config["vendor"] == {"adapter": "local", "path": ".dealsync/vendor.db"}
    assert config["partners"] == [
        {"id": "acme", "name": "Acme Agency", "adapter": "local",
         "path": ".dealsync/partner-acme.db"},
    ]  # fmt: skip
    cfg = str(root / "dealsync.yaml")
    check = run("-c", cfg, "check")
    assert check.exit_code == 0, check.output
    assert "valid" in check.output

    # a partner's user registers a deal; setup, then the first pass shares it
    partner = LocalCRM(root / ".dealsync/partner-acme.db", name="acme")
    deal = seed_deal(partner, contacts=[ann("globex.com", "Globex")])
    assert run("-c", cfg, "setup").exit_code == 0
    first = run("-c", cfg, "sync", "--all")
    assert first.exit_code == 0, first.output
    vendor = LocalCRM(root / ".dealsync/vendor.db", name="vendor")
    shared = counterpart(vendor, "acme", "deals", deal.id)
    assert shared is not None and shared.get("dealname") == "Globex deal"
    assert counterpart(vendor, "acme", "companies", deal.company.id) is not None
    again = run("-c", cfg, "sync", "--all")
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_hubspot_defaults_name_the_token_variables_and_never_a_value(tmp_path: Path) -> None:
    result = run("init", str(tmp_path), "--no-input", "--partner", "acme", env=NO_TOKENS)
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "dealsync.yaml").read_text())
    assert config["vendor"] == {"adapter": "hubspot", "token_env": "DEALSYNC_VENDOR_TOKEN"}
    assert config["partners"][0]["token_env"] == "DEALSYNC_PARTNER_ACME_TOKEN"
    env_text = (tmp_path / ".env").read_text()
    assert "# DEALSYNC_VENDOR_TOKEN=\n" in env_text
    assert "# DEALSYNC_PARTNER_ACME_TOKEN=\n" in env_text
    assert "Private Apps" in env_text and "docs/deploy.md" in env_text  # where it comes from
    assert dotenv_values(tmp_path / ".env") == {}  # names only, every one commented out
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600  # it will hold the secrets
    assert "DEALSYNC_VENDOR_TOKEN: vendor (hubspot) token_env" in result.output
    assert "set DEALSYNC_VENDOR_TOKEN, DEALSYNC_PARTNER_ACME_TOKEN in .env" in result.output

    cfg = str(tmp_path / "dealsync.yaml")
    missing = run("-c", cfg, "check", env=NO_TOKENS)
    assert missing.exit_code == 3
    assert "missing env var DEALSYNC_VENDOR_TOKEN" in missing.output
    assert "missing env var DEALSYNC_PARTNER_ACME_TOKEN" in missing.output
    tokens = {"DEALSYNC_VENDOR_TOKEN": "pat-v", "DEALSYNC_PARTNER_ACME_TOKEN": "pat-a"}
    ok = run("-c", cfg, "check", env=dict(tokens))
    assert ok.exit_code == 0, ok.output


def test_questions_at_the_prompt_write_the_answers(tmp_path: Path) -> None:
    answers = "\n".join(
        [
            "hubspot",  # vendor adapter
            "VENDOR_PAT",  # vendor token_env
            "https://api.hubapi.com",  # vendor host
            "acme",  # partner id
            "Acme Agency",  # its name
            "local",  # its adapter
            "",  # its path: the suggestion
            "n",  # another partner?
        ]
    )
    result = run("init", str(tmp_path), input=answers + "\n")
    assert result.exit_code == 0, result.output
    assert "Vendor portal adapter (hubspot (a HubSpot portal), local" in result.output
    config = yaml.safe_load((tmp_path / "dealsync.yaml").read_text())
    assert config["vendor"] == {
        "adapter": "hubspot",
        "token_env": "VENDOR_PAT",
        "host": "https://api.hubapi.com",
    }
    assert config["partners"] == [
        {"id": "acme", "name": "Acme Agency", "adapter": "local",
         "path": ".dealsync/partner-acme.db"},
    ]  # fmt: skip


def test_a_bad_partner_id_at_the_prompt_is_asked_again(tmp_path: Path) -> None:
    answers = ["local", "", "Acme Agency", "acme", "", "local", "", "n"]
    result = run("init", str(tmp_path), input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "partner id 'Acme Agency' is not valid" in result.output
    assert yaml.safe_load((tmp_path / "dealsync.yaml").read_text())["partners"][0]["id"] == "acme"


def test_existing_files_are_kept_unless_force(tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings/rules.yaml").write_text("# my own rules\n")
    (tmp_path / ".env").write_text("DEALSYNC_VENDOR_TOKEN=pat-mine\n")
    args = ["init", str(tmp_path), "--no-input", "--vendor-adapter", "local",
            "--partner", "acme", "--partner-adapter", "local"]  # fmt: skip
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert f"kept  {tmp_path / '.env'}" in first.output
    assert f"kept  {tmp_path / 'mappings/rules.yaml'}" in first.output
    assert f"wrote {tmp_path / 'dealsync.yaml'}" in first.output
    assert (tmp_path / ".env").read_text() == "DEALSYNC_VENDOR_TOKEN=pat-mine\n"
    assert (tmp_path / "mappings/rules.yaml").read_text() == "# my own rules\n"

    # run again: the config written above is kept too, and nothing is asked
    (tmp_path / "dealsync.yaml").write_text(
        (tmp_path / "dealsync.yaml").read_text() + "# edited by hand\n"
    )
    before = files_of(tmp_path)
    again = run("init", str(tmp_path))
    assert again.exit_code == 0, again.output
    assert f"kept  {tmp_path / 'dealsync.yaml'}" in again.output
    assert not [
        line
        for line in again.output.splitlines()
        if line.startswith(("wrote", "Vendor", "Partner"))
    ]
    assert files_of(tmp_path) == before
    told = run("init", str(tmp_path), "--partner", "beta")
    assert told.exit_code == 0
    assert "exists and is kept, so the portal and partner options are not used" in told.output
    assert "`dealsync partners add` adds a partner" in told.output
    assert files_of(tmp_path) == before

    forced = run(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert not [line for line in forced.output.splitlines() if line.startswith("kept")]
    assert (tmp_path / "mappings/rules.yaml").read_text() == (
        ROOT / "mappings/rules.yaml"
    ).read_text()
    assert "# edited by hand" not in (tmp_path / "dealsync.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--partner", "acme", "--set", "vendor.colour=blue"],
         "vendor portal: adapter hubspot has no key 'colour' (its keys: token_env, host,"),
        (["--partner", "acme", "--vendor-host", "http://crm.example.com"],
         "vendor.host: host is plain http://, which would send the portal's access token "
         "unencrypted"),
        (["--partner", "Acme Agency"], "--partner: partner id 'Acme Agency' is not valid"),
        (["--partner", "acme", "--partner", "acme"], "--partner 'acme' is given twice"),
        (["--vendor-adapter", "salesforse", "--partner", "acme"],
         "adapter 'salesforse' is not a known portal kind; use one of: hubspot"),
        ([], "needs a vendor portal and at least one partner connection: give --partner"),
        (["--partner", "acme", "--set", "host=x"], "--set 'host=x': write PORTAL.KEY=VALUE"),
        (["--partner", "acme", "--partner-adapter", "beta=local"],
         "'beta' is named in --partner-adapter or --set but is not a --partner"),
    ],
)  # fmt: skip
def test_refused_inputs_say_why_and_write_nothing(
    tmp_path: Path, args: list[str], said: str
) -> None:
    root = tmp_path / "new"
    result = run("init", str(root), "--no-input", *args)
    assert result.exit_code == 3
    assert said in " ".join(result.output.split())
    assert not root.exists() or files_of(root) == {}


class _ApiKeySettings(KindSettings):
    api_key_env: str  # required: no default of its own
    region: str | None = None
    page_size: int = 50  # has a default: not asked, not written


@pytest.fixture
def other_kind() -> Iterator[str]:
    """A CRM kind registered the way a new adapter registers itself."""

    def build(name: str, settings: object, ctx: object) -> LocalCRM:
        raise AssertionError("not built in this test")

    register(PortalKind("othercrm", "another CRM", _ApiKeySettings, build))  # type: ignore[arg-type]
    yield "othercrm"
    unregister("othercrm")


def test_a_registered_kind_is_written_from_its_own_settings(
    tmp_path: Path, other_kind: str
) -> None:
    result = run(
        "init", str(tmp_path), "--no-input", "--vendor-adapter", other_kind,
        "--set", "vendor.region=eu", "--partner", "acme", "--partner-adapter", "local",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "dealsync.yaml").read_text())
    assert config["vendor"] == {
        "adapter": other_kind,
        "api_key_env": "DEALSYNC_VENDOR_API_KEY",
        "region": "eu",
    }
    env_text = (tmp_path / ".env").read_text()
    assert "# vendor (othercrm) api_key_env: the secret `api_key_env` names for another CRM" in (
        env_text
    )
    assert "# DEALSYNC_VENDOR_API_KEY=\n" in env_text
    assert "othercrm (another CRM)" in (tmp_path / "dealsync.yaml").read_text()
    assert run("-c", str(tmp_path / "dealsync.yaml"), "check").exit_code == 0


def test_the_shipped_mappings_are_package_data() -> None:
    """An installed wheel has them inside the package: ``connector/shipped_mappings``
    (in a clone a link to ``mappings/``) is what init copies, and pyproject ships it."""
    folder = shipped_mappings()
    assert folder == Path(__import__("connector").__file__).parent / "shipped_mappings"
    assert sorted(p.name for p in folder.glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "mappings").glob("*.yaml")
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "shipped_mappings/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["connector"]


# --------------------------------------------------------------------------- the deploy guide


def _mentions(text: str) -> list[list[str]]:
    """Every ``dealsync …`` command line in code spans and blocks of a Markdown text."""
    code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    found = []
    for chunk in code:
        for line in chunk.replace("\\\n", " ").splitlines():  # continued lines joined
            line = line.split("#", 1)[0]
            # a command: at the start, after a path's bin/, a prompt or an &&
            for m in re.finditer(r"(?:^\s*|bin/|\$ |&& )dealsync(?![\w-])(\s[^|;&]*)?", line):
                words = [w.strip("[]()\\…,.") for w in (m.group(1) or "").split()]
                found.append([w for w in words if w])
    return found


def _unknown(words: list[str]) -> str | None:
    """Why ``dealsync WORDS`` is not a real command line (None: it is)."""
    command: click.Command = cli
    path = ["dealsync"]
    skip = False
    for word in words:
        if skip:  # the value of the option before
            skip = False
            continue
        if word.startswith("-"):
            flag = word.split("=", 1)[0]
            params = {
                o: p
                for c in (cli, command)
                for p in c.params
                for o in (*p.opts, *getattr(p, "secondary_opts", []))
            }
            if flag not in params:
                return f"{' '.join(path)} has no option {flag}"
            param = params[flag]
            takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
            skip = takes_value and "=" not in word
            continue
        if isinstance(command, click.Group):
            sub = command.commands.get(word)
            if sub is None:
                if word.isupper() or "/" in word or "." in word or word.isdigit():
                    continue  # an argument
                return f"{' '.join(path)} has no command {word!r}"
            command, path = sub, [*path, word]
    return None


def test_the_parser_of_the_docs_sees_a_command_that_does_not_exist() -> None:
    assert _unknown(["sync", "--all"]) is None
    assert _unknown(["partners", "add", "globex", "--token-env", "X"]) is None
    assert _unknown(["migrate"]) == "dealsync has no command 'migrate'"
    assert _unknown(["serve", "--workers", "4"]) == "dealsync serve has no option --workers"
    found = _mentions("run `dealsync check --online` then\n```sh\ndealsync setup\n```")
    assert sorted(found) == [["check", "--online"], ["setup"]]


@pytest.mark.parametrize("doc", ["docs/deploy.md", "README.md"])
def test_the_guides_name_only_commands_and_flags_that_exist(doc: str) -> None:
    mentions = _mentions((ROOT / doc).read_text())
    assert mentions, f"{doc} names no dealsync command"
    wrong = {" ".join(m): why for m in mentions if (why := _unknown(m))}
    assert wrong == {}
