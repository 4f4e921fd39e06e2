"""The review rules as pure functions (issue 16 item 5): what "fuzzy" means for company
names, which decisions wait for review, and the rejection codes an admin may use."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from connector.config.models import ReviewRules
from connector.program.decide import Decision, Person, Submission
from connector.program.review import (
    REJECT_CODES,
    ReviewError,
    Rival,
    normalise_company,
    rejection,
    review,
    similarity,
)
from connector.state import StateStore, migrations

NOW = datetime(2027, 1, 4, 10, tzinfo=UTC)
UNCERTAIN = ReviewRules(manual_when_uncertain=True, notify_email="p@vendor.example")


def _sub(company: str, partner: str = "acme", kind: str = "deal") -> Submission:
    return Submission(partner, kind, "deals", "1", "x.com", company, (Person("a@x.com", "A", "B"),))  # type: ignore[arg-type]


ACCEPTED = Decision("accepted", "x.com", None, "Accepted", NOW)


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("ACME, Inc.", "acme"),
        ("Acme Inc", "acme"),
        ("Müller GmbH & Co. KG", "muller"),
        ("The Globex Corporation", "globex"),
        ("GmbH", "gmbh"),  # nothing but a legal form: kept, not emptied
    ],
)
def test_company_names_are_compared_without_case_accents_punctuation_or_legal_forms(
    name: str, normalised: str
) -> None:
    assert normalise_company(name) == normalised


def test_similarity_is_one_for_the_same_company_and_low_for_different_ones() -> None:
    assert similarity("Globex Corporation", "GLOBEX Corp.") == 1.0
    assert 0.85 <= similarity("Initech Solutions", "Initek Solutions") < 1.0
    assert similarity("Globex", "Soylent") < 0.5
    assert similarity("", "Globex") == 0.0


def test_a_fuzzy_match_on_another_domain_of_another_partner_waits() -> None:
    rival = Rival(7, "beta", "Globex Corporation", "globex.com")
    pending = review(_sub("Globex Corp"), ACCEPTED, UNCERTAIN, [rival])
    assert (pending.status, pending.code, pending.owned_until) == (
        "pending",
        "uncertain_match",
        None,
    )
    assert pending.note is not None and "registration #7 (beta, globex.com)" in pending.note
    assert "beta" not in pending.reason  # the partner's record never names the other one
    # the same partner's, a different name, or automatic without the switch: accepted
    assert review(_sub("Globex Corp", "beta"), ACCEPTED, UNCERTAIN, [rival]) == ACCEPTED
    assert review(_sub("Soylent"), ACCEPTED, UNCERTAIN, [rival]) == ACCEPTED
    plain = ReviewRules()
    assert review(_sub("Globex Corp"), ACCEPTED, plain, [rival]) == ACCEPTED


def test_manual_kinds_wait_unless_the_partner_owns_the_domain_already() -> None:
    rules = ReviewRules(lead="manual", notify_email="p@vendor.example")
    assert review(_sub("X", kind="lead"), ACCEPTED, rules, []).code == "manual_review"
    assert review(_sub("X", kind="deal"), ACCEPTED, rules, []) == ACCEPTED
    owned = review(_sub("X", kind="lead"), ACCEPTED, rules, [], already_owned=True)
    assert owned == ACCEPTED
    rejected = Decision("rejected", "x.com", "personal_domain", "no")
    assert review(_sub("X", kind="lead"), rejected, rules, []) == rejected


def test_rejection_codes_are_the_programs_and_an_unknown_one_lists_them() -> None:
    assert "owned_by_partner" in REJECT_CODES and "capacity_exceeded" in REJECT_CODES
    assert rejection("already_customer", "x.com") == (
        "Rejected by the program's review (already_customer): x.com is already a customer "
        "of the vendor."
    )
    with pytest.raises(ReviewError, match="use one of invalid_data, personal_domain"):
        rejection("nope", "x.com")


def test_manual_review_without_a_program_address_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"review\.notify_email is required"):
        ReviewRules(deal="manual")


def test_a_state_database_from_before_review_is_upgraded_keeping_its_registrations(
    tmp_path: Path,
) -> None:
    """Step 8 adds the review columns to a registration table that lacks them."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = StateStore(url)
    sub = _sub("Globex")
    store.registry.record(sub, ACCEPTED, now=NOW)
    with store.engine.begin() as conn:  # the schema as version 7 wrote it
        for column in ("review_note", "reviewed_by", "reviewed_at"):
            conn.execute(text(f"ALTER TABLE registration DROP COLUMN {column}"))
        conn.execute(text("DELETE FROM schema_version WHERE version >= 8"))
    store.close()
    upgraded = StateStore(url)
    try:
        assert upgraded.schema_version() == migrations.LATEST
        [reg] = upgraded.registry.registrations("acme")
        assert (reg.status, reg.domain, reg.reviewed_by, reg.review_note) == (
            "accepted",
            "x.com",
            None,
            None,
        )
    finally:
        upgraded.close()
