"""The country table of DESIGN §2.2 / issue 5: which e-mail a registered lead gets,
by how its country is written — ISO codes, names in any common spelling, missing or
unparseable (treated like the EU) — and the rules-file switches for the EEA and UK
(on by default since issue 16: GDPR applies in the EEA, the UK GDPR has the same
duty). The company has no country here: a contact without one is "unknown"."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from consent_support import DAY30, NOW, World, build_world, person

from connector.config.models import ConsentRules
from connector.program.consent import region
from connector.program.countries import country_code

# label → (country as written in the partner CRM, expected e-mail, expected language)
TABLE: dict[str, tuple[str | None, str | None, str]] = {
    "DE": ("DE", "consent_request", "de"),
    "AT": ("AT", "consent_request", "de"),
    "CH": ("CH", "consent_request", "de"),
    "FR": ("FR", "data_notice", "fr"),
    "IE": ("IE", "data_notice", "en"),
    "NO": ("NO", "data_notice", "en"),
    "GB": ("GB", "data_notice", "en"),
    "US": ("US", None, ""),
    "missing": (None, "data_notice", "en"),
    "nonsense": ("nonsense", "data_notice", "en"),
    "Deutschland": ("Deutschland", "consent_request", "de"),
    "germany": ("germany", "consent_request", "de"),
    "Österreich": ("Österreich", "consent_request", "de"),
}


def email_of(label: str) -> str:
    return f"lead-{TABLE[label][0] or 'none'}".lower().replace("ö", "oe") + "@globex.com"


def outcomes(w: World) -> dict[str, tuple[str, str, str]]:
    """recipient → (kind, status, language) of every consent row in the outbox."""
    return {m.recipient: (m.kind, m.status, m.language) for m in w.consent_messages()}


@pytest.fixture(scope="module")
def table_run(module_scratch: Path) -> Iterator[dict[str, dict]]:
    """One registered deal whose contacts cover the whole table; passes at
    registration, one second before day 30, and at day 30."""
    w = build_world(module_scratch / "countries")
    try:
        w.seed_deal(
            contacts=[person(email_of(label), country) for label, (country, _, _) in TABLE.items()],
            country=None,  # no company country to fall back on
        )
        snapshots = {}
        for name, moment in (
            ("registered", NOW),
            ("day30-1s", DAY30 - timedelta(seconds=1)),
            ("day30", DAY30),
            ("day45", DAY30 + timedelta(days=15)),
        ):
            w.sync(now=moment)
            snapshots[name] = outcomes(w)
        [reg] = w.app.registry.registrations("acme")
        assert reg.status == "accepted" and reg.decided_at == NOW
        yield snapshots
    finally:
        w.app.close()


def test_emails_are_unique_per_row() -> None:
    assert len({email_of(label) for label in TABLE}) == len(TABLE)


@pytest.mark.parametrize("label", list(TABLE))
def test_country_table(table_run: dict[str, dict], label: str) -> None:
    _, kind, language = TABLE[label]
    email = email_of(label)
    if kind == "consent_request":
        # DACH: at once, in German
        assert table_run["registered"].get(email) == ("consent_request", "queued", language)
        assert table_run["day45"].get(email) == ("consent_request", "queued", language)
    elif kind == "data_notice":
        # other EU or unknown: nothing until day 30, then the notice
        assert email not in table_run["registered"]
        assert email not in table_run["day30-1s"]
        assert table_run["day30"].get(email) == ("data_notice", "queued", language)
    else:
        # outside the EU with a known country: never anything
        for snapshot in table_run.values():
            assert email not in snapshot
    # at most one e-mail per lead, whatever the number of passes
    assert sum(1 for k in table_run["day45"] if k == email) <= 1


def test_table_totals(table_run: dict[str, dict]) -> None:
    final = table_run["day45"]
    assert sorted(k for k, _, _ in final.values()) == sorted(
        kind for _, kind, _ in TABLE.values() if kind
    )


def not_eea_nor_uk(text: str) -> str:
    return text.replace("treat_eea_as_eu: true", "treat_eea_as_eu: false").replace(
        "treat_uk_as_eu: true", "treat_uk_as_eu: false"
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (None, {"NO": "data_notice", "GB": "data_notice", "US": None}),
        (
            lambda t: t.replace("treat_eea_as_eu: true", "treat_eea_as_eu: false"),
            {"NO": None, "GB": "data_notice", "US": None},
        ),
        (
            lambda t: t.replace("treat_uk_as_eu: true", "treat_uk_as_eu: false"),
            {"NO": "data_notice", "GB": None, "US": None},
        ),
        (not_eea_nor_uk, {"NO": None, "GB": None, "US": None}),
    ],
    ids=["default-both-on", "eea-off", "uk-off", "both-off"],
)
def test_eea_and_uk_are_rules_file_choices(make_world, edit, expected) -> None:
    w = make_world(rules_edit=edit)
    w.seed_deal(contacts=[person(f"{c.lower()}@globex.com", c) for c in expected])
    w.sync(now=NOW)
    assert outcomes(w) == {}  # nothing of these is DACH
    w.sync(now=DAY30)
    got = {m.recipient: m.kind for m in w.consent_messages()}
    assert got == {f"{c.lower()}@globex.com": k for c, k in expected.items() if k}


# ---------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        ("germany", "DE"),
        (" GERMANY ", "DE"),
        ("Deutschland", "DE"),
        ("Allemagne", "DE"),
        ("Österreich", "AT"),
        ("Osterreich", "AT"),
        ("Austria", "AT"),
        ("AUT", "AT"),
        ("Schweiz", "CH"),
        ("Suisse", "CH"),
        ("Switzerland", "CH"),
        ("France", "FR"),
        ("Frankreich", "FR"),
        ("Ireland", "IE"),
        ("Irland", "IE"),
        ("Norway", "NO"),
        ("Norwegen", "NO"),
        ("UK", "GB"),
        ("United Kingdom", "GB"),
        ("USA", "US"),
        ("United States", "US"),
        ("Holland", "NL"),
        ("nonsense", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("XX", None),
        ("ZZZ", None),
    ],
)
def test_country_code(text: str | None, code: str | None) -> None:
    assert country_code(text) == code


@pytest.mark.parametrize(
    ("country", "expected"),
    [
        ("DE", "dach"),
        ("Österreich", "dach"),
        ("CH", "dach"),
        ("FR", "eu"),
        ("IE", "eu"),
        ("NO", "eu"),
        ("IS", "eu"),
        ("LI", "eu"),
        ("GB", "eu"),
        ("US", "outside"),
        (None, "eu"),
        ("", "eu"),
        ("nonsense", "eu"),
    ],
)
def test_region_default_rules(country: str | None, expected: str) -> None:
    assert region(country, ConsentRules()) == expected


def test_region_switches() -> None:
    eea = ConsentRules(treat_uk_as_eu=False)
    uk = ConsentRules(treat_eea_as_eu=False)
    assert [region(c, eea) for c in ("NO", "IS", "LI", "GB", "CH")] == [
        "eu",
        "eu",
        "eu",
        "outside",
        "dach",
    ]
    assert [region(c, uk) for c in ("NO", "GB", "UK", "United Kingdom")] == [
        "outside",
        "eu",
        "eu",
        "eu",
    ]
    neither = ConsentRules(treat_eea_as_eu=False, treat_uk_as_eu=False)
    assert [region(c, neither) for c in ("NO", "GB", "FR")] == ["outside", "outside", "eu"]
