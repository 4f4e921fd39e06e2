"""The consent work of a pass, a page of contacts at a time (issue 17): a first sync
that accepted N registrations holds one page of registration rows, not N pairs, and
decides exactly what it decided holding them all — the same e-mails, the same vendor
reads, the same marks (a quiet next pass decides nothing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from consent_support import DAY30, NOW, MakeWorld, World, person

from connector.state.registry import Registry

PAGE = 2


def _seed(w: World) -> None:
    # DACH (due now), EU (due on day 30), outside the EU, a contact without a country
    # of its own whose company is in Germany
    w.seed_deal(contacts=[person("de1@globex.com", "DE"), person("fr1@globex.com", "FR")])
    w.seed_deal(
        domain="hooli.com",
        company="Hooli",
        contacts=[person("at1@hooli.com", "AT"), person("us1@hooli.com", "US")],
    )
    w.seed_deal(
        domain="initech.com", company="Initech", country="DE", contacts=[person("kim@initech.com")]
    )
    w.seed_deal(
        domain="umbrella.com",
        company="Umbrella",
        contacts=[person("de2@umbrella.com", "DE"), person("ch1@umbrella.com", "CH")],
    )


def _outcome(w: World) -> dict[str, Any]:
    return {
        "rows": sorted((m.recipient, m.kind, m.status) for m in w.consent_messages()),
        "calls": {k: w.vendor.calls[k] for k in ("subscription_status", "batch_read", "search")},
    }


def test_consent_is_decided_a_page_at_a_time_as_if_whole(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = make_world("whole")
    _seed(whole)
    whole.vendor.calls.clear()
    whole.sync(now=NOW)
    expected_now = _outcome(whole)
    whole.sync(now=DAY30 + timedelta(seconds=1))
    expected_day30 = _outcome(whole)
    assert any(kind == "data_notice" for _, kind, _ in expected_day30["rows"])
    assert any(kind == "consent_request" for _, kind, _ in expected_now["rows"])

    pages: list[int] = []
    paged = Registry.consent_due_pages

    def small(self: Registry, partner: str, now: Any, size: int = 1000) -> Any:
        for page in paged(self, partner, now, PAGE):
            pages.append(len(page))
            yield page

    monkeypatch.setattr(Registry, "consent_due_pages", small)
    w = make_world("paged")
    _seed(w)
    w.vendor.calls.clear()
    w.sync(now=NOW)
    assert _outcome(w) == expected_now
    assert pages and max(pages) <= PAGE and sum(pages) > PAGE  # more than one page
    w.sync(now=DAY30 + timedelta(seconds=1))
    assert _outcome(w) == expected_day30
    # every contact was marked: a later pass has nothing due
    pages.clear()
    w.sync(now=DAY30 + timedelta(days=1))
    assert sum(pages) == 0
    assert _outcome(w)["rows"] == expected_day30["rows"]


def test_consent_marks_go_in_slices(make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The marks of the contacts looked at are written a slice at a time, all of them."""
    monkeypatch.setattr("connector.state.registry.MARK_SLICE", 2)
    w = make_world()
    _seed(w)
    w.sync(now=NOW)
    assert list(w.app.store.registry.consent_due_pages("acme", NOW + timedelta(minutes=1))) == []
