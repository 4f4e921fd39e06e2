"""Consent at registration, on the lead's whereabouts and by the time of the opt-in
(issue 16 items 2-4), as scenarios through the CLI on sandbox HubSpot portals with
``--now`` time travel and a mail sink folder as the transport:

* a DACH lead registered with ``dealsync register lead`` gets its consent request
  when the registration is accepted — delivered at once with a transport, queued
  without one — and the partner's next passes send nothing more;
* an opt-in counts by its time: on day 40 it does not suppress the day-30 notice
  (decided on day 45), on day 20 it does;
* where a lead is: its own country, else its company's (the vendor's), else unknown;
* the notice period as a calendar month (``notice_period: 1 month``);
* the UK and the EEA (Norway) are treated as EU by default, and can be switched off.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from click.testing import CliRunner
from consent_support import NOW, SandboxProgram, sandbox_program, sandbox_specs, write_project

from connector.cli import cli
from connector.config.models import ConsentRules
from connector.program.consent import add_month, notice_due
from connector.sandbox import SandboxServer

DAY = timedelta(days=1)
Edit = Callable[[str], str]
MakeProgram = Callable[..., SandboxProgram]
_n = count(1)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_specs(), port=0, limits=False, search_lag=0) as srv:
        yield srv


@pytest.fixture
def make(scratch: Path, server: SandboxServer) -> MakeProgram:
    def build(*, rules_edit: Edit | None = None, mail: bool = True) -> SandboxProgram:
        return sandbox_program(scratch / f"p{next(_n)}", server, rules_edit=rules_edit, mail=mail)

    return build


def domain(stem: str) -> str:
    """A domain no other test of the module registers (the portals are shared)."""
    return f"{stem}{next(_n)}.com"


def outbox_rows(p: SandboxProgram) -> list[tuple[str, str]]:
    """(kind, status) of every e-mail in ``dealsync outbox``, oldest first."""
    rows = json.loads(p.cli("outbox", "--format", "json").output or "[]")
    return [(r["kind"], r["status"]) for r in rows]


# ---------------------------------------------------------------------- at registration


def test_dach_lead_registered_by_cli_is_sent_at_once_and_never_again(make: MakeProgram) -> None:
    p = make()
    d = domain("globex")
    email = f"lea@{d}"
    out = p.register(email, d, NOW, company="Globex GmbH", country="Germany").output
    assert "accepted" in out
    assert "consent_request sent" in out, out  # decided and delivered at registration
    assert p.sent_to(email) == ["de"]
    for later in (NOW + timedelta(minutes=5), NOW + 31 * DAY):
        p.sync(later)
    assert p.sent_to(email) == ["de"], "a pass sent the consent request again"
    assert len(outbox_rows(p)) == 1


def test_without_a_transport_it_is_queued_at_registration_and_sent_once(make: MakeProgram) -> None:
    p = make(mail=False)
    d = domain("initech")
    email = f"max@{d}"
    out = p.register(email, d, NOW, company="Initech AG", country="CH").output
    assert "consent_request queued" in out, out
    p.mail = True  # the admin configures the sink; the next pass delivers the row
    p.sync(NOW + timedelta(hours=1))
    p.sync(NOW + timedelta(hours=2))
    assert p.sent_to(email) == ["de"]
    assert outbox_rows(p) == [("consent_request", "sent")]


def test_an_eu_lead_gets_nothing_at_registration(make: MakeProgram) -> None:
    p = make()
    d = domain("umbrella")
    out = p.register(f"jo@{d}", d, NOW, company="Umbrella SA", country="FR").output
    # the notice is due in 30 days, and the command says so
    assert (
        "e-mail: data_notice due 2027-02-03 10:00 UTC unless the lead opts in or engages" in out
    ), out
    assert p.sent() == [] and outbox_rows(p) == []


# ---------------------------------------------------------------------- opt-in time


@pytest.mark.parametrize(
    ("how", "opted_in_on", "notice"),
    [
        (how, day, notice)
        for how in ("subscribe", "confirm")
        for day, notice in ((40, True), (30, False), (20, False), (-3, False))
        if not (how == "confirm" and day < 0)  # no vendor contact before the registration
    ],
)
def test_an_opt_in_counts_by_its_time(
    make: MakeProgram, how: str, opted_in_on: int, notice: bool
) -> None:
    """Subscribed to the newsletter (its status change time) or confirmed the e-mail
    address (the property's history): by day 30 it suppresses the notice, on day 40
    it does not — though the pass deciding it runs on day 45, after the opt-in."""
    p = make()
    d = domain("hooli")
    email = f"ana@{d}"
    p.register(email, d, NOW, company="Hooli SARL", country="FR")
    moment = NOW + opted_in_on * DAY
    if how == "subscribe":
        p.subscribe(email, moment)
    else:  # the vendor contact exists from the registration on
        p.confirm(email, moment)
    p.sync(NOW + 45 * DAY)  # the day-30 notice decided late, after the opt-in
    if notice:
        assert outbox_rows(p) == [("data_notice", "sent")]
        assert p.sent_to(email) == ["fr"]
    else:
        assert outbox_rows(p) == [("data_notice", "suppressed")]
        assert p.sent() == []


@pytest.mark.parametrize(
    ("event", "on_day", "notice"),
    [
        ("pe_privacy_policy_viewed", 20, False),
        ("pe_form_submitted", 29.9, False),
        ("pe_content_downloaded", 35, True),  # after the window: too late
        ("pe_demo_requested", 10, True),  # not an engagement event
    ],
    ids=["policy-day20", "form-day29.9", "download-day35", "demo-day10"],
)
def test_engagement_counts_by_its_time(
    make: MakeProgram, event: str, on_day: float, notice: bool
) -> None:
    """A web event suppresses the notice only when it occurred within the window."""
    p = make()
    d = domain("stark")
    email = f"tony@{d}"
    p.register(email, d, NOW, company="Stark SpA", country="Italy")
    p.web_event(email, event, NOW + on_day * DAY)
    p.sync(NOW + 45 * DAY)
    assert outbox_rows(p) == [("data_notice", "sent" if notice else "suppressed")]


def test_a_dach_lead_subscribed_before_registration_gets_no_request(make: MakeProgram) -> None:
    p = make()
    d = domain("vandelay")
    email = f"art@{d}"
    p.subscribe(email, NOW - 3 * DAY)
    out = p.register(email, d, NOW, company="Vandelay", country="AT").output
    assert "consent_request suppressed — already opted in" in out, out
    assert p.sent() == []


# ---------------------------------------------------------------------- whereabouts


@pytest.mark.parametrize(
    ("contact", "company", "at_once", "at_day30"),
    [
        (None, "Austria", "consent_request", None),  # the company's country
        (None, "United States", None, None),  # company outside the EU: nothing
        ("FR", "Austria", None, "data_notice"),  # the contact's own country wins
        (None, None, None, "data_notice"),  # neither: unknown, the EU rule
    ],
    ids=["company-AT", "company-US", "contact-wins", "unknown"],
)
def test_where_the_lead_is(
    make: MakeProgram,
    contact: str | None,
    company: str | None,
    at_once: str | None,
    at_day30: str | None,
) -> None:
    p = make()
    d = domain("acmecorp")
    email = f"kim@{d}"
    if company is not None:
        p.vendor_company(d, "Acmecorp", company)
    options = {"company": "Acmecorp"} | ({"country": contact} if contact else {})
    out = p.register(email, d, NOW, **options).output
    assert "accepted" in out, out
    if company == "United States":
        assert "e-mail: none: company country United States is outside the EU" in out, out
    assert [k for k, _ in outbox_rows(p)] == ([at_once] if at_once else [])
    p.sync(NOW + 30 * DAY)
    kinds = [k for k in (at_once, at_day30) if k]
    assert outbox_rows(p) == [(k, "sent") for k in kinds]
    assert len(p.sent_to(email)) == len(kinds)


# ---------------------------------------------------------------------- a calendar month


def one_month(text: str) -> str:
    return text.replace("  notice_after_days: 30\n", "  notice_period: 1 month\n")


@pytest.mark.parametrize(
    ("registered", "due"),
    [
        (datetime(2027, 1, 31, 10, tzinfo=UTC), datetime(2027, 2, 28, 10, tzinfo=UTC)),
        (datetime(2028, 1, 31, 10, tzinfo=UTC), datetime(2028, 2, 29, 10, tzinfo=UTC)),
        (datetime(2027, 3, 15, 8, tzinfo=UTC), datetime(2027, 4, 15, 8, tzinfo=UTC)),
    ],
    ids=["jan31-feb28", "leap-feb29", "mid-month"],
)
def test_notice_period_of_one_month(make: MakeProgram, registered: datetime, due: datetime) -> None:
    p = make(rules_edit=one_month)
    d = domain("soylent")
    email = f"eve@{d}"
    p.register(email, d, registered, company="Soylent BV", country="NL")
    p.sync(due - timedelta(seconds=1))
    assert outbox_rows(p) == [], "the notice went out before the month was over"
    p.sync(due)
    assert outbox_rows(p) == [("data_notice", "sent")]
    assert len(p.sent_to(email)) == 1


# ---------------------------------------------------------------------- UK and EEA


@pytest.mark.parametrize("country", ["United Kingdom", "Norway"])
@pytest.mark.parametrize("switched_off", [False, True], ids=["default", "switched-off"])
def test_uk_and_eea_are_treated_as_eu_by_default(
    make: MakeProgram, country: str, switched_off: bool
) -> None:
    key = "treat_uk_as_eu" if country == "United Kingdom" else "treat_eea_as_eu"
    edit = (lambda t: t.replace(f"{key}: true", f"{key}: false")) if switched_off else None
    p = make(rules_edit=edit)
    d = domain("wonka")
    email = f"sam@{d}"
    p.register(email, d, NOW, company="Wonka Ltd", country=country)
    p.sync(NOW + 30 * DAY)
    expected = [] if switched_off else [("data_notice", "sent")]
    assert outbox_rows(p) == expected


# ---------------------------------------------------------------------- check, units


@pytest.mark.parametrize(
    ("edit", "line_has", "says"),
    [
        (
            lambda t: t.replace("  notice_after_days: 30\n", "  notice_period: 2 months\n"),
            "consent.notice_period",
            "notice_period '2 months' is not a period dealsync knows: write `notice_period: 1 month`",
        ),
        (
            lambda t: t.replace(
                "  notice_after_days: 30\n", "  notice_after_days: 30\n  notice_period: 1 month\n"
            ),
            "consent:",
            "consent has both notice_after_days and notice_period",
        ),
    ],
    ids=["unknown-period", "both"],
)
def test_check_names_a_bad_notice_period(
    scratch: Path, edit: Edit, line_has: str, says: str
) -> None:
    config = write_project(scratch / "check", rules_edit=edit)
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code != 0
    [line] = [x for x in result.output.splitlines() if "rules.yaml:" in x]
    assert line_has in line and says in line, result.output


def test_check_accepts_one_month(scratch: Path) -> None:
    config = write_project(scratch / "check", rules_edit=one_month)
    result = CliRunner().invoke(cli, ["--config", str(config), "check"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2027, 1, 31, 23, 30, tzinfo=UTC), datetime(2027, 2, 28, 23, 30, tzinfo=UTC)),
        (datetime(2028, 1, 30, tzinfo=UTC), datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2027, 3, 31, tzinfo=UTC), datetime(2027, 4, 30, tzinfo=UTC)),
        (datetime(2027, 12, 31, 9, tzinfo=UTC), datetime(2028, 1, 31, 9, tzinfo=UTC)),
        (datetime(2027, 2, 28, tzinfo=UTC), datetime(2027, 3, 28, tzinfo=UTC)),
    ],
)
def test_add_month(start: datetime, end: datetime) -> None:
    assert add_month(start) == end
    assert notice_due(start, ConsentRules(notice_period="1 month")) == end
    assert notice_due(start, ConsentRules()) == start + 30 * DAY
