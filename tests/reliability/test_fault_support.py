"""The misbehaving SMTP server of ``scripts/chaos.py`` does what its faults say: the
chaos invariants count a message as received exactly when it answered 250 to DATA."""

from __future__ import annotations

import random
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from connector.testing.mail import SMTP_FAULTS, ChaosSMTP


class Fixed(random.Random):
    """Every session gets ``fault`` (None: behaves)."""

    def __init__(self, fault: str | None) -> None:
        super().__init__(0)
        self.fault = fault

    def random(self) -> float:
        return 0.0 if self.fault else 1.0

    def choices(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [self.fault]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChaosSMTP]:
    srv = ChaosSMTP(tmp_path / "smtp.log", Fixed(None), rate=1.0)
    yield srv
    srv.stop()


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "dealsync@localhost", "ops@acme.example", "hi"
    msg["Message-ID"] = f"<m{n}@chaos.invalid>"
    msg.set_content("hello")
    return msg


def talk(port: int, msg: EmailMessage) -> list[str]:
    """What a client sees, step by step (no exception escapes)."""
    seen: list[str] = []
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        smtp.ehlo()
        smtp.mail(str(msg["From"]))
        smtp.rcpt(str(msg["To"]))
        code, _ = smtp.data(msg.as_bytes())
        seen.append(f"DATA {code}")
        code, _ = smtp.docmd("QUIT")
        seen.append(f"QUIT {code}")
    except smtplib.SMTPServerDisconnected:
        seen.append("disconnected")
    finally:
        smtp.close()
    return seen


@pytest.mark.parametrize(
    ("fault", "client_sees", "accepted"),
    [
        (None, ["DATA 250", "QUIT 221"], True),
        ("quit_421", ["DATA 250", "QUIT 421"], True),
        ("drop_after_data", ["DATA 250", "disconnected"], True),
        ("reset_after_data", ["DATA 250", "disconnected"], True),
        ("refuse_data", ["DATA 451", "QUIT 221"], False),
        ("reset_at_data", ["disconnected"], False),
    ],
)
def test_each_fault_as_the_client_sees_it(
    server: ChaosSMTP, fault: str | None, client_sees: list[str], accepted: bool
) -> None:
    server.handler.rng = Fixed(fault)
    assert talk(server.port, message(1)) == client_sees
    assert [m["message_id"] for m in server.sent()] == (["<m1@chaos.invalid>"] if accepted else [])
    assert server.injected == ({fault: 1} if fault else {})


def test_behave_stops_the_faults(server: ChaosSMTP) -> None:
    server.handler.rng = Fixed("quit_421")
    server.behave()
    assert talk(server.port, message(2)) == ["DATA 250", "QUIT 221"]
    server.behave(True)
    assert talk(server.port, message(3)) == ["DATA 250", "QUIT 421"]
    assert sorted(SMTP_FAULTS) == [
        "drop_after_data",
        "quit_421",
        "refuse_data",
        "reset_after_data",
        "reset_at_data",
    ]
