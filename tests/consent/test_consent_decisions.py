"""Consent decisions (DESIGN §2.2, issue 5) through ``Dealsync.sync`` on embedded CRMs:
the day-30 boundary both ways, suppression by each signal (and not by signals outside
the window), no e-mail for rejected / withdrawn / expired registrations, and a sync
that can never loosen a vendor opt-out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from consent_support import DAY30, NOW, MakeWorld, World, person

from connector.mail.transport import FileSink

ENGAGEMENT = ("pe_privacy_policy_viewed", "pe_content_downloaded", "pe_form_submitted")


def rows(w: World) -> dict[str, tuple[str, str]]:
    """recipient → (kind, status) of the consent rows."""
    out = {m.recipient: (m.kind, m.status) for m in w.consent_messages()}
    assert len(out) == len(w.consent_messages()), "more than one consent row for a contact"
    return out


def detail_of(w: World, email: str) -> str:
    [m] = [m for m in w.consent_messages() if m.recipient == email]
    return m.detail or ""


# ---------------------------------------------------------------------- day 30


@pytest.mark.parametrize("late", [timedelta(0), timedelta(seconds=1)], ids=["+30d", "+30d+1s"])
def test_notice_day30_boundary(world: World, late: timedelta) -> None:
    world.seed_deal(contacts=[person("fr@globex.com", "FR")])
    world.sync(now=NOW)
    assert rows(world) == {}
    world.sync(now=DAY30 - timedelta(seconds=1))
    assert rows(world) == {}, "the notice must not go out before day 30"
    world.sync(now=DAY30 + late)
    assert rows(world) == {"fr@globex.com": ("data_notice", "queued")}
    [m] = world.consent_messages()
    assert m.created_at == DAY30 + late
    # later passes decide nothing more
    world.sync(now=DAY30 + timedelta(days=3))
    assert len(world.messages()) == 1


def test_dach_request_is_immediate_and_once(world: World) -> None:
    world.seed_deal(contacts=[person("de@globex.com", "DE")])
    world.sync(now=NOW)
    assert rows(world) == {"de@globex.com": ("consent_request", "queued")}
    [m] = world.consent_messages()
    assert m.created_at == NOW
    for later in (NOW + timedelta(minutes=5), DAY30, DAY30 + timedelta(days=1)):
        world.sync(now=later)
    assert len(world.messages()) == 1


# ---------------------------------------------------------------------- suppression


def test_dach_opted_in_via_subscriptions(world: World) -> None:
    world.vendor.set_opted_in("DE@globex.com")  # the vendor knows them, any case
    world.seed_deal(contacts=[person("de@globex.com", "DE"), person("at@globex.com", "AT")])
    world.sync(now=NOW)
    assert rows(world) == {
        "de@globex.com": ("consent_request", "suppressed"),
        "at@globex.com": ("consent_request", "queued"),
    }
    assert "opted in" in detail_of(world, "de@globex.com")
    [suppressed] = world.messages(status="suppressed")
    assert suppressed.body == "" and suppressed.subject == ""  # nothing to send, ever


def test_unsubscribed_status_is_not_opted_in(world: World) -> None:
    world.vendor.set_opted_in("de@globex.com", False)
    world.seed_deal(contacts=[person("de@globex.com", "DE")])
    world.sync(now=NOW)
    assert rows(world) == {"de@globex.com": ("consent_request", "queued")}


def _opted_in_via_subscriptions(world: World) -> None:
    world.vendor.set_opted_in("fr@globex.com")


def _confirmed_email_property(world: World) -> None:
    vendor_fr = world.vendor_contact("fr@globex.com")
    world.vendor.edit("contacts", vendor_fr.id, {"dealsync_email_confirmed": "true"})


@pytest.mark.parametrize(
    ("vendor_says", "why"),
    [
        pytest.param(_opted_in_via_subscriptions, "opted in", id="opted_in_via_subscriptions"),
        pytest.param(_confirmed_email_property, "confirmed", id="confirmed_email_property"),
    ],
)
def test_eu_contact_the_vendor_vouches_for_within_the_window_gets_no_notice(
    world: World, vendor_says: Callable[[World], None], why: str
) -> None:
    """Within the 30 days, the vendor's own word about the French contact (opted in
    through subscriptions, or a confirmed e-mail) suppresses its data notice; the Irish
    one still gets one."""
    world.seed_deal(contacts=[person("fr@globex.com", "FR"), person("ie@globex.com", "IE")])
    world.sync(now=NOW)
    vendor_says(world)
    world.sync(now=DAY30)
    assert rows(world) == {
        "fr@globex.com": ("data_notice", "suppressed"),
        "ie@globex.com": ("data_notice", "queued"),
    }
    assert why in detail_of(world, "fr@globex.com")


def test_dach_confirmed_email_property_on_a_known_vendor_contact(world: World) -> None:
    """A lead the vendor already knows, with a confirmed e-mail: registered as a lead
    (the vendor contact is upserted by e-mail), no consent request."""
    known = world.vendor.create(
        "contacts", {"email": "carol@initech.de", "dealsync_email_confirmed": "true"}
    )
    world.crm().create(
        "contacts",
        {
            **person("carol@initech.de", "Deutschland"),
            "company": "Initech",
            "dealsync_register_lead": "true",
        },
    )
    world.crm().create(
        "contacts",
        {**person("dan@hooli.de", "DE"), "company": "Hooli", "dealsync_register_lead": "true"},
    )
    world.sync(now=NOW)
    regs = world.app.registry.registrations("acme")
    assert sorted((r.kind, r.domain, r.status) for r in regs) == [
        ("lead", "hooli.de", "accepted"),
        ("lead", "initech.de", "accepted"),
    ]
    assert world.vendor_contact("carol@initech.de").id == known.id
    assert rows(world) == {
        "carol@initech.de": ("consent_request", "suppressed"),
        "dan@hooli.de": ("consent_request", "queued"),
    }
    assert "confirmed" in detail_of(world, "carol@initech.de")


@pytest.mark.parametrize("event", ENGAGEMENT)
def test_each_engagement_event_in_the_window_suppresses(world: World, event: str) -> None:
    world.seed_deal(contacts=[person("fr@globex.com", "FR"), person("ie@globex.com", "IE")])
    world.sync(now=NOW)
    fr = world.vendor_contact("fr@globex.com")
    world.vendor.record_event(event, fr.id, occurred_at=NOW + timedelta(days=12))
    world.sync(now=DAY30)
    assert rows(world) == {
        "fr@globex.com": ("data_notice", "suppressed"),
        "ie@globex.com": ("data_notice", "queued"),
    }
    assert event in detail_of(world, "fr@globex.com")


@pytest.mark.parametrize(
    "when",
    [timedelta(seconds=1), DAY30 - NOW - timedelta(seconds=1)],
    ids=["just-after-registration", "last-second-of-window"],
)
def test_engagement_at_the_window_edges_suppresses(world: World, when: timedelta) -> None:
    world.seed_deal(contacts=[person("fr@globex.com", "FR")])
    world.sync(now=NOW)
    fr = world.vendor_contact("fr@globex.com")
    world.vendor.record_event("pe_form_submitted", fr.id, occurred_at=NOW + when)
    world.sync(now=DAY30 + timedelta(hours=1))
    assert rows(world) == {"fr@globex.com": ("data_notice", "suppressed")}


@pytest.mark.parametrize(
    ("event", "when"),
    [
        ("pe_privacy_policy_viewed", DAY30 - NOW + timedelta(hours=1)),  # after the window
        ("pe_content_downloaded", -timedelta(days=2)),  # before the registration
        ("pe_demo_requested", timedelta(days=3)),  # not an engagement event
    ],
    ids=["after-window", "before-registration", "other-event"],
)
def test_events_that_do_not_suppress(world: World, event: str, when: timedelta) -> None:
    world.seed_deal(contacts=[person("fr@globex.com", "FR")])
    world.sync(now=NOW)
    fr = world.vendor_contact("fr@globex.com")
    world.vendor.record_event(event, fr.id, occurred_at=NOW + when)
    # first pass after both the window and the event
    world.sync(now=DAY30 + timedelta(hours=2))
    assert rows(world) == {"fr@globex.com": ("data_notice", "queued")}


def test_another_contacts_engagement_does_not_suppress(world: World) -> None:
    world.seed_deal(contacts=[person("fr@globex.com", "FR"), person("ie@globex.com", "IE")])
    world.sync(now=NOW)
    ie = world.vendor_contact("ie@globex.com")
    world.vendor.record_event("pe_form_submitted", ie.id, occurred_at=NOW + timedelta(days=1))
    world.sync(now=DAY30)
    assert rows(world) == {
        "fr@globex.com": ("data_notice", "queued"),
        "ie@globex.com": ("data_notice", "suppressed"),
    }


# ---------------------------------------------------------------------- registration ended


def test_rejected_registrations_never_send(world: World) -> None:
    world.vendor.create(
        "companies", {"name": "Globex", "domain": "globex.com", "lifecyclestage": "customer"}
    )
    world.seed_deal(contacts=[person("de@globex.com", "DE"), person("fr@globex.com", "FR")])
    # a second partner's deal on a domain acme already holds: rejected too
    world.seed_deal(domain="initech.de", company="Initech", contacts=[person("x@initech.de", "DE")])
    world.seed_deal(
        "beta", domain="initech.de", company="Initech", contacts=[person("y@initech.de", "DE")]
    )
    world.sync(now=NOW)
    world.sync("beta", now=NOW)
    regs = {(r.partner, r.domain): r.status for r in world.app.registry.registrations()}
    assert regs == {
        ("acme", "globex.com"): "rejected",
        ("acme", "initech.de"): "accepted",
        ("beta", "initech.de"): "rejected",
    }
    for moment in (DAY30, DAY30 + timedelta(days=1)):
        world.sync(now=moment)
        world.sync("beta", now=moment)
    assert rows(world) == {"x@initech.de": ("consent_request", "queued")}


def test_withdrawn_before_delivery_is_cancelled(world: World, scratch: Path) -> None:
    s = world.seed_deal(contacts=[person("de@globex.com", "DE"), person("fr@globex.com", "FR")])
    world.sync(now=NOW)
    assert rows(world) == {"de@globex.com": ("consent_request", "queued")}
    # the partner takes the registration back before anything was delivered
    world.crm().edit("deals", s.id, {"dealsync_register": ""})
    world.sync(now=NOW + timedelta(hours=1))
    [reg] = world.app.registry.registrations("acme")
    assert reg.status == "withdrawn"
    sink = scratch / "mail"
    deliveries = world.app.outbox.deliver(FileSink(sink), now=NOW + timedelta(hours=1))
    assert [(d.recipient, d.ok, d.detail) for d in deliveries] == [
        ("de@globex.com", False, "cancelled")
    ]
    assert not sink.exists() or not list(sink.iterdir())
    # the EU notice is never decided for it, the cancelled row stays cancelled
    world.sync(now=DAY30)
    assert world.app.outbox.deliver(FileSink(sink), now=DAY30) == []
    assert rows(world) == {"de@globex.com": ("consent_request", "cancelled")}


def one_month(text: str) -> str:
    return text.replace("ownership_months: 6", "ownership_months: 1")


def test_expired_registrations_never_send(make_world: MakeWorld, scratch: Path) -> None:
    w = make_world(rules_edit=one_month)
    w.seed_deal(contacts=[person("de@globex.com", "DE"), person("fr@globex.com", "FR")])
    w.sync(now=NOW)
    assert rows(w) == {"de@globex.com": ("consent_request", "queued")}
    # no pass (and no delivery) until after the month: the registration expires first
    after = NOW + timedelta(days=40)
    w.sync(now=after)
    [reg] = w.app.registry.registrations("acme")
    assert reg.status == "expired"
    deliveries = w.app.outbox.deliver(FileSink(scratch / "mail"), now=after)
    assert [(d.recipient, d.detail) for d in deliveries] == [("de@globex.com", "cancelled")]
    assert rows(w) == {"de@globex.com": ("consent_request", "cancelled")}


def test_notice_queued_then_registration_expires_before_delivery(
    make_world: MakeWorld, scratch: Path
) -> None:
    w = make_world(rules_edit=one_month)
    w.seed_deal(contacts=[person("fr@globex.com", "FR")])
    w.sync(now=NOW)
    w.sync(now=DAY30)  # the month (31 days) has not ended yet: the notice is queued
    assert rows(w) == {"fr@globex.com": ("data_notice", "queued")}
    w.sync(now=NOW + timedelta(days=32))
    deliveries = w.app.outbox.deliver(FileSink(scratch / "mail"), now=NOW + timedelta(days=32))
    [notice] = w.app.outbox.messages(kind="data_notice")
    # (the partner's expiry reminder of the one-month registration is cancelled too)
    assert [d.detail for d in deliveries if d.id == notice.id] == ["cancelled"]


# ---------------------------------------------------------------------- consent never loosened

OPTOUT_FIELD = """      - partner: hs_email_optout
        vendor: hs_email_optout
        direction: {direction}
        conflict: {conflict}
"""
DEALS_HEADER = "\n  # ---------------------------------------------------------------------- deals"


def with_optout(direction: str = "both", conflict: str = "vendor_wins"):
    def edit(text: str) -> str:
        assert text.count(DEALS_HEADER) == 1
        field = OPTOUT_FIELD.format(direction=direction, conflict=conflict)
        return text.replace(DEALS_HEADER, "\n" + field.rstrip("\n") + "\n" + DEALS_HEADER, 1)

    return edit


def test_partner_cannot_loosen_vendor_optout(make_world: MakeWorld) -> None:
    w = make_world(mapping_edit=with_optout())
    s = w.seed_deal(contacts=[person("us@globex.com", "US")])
    w.sync(now=NOW)
    vendor_c = w.vendor_contact("us@globex.com")
    w.vendor.edit("contacts", vendor_c.id, {"hs_email_optout": "true"})
    w.sync(now=NOW + timedelta(minutes=1))
    partner_c = s.contacts[0].id
    assert w.crm().get("contacts", partner_c).get("hs_email_optout") == "true"
    # the partner opts the contact back in: never written over the vendor's opt-out
    for value in ("false", ""):
        w.crm().edit("contacts", partner_c, {"hs_email_optout": value})
        w.sync(now=NOW + timedelta(minutes=2))
        assert w.vendor.get("contacts", vendor_c.id).get("hs_email_optout") == "true"
        w.sync(now=NOW + timedelta(minutes=3))
        assert w.vendor.get("contacts", vendor_c.id).get("hs_email_optout") == "true"
    # and the partner's own value is not forced back either
    assert w.crm().get("contacts", partner_c).get("hs_email_optout") is None


def test_optout_wins_even_when_the_partner_wins_conflicts(make_world: MakeWorld) -> None:
    w = make_world(mapping_edit=with_optout(conflict="partner_wins"))
    s = w.seed_deal(contacts=[person("us@globex.com", "US")])
    w.sync(now=NOW)
    vendor_c = w.vendor_contact("us@globex.com")
    # both sides change it in the same interval; the mapping says the partner wins
    w.vendor.edit("contacts", vendor_c.id, {"hs_email_optout": "true"})
    w.crm().edit("contacts", s.contacts[0].id, {"hs_email_optout": "false"})
    w.sync(now=NOW + timedelta(minutes=1))
    w.sync(now=NOW + timedelta(minutes=2))
    assert w.vendor.get("contacts", vendor_c.id).get("hs_email_optout") == "true"


def test_partner_may_tighten_consent(make_world: MakeWorld) -> None:
    w = make_world(mapping_edit=with_optout(direction="to_vendor"))
    s = w.seed_deal(contacts=[person("us@globex.com", "US")])
    w.sync(now=NOW)
    vendor_c = w.vendor_contact("us@globex.com")
    w.crm().edit("contacts", s.contacts[0].id, {"hs_email_optout": "true"})
    w.sync(now=NOW + timedelta(minutes=1))
    assert w.vendor.get("contacts", vendor_c.id).get("hs_email_optout") == "true"
    w.crm().edit("contacts", s.contacts[0].id, {"hs_email_optout": "false"})
    w.sync(now=NOW + timedelta(minutes=2))
    assert w.vendor.get("contacts", vendor_c.id).get("hs_email_optout") == "true"


def test_engagement_suppresses_for_a_mixed_case_email(world: World) -> None:
    world.seed_deal(contacts=[person("Fr.Mixed@Globex.com", "FR")])
    world.sync(now=NOW)
    contact = world.vendor_contact("Fr.Mixed@Globex.com")
    world.vendor.record_event("pe_form_submitted", contact.id, occurred_at=NOW + timedelta(days=1))
    world.sync(now=DAY30)
    assert rows(world) == {"fr.mixed@globex.com": ("data_notice", "suppressed")}


# ---------------------------------------------------------------------- calls (issue 17)


def test_consent_reads_the_vendor_in_batches_whatever_the_number_of_contacts(
    make_world: MakeWorld,
) -> None:
    """Deciding the consent requests of 3 or of 30 DACH contacts makes the same calls
    to the vendor: one subscription-status read, the same batch reads and searches —
    nothing per contact (issue 17)."""
    calls = {}
    for n in (3, 30):
        w = make_world(f"calls{n}")
        w.seed_deal(contacts=[person(f"p{i}@globex.com", "DE") for i in range(n)])
        w.vendor.calls.clear()
        w.sync(now=NOW)
        assert [m.kind for m in w.messages()] == ["consent_request"] * n
        calls[n] = {k: w.vendor.calls[k] for k in ("subscription_status", "batch_read", "search")}
    assert calls[3]["subscription_status"] == 1
    assert calls[30] == calls[3]


def test_a_leads_company_country_is_read_once_not_on_every_pass(make_world: MakeWorld) -> None:
    """Issue 17's quiet pass: a contact without a country of its own whose company is
    outside the EU never gets an e-mail, so no outbox row marks it decided; where its
    company is must still not be read again on every later pass (kept with the
    registration, read once)."""
    w = make_world("company-country-once")
    w.seed_deal(contacts=[person("kim@globex.com")], country="US")
    w.sync(now=NOW)
    assert w.consent_messages() == []
    for day in (1, 2, 40):
        w.vendor.calls.clear()
        w.sync(now=NOW + timedelta(days=day))
        assert w.vendor.calls["batch_read"] == 0, (day, dict(w.vendor.calls))
    assert w.consent_messages() == []  # still outside the EU: nothing, ever


def test_eu_notices_read_each_engagement_event_type_once_whatever_the_number_due(
    make_world: MakeWorld,
) -> None:
    """Issue 17's scenario 5b: 3 or 30 French contacts due their day-30 notice cost the
    same event reads — one per engagement event type for all of them, not one per
    contact and type — and a contact who engaged in the window is still suppressed."""
    calls: dict[int, int] = {}
    for n in (3, 30):
        w = make_world(f"events{n}")
        w.seed_deal(contacts=[person(f"p{i}@globex.com", "FR") for i in range(n)])
        w.sync(now=NOW)
        engaged = w.vendor_contact("p0@globex.com")
        w.vendor.record_event("pe_form_submitted", engaged.id, occurred_at=NOW + timedelta(days=3))
        w.vendor.calls.clear()
        w.sync(now=DAY30)
        calls[n] = w.vendor.calls["events"]
        notices = w.by_recipient("data_notice")
        assert notices["p0@globex.com"].status == "suppressed"
        assert {m.status for r, m in notices.items() if r != "p0@globex.com"} == {"queued"}
    assert calls[30] == calls[3], calls
