"""The commission rules alone (pure): the kind of a won deal, when it closed, and whose
ownership window it falls in — the readings docs/program.md states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.config.models import RulesFile
from connector.program.commission import Window, closed_at, credit, sale_kind

RULES = RulesFile()
T0 = datetime(2027, 1, 4, tzinfo=UTC)
END = datetime(2027, 7, 4, tzinfo=UTC)
WINDOWS = {"initech.com": [Window("acme", 1, T0, END)]}


def kind(**props: str) -> str:
    return sale_kind(props, RULES, shared=False, signalled=False)


def test_kind_reads_owner_and_engagement() -> None:
    assert kind() == "self_serve"
    assert kind(num_contacted_notes="0", notes_last_contacted="") == "self_serve"
    assert kind(hubspot_owner_id="12") == "vendor_led"
    assert kind(num_contacted_notes="3") == "vendor_led"
    assert kind(notes_last_contacted="2027-02-01T10:00:00Z") == "vendor_led"
    assert sale_kind({"hubspot_owner_id": "12"}, RULES, shared=False, signalled=True) == (
        "self_serve"
    )
    assert sale_kind({}, RULES, shared=True, signalled=True) == "shared"


def test_kind_follows_the_configured_properties() -> None:
    rules = RulesFile.model_validate(
        {"vendor_signals": {"deal_owner_property": "csm", "sales_engagement_properties": ["calls"]}}
    )
    assert sale_kind({"hubspot_owner_id": "12"}, rules, shared=False, signalled=False) == (
        "self_serve"
    )
    assert sale_kind({"calls": "1"}, rules, shared=False, signalled=False) == "vendor_led"


def test_close_time_from_the_close_date_else_the_pass() -> None:
    seen = datetime(2027, 5, 1, tzinfo=UTC)
    assert closed_at({"closedate": "2027-03-31"}, seen) == datetime(2027, 3, 31, tzinfo=UTC)
    assert closed_at({"closedate": "2027-03-31T12:00:00Z"}, seen) == datetime(
        2027, 3, 31, 12, tzinfo=UTC
    )
    ms = str(int(datetime(2027, 2, 1, tzinfo=UTC).timestamp() * 1000))
    assert closed_at({"closedate": ms}, seen) == datetime(2027, 2, 1, tzinfo=UTC)
    assert closed_at({}, seen) == seen
    assert closed_at({"closedate": "soon"}, seen) == seen


def test_the_window_includes_its_start_and_excludes_its_end() -> None:
    assert credit(["initech.com"], T0, WINDOWS).partner == "acme"
    assert credit(["initech.com"], END - timedelta(seconds=1), WINDOWS).credited
    after = credit(["initech.com"], END, WINDOWS)
    assert (after.code, after.partner) == ("won_after_ownership", "acme")
    assert "ended 2027-07-04" in after.reason
    before = credit(["initech.com"], T0 - timedelta(days=1), WINDOWS)
    assert before.code == "won_before_registration"
    assert credit(["hooli.com"], T0, WINDOWS).code == "not_registered"
    assert credit([], T0, WINDOWS).code == "no_domain"
    # a deal on two companies: the owned one counts
    assert credit(["hooli.com", "initech.com"], T0, WINDOWS).domain == "initech.com"


def test_a_shared_deal_credits_only_its_own_partner() -> None:
    owned = credit(["initech.com"], T0, WINDOWS, shared_by="beta")
    assert (owned.code, owned.partner) == ("owned_by_other", "acme")
    assert credit(["initech.com"], T0, WINDOWS, shared_by="acme").credited
