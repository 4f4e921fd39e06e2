"""Exactly once at the SMTP boundary (issue 12): once the server has answered 2xx to
DATA, the message is sent — whatever happens to QUIT or the connection afterwards.
A server that answers 421 to QUIT, drops the connection or resets it after the 250
once made the outbox count the send as failed and send the e-mail again, round after
round; each row must now be ``sent`` after one attempt and received exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage

import pytest
from consent_support import NOW, MakeWorld

from connector.mail.outbox import Outbox, OutboxBusy
from connector.mail.transport import SmtpTransport
from connector.state import StateStore
from connector.state.outbox import message_id
from connector.testing.mail import MisbehavingSMTP

HANK = {"firstname": "Hank", "lastname": "Scorpio", "email": "hank@globex.com", "country": "DE"}
AFTER_DATA = ("quit_421", "drop_after_data", "reset_after_data")


@pytest.fixture
def server() -> Iterator[MisbehavingSMTP]:
    with MisbehavingSMTP("ok") as s:
        yield s


@pytest.mark.parametrize("mode", AFTER_DATA)
def test_accepted_message_is_sent_once_whatever_quit_says(
    make_world: MakeWorld, server: MisbehavingSMTP, mode: str
) -> None:
    server.mode = mode
    w = make_world(env=server.env)
    w.seed_deal(contacts=[HANK, {**HANK, "email": "lena@globex.com", "firstname": "Lena"}])
    # several passes (each delivers what is due) and explicit delivery rounds, hours apart
    for hour in range(3):
        w.sync(now=NOW + timedelta(hours=hour))
        w.app.send_outbox(now=NOW + timedelta(hours=hour, minutes=30))
    rows = w.consent_messages()
    assert sorted((m.recipient, m.status, m.attempts) for m in rows) == [
        ("hank@globex.com", "sent", 1),
        ("lena@globex.com", "sent", 1),
    ]
    for m in rows:
        assert "250" in (m.server_response or ""), m.server_response
        assert m.detail is None
    assert server.message_ids() == {
        message_id("consent_request:hank@globex.com"): 1,
        message_id("consent_request:lena@globex.com"): 1,
    }
    assert len(server.offered) == 2


@pytest.mark.parametrize("mode", AFTER_DATA)
def test_transport_reports_the_data_answer(server: MisbehavingSMTP, mode: str) -> None:
    server.mode = mode
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "hi"
    msg["Message-ID"] = "<one@dealsync.invalid>"
    msg.set_content("hello")
    answer = SmtpTransport(server.host, server.port).send(msg)
    assert answer == "accepted (250 2.0.0 Ok: queued as Q0001)"
    assert server.message_ids() == {"<one@dealsync.invalid>": 1}


def test_refused_data_is_still_a_failure_and_retried(
    make_world: MakeWorld, server: MisbehavingSMTP
) -> None:
    """The fix must not turn a real refusal into a success: 451 to DATA is retried."""
    server.mode = "refuse_data"
    w = make_world(env=server.env)
    w.seed_deal(contacts=[HANK])
    w.sync(now=NOW)
    [row] = w.consent_messages()
    assert (row.status, row.attempts) == ("queued", 1)
    assert "451" in (row.detail or "")
    assert server.accepted == []
    server.mode = "quit_421"
    w.app.send_outbox(now=NOW + timedelta(minutes=2))
    w.app.send_outbox(now=NOW + timedelta(hours=2))
    [row] = w.consent_messages()
    assert (row.status, row.attempts) == ("sent", 2)
    assert server.message_ids() == {row.message_id: 1}


# ---------------------------------------------------------------------- two deliverers


class Recording:
    """A transport that records what it sends; ``hold`` makes its first send wait for
    ``go`` (so another deliverer runs while this one is mid-send, without sleeping)."""

    def __init__(self, sent: list[str], hold: bool = False) -> None:
        self.sent = sent
        self.hold = hold
        self.sending = threading.Event()
        self.go = threading.Event()

    def send(self, message: EmailMessage) -> str:
        if self.hold:
            self.hold = False
            self.sending.set()
            assert self.go.wait(60)
        self.sent.append(str(message["Message-ID"]))
        return "accepted (250 ok)"


def test_two_deliverers_at_once_send_each_message_once(make_world: MakeWorld) -> None:
    """The service delivers after every pass (several connections at once) and an admin
    may run `outbox send` meanwhile: one delivery at a time, the other is told so."""
    w = make_world()  # no transport: queue only
    w.seed_deal(contacts=[HANK, {**HANK, "email": "lena@globex.com", "firstname": "Lena"}])
    w.sync(now=NOW)
    assert len(w.messages(status="queued")) == 2
    sent: list[str] = []
    first, second = Recording(sent, hold=True), Recording(sent)
    other = StateStore(w.app.store.url)  # another process's view of the same database
    worker = threading.Thread(target=lambda: w.app.outbox.deliver(first, now=NOW))
    worker.start()
    assert first.sending.wait(60)
    with pytest.raises(OutboxBusy, match="another process is delivering the outbox"):
        Outbox(other).deliver(second, now=NOW)
    first.go.set()
    worker.join(60)
    assert sorted(sent) == sorted(m.message_id for m in w.messages())
    assert {m.status for m in w.messages()} == {"sent"}
    # the lock is released: the next delivery runs (nothing left to send)
    assert Outbox(other).deliver(second, now=NOW + timedelta(hours=1)) == []
    other.close()
