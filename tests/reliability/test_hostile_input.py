"""Hostile input: values synced byte for byte through LocalCRM and the HubSpot sandbox;
wrong types from a CRM become per-record errors naming record, side and field while
the rest of the pass proceeds; every malformed config/mapping/rules file of the corpus
gives the real CLI (``check`` and ``sync``) one clear error, no traceback, exit 3."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.hubspot import HubSpotAdapter
from connector.api import Dealsync
from connector.config import load_project
from connector.config.models import PortalConfig
from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.hubspot import unthrottled_adapter

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "config" / "fixtures" / "broken"
SHIPPED = ROOT / "mappings"
CLI = [sys.executable, "-c", "from connector.cli import main; main()"]


def _cli(config: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, in ``cwd``, with a bare environment (no token,
    no mail settings from the machine running the tests)."""
    return subprocess.run(
        [*CLI, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


HOSTILE = {
    "long": ("0123456789abcdefghij" * 10240),  # 200 KB
    "rtl": "مرحبا بالعالم \u200fשלום עולם\u202e reversed",
    "emoji": "deal 👩‍👩‍👧‍👦 🏳️‍🌈 🇩🇪 \U0001f9ea",
    "combining": "Ame\u0301lie Zo\u0308e a\u0323\u0302\u0301 \u1100\u1161\u11a8",
    "control": "tab\there\rcr\nnl \x01\x07\x1b[31mred\x1b[0m \x7f",
    "sql": "'; DROP TABLE link; -- \" OR 1=1 /*",
    "html": "<script>alert('x')</script><b onmouseover=\"x\">&amp;&lt;</b>",
    "yaml": "key: [1, {a: b}]\n- !!python/object/apply:os.system ['ls']\n---\n&a *a",
    "format": "{0} %s %(x)s ${HOME} $(ls) `id` {{ jinja }}",
    "whitespace": "  leading and trailing  \u00a0\u2003",
}


# ---------------------------------------------------------------------- LocalCRM


def test_hostile_values_sync_byte_for_byte_through_localcrm(world: Any) -> None:
    seeded = {k: world.seed_deal(description=v) for k, v in HOSTILE.items()}
    result = world.sync()
    assert result.status == "ok", [str(e) for e in result.errors]
    for key, s in seeded.items():
        vendor = world.counterpart("deals", s.id)
        assert vendor is not None
        assert vendor.get("description") == HOSTILE[key], key
    # and back: the vendor writes the hostile values, the partner receives them exactly
    for key, s in seeded.items():
        world.vendor.edit(
            "deals", world.counterpart("deals", s.id).id, {"description": HOSTILE[key][::-1]}
        )
    result = world.sync()
    assert result.status == "ok", [str(e) for e in result.errors]
    for key, s in seeded.items():
        assert world.partner.get("deals", s.id).get("description") == HOSTILE[key][::-1], key
    again = world.sync()
    assert not [k for k in again.counts if k.startswith(("created", "updated"))]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("amount", "abc"),
        ("closedate", "2027-13-45"),
        ("closedate", "yesterday"),
        ("dealstage", "bogus-stage"),
    ],
)
def test_wrong_types_from_a_crm_are_record_errors_and_the_pass_goes_on(
    world: Any, field: str, bad: str
) -> None:
    bad_deal, good_deal = world.seed_deal(), world.seed_deal()
    assert world.sync().status == "ok"
    vbad = world.counterpart("deals", bad_deal.id)
    vgood = world.counterpart("deals", good_deal.id)
    world.vendor.edit("deals", vbad.id, {field: bad})
    world.vendor.edit("deals", vgood.id, {"amount": "4242"})
    newcomer = world.seed_deal()
    result = world.sync()
    assert result.status == "failed"
    [err] = [e for e in result.errors if e.field and field in e.field]
    text = str(err)
    assert err.side == "vendor" and err.record_id == vbad.id, text
    assert vbad.id in text and "vendor" in text and field in text
    # the rest of the pass proceeded
    assert world.partner.get("deals", good_deal.id).get("amount") == "4242"
    assert world.counterpart("deals", newcomer.id) is not None
    # the bad value was not copied over, and the failure is in the run log
    assert world.partner.get("deals", bad_deal.id).get(field) != bad
    failed = world.store.run_records(result.run_id, outcome="failed")
    assert any(r.record_id == vbad.id for r in failed)


# ---------------------------------------------------------------------- sandbox

ENV = {"HS_VENDOR_TOKEN": "hostile-vendor", "HS_ACME_TOKEN": "hostile-acme"}
SANDBOX_CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor: {{name: vendor, adapter: hubspot, token_env: HS_VENDOR_TOKEN, host: '{url}'}}
partners:
  - {{id: acme, name: Acme Agency, adapter: hubspot, token_env: HS_ACME_TOKEN, host: '{url}'}}
mappings: [{mappings}/shared_deals.yaml]
rules: {mappings}/rules.yaml
"""


@pytest.fixture
def sandbox_app(tmp_path: Path) -> Iterator[tuple[Dealsync, SandboxServer]]:
    specs = [PortalSpec("vendor", ENV["HS_VENDOR_TOKEN"]), PortalSpec("acme", ENV["HS_ACME_TOKEN"])]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as srv:
        (tmp_path / "dealsync.yaml").write_text(
            SANDBOX_CONFIG.format(url=srv.url, mappings=SHIPPED)
        )
        project = load_project(tmp_path / "dealsync.yaml", env=ENV)

        def factory(name: str, portal: PortalConfig) -> HubSpotAdapter:
            return unthrottled_adapter(ENV[portal.token_env or ""], srv.url, name)

        app = Dealsync(project, env=ENV, adapter_factory=factory, hooks=[])
        app.setup()
        yield app, srv
        app.close()


def test_hostile_values_sync_byte_for_byte_through_the_sandbox(
    sandbox_app: tuple[Dealsync, SandboxServer],
) -> None:
    app, srv = sandbox_app
    user = PortalUser(srv.url, ENV["HS_ACME_TOKEN"])  # a partner's user, plain client
    keys = {
        key: user.create(
            "deals",
            {
                "dealname": f"Hostile {key}",
                "dealsync_register": "true",
                "description": value,
                "dealstage": "qualifiedtobuy",
                "pipeline": "default",
            },
        )
        for key, value in HOSTILE.items()
    }
    result = app.sync("acme")
    assert result.status == "ok", [str(e) for e in result.errors]
    by_src = {
        r["properties"].get("dealsync_source_id"): r for r in srv.portal("vendor").all("deals")
    }
    for key, pid in keys.items():
        vendor = by_src[f"acme:{pid}"]
        assert vendor["properties"].get("description") == HOSTILE[key], key
    again = app.sync("acme")
    assert not [k for k in again.counts if k.startswith(("created", "updated"))]


# ---------------------------------------------------------------------- config corpus


def _project_for(fixture: Path, tmp: Path) -> Path:
    if fixture.name.startswith("config_"):
        return fixture
    is_rules = fixture.name.startswith("rules_")
    mapping = SHIPPED / "shared_deals.yaml" if is_rules else fixture
    rules = fixture if is_rules else SHIPPED / "rules.yaml"
    config = tmp / f"{fixture.stem}.dealsync.yaml"
    config.write_text(
        "vendor: {adapter: local, path: vendor.db}\n"
        "partners: [{id: acme, name: Acme, adapter: local, path: acme.db}]\n"
        f"mappings: ['{mapping}']\nrules: '{rules}'\n"
    )
    return config


@pytest.mark.timeout(1800)  # ~120 CLI processes: minutes on a loaded 2-core machine
def test_every_malformed_file_gives_the_cli_one_clear_error_and_exit_3(tmp_path: Path) -> None:
    corpus = sorted(BROKEN.glob("*.yaml"))
    assert len(corpus) >= 30
    jobs = [(f, cmd) for f in corpus for cmd in (["check"], ["sync", "--connection", "acme"])]

    def run(job: tuple[Path, list[str]]) -> tuple[str, int, str]:
        fixture, cmd = job
        config = _project_for(fixture, tmp_path)
        proc = _cli(config, cmd, tmp_path)
        return f"{fixture.name} {' '.join(cmd)}", proc.returncode, proc.stdout + proc.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, jobs))
    bad = []
    for what, code, text in results:
        errors = [line for line in text.splitlines() if line.startswith("Error:")]
        if code != 3 or "Traceback" in text or len(errors) != 1 or 'File "' in text:
            bad.append((what, code, text[-600:]))
    assert not bad, bad[:5]
    assert not (tmp_path / "state.db").exists()  # nothing was synced


# ---------------------------------------------------------------------- ids beyond any row

HUGE = "99999999999999999999999"  # 23 digits: SQLite cannot even compare with it


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["runs", HUGE], f"no run #{HUGE}"),
        (["conflicts", "show", HUGE], f"no conflict #{HUGE}"),
        (["conflicts", "resolve", HUGE, "--take", "vendor"], f"no conflict #{HUGE}"),
        (["partners", "token", "revoke", "--partner", "acme", HUGE], f"no token #{HUGE}"),
    ],
)
def test_an_id_too_large_for_any_row_is_not_found_not_a_crash(
    tmp_path: Path, command: list[str], message: str
) -> None:
    config = tmp_path / "dealsync.yaml"
    config.write_text(
        "vendor: {adapter: local, path: vendor.db}\n"
        "partners: [{id: acme, name: Acme, adapter: local, path: acme.db}]\n"
        f"mappings: ['{SHIPPED / 'shared_deals.yaml'}']\nrules: '{SHIPPED / 'rules.yaml'}'\n"
    )
    proc = _cli(config, command, tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 3, text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {message}"), text
    assert "Overflow" not in text and "Traceback" not in text
