"""The privacy checks look for what really identifies the partner or the contact, and
a message they hold back never vanishes (issue 12).

* A lead at "Orbital Kitchens GmbH" registered by partner ``orbit`` gets its consent
  request: ``orbit`` is not a word of "Orbital".
* A demo request at "Baker Logistics" by Tom Baker reaches the subscribed partner: the
  company the digest is about may share the contact's surname.
* A message that really would name the partner (or the contact) is ``held`` with the
  reason — shown by ``dealsync outbox``, ``outbox show``, ``dealsync status``, the
  admin page and ``/metrics`` — until an admin releases it (queued, then sent once) or
  cancels it. The held row keeps the rendered text and the decision's key.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from consent_support import CONFIG, NOW, MakeWorld, World, person
from sqlalchemy import text
from starlette.testclient import TestClient

from connector.api import DealsyncError
from connector.mail.privacy import PrivacyViolation, assert_clean
from connector.mail.render import Rendered
from connector.mail.transport import FileSink
from connector.state.migrations import STEPS, migrate

ORBIT_CONFIG = CONFIG.replace(
    """  - id: beta
    name: Beta Partners
    notify_email: leads@beta-partners.example
    adapter: local
    path: partner-beta.db
""",
    """  - id: orbit
    name: Orbit Partners
    notify_email: leads@orbit-partners.example
    adapter: local
    path: partner-orbit.db
""",
)
ADMIN_TOKEN = "adm-held-test-token"
# the upgrade step that lets e-mails the old check blocked be decided again
REDECIDE = next(s.version for s in STEPS if s.apply.__name__ == "_redecide_outbox_blocked")
SERVICE_ENV = {"DEALSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "DEALSYNC_WEBHOOK_SECRET": "whk-held"}


def sink(w: World) -> FileSink:
    return FileSink(w.root / "mail")


def sent_files(w: World) -> list[str]:
    """The e-mails the file sink received, decoded: headers and text."""
    out = []
    for path in (w.root / "mail").glob("*.eml"):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(f"Subject: {msg['Subject']}\n{msg.get_content()}")
    return sorted(out)


# ---------------------------------------------------------------------- what identifies


def _orbital_kitchens_synced(make_world: MakeWorld) -> World:
    """Partner ``orbit`` registers a deal of Orbital Kitchens GmbH (its id inside a
    word of the company's name) with Anna, in Germany, and the pass has run."""
    w = make_world(config=ORBIT_CONFIG)
    w.seed_deal(
        "orbit",
        domain="orbital-kitchens.de",
        company="Orbital Kitchens GmbH",
        contacts=[person("anna@orbital-kitchens.de", "DE")],
    )
    w.sync("orbit", now=NOW)
    return w


def test_partner_id_inside_a_word_of_the_company_does_not_block(make_world: MakeWorld) -> None:
    w = _orbital_kitchens_synced(make_world)
    [row] = w.consent_messages()
    assert (row.kind, row.status, row.detail) == ("consent_request", "queued", None)
    assert "Orbital Kitchens GmbH" in row.body
    w.app.outbox.deliver(sink(w), now=NOW)
    [row] = w.consent_messages()
    assert row.status == "sent"
    [mail] = sent_files(w)
    assert "Orbital Kitchens GmbH" in mail


def test_contact_surname_in_the_company_name_does_not_block(world: World) -> None:
    world.seed_deal(
        domain="baker-logistics.com",
        company="Baker Logistics",
        contacts=[
            person("tom@baker-logistics.com", "US", firstname="Tom", lastname="Baker"),
            person("baker@baker-logistics.com", "US", firstname="Ruth", lastname="Baker"),
        ],
    )
    world.sync()  # the first pass sets the event cursor
    for email in ("tom@baker-logistics.com", "baker@baker-logistics.com"):
        world.vendor.record_event("pe_demo_requested", world.vendor_contact(email).id)
    world.sync()
    [m] = world.messages("lead_notification")
    assert (m.status, m.detail) == ("queued", None)
    assert m.subject == "Activity at Baker Logistics (2027-01-04)"
    assert "requested a demo" in m.body
    assert "Tom" not in m.body and "Ruth" not in m.body


def test_whole_token_matching() -> None:
    partner = ["orbit", "Orbit Partners", "leads@orbit-partners.example", "orbit-partners.example"]
    clean = Rendered("Your data at Orbital Kitchens GmbH", "orbital-kitchens.de, Orbits", "de")
    assert_clean(clean, partner, "the registering partner")
    for subject, body in (
        ("Hello from ORBIT", "-"),
        ("Hello", "Orbit's team"),
        ("Hello", "orbit-partners.example/privacy"),
        ("Hello", "write to LEADS@orbit-partners.example"),
        ("Hello", "orbit partners"),  # the name, however spaced or cased
        ("Hello", "Orbit-Partners"),
    ):
        with pytest.raises(PrivacyViolation, match="the registering partner"):
            assert_clean(Rendered(subject, body, "en"), partner, "the registering partner")
    # the contact: full name and e-mail anywhere; surname and local part only outside
    # the company the message legitimately names
    contact = ["Tom Baker", "tom.baker@baker.example"]
    parts = ["Baker", "tom.baker"]
    named = ["Baker Logistics", "baker.example"]
    ok = Rendered("Activity at Baker Logistics", "at baker.example", "en")
    assert_clean(ok, contact, "the contact", partial=parts, named=named)
    for body in ("Tom Baker visited", "tom.baker@baker.example", "Baker visited", "by tom.baker"):
        leaking = Rendered("Activity at Baker Logistics", body, "en")
        with pytest.raises(PrivacyViolation, match="the contact"):
            assert_clean(leaking, contact, "the contact", partial=parts, named=named)
    # a full name inside the company name still identifies the contact
    freelancer = Rendered("Activity at Tom Baker Consulting", "-", "en")
    with pytest.raises(PrivacyViolation):
        assert_clean(
            freelancer, contact, "the contact", partial=parts, named=["Tom Baker Consulting"]
        )
    # fragments shorter than three characters are not matched
    assert_clean(Rendered("ab", "a b", "en"), ["ab", "", "  "], "x")


# ---------------------------------------------------------------------- held, visible


@pytest.fixture
def held(world: World) -> World:
    """acme registers a lead whose company name names acme: its consent request is
    held; another lead's request is queued."""
    world.seed_deal(
        domain="acme-gmbh.de",
        company="Acme Agency GmbH",
        contacts=[person("de@acme-gmbh.de", "DE")],
    )
    world.seed_deal(
        domain="initech.de", company="Initech", contacts=[person("at@initech.de", "AT")]
    )
    world.sync(now=NOW)
    return world


def test_a_held_message_keeps_its_text_and_its_decision(held: World) -> None:
    by = {m.recipient: m for m in held.consent_messages()}
    row = by["de@acme-gmbh.de"]
    assert row.status == "held"
    assert row.detail == "held: the message would reveal the registering partner ('acme')"
    assert "Acme Agency GmbH" in row.body and row.subject
    assert row.message_id and by["at@initech.de"].status == "queued"
    # deliveries pass it by; later passes do not decide it again
    held.app.outbox.deliver(sink(held), now=NOW)
    held.sync(now=NOW + timedelta(hours=1))
    held.sync(now=NOW + timedelta(days=31))
    by = {m.recipient: m for m in held.consent_messages()}
    assert [m.status for m in held.consent_messages() if m.recipient == "de@acme-gmbh.de"] == [
        "held"
    ]
    assert by["at@initech.de"].status == "sent"
    assert len(sent_files(held)) == 1


def test_held_is_shown_by_the_cli(held: World) -> None:
    row = held.messages(status="held")[0]
    r = held.cli("outbox")
    assert r.exit_code == 0, r.output
    [line] = [x for x in r.output.splitlines() if x.split()[:1] == [str(row.id)]]
    assert "held" in line and "would reveal the registering partner" in line
    r = held.cli("outbox", "--status", "held", "--format", "json")
    assert [m["id"] for m in json.loads(r.output)] == [row.id]
    r = held.cli("outbox", "show", str(row.id))
    assert r.exit_code == 0
    assert "Status: held (held: the message would reveal the registering partner" in r.output
    assert f"dealsync outbox release {row.id}" in r.output
    assert f"dealsync outbox cancel {row.id}" in r.output
    assert "Acme Agency GmbH" in r.output  # the text that would be sent
    r = held.cli("status")
    assert r.exit_code == 0
    assert "e-mails held: 1 (dealsync outbox --status held)" in r.output
    [acme] = [c for c in json.loads(held.cli("status", "--json").output) if c["partner"] == "acme"]
    assert acme["held_emails"] == 1


def test_release_sends_it_once_and_audits(held: World) -> None:
    row = held.messages(status="held")[0]
    r = held.cli("outbox", "release", str(row.id))
    assert r.exit_code == 0, r.output
    assert f"#{row.id} released: queued, sent on the next delivery" in r.output
    again = held.app.outbox.get(row.id)  # type: ignore[arg-type]
    assert again is not None and (again.status, again.attempts) == ("queued", 0)
    assert again.dedupe_key == row.dedupe_key and again.body == row.body
    # releasing twice is an error, not a second message
    r = held.cli("outbox", "release", str(row.id))
    assert r.exit_code == 3 and f"#{row.id} is queued, not held" in r.output
    held.app.outbox.deliver(sink(held), now=NOW + timedelta(minutes=1))
    sent = {m.recipient: m for m in held.consent_messages()}["de@acme-gmbh.de"]
    assert sent.status == "sent"
    assert re.fullmatch(
        r"released by cli at \S+; it had been held: the message would reveal the registering "
        r"partner \('acme'\)",
        sent.detail or "",
    ), sent.detail
    assert len(sent_files(held)) == 2
    held.sync(now=NOW + timedelta(days=1))
    held.app.outbox.deliver(sink(held), now=NOW + timedelta(days=1))
    assert len(sent_files(held)) == 2


def test_cancel_never_sends_it(held: World) -> None:
    row = held.messages(status="held")[0]
    r = held.cli("outbox", "cancel", str(row.id))
    assert r.exit_code == 0 and f"#{row.id} cancelled" in r.output
    [gone] = held.messages(status="cancelled")
    assert gone.id == row.id and (gone.detail or "").startswith("cancelled by cli at ")
    held.app.outbox.deliver(sink(held), now=NOW + timedelta(minutes=1))
    assert len(sent_files(held)) == 1  # only the other lead's request
    for args in (("release", str(row.id)), ("cancel", str(row.id)), ("release", "999")):
        r = held.cli("outbox", *args)
        assert r.exit_code == 3, r.output
    with pytest.raises(DealsyncError, match="no outbox message #999"):
        held.app.release_email(999)


def _hank_requests_a_demo(world: World, company: str) -> None:
    """Hank Scorpio of ``company`` (a deal registered by acme) requests a demo: the
    vendor's lead notification to acme is decided on the pass after."""
    world.seed_deal(
        domain="scorpio.com",
        company=company,
        contacts=[person("hank@scorpio.com", "US", firstname="Hank", lastname="Scorpio")],
    )
    world.sync()
    world.vendor.record_event("pe_demo_requested", world.vendor_contact("hank@scorpio.com").id)
    world.sync()


def test_a_notification_that_names_the_contact_is_held(world: World) -> None:
    """A company named after its contact (full name) would identify them: held."""
    _hank_requests_a_demo(world, "Hank Scorpio Consulting")
    [m] = world.messages("lead_notification")
    assert m.status == "held"
    assert m.detail == "held: the message would reveal the contact ('Hank Scorpio')"
    assert "requested a demo" in m.body


def test_held_on_the_admin_page_and_in_metrics(held: World) -> None:
    from connector.service import Service, build_app

    row = held.messages(status="held")[0]
    svc = Service(
        held.root / "dealsync.yaml",
        env=SERVICE_ENV,
        adapter_factory=lambda name, portal: held.crms[name],
    )
    with TestClient(build_app(svc)) as client:
        metrics = client.get("/metrics").text
        assert 'dealsync_outbox_messages{kind="consent_request",status="held"} 1.0' in metrics
        assert 'dealsync_outbox_messages{kind="consent_request",status="queued"} 1.0' in metrics
        page = client.post("/admin/login", data={"token": ADMIN_TOKEN})
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert f'data-outbox="{row.id}"' in page.text
        assert "would reveal the registering partner" in page.text
        url = f"/admin/outbox/{row.id}/release"
        assert client.post(url, data={"csrf": "x" + csrf}).status_code == 403
        page = client.post(url, data={"csrf": csrf})
        assert page.status_code == 200
        assert f"E-mail #{row.id} released" in page.text
        assert f'data-outbox="{row.id}"' not in page.text
        metrics = client.get("/metrics").text
        assert 'dealsync_outbox_messages{kind="consent_request",status="held"} 0.0' in metrics
        assert 'dealsync_outbox_messages{kind="consent_request",status="queued"} 2.0' in metrics
        # releasing what is no longer held: a message on the page, not a 500
        page = client.post(url, data={"csrf": csrf})
        assert page.status_code == 200
        assert f"E-mail #{row.id} not changed: outbox message #{row.id} is queued" in page.text
        released = held.app.outbox.get(row.id)  # type: ignore[arg-type]
        assert released is not None and released.status == "queued"
        assert (released.detail or "").startswith("released by admin page at ")
        # cancel from the page (a queued message may be cancelled too)
        page = client.post(f"/admin/outbox/{row.id}/cancel", data={"csrf": csrf})
        assert page.status_code == 200 and f"E-mail #{row.id} cancelled." in page.text
    svc.admin_app.close()
    cancelled = held.app.outbox.get(row.id)  # type: ignore[arg-type]
    assert cancelled is not None and cancelled.status == "cancelled"


# ---------------------------------------------------------------------- older databases


def _blocked_as_before_issue_12(w: World, revealed: str) -> None:
    """Every outbox row as the old check left a blocked one (``suppressed``, emptied,
    ``blocked: ...`` naming what it would reveal), with the re-deciding migration not
    applied yet."""
    detail = f"blocked: the message would reveal {revealed}"
    with w.app.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox SET status='suppressed', subject='', body='', detail=:d"),
            {"d": detail},
        )
        conn.execute(text("DELETE FROM schema_version WHERE version = :v"), {"v": REDECIDE})


def test_rows_the_old_check_blocked_are_decided_again(make_world: MakeWorld) -> None:
    """Before issue 12 a blocked message was recorded ``suppressed`` with ``blocked:``
    and never retried; the migration lets the next pass decide it again, with the
    whole-token check (here: queued, since ``orbit`` is not a word of the text)."""
    w = _orbital_kitchens_synced(make_world)
    _blocked_as_before_issue_12(w, "registering partner ('orbit')")
    assert [m.status for m in w.consent_messages()] == ["suppressed"]
    w.sync("orbit", now=NOW + timedelta(hours=1))
    assert [m.status for m in w.consent_messages()] == ["suppressed"]  # the old behaviour
    assert migrate(w.app.store.engine) == [REDECIDE]
    assert w.consent_messages() == []
    w.sync("orbit", now=NOW + timedelta(hours=2))
    [row] = w.consent_messages()
    assert row.status == "queued" and "Orbital Kitchens GmbH" in row.body


def test_a_notification_the_old_check_blocked_is_digested_again(world: World) -> None:
    _hank_requests_a_demo(world, "Scorpio Consulting")
    [before] = world.messages("lead_notification")
    _blocked_as_before_issue_12(world, "contact ('Scorpio')")
    assert migrate(world.app.store.engine) == [REDECIDE]
    assert world.messages("lead_notification") == []
    world.sync()
    [after] = world.messages("lead_notification")
    assert (after.status, after.dedupe_key) == ("queued", before.dedupe_key)
    assert "requested a demo" in after.body and "Scorpio Consulting" in after.body
