"""Secrets never leak: a scenario over two HubSpot sandbox portals with distinctive
tokens, then a scan of everything the product emitted — logs, CLI output (every
reporting command, JSON and tables), the whole state database (run records, errors,
outbox), the service's /metrics and admin page, and a failing pass's error.
Consent e-mails must not name the partner; lead notifications must not name the
contact (their own suites check this per message; here the whole outbox is scanned)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, select

from connector.api import Dealsync, register_lead
from connector.cli import cli
from connector.config import load_project
from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import write_project

VENDOR_TOKEN = "tok-SECRET-vendor-8f3a9c"
PARTNER_TOKEN = "tok-SECRET-partner-77d1e0"
ADMIN_TOKEN = "adm-SECRET-admin-5b2c41"
WEBHOOK_SECRET = "whk-SECRET-hook-19ae03"
SECRETS = (VENDOR_TOKEN, PARTNER_TOKEN, ADMIN_TOKEN, WEBHOOK_SECRET)

CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor: {{name: vendor, adapter: hubspot, token_env: T_VENDOR, host: "{url}"}}
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: T_ACME
    host: "{url}"
    notify_email: alerts@acme-agency.example
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
service: {{admin_token_env: T_ADMIN, webhook_secret_env: T_HOOK}}
"""


def _project(tmp_path: Path, url: str) -> Path:
    return write_project(tmp_path, CONFIG.format(url=url))


PORTALS = [
    PortalSpec(name="vendor", token=VENDOR_TOKEN),
    PortalSpec(name="acme", token=PARTNER_TOKEN),
]


def _open(
    tmp_path: Path, url: str, env: dict[str, str]
) -> tuple[Path, Dealsync, PortalUser, PortalUser]:
    """The project on the sandbox at ``url``, set up, and a user of each portal."""
    config = _project(tmp_path, url)
    app = Dealsync(load_project(config, env=env), env=env)
    app.setup()
    return config, app, PortalUser(url, PARTNER_TOKEN), PortalUser(url, VENDOR_TOKEN)


def _registered_deal(partner: PortalUser, dealname: str, amount: str) -> str:
    """A deal the partner registers on its portal (associations are the caller's)."""
    props = {"dealname": dealname, "amount": amount, "dealstage": "qualifiedtobuy"}
    return partner.create("deals", {**props, "pipeline": "default", "dealsync_register": "true"})


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} contains a secret"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    values = {
        "T_VENDOR": VENDOR_TOKEN,
        "T_ACME": PARTNER_TOKEN,
        "T_ADMIN": ADMIN_TOKEN,
        "T_HOOK": WEBHOOK_SECRET,
        "DEALSYNC_MAIL_SINK": str(tmp_path / "mail"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def test_no_secret_in_anything_the_product_emits(
    tmp_path: Path, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with SandboxServer(portals=PORTALS, port=0, limits=False, search_lag=0) as srv:
        config, app, partner, vendor = _open(tmp_path, srv.url, env)
        c = partner.create("companies", {"name": "Initech", "domain": "initech.de"})
        p = partner.create(
            "contacts",
            {
                "firstname": "Bill",
                "lastname": "Lumbergh",
                "email": "bill@initech.de",
                "country": "DE",
            },
        )
        d = _registered_deal(partner, "Initech rollout", "100")
        partner.associate("deals", d, "companies", c)
        partner.associate("deals", d, "contacts", p)
        assert app.sync("acme").status == "ok"
        vendor.send_event("pe_demo_requested", "bill@initech.de")
        app.sync("acme")
        vid = vendor.find_by("deals", "dealsync_source_id", f"acme:{d}")
        vendor.edit("deals", vid, {"dealstage": "closedlost"})
        app.sync("acme")
        app.close()

        runner = CliRunner()
        outputs = []
        for args in (
            ["status"],
            ["status", "--json"],
            ["runs"],
            ["runs", "1", "--json"],
            ["runs", "3"],
            ["registrations", "--format", "json"],
            ["commissions", "--format", "csv"],
            ["outbox", "--format", "json"],
            ["conflicts", "--all"],
            ["check"],
            ["sync", "--json"],
            ["sync", "--dry-run"],
        ):
            result = runner.invoke(cli, ["--config", str(config), *args], env=env)
            outputs.append(result.output)
            assert result.exit_code in (0, 1, 2), (args, result.output)
        for text, args in zip(outputs, range(len(outputs)), strict=True):
            _assert_clean(text, f"CLI output #{args}")

        # the service: metrics and the admin page (logged in)
        from starlette.testclient import TestClient

        from connector.service.core import Service
        from connector.service.http import build_app

        service = Service(config, env=env)
        with TestClient(build_app(service)) as client:
            _assert_clean(client.get("/metrics").text, "/metrics")
            _assert_clean(client.get("/healthz").text, "/healthz")
            login = client.post("/admin/login", data={"token": ADMIN_TOKEN}, follow_redirects=True)
            assert login.status_code == 200 and "acme" in login.text  # really logged in
            _assert_clean(login.text, "the admin page")
            for cookie in client.cookies.jar:
                assert cookie.value not in SECRETS

    # a pass that fails for a bad token: the error names the variable, never the value
    bad_env = {**env, "T_ACME": "tok-SECRET-wrong-000000"}
    with SandboxServer(portals=PORTALS, port=0, limits=False, search_lag=0) as srv2:
        (tmp_path / "dealsync.yaml").write_text(CONFIG.format(url=srv2.url))
        app2 = Dealsync(load_project(config, env=bad_env), env=bad_env)
        result = app2.sync("acme")
        assert result.status == "fatal"
        assert "tok-SECRET-wrong-000000" not in (result.error or "")
        _assert_clean(result.error or "", "the fatal error")
        app2.close()

    _assert_clean(caplog.text, "the logs")
    # the whole state database, every table and column
    from connector.state import StateStore

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    meta = MetaData()
    meta.reflect(store.engine)
    with store.engine.connect() as conn:
        dump = "\n".join(
            json.dumps([list(map(str, row)) for row in conn.execute(select(table))])
            for table in meta.sorted_tables
        )
    store.close()
    _assert_clean(dump, "the state database")
    assert "tok-SECRET-wrong" not in dump
    for eml in (tmp_path / "mail").glob("*.eml"):
        _assert_clean(eml.read_text(errors="replace"), f"e-mail {eml.name}")


def test_consent_mail_never_names_the_partner_and_notifications_never_the_contact(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with SandboxServer(portals=PORTALS, port=0, limits=False, search_lag=0) as srv:
        _config, app, partner, vendor = _open(tmp_path, srv.url, env)
        people = [
            ("Bill", "Lumbergh", "bill@initech.de", "DE"),
            ("Milton", "Waddams", "milton@initech.de", "AT"),
        ]
        c = partner.create("companies", {"name": "Initech", "domain": "initech.de"})
        d = _registered_deal(partner, "Initech", "1")
        partner.associate("deals", d, "companies", c)
        for first, last, email, country in people:
            pid = partner.create(
                "contacts",
                {"firstname": first, "lastname": last, "email": email, "country": country},
            )
            partner.associate("deals", d, "contacts", pid)
        app.sync("acme")
        for _, _, email, _ in people:
            vendor.send_event("pe_demo_requested", email)
            vendor.send_event("pe_pricing_page_viewed", email)
        app.sync("acme")
        messages = app.outbox.messages(limit=1000)
        app.close()
    consent = [m for m in messages if m.kind in ("consent_request", "data_notice")]
    notes = [m for m in messages if m.kind == "lead_notification"]
    assert {m.recipient for m in consent} == {"bill@initech.de", "milton@initech.de"}
    assert len(notes) == 1 and "Initech" in notes[0].body
    for m in consent:
        text = (m.subject + m.body).casefold()
        for banned in ("acme", "acme agency", "alerts@acme-agency.example", "acme-agency.example"):
            assert banned not in text
    for first, last, email, _ in people:
        text = (notes[0].subject + notes[0].body).casefold()
        for banned in (first, last, email, email.split("@")[0]):
            assert banned.casefold() not in text


def test_no_contact_email_address_in_any_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs carry ids, never a contact's e-mail address (issue 12): a registration over
    two sandbox portals, a delivery the SMTP server refuses (its 550 names the
    address), a successful one, a held message and its release, a lead notification."""
    from datetime import timedelta

    from connector.records import utcnow
    from connector.testing.mail import MisbehavingSMTP

    caplog.set_level(logging.DEBUG)
    people = {
        "bill@initech.de": ("Bill", "Lumbergh", "DE", "initech.de", "Initech"),
        "milton@initech.de": ("Milton", "Waddams", "AT", "initech.de", "Initech"),
        # a company name that names the partner: its consent request is held
        "eva@acme-kft.hu": ("Eva", "Nagy", "DE", "acme-kft.hu", "Acme Agency Kft"),
    }
    with (
        SandboxServer(portals=PORTALS, port=0, limits=False, search_lag=0) as srv,
        MisbehavingSMTP("refuse_recipient") as smtp,
    ):
        env = {"T_VENDOR": VENDOR_TOKEN, "T_ACME": PARTNER_TOKEN, **smtp.env}
        _config, app, partner, vendor = _open(tmp_path, srv.url, env)
        for domain, company in {(v[3], v[4]) for v in people.values()}:
            c = partner.create("companies", {"name": company, "domain": domain})
            d = _registered_deal(partner, f"{company} rollout", "100")
            partner.associate("deals", d, "companies", c)
            for email, (first, last, country, dom, _) in people.items():
                if dom == domain:
                    p = partner.create(
                        "contacts",
                        {"firstname": first, "lastname": last, "email": email, "country": country},
                    )
                    partner.associate("deals", d, "contacts", p)
        assert app.sync("acme").status == "ok"
        statuses = {m.recipient: m.status for m in app.outbox.messages()}
        assert statuses == {
            "bill@initech.de": "queued",
            "milton@initech.de": "queued",
            "eva@acme-kft.hu": "held",
        }
        failed = [m for m in app.outbox.messages(status="queued") if m.attempts == 1]
        assert len(failed) == 2 and all("550" in (m.detail or "") for m in failed)
        [held] = app.outbox.messages(status="held")
        app.release_email(held.id)  # type: ignore[arg-type]
        smtp.mode = "ok"
        later = utcnow() + timedelta(minutes=5)
        assert all(d.ok for d in app.send_outbox(now=later))
        assert len(smtp.accepted) == 3
        vendor.send_event("pe_demo_requested", "bill@initech.de")
        app.sync("acme")
        assert [m.status for m in app.outbox.messages(kind="lead_notification")] == ["sent"]
        # a lead registered on the partner's behalf (`dealsync register lead`), then a pass
        lead = register_lead(
            app,
            partner="acme",
            domain="umbrella.de",
            first="Rita",
            last="Roth",
            email="rita@umbrella.de",
            company="Umbrella",
            country="DE",
        )
        assert lead.status == "accepted"
        app.sync("acme")
        assert "rita@umbrella.de" in {m.recipient for m in app.outbox.messages(status="sent")}
        app.close()
    # everything logged, the libraries included — but not the test's own SMTP server
    lines = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if not r.name.startswith("mail.")
    ]
    logged = "\n".join(lines).casefold()
    assert "outbox #2 (consent_request) failed" in logged and "held" in logged
    for email in [*people, "rita@umbrella.de"]:
        assert email not in logged, [line for line in lines if email in line.casefold()]
