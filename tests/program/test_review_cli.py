"""Registration review (issue 16 item 5) through the CLI, on HubSpot sandbox portals (a
vendor's and two partners', reached through the real ``hubspot-api-client``), with
``--now`` time travel: a deal registration under ``review.deal: manual`` waits
``pending`` (written back, not mirrored, its domain reserved), is approved (ownership
from the approval, mirrored on the next pass) or rejected with a program code; an
unknown code is refused naming the codes; a registration pending past the SLA reminds
the program's address once; under ``automatic`` + ``manual_when_uncertain`` a fuzzy
company-name match of another partner's registration waits for review."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connector.cli import cli
from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, review_rules, write_project

ENV = {
    "REV_VENDOR_TOKEN": "rev-vendor-token",
    "REV_ACME_TOKEN": "rev-acme-token",
    "REV_BETA_TOKEN": "rev-beta-token",
}
TOKEN_ENV = {"vendor": "REV_VENDOR_TOKEN", "acme": "REV_ACME_TOKEN", "beta": "REV_BETA_TOKEN"}
PROGRAM = "program-team@vendor.example"
T0 = "2027-01-04T10:00:00Z"
STATUS = "dealsync_registration_status"
CODE = "dealsync_registration_code"
REASON = "dealsync_registration_reason"
UNTIL = "dealsync_owned_until"


def with_review(**keys: str) -> Callable[[str], str]:
    return lambda text: review_rules(text, **keys, notify_email=PROGRAM)


MANUAL_DEALS = with_review(deal="manual", lead="automatic", sla_hours="72")
UNCERTAIN = with_review(deal="automatic", manual_when_uncertain="true")


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    specs = [PortalSpec(name, ENV[var]) for name, var in TOKEN_ENV.items()]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as server:  # fresh portals
        yield server


class World:
    def __init__(self, config: Path, url: str) -> None:
        self.config = config
        self.vendor = PortalUser(url, ENV["REV_VENDOR_TOKEN"])
        self.partners = {p: PortalUser(url, ENV[TOKEN_ENV[p]]) for p in ("acme", "beta")}

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.config), *args], env=ENV)

    def ok(self, *args: str) -> Result:
        result = self.cli(*args)
        assert result.exit_code == 0, result.output
        return result

    def seed_deal(self, partner: str, company: str, domain: str, email: str) -> str:
        user = self.partners[partner]
        c = user.create("companies", {"name": company, "domain": domain})
        first, last = email.split("@")[0].capitalize(), "Doe"
        p = user.create("contacts", {"firstname": first, "lastname": last, "email": email})
        d = user.create(
            "deals",
            {
                "dealname": f"{company} deal",
                "amount": "12000",
                "dealstage": "qualifiedtobuy",
                "pipeline": "default",
                "dealsync_register": "true",
            },
        )
        user.associate("deals", d, "companies", c)
        user.associate("deals", d, "contacts", p)
        return d

    def back(self, partner: str, deal: str) -> dict[str, str | None]:
        got = self.partners[partner].get("deals", deal, STATUS, CODE, REASON, UNTIL)
        return {k: got.get(k) or None for k in (STATUS, CODE, REASON, UNTIL)}

    def registrations(self, *args: str) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = json.loads(
            self.ok("registrations", *args, "--format", "json").output
        )
        return rows

    def mirrored(self, partner: str, deal: str) -> bool:
        try:
            self.vendor.find_by("deals", "dealsync_source_id", f"{partner}:{deal}")
        except KeyError:
            return False
        return True

    def reminders(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = json.loads(
            self.ok("outbox", "--kind", "review_reminder", "--format", "json").output
        )
        return rows


@pytest.fixture
def make_world(tmp_path: Path, srv: SandboxServer) -> Callable[[Callable[[str], str]], World]:

    def build(rules_edit: Callable[[str], str]) -> World:
        root = tmp_path / "project"
        config = write_project(
            root,
            project_yaml(("acme", "beta"), hubspot=HubSpotPortals(srv.url, TOKEN_ENV)),
            rules_edit=rules_edit,
            edits_must_change=True,
        )
        world = World(config, srv.url)
        world.ok("setup")
        return world

    return build


def test_manual_review_pending_written_back_then_approved_owns_from_approval(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(MANUAL_DEALS)
    deal = w.seed_deal("acme", "Initech", "initech.com", "peter@initech.com")
    w.ok("sync", "--connection", "acme", "--now", T0)

    [pending] = w.registrations("--status", "pending")
    rid = str(pending["id"])
    assert (pending["partner"], pending["domain"], pending["code"]) == (
        "acme",
        "initech.com",
        "manual_review",
    )
    assert pending["owned_until"] is None
    assert w.back("acme", deal) == {
        STATUS: "pending",
        CODE: "manual_review",
        REASON: "Waiting for the program's review of deal registrations; initech.com is "
        "reserved for you meanwhile.",
        UNTIL: None,
    }
    assert not w.mirrored("acme", deal)  # pending owns nothing: nothing at the vendor
    listing = w.ok("registrations", "--status", "pending").output
    assert "initech.com" in listing and "review note" in listing  # a column of its own

    # the domain is reserved: another partner's registration of it is turned away
    rival = w.seed_deal("beta", "Initech", "www.initech.com", "bill@initech.com")
    w.ok("sync", "--connection", "beta", "--now", "2027-01-04T11:00:00Z")
    assert w.back("beta", rival)[CODE] == "owned_by_partner"
    assert w.back("beta", rival)[REASON] == (
        "initech.com is awaiting the program's review of another partner's registration."
    )

    approved = w.ok(
        "registrations",
        "approve",
        rid,
        "--reason",
        "known account",
        "--now",
        "2027-01-06T09:00:00Z",
    )
    assert f"registration #{rid} approved: accepted" in approved.output
    assert "approved by cli at 2027-01-06 09:00 UTC: known account" in approved.output
    # ownership from the approval (not the submission), written back at once
    assert w.back("acme", deal) == {
        STATUS: "accepted",
        CODE: None,
        REASON: "Accepted: you own initech.com until 2027-07-06 09:00 UTC.",
        UNTIL: "2027-07-06T09:00:00.000Z",
    }
    [row] = w.registrations("--status", "accepted", "--partner", "acme")
    assert row["reviewed_by"] == "cli" and str(row["reviewed_at"]).startswith("2027-01-06 09:00")

    # the next pass mirrors the deal and writes the ownership to the vendor's company
    w.ok("sync", "--connection", "acme", "--now", "2027-01-06T10:00:00Z")
    vdeal = w.vendor.find_by("deals", "dealsync_source_id", f"acme:{deal}")
    [vcomp] = w.vendor.associated("deals", vdeal, "companies")
    owner = w.vendor.get("companies", vcomp, "dealsync_owner_partner", "dealsync_owned_until")
    assert owner["dealsync_owner_partner"] == "acme"
    assert owner["dealsync_owned_until"] == "2027-07-06T09:00:00.000Z"
    # approving again is refused: it is no longer pending
    again = w.cli("registrations", "approve", rid)
    assert again.exit_code == 3
    assert f"registration #{rid} is accepted, not pending" in again.output


def test_reject_with_a_program_code_is_written_back_and_never_mirrored(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(MANUAL_DEALS)
    deal = w.seed_deal("acme", "Umbrella", "umbrella.com", "alice@umbrella.com")
    w.ok("sync", "--connection", "acme", "--now", T0)
    [pending] = w.registrations("--status", "pending")
    rid = str(pending["id"])

    out = w.ok("registrations", "reject", rid, "--reason", "owned_by_vendor_sales")
    assert f"registration #{rid} rejected: rejected" in out.output
    assert w.back("acme", deal) == {
        STATUS: "rejected",
        CODE: "owned_by_vendor_sales",
        REASON: "Rejected by the program's review (owned_by_vendor_sales): the vendor's sales "
        "team is already working with umbrella.com.",
        UNTIL: None,
    }
    [row] = w.registrations("--status", "rejected")
    assert row["reviewed_by"] == "cli" and "rejected (owned_by_vendor_sales) by cli" in str(
        row["review_note"]
    )
    w.ok("sync", "--connection", "acme", "--now", "2027-01-05T10:00:00Z")
    assert not w.mirrored("acme", deal)
    assert w.registrations("--status", "pending") == []  # not decided again


def test_an_unknown_rejection_code_is_refused_naming_the_codes(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(MANUAL_DEALS)
    w.seed_deal("acme", "Hooli", "hooli.com", "gavin@hooli.com")
    w.ok("sync", "--connection", "acme", "--now", T0)
    [pending] = w.registrations("--status", "pending")

    bad = w.cli("registrations", "reject", str(pending["id"]), "--reason", "not_a_fit")
    assert bad.exit_code == 3
    assert "unknown rejection code 'not_a_fit': use one of invalid_data, personal_domain, " in (
        bad.output
    )
    assert "owned_by_vendor_sales, capacity_exceeded" in bad.output
    [still] = w.registrations("--status", "pending")
    assert still["id"] == pending["id"]
    missing = w.cli("registrations", "approve", "999")
    assert missing.exit_code == 3 and "no registration #999" in missing.output


def test_a_registration_pending_past_the_sla_reminds_the_program_once(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(MANUAL_DEALS)
    w.seed_deal("acme", "Vandelay", "vandelay.com", "art@vandelay.com")
    w.ok("sync", "--connection", "acme", "--now", T0)
    [pending] = w.registrations("--status", "pending")

    status = w.ok("status").output
    assert "registrations pending review: 1 (dealsync registrations --status pending" in status
    w.ok("sync", "--connection", "acme", "--now", "2027-01-07T09:59:00Z")  # 71:59 h
    assert w.reminders() == []
    w.ok("sync", "--connection", "acme", "--now", "2027-01-07T10:00:00Z")  # 72 h
    w.ok("sync", "--connection", "acme", "--now", "2027-01-08T10:00:00Z")
    [reminder] = w.reminders()
    assert (reminder["recipient"], reminder["status"]) == (PROGRAM, "queued")
    shown = w.ok("outbox", "show", str(reminder["id"])).output
    assert f"Registration #{pending['id']} waits for review since 2027-01-04 10:00 UTC" in shown
    assert "vandelay.com" in shown and "Vandelay" in shown
    assert "art@vandelay.com" not in shown.lower() and "Doe" not in shown  # no lead data


def test_a_fuzzy_company_match_of_another_partners_registration_waits_for_review(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(UNCERTAIN)
    first = w.seed_deal("beta", "Globex Corporation", "globex.com", "hank@globex.com")
    w.ok("sync", "--connection", "beta", "--now", T0)
    assert w.back("beta", first)[STATUS] == "accepted"

    similar = w.seed_deal("acme", "GLOBEX Corp.", "globex-corp.com", "ann@globex-corp.com")
    other = w.seed_deal("acme", "Soylent", "soylent.com", "sol@soylent.com")
    w.ok("sync", "--connection", "acme", "--now", "2027-01-04T11:00:00Z")
    assert w.back("acme", other)[STATUS] == "accepted"  # unlike any other: automatic
    assert w.back("acme", similar)[STATUS] == "pending"
    assert w.back("acme", similar)[CODE] == "uncertain_match"
    # the partner's record never names the other partner or its domain
    assert "beta" not in str(w.back("acme", similar)[REASON])
    assert "globex.com" not in str(w.back("acme", similar)[REASON])
    [pending] = w.registrations("--status", "pending")
    [beta_reg] = w.registrations("--partner", "beta")
    assert str(pending["review_note"]) == (
        f"company 'GLOBEX Corp.' resembles 'Globex Corporation' of registration "
        f"#{beta_reg['id']} (beta, globex.com): similarity 1.00 >= "
        "review.fuzzy_threshold 0.85"
    )
    assert not w.mirrored("acme", similar)


def test_a_pending_registration_withdrawn_by_its_partner_frees_the_domain(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(MANUAL_DEALS)
    deal = w.seed_deal("acme", "Stark", "stark.com", "tony@stark.com")
    w.ok("sync", "--connection", "acme", "--now", T0)
    assert w.back("acme", deal)[STATUS] == "pending"

    w.partners["acme"].edit("deals", deal, {"dealsync_register": "false"})
    w.ok("sync", "--connection", "acme", "--now", "2027-01-04T12:00:00Z")
    assert w.registrations("--status", "pending") == []
    assert w.back("acme", deal)[STATUS] == "withdrawn"
    # the domain it reserved is free: another partner's registration waits in its turn
    other = w.seed_deal("beta", "Stark", "stark.com", "pepper@stark.com")
    w.ok("sync", "--connection", "beta", "--now", "2027-01-04T13:00:00Z")
    assert w.back("beta", other)[STATUS] == "pending"


def test_a_lead_registered_on_the_command_line_waits_and_is_approved(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    w = make_world(with_review(lead="manual"))
    lead = (
        "register", "lead", "--partner", "acme", "--domain", "https://www.wonka.com",
        "--first", "Charlie", "--last", "Bucket", "--email", "charlie@wonka.com",
        "--company", "Wonka", "--now", T0,
    )  # fmt: skip
    out = w.ok(*lead).output
    assert "registration #1: pending (manual_review)" in out
    assert "review it: dealsync registrations approve|reject 1" in out
    assert w.ok(*lead).output == out  # the same lead again: still the one pending
    with pytest.raises(KeyError):
        w.vendor.find_by("companies", "domain", "wonka.com")  # pending: nothing at the vendor

    w.ok("registrations", "approve", "1", "--now", "2027-01-05T10:00:00Z")
    [row] = w.registrations("--status", "accepted")
    assert str(row["owned_until"]).startswith("2027-07-05 10:00")
    company = w.vendor.find_by("companies", "domain", "wonka.com")
    assert (
        w.vendor.get("companies", company, "dealsync_owner_partner")["dealsync_owner_partner"]
        == "acme"
    )
    w.vendor.find_by("contacts", "email", "charlie@wonka.com")  # the lead, at the vendor


def test_a_dach_lead_approved_gets_its_consent_request_at_approval(
    make_world: Callable[[Callable[[str], str]], World],
) -> None:
    """DESIGN §2.2's "immediately" for a reviewed lead: nothing is queued while it waits
    (it owns nothing yet); the consent request is decided when it is approved."""
    w = make_world(with_review(lead="manual"))
    w.ok(
        "register", "lead", "--partner", "acme", "--domain", "https://www.wonka.de",
        "--first", "Karl", "--last", "Baum", "--email", "karl@wonka.de",
        "--company", "Wonka GmbH", "--country", "DE", "--now", T0,
    )  # fmt: skip

    def consent() -> list[dict[str, object]]:
        rows: list[dict[str, object]] = json.loads(
            w.ok("outbox", "--kind", "consent_request", "--format", "json").output
        )
        return rows

    assert consent() == []  # pending: no e-mail for a registration that owns nothing
    w.ok("registrations", "approve", "1", "--now", "2027-01-05T10:00:00Z")
    [row] = consent()
    assert row["status"] == "queued"
