"""Lead notifications (DESIGN §2.3, issue 5): a subscribed partner hears which
high-value action happened at which of its companies, and when — never who —
deduplicated per company, action and day and digested into one e-mail per company
and day; nothing for domains it does not own, nothing when unsubscribed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from consent_support import NOW, World, contains_any, person

from connector.records import Event
from connector.state.leads import set_subscription, subscription
from connector.state.tables import LeadActivity

ACME_TO = "alerts@acme-agency.example"
BETA_TO = "leads@beta-partners.example"

HANK = {"firstname": "Hank", "lastname": "Scorpio", "email": "hank@globex.com", "country": "US"}
BILL = {"firstname": "Bill", "lastname": "Lumbergh", "email": "bill@initech.de", "country": "US"}


@dataclass
class Scene:
    world: World
    hank: str  # vendor contact ids
    bill: str
    gavin: str
    zed: str


@pytest.fixture
def scene(world: World) -> Scene:
    """acme owns globex.com, beta owns initech.de, hooli.com is nobody's. A first pass
    per partner sets the event cursors (no notification about the past)."""
    world.seed_deal(contacts=[HANK])
    world.seed_deal("beta", domain="initech.de", company="Initech", contacts=[BILL])
    gavin = world.vendor.create(
        "contacts", {"firstname": "Gavin", "lastname": "Belson", "email": "gavin@hooli.com"}
    )
    # a vendor contact with a personal address, associated with Globex's vendor company
    zed = world.vendor.create(
        "contacts", {"firstname": "Zed", "lastname": "Quux", "email": "zed.quux@gmail.com"}
    )
    world.sync("acme")
    world.sync("beta")
    globex = next(c for c in world.vendor.all("companies") if c.get("domain") == "globex.com")
    world.vendor.associate("contacts", "companies", [(zed.id, globex.id)])
    hank = world.vendor_contact("hank@globex.com").id
    bill = world.vendor_contact("bill@initech.de").id
    return Scene(world, hank, bill, gavin.id, zed.id)


def notifications(w: World, to: str | None = None):
    return [m for m in w.messages("lead_notification") if to is None or m.recipient == to]


def activities(w: World, partner: str = "acme") -> list[LeadActivity]:
    from sqlmodel import Session, select

    with Session(w.app.store.engine) as s:
        return list(s.exec(select(LeadActivity).where(LeadActivity.partner == partner)).all())


def hhmm(e: Event) -> str:
    return e.occurred_at.strftime("%H:%M UTC")


def test_events_before_the_first_pass_are_not_notified(world: World) -> None:
    world.seed_deal(contacts=[HANK])
    world.sync()  # creates the vendor contact; first pass: the cursor only
    hank = world.vendor_contact("hank@globex.com").id
    world.vendor.record_event(
        "pe_demo_requested", hank, occurred_at=world.clock.moment - timedelta(days=1)
    )
    world.sync()
    assert notifications(world) == []


def test_digest_names_company_action_and_time_never_the_contact(scene: Scene) -> None:
    w = scene.world
    demo = w.vendor.record_event("pe_demo_requested", scene.hank)
    w.vendor.record_event("pe_demo_requested", scene.hank)  # the same action again
    pricing = w.vendor.record_event("pe_pricing_page_viewed", scene.hank)
    w.vendor.record_event("pe_privacy_policy_viewed", scene.hank)  # not a notified action
    w.sync("acme")
    [m] = notifications(w)
    assert m.recipient == ACME_TO and m.status == "queued"
    assert m.subject == "Activity at Globex (2027-01-04)"
    assert "Globex" in m.body and "globex.com" in m.body
    assert f"requested a demo at {hhmm(demo)}" in m.body
    assert f"viewed the pricing page at {hhmm(pricing)}" in m.body
    assert m.body.count("requested a demo") == 1
    assert "policy" not in m.body
    identity = [*HANK.values(), "hank"]
    assert contains_any(f"{m.subject}\n{m.body}", [i for i in identity if i != "US"]) == []
    assert sorted(a.action for a in activities(w)) == [
        "pe_demo_requested",
        "pe_pricing_page_viewed",
    ]


def test_same_action_same_company_same_day_is_one_activity_one_email(scene: Scene) -> None:
    w = scene.world
    w.vendor.record_event("pe_demo_requested", scene.hank)
    w.sync("acme")
    assert len(notifications(w)) == 1
    # again later the same day (other passes): nothing new
    w.vendor.record_event("pe_demo_requested", scene.hank)
    w.sync("acme")
    w.vendor.record_event("pe_demo_requested", scene.zed)  # same company, other person
    w.sync("acme")
    assert len(notifications(w)) == 1
    assert len(activities(w)) == 1
    # a new action the same day: a new (small) digest with only that action
    w.vendor.record_event("pe_form_submitted", scene.hank)
    w.sync("acme")
    msgs = notifications(w)
    assert len(msgs) == 2
    assert "filled in a form" in msgs[1].body and "requested a demo" not in msgs[1].body
    # the next day the same action is news again
    w.clock.advance(timedelta(days=1))
    w.vendor.record_event("pe_demo_requested", scene.hank)
    w.sync("acme", now=NOW + timedelta(days=1))
    msgs = notifications(w)
    assert len(msgs) == 3
    assert msgs[2].subject == "Activity at Globex (2027-01-05)"


def test_company_domain_from_associated_company_else_email(scene: Scene) -> None:
    w = scene.world
    w.vendor.record_event("pe_content_downloaded", scene.zed)  # gmail.com, but at Globex
    w.sync("acme")
    [m] = notifications(w)
    assert "Globex" in m.body and "downloaded content" in m.body
    assert contains_any(m.body, ["Zed", "Quux", "zed.quux", "gmail"]) == []


def test_only_the_owner_of_the_domain_hears(scene: Scene) -> None:
    w = scene.world
    w.vendor.record_event("pe_demo_requested", scene.bill)  # initech.de: beta's
    w.vendor.record_event("pe_demo_requested", scene.gavin)  # hooli.com: nobody's
    w.sync("acme")
    w.sync("beta")
    assert notifications(w, ACME_TO) == []
    [m] = notifications(w)
    assert m.recipient == BETA_TO
    assert m.subject.startswith("Activity at Initech")
    assert contains_any(m.body, ["Bill", "Lumbergh", "bill@initech.de", "hooli", "Gavin"]) == []
    assert activities(w, "acme") == []


def test_unsubscribed_partner_gets_nothing(scene: Scene) -> None:
    w = scene.world
    assert subscription(w.app.store, "acme", ACME_TO) == ACME_TO
    set_subscription(w.app.store, "acme", ACME_TO, False)
    assert subscription(w.app.store, "acme", ACME_TO) is None
    w.vendor.record_event("pe_demo_requested", scene.hank)
    w.sync("acme")
    assert notifications(w) == []
    # subscribed again (another address): only what happens from then on
    set_subscription(w.app.store, "acme", "sales@acme-agency.example", True)
    w.sync("acme")
    assert notifications(w) == []
    w.vendor.record_event("pe_pricing_page_viewed", scene.hank)
    w.sync("acme")
    [m] = notifications(w)
    assert m.recipient == "sales@acme-agency.example"
    assert "viewed the pricing page" in m.body and "requested a demo" not in m.body


def test_first_subscription_needs_an_address(world: World) -> None:
    with pytest.raises(ValueError, match="email"):
        set_subscription(world.app.store, "beta", None, True)


def test_no_notification_after_the_ownership_ended(scene: Scene) -> None:
    w = scene.world
    w.sync("acme", now=NOW + timedelta(days=200))  # the registration expires
    [reg] = w.app.registry.registrations("acme")
    assert reg.status == "expired"
    w.vendor.record_event("pe_demo_requested", scene.hank)
    w.sync("acme", now=NOW + timedelta(days=200))
    assert notifications(w) == []


def test_a_surname_shared_with_the_company_does_not_block_the_notification(world: World) -> None:
    """The digest names the company, "Scorpio Consulting"; that it shares Hank
    Scorpio's surname does not identify him (issue 12: once, this was withheld)."""
    world.seed_deal(
        domain="scorpio.com",
        company="Scorpio Consulting",
        contacts=[person("hank@scorpio.com", "US", firstname="Hank", lastname="Scorpio")],
    )
    world.sync()
    vendor_id = world.vendor_contact("hank@scorpio.com").id
    world.vendor.record_event("pe_demo_requested", vendor_id)
    world.sync()
    [m] = notifications(world)
    assert (m.status, m.detail) == ("queued", None)
    assert m.subject == "Activity at Scorpio Consulting (2027-01-04)"
    assert contains_any(m.body, ["Hank", "hank@scorpio.com"]) == []


def test_sync_all_reads_the_web_events_once_and_each_owner_hears_its_own(scene: Scene) -> None:
    """Issue 17: the vendor's web events are program-wide data — one ``sync --all``
    reads each action's events once (not once per partner), and each partner's pass
    still keeps only those at domains it owns."""
    w = scene.world
    w.vendor.record_event("pe_demo_requested", scene.hank)  # globex.com: acme's
    w.vendor.record_event("pe_demo_requested", scene.bill)  # initech.de: beta's
    before = w.vendor.api_calls().get("events", 0)
    results = w.app.sync_all(now=NOW)
    assert [r.status for r in results] == ["ok", "ok"]
    actions = len(w.app.project.rules.notifications.actions)
    assert w.vendor.api_calls().get("events", 0) - before == actions  # not 2 × actions
    [to_acme] = notifications(w, ACME_TO)
    [to_beta] = notifications(w, BETA_TO)
    assert to_acme.subject.startswith("Activity at Globex")
    assert to_beta.subject.startswith("Activity at Initech")

    # the next cycle reads from where this one stopped: nothing new, nothing again
    w.app.sync_all(now=NOW + timedelta(minutes=5))
    assert len(notifications(w)) == 2
