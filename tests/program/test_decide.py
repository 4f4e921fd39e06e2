"""The registration checks as a pure function (§2.1): every rejection code with its
human reason, acceptance with a six-month window, and the order of the checks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from connector.config.models import RulesFile
from connector.program.decide import (
    Decision,
    Holder,
    Person,
    Submission,
    VendorFacts,
    decide,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = RulesFile.model_validate(yaml.safe_load((ROOT / "mappings" / "rules.yaml").read_text()))
NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)

ANN = Person(email="ann@globex.com", first_name="Ann", last_name="Lee", country="US")
SUB = Submission(
    partner="acme",
    kind="deal",
    partner_object="deals",
    partner_record_id="101",
    domain_text="https://www.Globex.com/about",
    company_name="Globex",
    contacts=(ANN,),
)


def run(
    sub: Submission = SUB,
    *,
    facts: VendorFacts | None = None,
    holder: Holder | None = None,
    active: int = 0,
    capacity: int = 10,
    now: datetime = NOW,
) -> Decision:
    return decide(
        sub,
        facts=facts or VendorFacts(),
        holder=holder,
        active=active,
        tier_name="registered",
        capacity=capacity,
        rules=RULES,
        now=now,
    )


# ---------------------------------------------------------------------- acceptance


def test_accepted_owns_the_domain_for_six_months() -> None:
    d = run()
    assert d.status == "accepted"
    assert d.code is None
    assert d.domain == "globex.com"
    assert d.owned_until == datetime(2027, 7, 4, 9, 0, tzinfo=UTC)
    assert d.reason == "Accepted: you own globex.com until 2027-07-04 09:00 UTC."
    assert d.contacts == (ANN,)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (datetime(2027, 1, 31, 12, 0, tzinfo=UTC), datetime(2027, 7, 31, 12, 0, tzinfo=UTC)),
        # calendar months, clamped to the month's end
        (datetime(2027, 8, 31, 0, 0, tzinfo=UTC), datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
        (
            datetime(2027, 12, 15, 23, 59, 59, tzinfo=UTC),
            datetime(2028, 6, 15, 23, 59, 59, tzinfo=UTC),
        ),
    ],
)
def test_window_is_now_plus_ownership_months(now: datetime, until: datetime) -> None:
    assert run(now=now).owned_until == until


def test_window_follows_the_rules_file() -> None:
    rules = RULES.model_copy(update={"ownership_months": 3})
    d = decide(
        SUB,
        facts=VendorFacts(),
        holder=None,
        active=0,
        tier_name="registered",
        capacity=10,
        rules=rules,
        now=NOW,
    )
    assert d.owned_until == datetime(2027, 4, 4, 9, 0, tzinfo=UTC)


def test_same_partner_reregistration_keeps_its_window_without_capacity() -> None:
    mine = Holder("acme", NOW + timedelta(days=40))
    # at full capacity: the domain is already one of the partner's registrations
    d = run(holder=mine, active=10, capacity=10)
    assert d.status == "accepted"
    assert d.owned_until == mine.owned_until  # not extended by re-registering
    assert d.reason.startswith("Accepted: you own globex.com until")


def test_same_partner_may_register_a_domain_its_own_deal_works() -> None:
    mine = Holder("acme", LATER)
    d = run(holder=mine, facts=VendorFacts(company_id="9", worked_by_sales=True))
    assert d.status == "accepted"


def test_an_expired_holder_does_not_block() -> None:
    d = run(holder=Holder("globex-partners", NOW))  # owned_until == now: over
    assert d.status == "accepted"
    assert d.owned_until == datetime(2027, 7, 4, 9, 0, tzinfo=UTC)


def test_own_expired_holding_counts_against_capacity_again() -> None:
    d = run(holder=Holder("acme", NOW - timedelta(seconds=1)), active=10, capacity=10)
    assert d.code == "capacity_exceeded"


# ---------------------------------------------------------------------- rejections

NO_CONTACT_FIELD = [
    ("first_name", "contact first name"),
    ("last_name", "contact last name"),
    ("email", "contact e-mail"),
]


@pytest.mark.parametrize(("field", "label"), NO_CONTACT_FIELD)
def test_invalid_data_for_each_missing_contact_field(field: str, label: str) -> None:
    sub = replace(SUB, contacts=(replace(ANN, **{field: ""}),))
    d = run(sub)
    assert (d.status, d.code) == ("rejected", "invalid_data")
    assert d.reason.startswith("The registration is missing required data: ")
    assert label in d.reason
    assert d.owned_until is None


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"domain_text": None}, "company domain"),
        ({"domain_text": ""}, "company domain"),
        ({"domain_text": "localhost"}, "a valid company domain ('localhost' is not one)"),
        ({"domain_text": "co.uk"}, "a valid company domain ('co.uk' is not one)"),
        ({"company_name": ""}, "company name"),
        ({"contacts": ()}, "at least one contact"),
        ({"missing": ("an associated company",)}, "an associated company"),
    ],
)
def test_invalid_data_for_each_missing_field(change: dict[str, object], detail: str) -> None:
    d = run(replace(SUB, **change))  # type: ignore[arg-type]
    assert (d.status, d.code) == ("rejected", "invalid_data")
    assert d.reason == f"The registration is missing required data: {detail}."


def test_invalid_data_blank_names_and_bad_email() -> None:
    person = Person(email="not-an-address", first_name="  ", last_name="Lee")
    d = run(replace(SUB, contacts=(person,)))
    assert d.code == "invalid_data"
    assert "contact first name" in d.reason
    assert "a valid contact e-mail ('not-an-address')" in d.reason


def test_invalid_data_lists_every_missing_item_once() -> None:
    sub = replace(
        SUB,
        domain_text=None,
        company_name="",
        contacts=(replace(ANN, first_name=""), replace(ANN, email="x@globex.com", first_name="")),
    )
    d = run(sub)
    assert d.reason == (
        "The registration is missing required data: company domain, company name, "
        "contact first name."
    )


@pytest.mark.parametrize("text", ["gmail.com", "bob@gmail.com", "https://www.GMAIL.com", "web.de"])
def test_personal_domain(text: str) -> None:
    d = run(replace(SUB, domain_text=text))
    assert (d.status, d.code) == ("rejected", "personal_domain")
    domain = "web.de" if text == "web.de" else "gmail.com"
    assert d.domain == domain
    assert d.reason == (
        f"{domain} is a personal mailbox domain and cannot be registered; "
        "use the company's own web domain."
    )


def test_already_customer() -> None:
    d = run(facts=VendorFacts(company_id="7", is_customer=True))
    assert (d.status, d.code) == ("rejected", "already_customer")
    assert d.reason == "globex.com is already a customer of the vendor."


def test_owned_by_partner() -> None:
    d = run(holder=Holder("globex-partners", datetime(2027, 3, 1, 8, 30, tzinfo=UTC)))
    assert (d.status, d.code) == ("rejected", "owned_by_partner")
    assert d.reason == "globex.com is registered by another partner until 2027-03-01 08:30 UTC."


def test_owned_by_vendor_sales() -> None:
    d = run(facts=VendorFacts(company_id="7", worked_by_sales=True))
    assert (d.status, d.code) == ("rejected", "owned_by_vendor_sales")
    assert d.reason == "The vendor's sales team is already working with globex.com."


def test_capacity_exceeded() -> None:
    d = run(active=3, capacity=3)
    assert (d.status, d.code) == ("rejected", "capacity_exceeded")
    assert d.reason == (
        "Your tier (registered) allows 3 active registrations and you hold 3; "
        "wait for one to expire or grow your tier."
    )
    assert run(active=2, capacity=3).status == "accepted"


# ---------------------------------------------------------------------- order

EVERYTHING_WRONG = {
    "facts": VendorFacts(company_id="7", is_customer=True, worked_by_sales=True),
    "holder": Holder("other", LATER),
    "active": 5,
    "capacity": 5,
}


@pytest.mark.parametrize(
    ("sub", "overrides", "code"),
    [
        # invalid data beats everything
        (replace(SUB, company_name=""), {}, "invalid_data"),
        # personal domain before customer/ownership/sales/capacity
        (replace(SUB, domain_text="gmail.com"), {}, "personal_domain"),
        (SUB, {}, "already_customer"),
        (SUB, {"facts": VendorFacts(worked_by_sales=True)}, "owned_by_partner"),
        (
            SUB,
            {"facts": VendorFacts(worked_by_sales=True), "holder": None},
            "owned_by_vendor_sales",
        ),
        (SUB, {"facts": VendorFacts(), "holder": None}, "capacity_exceeded"),
        (SUB, {"facts": VendorFacts(), "holder": None, "active": 0}, None),
    ],
)
def test_check_order(sub: Submission, overrides: dict[str, object], code: str | None) -> None:
    kwargs = {**EVERYTHING_WRONG, **overrides}
    d = run(sub, **kwargs)  # type: ignore[arg-type]
    assert d.code == code
    assert d.status == ("accepted" if code is None else "rejected")


def test_customer_beats_own_holding() -> None:
    d = run(holder=Holder("acme", LATER), facts=VendorFacts(is_customer=True))
    assert d.code == "already_customer"


def test_rejections_carry_no_window_and_no_contacts() -> None:
    for d in (
        run(active=1, capacity=1),
        run(facts=VendorFacts(is_customer=True)),
        run(replace(SUB, domain_text="gmail.com")),
    ):
        assert d.owned_until is None
        assert d.contacts == ()


def test_decide_is_pure() -> None:
    assert run() == run()
    fp = SUB.fingerprint()
    assert fp == replace(SUB, partner_record_id="other").fingerprint()
    assert fp != replace(SUB, domain_text="globex.de").fingerprint()
