"""A registration's life after acceptance, through the CLI on sandbox HubSpot portals
(issue 16 items 6 and 8), with ``--now`` travelling through the ownership window:

* the partner is reminded 14 days before a registration expires — once, a rerun
  queues nothing again;
* ``registrations extend`` extends once when the domain had activity (a commission
  earned on it), and is refused without activity and the second time;
* ``registrations withdraw`` frees the domain for another partner, clears the vendor
  company's owner fields, writes ``withdrawn`` back to the partner's deal and cancels
  its queued consent e-mail;
* ``register lead`` without ``--company`` is invalid data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from connector.demo import PortalUser
from connector.sandbox import SandboxServer
from connector.testing.cli import ProjectCli
from connector.testing.mail import MisbehavingSMTP
from connector.testing.world import HubSpotPortals, project_yaml, write_project

ENV = {
    "LC_VENDOR_TOKEN": "lc-vendor-token",
    "LC_ACME_TOKEN": "lc-acme-token",
    "LC_BETA_TOKEN": "lc-beta-token",
}
TOKEN_ENV = {"vendor": "LC_VENDOR_TOKEN", "acme": "LC_ACME_TOKEN", "beta": "LC_BETA_TOKEN"}
ACME_ALERTS = "alerts@acme-agency.example"

T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)  # registrations are accepted now
UNTIL = datetime(2027, 7, 4, 10, 0, tzinfo=UTC)  # … and owned until then (6 months)
NEW_UNTIL = datetime(2027, 10, 4, 10, 0, tzinfo=UTC)  # extended by 3 months


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


CLI = ProjectCli(ENV, TOKEN_ENV)
invoke, ok, rows = CLI.invoke, CLI.ok, CLI.rows


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    with CLI.sandbox() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, srv: SandboxServer) -> Path:
    return CLI.project(tmp_path, srv, ("acme", "beta"), notify={"acme": ACME_ALERTS})


def user(srv: SandboxServer, portal: str) -> PortalUser:
    return PortalUser(srv.url, ENV[TOKEN_ENV[portal]])


def register_lead(config: Path, partner: str, domain: str, now: datetime, *extra: str) -> Result:
    return invoke(
        config, "register", "lead", "-p", partner, "-d", domain, "--first", "Carol",
        "--last", "Jones", "--email", f"carol@{domain}", "--country", "US",
        "--now", at(now), *extra,
    )  # fmt: skip


def seed_deal(partner: PortalUser, domain: str, country: str = "US") -> str:
    """A registered deal on the partner's portal: company at ``domain``, one contact."""
    company = partner.create("companies", {"name": "Initech", "domain": domain})
    contact = partner.create(
        "contacts",
        {"firstname": "Dora", "lastname": "Weiss", "email": f"dora@{domain}", "country": country},
    )
    deal = partner.create(
        "deals",
        {
            "dealname": "Initech deal",
            "amount": "24000",
            "dealstage": "qualifiedtobuy",
            "pipeline": "default",
            "deal_currency_code": "EUR",
            "dealsync_register": "true",
        },
    )
    partner.associate("deals", deal, "companies", company)
    partner.associate("deals", deal, "contacts", contact)
    return deal


def registration(config: Path, domain: str, partner: str = "acme") -> dict[str, Any]:
    [reg] = [r for r in rows(config, "registrations", "-p", partner) if r["domain"] == domain]
    return reg


def reminders(config: Path) -> list[dict[str, Any]]:
    return rows(config, "outbox", "--kind", "expiry_reminder")


def test_the_partner_is_reminded_once_fourteen_days_before_expiry(config: Path) -> None:
    assert register_lead(config, "acme", "initech.de", T0, "--company", "Initech").exit_code == 0
    with MisbehavingSMTP() as smtp:

        def sync(moment: datetime, *extra: str) -> Result:
            return ok(
                config, "sync", "--connection", "acme", "--now", at(moment), *extra, env=smtp.env
            )

        sync(UNTIL - timedelta(days=15))
        assert reminders(config) == []  # 15 days before: not yet
        dry = sync(UNTIL - timedelta(days=14), "--dry-run")
        assert "1 expiry_reminder queued" in dry.output
        assert reminders(config) == [] and smtp.accepted == []  # a dry run only lists it
        sync(UNTIL - timedelta(days=14))  # queued and delivered at once (a transport is set)
        [reminder] = reminders(config)
        assert (reminder["recipient"], reminder["status"]) == (ACME_ALERTS, "sent")
        assert reminder["subject"] == "Your registration of Initech expires on 2027-07-04 10:00 UTC"
        [(_, to, raw)] = smtp.accepted
        assert to == [ACME_ALERTS]
        text = raw.decode()
        assert "initech.de" in text and "14 day(s)" in text
        assert "Carol" not in text and "Jones" not in text  # never the lead
        # a rerun, and a pass closer to the end: nothing more sent
        sync(UNTIL - timedelta(days=14))
        sync(UNTIL - timedelta(days=3))
        assert [r["id"] for r in reminders(config)] == [reminder["id"]]
        assert list(smtp.message_ids().values()) == [1]


def test_a_partner_without_address_gets_a_visible_suppressed_reminder(config: Path) -> None:
    assert register_lead(config, "beta", "hooli.com", T0, "--company", "Hooli").exit_code == 0
    ok(config, "sync", "--connection", "beta", "--now", at(UNTIL - timedelta(days=10)))
    [row] = reminders(config)
    assert row["status"] == "suppressed"
    assert "has no notification address" in row["detail"]
    assert "dealsync partners notify -p beta" in row["detail"]
    # once an address is set the reminder is queued (and only once)
    ok(config, "partners", "notify", "-p", "beta", "--email", "leads@beta-partners.example")
    ok(config, "sync", "--connection", "beta", "--now", at(UNTIL - timedelta(days=9)))
    ok(config, "sync", "--connection", "beta", "--now", at(UNTIL - timedelta(days=8)))
    queued = [r for r in reminders(config) if r["status"] == "queued"]
    assert [r["recipient"] for r in queued] == ["leads@beta-partners.example"]


def test_extend_once_with_activity_refused_without_and_twice(
    config: Path, srv: SandboxServer
) -> None:
    partner, vendor = user(srv, "acme"), user(srv, "vendor")
    deal = seed_deal(partner, "initech.de")
    ok(config, "sync", "--connection", "acme", "--now", at(T0))
    reg = registration(config, "initech.de")
    assert reg["status"] == "accepted"
    # a lead without any activity since: refused, with the reason
    assert register_lead(config, "acme", "hooli.com", T0, "--company", "Hooli").exit_code == 0
    quiet = registration(config, "hooli.com")
    month5 = T0 + timedelta(days=150)
    refused = invoke(config, "registrations", "extend", str(quiet["id"]), "--now", at(month5))
    assert refused.exit_code == 2, refused.output
    assert "refused (no_recent_activity)" in refused.output
    assert "hooli.com had no activity in the last 30 days" in refused.output
    # the deal on initech.de is won at the vendor: a commission on the domain at month 5
    vdeal = vendor.find_by("deals", "dealsync_source_id", f"acme:{deal}")
    vendor.edit("deals", vdeal, {"dealstage": "closedwon"})
    ok(config, "sync", "--connection", "acme", "--now", at(month5))
    assert len(rows(config, "commissions", "-p", "acme")) == 1
    extended = invoke(
        config, "registrations", "extend", str(reg["id"]), "--reason", "renewal talks",
        "--by", "pat@vendor.example", "--now", at(month5 + timedelta(days=1)),
    )  # fmt: skip
    assert extended.exit_code == 0, extended.output
    assert "Extended by pat@vendor.example until 2027-10-04 10:00 UTC: renewal talks" in (
        extended.output
    )
    assert registration(config, "initech.de")["owned_until"].startswith("2027-10-04 10:00:00")
    # written back: the partner's deal and the vendor company show the new end
    back = partner.get("deals", deal, "dealsync_owned_until", "dealsync_registration_reason")
    assert back["dealsync_owned_until"].startswith("2027-10-04T10:00:00")
    assert "renewal talks" in back["dealsync_registration_reason"]
    [vcomp] = vendor.associated("deals", vdeal, "companies")
    owner = vendor.get("companies", vcomp, "dealsync_owner_partner", "dealsync_owned_until")
    assert owner["dealsync_owner_partner"] == "acme"
    assert owner["dealsync_owned_until"].startswith("2027-10-04T10:00:00")
    # the old end passes: still owned (no expiry at the old date)
    ok(config, "sync", "--connection", "acme", "--now", at(UNTIL + timedelta(days=1)))
    assert registration(config, "initech.de")["status"] == "accepted"
    # reminded again before the new end (one reminder per end of ownership)
    ok(config, "sync", "--connection", "acme", "--now", at(NEW_UNTIL - timedelta(days=14)))
    [reminder] = [r for r in reminders(config) if r["subject"].startswith("Your registration of")]
    assert reminder["subject"] == "Your registration of Initech expires on 2027-10-04 10:00 UTC"
    assert "cannot be extended" in ok(config, "outbox", "show", str(reminder["id"])).output
    # once only
    twice = invoke(
        config, "registrations", "extend", str(reg["id"]), "--now", at(month5 + timedelta(days=2))
    )
    assert twice.exit_code == 2, twice.output
    assert "refused (already_extended)" in twice.output


def test_withdraw_frees_the_domain_and_cancels_the_queued_consent_email(
    config: Path, srv: SandboxServer
) -> None:
    partner, vendor = user(srv, "acme"), user(srv, "vendor")
    deal = seed_deal(partner, "initech.de", country="DE")
    ok(config, "sync", "--connection", "acme", "--now", at(T0))
    reg = registration(config, "initech.de")
    [consent] = rows(config, "outbox", "--kind", "consent_request")
    assert consent["status"] == "queued"  # no mail transport here: it waits
    withdrawn = invoke(
        config, "registrations", "withdraw", str(reg["id"]), "--reason", "deal lost",
        "--now", at(T0 + timedelta(days=3)),
    )  # fmt: skip
    assert withdrawn.exit_code == 0, withdrawn.output
    assert "Withdrawn by cli: deal lost; initech.de is free again." in withdrawn.output
    assert f"cancelled e-mails: #{consent['id']}" in withdrawn.output
    [cancelled] = rows(config, "outbox", "--kind", "consent_request")
    assert cancelled["status"] == "cancelled"
    assert f"registration #{reg['id']} withdrawn (deal lost)" in cancelled["detail"]
    # both CRMs: the partner's deal says withdrawn, the vendor company has no owner
    back = partner.get("deals", deal, "dealsync_registration_status", "dealsync_owned_until")
    assert back["dealsync_registration_status"] == "withdrawn"
    assert not back.get("dealsync_owned_until")
    vdeal = vendor.find_by("deals", "dealsync_source_id", f"acme:{deal}")
    [vcomp] = vendor.associated("deals", vdeal, "companies")
    owner = vendor.get("companies", vcomp, "dealsync_owner_partner", "dealsync_registration_id")
    assert not owner.get("dealsync_owner_partner") and not owner.get("dealsync_registration_id")
    # the domain is free: another partner registers it
    other = register_lead(config, "beta", "initech.de", T0 + timedelta(days=4), "--company", "I")
    assert other.exit_code == 0, other.output
    assert registration(config, "initech.de", "beta")["status"] == "accepted"
    # a pass of acme later does not register the still-flagged deal again
    ok(config, "sync", "--connection", "acme", "--now", at(T0 + timedelta(days=5)))
    assert registration(config, "initech.de")["status"] == "withdrawn"
    # withdrawn (not active): neither withdrawn again nor extended
    again = invoke(config, "registrations", "withdraw", str(reg["id"]))
    assert again.exit_code == 2 and "refused (not_active)" in again.output
    assert "is withdrawn, not active" in again.output
    late = invoke(config, "registrations", "extend", str(reg["id"]))
    assert late.exit_code == 2 and "refused (not_active)" in late.output


def test_register_lead_without_company_is_invalid_data(config: Path) -> None:
    result = register_lead(config, "acme", "initech.de", T0)
    assert result.exit_code == 2, result.output
    assert "rejected (invalid_data)" in result.output
    assert "missing required data: company name" in result.output
    assert "pass --company" in result.output
    reg = registration(config, "initech.de")
    assert (reg["status"], reg["code"]) == ("rejected", "invalid_data")
    assert rows(config, "registrations", "--status", "accepted") == []


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        (("extend_months: 3", "extend_months: 0"), "extensions_off"),
        # no activity needed: allowed
        (("extend_requires_activity_days: 30", "extend_requires_activity_days: 0"), None),
    ],
)
def test_the_rules_file_switches_extensions_off_or_drops_the_activity_rule(
    tmp_path: Path, srv: SandboxServer, rules: tuple[str, str], code: str | None
) -> None:
    config = write_project(
        tmp_path,
        project_yaml(("acme",), hubspot=HubSpotPortals(srv.url, TOKEN_ENV)),
        rules_edit=lambda text: text.replace(*rules),
        edits_must_change=True,
    )
    ok(config, "setup")
    assert register_lead(config, "acme", "hooli.com", T0, "--company", "Hooli").exit_code == 0
    reg = registration(config, "hooli.com")
    day_before = at(UNTIL - timedelta(days=1))
    result = invoke(config, "registrations", "extend", str(reg["id"]), "--now", day_before)
    if code is None:
        assert result.exit_code == 0, result.output
        assert registration(config, "hooli.com")["owned_until"].startswith("2027-10-04")
        # withdrawn, then registered anew: a new decision, which may be extended once again
        ok(config, "registrations", "withdraw", str(reg["id"]), "--now", at(UNTIL))
        later = UNTIL + timedelta(days=1)
        assert (
            register_lead(config, "acme", "hooli.com", later, "--company", "Hooli").exit_code == 0
        )
        assert registration(config, "hooli.com")["status"] == "accepted"
        again = invoke(
            config,
            "registrations",
            "extend",
            str(reg["id"]),
            "--now",
            at(later + timedelta(days=1)),
        )
        assert again.exit_code == 0, again.output
    else:
        assert result.exit_code == 2, result.output
        assert f"refused ({code})" in result.output
        assert registration(config, "hooli.com")["owned_until"].startswith("2027-07-04")


def test_withdrawal_releases_the_partners_capacity(tmp_path: Path, srv: SandboxServer) -> None:
    config = write_project(
        tmp_path,
        project_yaml(("acme",), hubspot=HubSpotPortals(srv.url, TOKEN_ENV)),
        rules_edit=lambda text: text.replace("capacity: 10", "capacity: 1"),
        edits_must_change=True,
    )
    ok(config, "setup")
    assert register_lead(config, "acme", "hooli.com", T0, "--company", "Hooli").exit_code == 0
    full = register_lead(config, "acme", "initech.de", T0, "--company", "Initech")
    assert full.exit_code == 2 and "capacity_exceeded" in full.output
    hooli = registration(config, "hooli.com")
    ok(config, "registrations", "withdraw", str(hooli["id"]), "--now", at(T0 + timedelta(days=1)))
    freed = register_lead(config, "acme", "initech.de", T0 + timedelta(days=2), "--company", "I")
    assert freed.exit_code == 0, freed.output
    assert registration(config, "initech.de")["status"] == "accepted"
