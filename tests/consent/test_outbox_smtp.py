"""Delivery over a real local SMTP server (``aiosmtpd`` on 127.0.0.1), through
``Dealsync.sync`` with ``DEALSYNC_SMTP_HOST``/``DEALSYNC_SMTP_PORT`` set (issue 5):
SMTP down then up delivers each e-mail exactly once, the server's answer is
recorded, the Message-ID is stable across retries (and across a crash between
sending and marking sent), a rerun sends nothing new, and no received e-mail names
the partner (consent) or the contact (notification)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from consent_support import (
    DAY30,
    NOW,
    PARTNER_IDENTITY,
    MakeWorld,
    Recorder,
    World,
    contains_any,
    free_port,
    person,
    smtp_server,
)

from connector.api import DealsyncError
from connector.mail.outbox import MAX_ATTEMPTS, Outbox
from connector.mail.transport import FileSink, SmtpTransport, transport_from_env
from connector.state.outbox import message_id
from connector.testing.mail import MisbehavingSMTP

ACME_TO = "alerts@acme-agency.example"
HANK = {"firstname": "Hank", "lastname": "Scorpio", "email": "hank@globex.com", "country": "DE"}


class Servers:
    """Start / stop aiosmtpd on one fixed port; everything stopped at teardown."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = Recorder()
        self._running: list = []

    def up(self) -> None:
        assert not self._running
        self._running.append(smtp_server(self.handler, self.port))

    def down(self) -> None:
        while self._running:
            self._running.pop().stop()

    @property
    def env(self) -> dict[str, str]:
        return {"DEALSYNC_SMTP_HOST": "127.0.0.1", "DEALSYNC_SMTP_PORT": str(self.port)}


@pytest.fixture
def smtp() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.down()


def decoded(raw: bytes) -> tuple[EmailMessage, str]:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    headers = "\n".join(f"{k}: {v}" for k, v in msg.items())
    return msg, f"{headers}\n{msg.get_content()}"


def received_ids(handler: Recorder) -> Counter[str]:
    return Counter(decoded(raw)[0]["Message-ID"] for _, _, raw in handler.accepted)


def test_smtp_down_then_up_delivers_each_email_once(make_world: MakeWorld, smtp: Servers) -> None:
    w = make_world(env=smtp.env)
    w.seed_deal(contacts=[HANK, person("fr@globex.com", "FR")])
    # 1. the server is down: the consent request stays queued, with a backoff
    w.sync(now=NOW)
    [row] = w.consent_messages()
    assert (row.kind, row.status, row.attempts) == ("consent_request", "queued", 1)
    assert "ConnectionRefused" in (row.detail or "")
    assert row.next_attempt_at == NOW + timedelta(seconds=60)
    first_id = row.message_id
    # not due yet: no attempt at all
    w.sync(now=NOW + timedelta(seconds=30))
    [row] = w.consent_messages()
    assert row.attempts == 1
    # 2. still down when due: second attempt, doubled backoff
    w.sync(now=NOW + timedelta(seconds=61))
    [row] = w.consent_messages()
    assert row.attempts == 2 and row.status == "queued"
    assert row.next_attempt_at == NOW + timedelta(seconds=61 + 120)
    # 3. the server is up: delivered once, the server's answer recorded
    smtp.up()
    w.sync(now=NOW + timedelta(minutes=5))
    [row] = w.consent_messages()
    assert row.status == "sent" and row.attempts == 3
    assert row.message_id == first_id == message_id("consent_request:hank@globex.com")
    assert "250" in (row.server_response or "")
    assert "queued as Q0001" in (row.server_response or ""), row.server_response
    assert [(frm, to) for frm, to, _ in smtp.handler.accepted] == [
        ("dealsync@localhost", ["hank@globex.com"])
    ]
    assert received_ids(smtp.handler) == {first_id: 1}
    # 4. reruns send nothing new
    for later in (NOW + timedelta(minutes=6), NOW + timedelta(days=1)):
        w.sync(now=later)
    assert len(smtp.handler.accepted) == 1
    # 5. the server stops; the EU notice falls due; it goes out once the server is back
    smtp.down()
    w.sync(now=DAY30)
    notice = next(m for m in w.consent_messages() if m.kind == "data_notice")
    assert notice.status == "queued" and notice.attempts == 1
    smtp.up()
    w.sync(now=DAY30 + timedelta(minutes=2))
    w.sync(now=DAY30 + timedelta(minutes=3))
    assert sorted((m.kind, m.status) for m in w.messages()) == [
        ("consent_request", "sent"),
        ("data_notice", "sent"),
    ]
    assert received_ids(smtp.handler) == {m.message_id: 1 for m in w.messages()}
    assert len(smtp.handler.accepted) == 2


def test_message_id_stable_across_a_refused_attempt(make_world: MakeWorld, smtp: Servers) -> None:
    smtp.up()
    smtp.handler.refuse = 1  # the first DATA is answered 451
    w = make_world(env=smtp.env)
    w.seed_deal(contacts=[HANK])
    w.sync(now=NOW)
    [row] = w.messages()
    assert row.status == "queued" and row.attempts == 1
    assert "451" in (row.detail or "")
    w.sync(now=NOW + timedelta(minutes=2))
    [row] = w.messages()
    assert row.status == "sent"
    offered = [decoded(raw)[0]["Message-ID"] for raw in smtp.handler.offered]
    assert offered == [row.message_id, row.message_id]
    assert received_ids(smtp.handler) == {row.message_id: 1}
    # the id is a function of what the e-mail is, not of when or where it was rendered
    other = make_world("again", env=smtp.env)
    other.seed_deal(contacts=[HANK])
    other.sync(now=NOW + timedelta(days=3))
    assert other.messages()[0].message_id == row.message_id


def test_crash_between_sending_and_marking_sent(make_world: MakeWorld, smtp: Servers) -> None:
    """The documented window: the server took the message, the process died before
    the row was marked; the next run sends it again with the same Message-ID."""
    smtp.up()
    w = make_world()  # no transport: queue only
    w.seed_deal(contacts=[HANK])
    w.sync(now=NOW)
    real = SmtpTransport("127.0.0.1", smtp.port)

    class DiesAfterSending:
        def send(self, message: EmailMessage) -> str:
            real.send(message)
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        w.app.outbox.deliver(DiesAfterSending(), now=NOW)
    [row] = w.messages()
    assert row.status == "queued"
    w.app.outbox.deliver(real, now=NOW)
    [row] = w.messages()
    assert row.status == "sent"
    assert received_ids(smtp.handler) == {row.message_id: 2}
    assert w.app.outbox.deliver(real, now=NOW + timedelta(days=1)) == []
    assert len(smtp.handler.accepted) == 2


def test_received_emails_leak_neither_partner_nor_contact(
    make_world: MakeWorld, smtp: Servers
) -> None:
    smtp.up()
    w = make_world(env=smtp.env)
    w.seed_deal(
        contacts=[HANK, person("fr@globex.com", "FR"), person("xx@globex.com", None, "fr")],
        country=None,  # xx@ has no country, nor has its company: the EU rule
    )
    w.seed_deal(
        "beta", domain="initech.de", company="Initech", contacts=[person("at@initech.de", "AT")]
    )
    for moment in (NOW, NOW + timedelta(minutes=1)):
        w.sync("acme", now=moment)
        w.sync("beta", now=moment)
    hank = w.vendor_contact("hank@globex.com").id
    w.vendor.record_event("pe_demo_requested", hank)
    w.vendor.record_event("pe_form_submitted", hank)
    for moment in (DAY30, DAY30 + timedelta(minutes=1)):
        w.sync("acme", now=moment)
        w.sync("beta", now=moment)
    kinds = Counter(m.kind for m in w.messages(status="sent"))
    assert kinds == {"consent_request": 2, "data_notice": 2, "lead_notification": 1}
    assert not w.messages(status="queued")
    assert len(smtp.handler.accepted) == 5
    partners = [i for ids in PARTNER_IDENTITY.values() for i in ids]
    contact = ["Hank", "Scorpio", "hank@globex.com", "hank"]
    for _, rcpts, raw in smtp.handler.accepted:
        msg, text = decoded(raw)
        if rcpts == [ACME_TO]:
            assert msg["Subject"] == "Activity at Globex (2027-01-04)"
            assert contains_any(text.replace(ACME_TO, ""), contact) == []
            assert "requested a demo" in text and "filled in a form" in text
        else:
            assert contains_any(text, partners) == [], text
            assert msg["Subject"]
    assert received_ids(smtp.handler) == {m.message_id: 1 for m in w.messages(status="sent")}


# ---------------------------------------------------------------------- backoff, give up


class AlwaysDown:
    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: EmailMessage) -> str:
        self.calls += 1
        raise ConnectionRefusedError(111, "Connection refused")


def test_backoff_gives_up_then_retry_requeues(world: World, smtp: Servers) -> None:
    world.seed_deal(contacts=[HANK])
    world.sync(now=NOW)
    outbox: Outbox = world.app.outbox
    down = AlwaysDown()
    moment = NOW
    delays = []
    for _ in range(MAX_ATTEMPTS):
        assert [d.ok for d in outbox.deliver(down, now=moment)] == [False]
        [row] = world.messages()
        delays.append(row.next_attempt_at - moment)
        # nothing is attempted before the row is due
        assert outbox.deliver(down, now=row.next_attempt_at - timedelta(seconds=1)) == []
        moment = row.next_attempt_at
    assert down.calls == MAX_ATTEMPTS
    assert delays[:4] == [timedelta(seconds=s) for s in (60, 120, 240, 480)]
    assert max(delays) == timedelta(hours=6)
    [row] = world.messages()
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert outbox.deliver(down, now=moment + timedelta(days=9)) == []
    assert outbox.retry([row.id + 100]) == 0
    assert outbox.retry(now=moment) == 1
    [row] = world.messages()
    assert (row.status, row.attempts) == ("queued", 0)
    smtp.up()
    [delivery] = outbox.deliver(SmtpTransport("127.0.0.1", smtp.port), now=moment)
    assert delivery.ok
    assert len(smtp.handler.accepted) == 1


# ---------------------------------------------------------------------- configuration


def test_transport_from_env(tmp_path: Path) -> None:
    assert transport_from_env({}) is None
    sink = transport_from_env({"DEALSYNC_MAIL_SINK": str(tmp_path), "DEALSYNC_SMTP_HOST": "x"})
    assert sink == FileSink(tmp_path)
    assert transport_from_env({"DEALSYNC_SMTP_HOST": "mail"}) == SmtpTransport("mail", 25)
    assert transport_from_env(
        {"DEALSYNC_SMTP_HOST": "mail", "DEALSYNC_SMTP_SECURITY": "STARTTLS"}
    ) == SmtpTransport("mail", 587, "starttls")
    assert transport_from_env(
        {
            "DEALSYNC_SMTP_HOST": "mail",
            "DEALSYNC_SMTP_SECURITY": "ssl",
            "DEALSYNC_SMTP_PORT": "2465",
            "DEALSYNC_SMTP_USER": "u",
            "DEALSYNC_SMTP_PASSWORD": "p",
        }
    ) == SmtpTransport("mail", 2465, "ssl", "u", "p")
    with pytest.raises(ValueError, match="DEALSYNC_SMTP_SECURITY"):
        transport_from_env({"DEALSYNC_SMTP_HOST": "mail", "DEALSYNC_SMTP_SECURITY": "tls13"})


def test_bad_security_setting_is_a_clean_error(make_world: MakeWorld) -> None:
    w = make_world(env={"DEALSYNC_SMTP_HOST": "mail", "DEALSYNC_SMTP_SECURITY": "bogus"})
    with pytest.raises(DealsyncError, match="DEALSYNC_SMTP_SECURITY"):
        w.app.send_outbox(now=NOW)


def test_send_outbox_without_transport_is_a_clean_error(world: World) -> None:
    with pytest.raises(DealsyncError, match="no mail transport"):
        world.app.send_outbox(now=NOW)


# ---------------------------------------------------------------------- credentials


def test_credentials_never_go_over_plain_text_unless_allowed(make_world: MakeWorld) -> None:
    """SMTP user and password with security "none": refused before connecting, the
    delivery fails with the reason (what to set) in the row and in `outbox send`; with
    DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH=1 the same settings log in and send."""
    with MisbehavingSMTP(login=("mailer", "s3cret")) as server:
        env = {**server.env, "DEALSYNC_SMTP_USER": "mailer", "DEALSYNC_SMTP_PASSWORD": "s3cret"}
        w = make_world(env=env)
        w.seed_deal(contacts=[HANK])
        w.sync(now=NOW)
        [row] = w.consent_messages()
        assert (row.status, row.attempts) == ("queued", 1)
        assert "unencrypted" in (row.detail or "")
        assert "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH=1" in (row.detail or "")
        assert "DEALSYNC_SMTP_SECURITY=starttls" in (row.detail or "")
        assert server.greetings == 0 and server.logins == [] and server.offered == []
        # the next delivery reports the same reason (`outbox send` prints it)
        [failure] = w.app.send_outbox(now=NOW + timedelta(minutes=2))
        assert not failure.ok and "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH" in failure.detail
        # explicitly allowed: logs in over plain text and sends
        allowed = make_world("allowed", env={**env, "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH": "1"})
        allowed.seed_deal(contacts=[HANK])
        allowed.sync(now=NOW)
        [row] = allowed.consent_messages()
        assert row.status == "sent", row.detail
        assert server.logins == ["mailer"]
        assert server.message_ids() == {row.message_id: 1}


def test_plaintext_auth_setting_is_checked(make_world: MakeWorld) -> None:
    base = {"DEALSYNC_SMTP_HOST": "mail", "DEALSYNC_SMTP_USER": "u"}
    assert transport_from_env(base) == SmtpTransport("mail", 25, "none", "u", None, 30.0, False)
    allowed = transport_from_env({**base, "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH": "yes"})
    assert isinstance(allowed, SmtpTransport) and allowed.allow_plaintext_auth
    w = make_world(env={**base, "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH": "maybe"})
    with pytest.raises(DealsyncError, match="DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH must be 1 or 0"):
        w.app.send_outbox(now=NOW)
