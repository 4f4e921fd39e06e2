"""What consent e-mails may say (DESIGN §2.2, issue 5): never anything that names the
registering partner — checked on every rendered message, not by template review —
and the lead's language where known, English otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from consent_support import DAY30, NOW, PARTNER_IDENTITY, MakeWorld, World, contains_any, person

from connector.mail.privacy import PrivacyViolation, assert_clean
from connector.mail.render import Rendered, render

ALL_PARTNERS = tuple(i for ids in PARTNER_IDENTITY.values() for i in ids)

CTX = {
    "first_name": "Hank",
    "last_name": "Scorpio",
    "company": "Globex",
    "vendor_name": "Our company",
    "privacy_url": "https://example.com/privacy",
    "consent_url": "https://example.com/consent",
}


def test_no_partner_identity_in_any_consent_email(world: World) -> None:
    """Both partners register leads of every language and region; every consent row
    in the outbox is scanned for anything naming either partner."""
    world.seed_deal(
        contacts=[
            person("de@globex.com", "DE"),
            person("fr@globex.com", "France"),
            person("ie@globex.com", "IE"),
            person("xx@globex.com"),
            person("ch@globex.com", "Schweiz", "fr"),
        ],
        country=None,  # xx@ has no country, nor has its company: unknown, the EU rule
    )
    world.seed_deal(
        "beta",
        domain="initech.de",
        company="Initech",
        contacts=[person("at@initech.de", "AT"), person("be@initech.de", "BE")],
    )
    for moment in (NOW, DAY30):
        world.sync("acme", now=moment)
        world.sync("beta", now=moment)
    msgs = world.consent_messages()
    assert sorted((m.recipient, m.kind, m.status, m.language) for m in msgs) == [
        ("at@initech.de", "consent_request", "queued", "de"),
        ("be@initech.de", "data_notice", "queued", "fr"),
        ("ch@globex.com", "consent_request", "queued", "fr"),
        ("de@globex.com", "consent_request", "queued", "de"),
        ("fr@globex.com", "data_notice", "queued", "fr"),
        ("ie@globex.com", "data_notice", "queued", "en"),
        ("xx@globex.com", "data_notice", "queued", "en"),
    ]
    for m in msgs:
        text = f"{m.recipient}\n{m.subject}\n{m.body}\n{m.message_id}"
        assert contains_any(text, ALL_PARTNERS) == [], (m.recipient, m.subject, m.body)
        # the company the lead works for is named; the partner never
        assert ("Globex" if m.recipient.endswith("globex.com") else "Initech") in m.body


@pytest.mark.parametrize(
    "company",
    ["Acme Agency", "ACME AGENCY GmbH", "acme-agency.example"],
)
def test_company_that_would_reveal_the_partner_is_held(make_world: MakeWorld, company: str) -> None:
    """If the registered company's name would name the partner (here: equal to or
    containing its name or notify domain), the e-mail is held, not sent — and kept,
    text included, for an admin to release or cancel (issue 12: never dropped)."""
    w = make_world()
    w.seed_deal(domain="globex.com", company=company, contacts=[person("de@globex.com", "DE")])
    w.seed_deal(domain="initech.de", company="Initech", contacts=[person("at@initech.de", "AT")])
    w.sync(now=NOW)
    by = {m.recipient: m for m in w.consent_messages()}
    blocked = by["de@globex.com"]
    assert blocked.status == "held"
    assert (blocked.detail or "").startswith("held: the message would reveal the registering")
    assert company in blocked.body and blocked.subject
    assert by["at@initech.de"].status == "queued"
    # held is decided: later passes neither queue it nor decide it again
    w.sync(now=NOW + timedelta(hours=1))
    assert [m.status for m in w.consent_messages() if m.recipient == "de@globex.com"] == ["held"]


def test_assert_clean_blocks_leaks() -> None:
    identity = PARTNER_IDENTITY["acme"]
    leaking = render("consent_request", "en", {**CTX, "company": "Acme Agency"})
    with pytest.raises(PrivacyViolation, match="partner"):
        assert_clean(leaking, identity, "the partner")
    # anywhere in the message, any case, also the subject
    for subject, body in (
        ("Hello from ACME", "nothing"),
        ("Hello", "write to ALERTS@Acme-Agency.example"),
        ("Hello", "see acme-agency.example/about"),
    ):
        with pytest.raises(PrivacyViolation):
            assert_clean(Rendered(subject, body, "en"), identity, "the partner")
    assert_clean(render("consent_request", "en", CTX), identity, "the partner")
    # too-short fragments (< 3 characters) and empty items are not matched
    assert_clean(Rendered("ab", "a b", "en"), ["ab", "", "  "], "x")


# ---------------------------------------------------------------------- templates


def test_languages_from_country_and_hs_language(world: World) -> None:
    world.seed_deal(
        contacts=[
            person("de@globex.com", "DE"),
            person("at@globex.com", "Österreich"),
            person("ch@globex.com", "CH"),
            person("fr@globex.com", "FR"),
            person("ie@globex.com", "IE"),
            person("iede@globex.com", "IE", "de"),  # the contact's own language wins
            person("frde@globex.com", "FR", "de-AT"),
            person("nlfr@globex.com", "NL", "fr"),
            person("fres@globex.com", "FR", "es"),  # no Spanish template: English
            person("nl@globex.com", "NL"),
            person("unknown@globex.com"),
        ],
        country=None,  # unknown@ has no country, nor has its company: the EU rule
    )
    world.sync(now=NOW)
    world.sync(now=DAY30)
    got = {m.recipient.split("@")[0]: (m.kind, m.language) for m in world.consent_messages()}
    assert got == {
        "de": ("consent_request", "de"),
        "at": ("consent_request", "de"),
        "ch": ("consent_request", "de"),
        "fr": ("data_notice", "fr"),
        "ie": ("data_notice", "en"),
        "iede": ("data_notice", "de"),
        "frde": ("data_notice", "de"),
        "nlfr": ("data_notice", "fr"),
        "fres": ("data_notice", "en"),
        "nl": ("data_notice", "en"),
        "unknown": ("data_notice", "en"),
    }
    for m in world.consent_messages():
        assert m.subject and "\n" not in m.subject and not m.subject.startswith("Subject")
        assert "Subject:" not in m.body
        assert "Our company" in m.subject
        assert "https://example.com/privacy" in m.body
        assert "{{" not in m.body and "{%" not in m.body
        if m.kind == "consent_request":
            assert "https://example.com/consent" in m.body
        first = "Fn" + m.recipient.split("@")[0].capitalize()
        assert first in m.body
    subjects = {m.recipient.split("@")[0]: m.subject for m in world.consent_messages()}
    assert subjects["de"].startswith("Bitte bestätigen Sie")
    assert subjects["fr"].startswith("Our company détient")
    assert subjects["ie"].startswith("How Our company holds")


@pytest.mark.parametrize(
    ("kind", "language", "expected", "subject_start"),
    [
        ("consent_request", "de", "de", "Bitte bestätigen"),
        ("consent_request", "fr", "fr", "Merci de confirmer"),
        ("consent_request", "en", "en", "Please confirm"),
        ("consent_request", "it", "en", "Please confirm"),
        ("consent_request", None, "en", "Please confirm"),
        ("consent_request", "DE-ch", "de", "Bitte bestätigen"),
        ("data_notice", "de", "de", "Information:"),
        ("data_notice", "fr", "fr", "Our company détient"),
        ("data_notice", "pt", "en", "How Our company"),
    ],
)
def test_render(kind: str, language: str | None, expected: str, subject_start: str) -> None:
    message = render(kind, language, CTX)
    assert message.language == expected
    assert message.subject.startswith(subject_start)
    assert "Hank" in message.body and "Globex" in message.body


def test_lead_notification_template_falls_back_to_english() -> None:
    ctx = {
        "company": "Globex",
        "domain": "globex.com",
        "day": "2027-01-04",
        "actions": [{"label": "requested a demo", "time": "09:01 UTC"}],
    }
    message = render("lead_notification", "de", ctx)
    assert message.language == "en"
    assert message.subject == "Activity at Globex (2027-01-04)"
    assert "requested a demo at 09:01 UTC" in message.body
