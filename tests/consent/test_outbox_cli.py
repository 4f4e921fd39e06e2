"""``dealsync outbox`` (list, show, send, retry) and ``dealsync partners notify``:
exit codes and output, on a project folder the CLI loads like a user's (issue 5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from consent_support import MakeWorld, World, person

from connector.mail.outbox import MAX_ATTEMPTS
from connector.state.tables import PartnerSubscription

# the CLI sends what is due by the wall clock: decide in the past
PAST = datetime(2024, 1, 4, 10, 0, tzinfo=UTC)
NO_TRANSPORT = {
    "DEALSYNC_MAIL_SINK": None,
    "DEALSYNC_SMTP_HOST": None,
    "DEALSYNC_SMTP_PORT": None,
    "DEALSYNC_SMTP_SECURITY": None,
}


class Down:
    def send(self, message: object) -> str:
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.fixture
def queued(world: World) -> World:
    """Two queued consent e-mails (DE request, FR notice) and a suppressed one."""
    world.vendor.set_opted_in("at@globex.com", at=PAST - timedelta(days=1))  # before it all
    world.seed_deal(
        contacts=[
            person("de@globex.com", "DE"),
            person("fr@globex.com", "FR"),
            person("at@globex.com", "AT"),
        ]
    )
    world.sync(now=PAST)
    world.sync(now=PAST + timedelta(days=30))
    assert sorted((m.recipient, m.status) for m in world.messages()) == [
        ("at@globex.com", "suppressed"),
        ("de@globex.com", "queued"),
        ("fr@globex.com", "queued"),
    ]
    return world


def ids(w: World) -> dict[str, int]:
    return {m.recipient: m.id for m in w.messages()}  # type: ignore[misc]


def test_outbox_list(queued: World) -> None:
    r = queued.cli("outbox", env=NO_TRANSPORT)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[:4] == ["id", "kind", "recipient", "status"]
    assert len(lines) == 4
    assert any("de@globex.com" in line and "queued" in line for line in lines)
    r = queued.cli(
        "outbox",
        "--status",
        "queued",
        "--kind",
        "data_notice",
        "--format",
        "json",
        env=NO_TRANSPORT,
    )
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.output)
    assert (row["recipient"], row["kind"], row["status"]) == (
        "fr@globex.com",
        "data_notice",
        "queued",
    )
    assert "body" not in row
    r = queued.cli("outbox", "--status", "sent", env=NO_TRANSPORT)
    assert (r.exit_code, r.output.strip()) == (0, "nothing to show")
    r = queued.cli("outbox", "--status", "bogus", env=NO_TRANSPORT)
    assert r.exit_code == 2 and "bogus" in r.output


def test_outbox_show(queued: World) -> None:
    de = next(m for m in queued.messages() if m.recipient == "de@globex.com")
    r = queued.cli("outbox", "show", str(de.id), env=NO_TRANSPORT)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(
        f"To: de@globex.com\nSubject: {de.subject}\nMessage-ID: {de.message_id}\nStatus: queued\n"
    )
    assert de.body in r.output and "Acme" not in r.output
    at = ids(queued)["at@globex.com"]
    r = queued.cli("outbox", "show", str(at), env=NO_TRANSPORT)
    assert r.exit_code == 0 and "Status: suppressed (already opted in" in r.output
    r = queued.cli("outbox", "show", "999", env=NO_TRANSPORT)
    assert r.exit_code == 3 and "no outbox message #999" in r.output


def test_outbox_send_to_the_file_sink(queued: World, scratch: Path) -> None:
    r = queued.cli("outbox", "send", env=NO_TRANSPORT)
    assert r.exit_code == 3 and "no mail transport configured" in r.output
    sink = scratch / "mail"
    env = {**NO_TRANSPORT, "DEALSYNC_MAIL_SINK": str(sink)}
    r = queued.cli("outbox", "send", env=env)
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "sent 2, not sent 0"
    files = sorted(sink.glob("*.eml"))
    assert len(files) == 2
    got = {}
    for f in files:
        msg = message_from_bytes(f.read_bytes(), policy=policy.default)
        got[msg["To"]] = msg["Message-ID"]
    assert got == {m.recipient: m.message_id for m in queued.messages() if m.status == "sent"}
    assert {m.recipient: m.status for m in queued.messages()} == {
        "de@globex.com": "sent",
        "fr@globex.com": "sent",
        "at@globex.com": "suppressed",
    }
    assert all("written to" in (m.server_response or "") for m in queued.messages("sent"))
    r = queued.cli("outbox", "send", env=env)
    assert (r.exit_code, r.output.strip()) == (0, "sent 0, not sent 0")
    assert len(list(sink.glob("*.eml"))) == 2


def test_outbox_send_failure_and_retry(queued: World, scratch: Path) -> None:
    from consent_support import free_port

    closed = {
        **NO_TRANSPORT,
        "DEALSYNC_SMTP_HOST": "127.0.0.1",
        "DEALSYNC_SMTP_PORT": str(free_port()),
    }
    r = queued.cli("outbox", "send", env=closed)
    assert r.exit_code == 2, r.output
    assert "sent 0, not sent 2" in r.output
    assert f"#{ids(queued)['de@globex.com']} to de@globex.com:" in r.output
    # both give up (attempts exhausted), driven through the API on later moments
    moment = datetime.now(UTC) + timedelta(days=1)
    for _ in range(MAX_ATTEMPTS):
        queued.app.outbox.deliver(Down(), now=moment)
        moment += timedelta(days=1)
    assert {m.recipient: m.status for m in queued.messages()} == {
        "de@globex.com": "failed",
        "fr@globex.com": "failed",
        "at@globex.com": "suppressed",
    }
    r = queued.cli("outbox", "--status", "failed", env=NO_TRANSPORT)
    assert "de@globex.com" in r.output and "fr@globex.com" in r.output
    r = queued.cli("outbox", "send", env={**NO_TRANSPORT, "DEALSYNC_MAIL_SINK": str(scratch)})
    assert (r.exit_code, r.output.strip()) == (0, "sent 0, not sent 0")  # failed: not retried
    de = ids(queued)["de@globex.com"]
    r = queued.cli("outbox", "retry", "999", env=NO_TRANSPORT)
    assert (r.exit_code, r.output.strip()) == (0, "0 message(s) queued again")
    r = queued.cli("outbox", "retry", str(de), env=NO_TRANSPORT)
    assert (r.exit_code, r.output.strip()) == (0, "1 message(s) queued again")
    [row] = [m for m in queued.messages() if m.id == de]
    assert (row.status, row.attempts) == ("queued", 0)
    r = queued.cli("outbox", "send", env={**NO_TRANSPORT, "DEALSYNC_MAIL_SINK": str(scratch)})
    assert (r.exit_code, r.output.strip()) == (0, "sent 1, not sent 0")
    r = queued.cli("outbox", "retry", env=NO_TRANSPORT)  # all failed ones: the FR notice
    assert (r.exit_code, r.output.strip()) == (0, "1 message(s) queued again")
    r = queued.cli("outbox", "send", env={**NO_TRANSPORT, "DEALSYNC_MAIL_SINK": str(scratch)})
    assert (r.exit_code, r.output.strip()) == (0, "sent 1, not sent 0")
    assert {m.recipient: m.status for m in queued.messages()} == {
        "de@globex.com": "sent",
        "fr@globex.com": "sent",
        "at@globex.com": "suppressed",
    }


# ---------------------------------------------------------------------- partners notify


def subscription_row(w: World, partner: str) -> PartnerSubscription | None:
    from sqlmodel import Session

    with Session(w.app.store.engine) as s:
        return s.get(PartnerSubscription, partner)


def test_partners_notify_on_off(world: World) -> None:
    r = world.cli(
        "partners", "notify", "--partner", "acme", "--email", "sales@acme.example", "--on"
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "acme: lead notifications on (sales@acme.example)"
    row = subscription_row(world, "acme")
    assert row is not None and (row.email, row.enabled) == ("sales@acme.example", True)
    r = world.cli("partners", "notify", "--partner", "acme", "--off")
    assert (r.exit_code, r.output.strip()) == (
        0,
        "acme: lead notifications off (sales@acme.example)",
    )
    r = world.cli("partners", "notify", "-p", "acme", "--on")
    assert (r.exit_code, r.output.strip()) == (
        0,
        "acme: lead notifications on (sales@acme.example)",
    )


def test_partners_notify_errors(world: World) -> None:
    r = world.cli("partners", "notify", "--partner", "nobody", "--email", "x@y.example")
    assert r.exit_code == 3 and "nobody" in r.output
    r = world.cli("partners", "notify", "--email", "x@y.example")
    assert r.exit_code == 2 and "--partner" in r.output


def test_partners_notify_off_for_a_config_subscribed_partner(world: World) -> None:
    """beta is subscribed by ``notify_email`` in the config; ``--off`` alone stops it."""
    r = world.cli("partners", "notify", "--partner", "beta", "--off")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "beta: lead notifications off (leads@beta-partners.example)"
    # and the partner really hears nothing
    world.seed_deal(
        "beta", domain="initech.de", company="Initech", contacts=[person("bill@initech.de", "US")]
    )
    world.sync("beta")
    world.vendor.record_event("pe_demo_requested", world.vendor_contact("bill@initech.de").id)
    world.sync("beta")
    assert world.messages("lead_notification") == []
    r = world.cli("partners", "notify", "--partner", "beta", "--on")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "beta: lead notifications on (leads@beta-partners.example)"


def test_unsubscribed_via_cli_gets_nothing(make_world: MakeWorld) -> None:
    w = make_world()
    w.seed_deal(contacts=[person("hank@globex.com", "US")])
    w.sync()
    assert (
        w.cli(
            "partners", "notify", "-p", "acme", "-e", "alerts@acme-agency.example", "--off"
        ).exit_code
        == 0
    )
    hank = w.vendor_contact("hank@globex.com").id
    w.vendor.record_event("pe_demo_requested", hank)
    w.sync()
    assert w.messages("lead_notification") == []
    assert w.cli("partners", "notify", "-p", "acme", "--on").exit_code == 0
    w.vendor.record_event("pe_pricing_page_viewed", hank)
    w.sync()
    [m] = w.messages("lead_notification")
    assert m.recipient == "alerts@acme-agency.example"
    assert "viewed the pricing page" in m.body and "requested a demo" not in m.body
