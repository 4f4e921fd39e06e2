"""Mail servers and transports that misbehave or keep what they took, for tests and
``scripts/chaos.py``.

* :class:`MisbehavingSMTP` — a real SMTP server (aiosmtpd, in a thread) that accepts a
  message and then misbehaves in one chosen mode::

      with MisbehavingSMTP("quit_421") as server:
          env = server.env            # DEALSYNC_SMTP_HOST / DEALSYNC_SMTP_PORT
          ...                         # deliver the outbox a few times
          assert server.message_ids() == {"<...@dealsync.invalid>": 1}

* :class:`ChaosSMTP` — the same kind of server misbehaving at random in a rate of its
  sessions (seeded, so a campaign replays), logging what it accepted to a file;
* :class:`LogTransport` — a transport appending every message to a file with one
  ``write`` (a message sent by a process killed right after is still counted).

Modes (``server.mode`` may be changed while it runs; it applies from the next command):

* ``"ok"`` — a well-behaved server (250 to DATA, 221 to QUIT);
* ``"quit_421"`` — 250 to DATA, then ``421`` to QUIT (and the connection closes);
* ``"drop_after_data"`` — 250 to DATA, then the server closes the connection at once
  (no answer to QUIT: the client sees end-of-file or a reset);
* ``"reset_after_data"`` — 250 to DATA, then on QUIT the connection is reset (TCP RST,
  ``ECONNRESET`` in the client);
* ``"refuse_data"`` — ``451`` to DATA (a real temporary failure: nothing accepted);
* ``"refuse_recipient"`` — ``550`` to RCPT, naming the address (as real servers do).

With ``login=(user, password)`` the server offers AUTH (LOGIN/PLAIN) without TLS and
records the user names that authenticated in ``logins``; ``greetings`` counts EHLO/HELO
commands (0: no client ever talked to it).

Every message a DATA command offered is in ``offered``; those answered 250 are in
``accepted`` as ``(mail_from, rcpt_tos, raw bytes)``: what the world received.

``aiosmtpd`` is a development dependency: it is imported when a server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import time
from collections import Counter
from email import message_from_bytes
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reset(server: Any) -> None:
    """Abort the connection with a TCP RST (``SO_LINGER`` 0), not a clean FIN."""
    transport = server.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# ---------------------------------------------------------------------- one mode

MODES = ("ok", "quit_421", "drop_after_data", "reset_after_data", "refuse_data", "refuse_recipient")


class _Handler:
    def __init__(self, owner: MisbehavingSMTP) -> None:
        self.owner = owner

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.owner.greetings += 1
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        self.owner.greetings += 1
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.owner.mode == "refuse_recipient":
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        owner = self.owner
        content = bytes(envelope.original_content or envelope.content)
        owner.offered.append(content)
        if owner.mode == "refuse_data":
            return "451 4.3.0 try again later"
        owner.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        answer = f"250 2.0.0 Ok: queued as Q{len(owner.accepted):04d}"
        if owner.mode == "drop_after_data":
            await server.push(answer)
            server.transport.close()  # what the server "returns" below is never written
        return answer

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> Any:
        mode = self.owner.mode
        if mode == "quit_421":
            return "421 4.3.2 Service shutting down"
        if mode == "reset_after_data":
            _reset(server)
            return "221 never sent"
        return "221 Bye"


class MisbehavingSMTP:
    """An aiosmtpd server on 127.0.0.1 that takes messages and then misbehaves (see the
    module docstring for the modes). Start with ``start()`` or ``with``; ``stop()``
    is idempotent. ``port`` stays the same across stop/start, so a client configured
    once sees the server go down and come back."""

    host = "127.0.0.1"

    def __init__(
        self, mode: str = "ok", port: int | None = None, login: tuple[str, str] | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.port = port or free_port()
        self.offered: list[bytes] = []
        self.accepted: list[tuple[str, list[str], bytes]] = []
        self.greetings = 0  # EHLO/HELO commands seen: did a client talk to us at all?
        self.login = login
        self.logins: list[str] = []  # user names that authenticated
        self._controller: Any = None  # aiosmtpd's Controller while running

    def start(self) -> MisbehavingSMTP:
        if self._controller is None:
            from aiosmtpd.controller import Controller

            auth: dict[str, Any] = {}
            if self.login is not None:
                # AUTH over plain text: exactly what a client must not do unless told to
                auth = {"authenticator": self._authenticate, "auth_require_tls": False}
            self._controller = Controller(
                _Handler(self), hostname=self.host, port=self.port, **auth
            )
            self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        assert self.login is not None
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if (user, password) == self.login:
                self.logins.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def __enter__(self) -> MisbehavingSMTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """The environment that points dealsync at this server."""
        return {"DEALSYNC_SMTP_HOST": self.host, "DEALSYNC_SMTP_PORT": str(self.port)}

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID was accepted (received by the world)."""
        return Counter(str(message_from_bytes(raw)["Message-ID"]) for _, _, raw in self.accepted)


# ---------------------------------------------------------------------- SMTP

SMTP_FAULTS = ("quit_421", "drop_after_data", "reset_after_data", "refuse_data", "reset_at_data")
"""What :class:`ChaosSMTP` may do to one session (the names of the issue-12 modes of
MisbehavingSMTP, plus one):

* ``quit_421`` — answers 250 to DATA (the message is accepted), then 421 to QUIT;
* ``drop_after_data`` — answers 250 to DATA, then closes the connection;
* ``reset_after_data`` — answers 250 to DATA, then resets the connection (TCP RST) at QUIT;
* ``refuse_data`` — answers 451 to DATA (a temporary failure: nothing accepted);
* ``reset_at_data`` — resets the connection at DATA before answering (nothing accepted).

The first three are the ones a client can get wrong: the message *was* delivered."""


class _ChaosHandler:
    def __init__(self, log: Path, rng: random.Random, rate: float) -> None:
        self.log = log
        self.rng = rng
        self.rate = rate
        self.enabled = True
        self.injected: Counter[str] = Counter()

    def _fault_of(self, session: Any) -> str | None:
        """The session's fault, drawn once (at its first DATA)."""
        if not hasattr(session, "chaos_fault"):
            fault = None
            if self.enabled and self.rng.random() < self.rate:
                # the faults after a 250 are the ones a client can get wrong: twice as often
                fault = self.rng.choices(SMTP_FAULTS, weights=(2, 2, 2, 1, 1))[0]
            session.chaos_fault = fault
        chosen: str | None = session.chaos_fault
        return chosen

    def _record(self, content: bytes) -> None:
        headers = BytesHeaderParser().parsebytes(content)
        line = json.dumps({"message_id": str(headers["Message-ID"]), "to": str(headers["To"])})
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self._fault_of(session)
        if fault == "reset_at_data":
            self.injected[fault] += 1
            _reset(server)
            return "451 never sent"
        if fault == "refuse_data":
            self.injected[fault] += 1
            return "451 4.3.0 try again later"
        self._record(bytes(envelope.original_content or envelope.content))
        if fault == "drop_after_data":
            self.injected[fault] += 1
            # closed once the reply is written (aiosmtpd writes it before it yields)
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 2.0.0 Ok: queued"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        fault = getattr(session, "chaos_fault", None)
        if fault == "quit_421":
            self.injected[fault] += 1
            return "421 4.3.2 shutting down"
        if fault == "reset_after_data":
            self.injected[fault] += 1
            _reset(server)
            return "221 never sent"
        return "221 Bye"


class ChaosSMTP:
    """A real SMTP server on 127.0.0.1 (aiosmtpd, in a thread of this process) that
    misbehaves in a ``rate`` of its sessions (one of :data:`SMTP_FAULTS`). Every
    message it answers 250 to is appended to ``log`` with one ``write``, so a message
    taken from a client that is killed right after is still counted."""

    def __init__(self, log: Path, rng: random.Random, rate: float = 0.4) -> None:
        self.log = log
        from aiosmtpd.controller import Controller

        self.handler = _ChaosHandler(log, rng, rate)
        last: Exception | None = None
        for _ in range(20):  # another process may take the free port first
            self.port = free_port()
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            try:
                self.controller.start()
                break
            except (OSError, RuntimeError) as exc:
                last = exc
                time.sleep(0.05)
        else:
            raise RuntimeError(f"could not start the SMTP server: {last}")

    @property
    def env(self) -> dict[str, str]:
        """What makes ``Dealsync.transport()`` the real :class:`SmtpTransport` to it."""
        return {"DEALSYNC_SMTP_HOST": "127.0.0.1", "DEALSYNC_SMTP_PORT": str(self.port)}

    def behave(self, enabled: bool = False) -> None:
        """Stop (or resume) misbehaving from the next session on."""
        self.handler.enabled = enabled

    @property
    def injected(self) -> Counter[str]:
        return self.handler.injected

    def sent(self) -> list[dict[str, str]]:
        """The messages answered 250, in order (the shape of ``LogTransport.sent``)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.controller.stop()


# ---------------------------------------------------------------------- file log


class LogTransport:
    """A mail transport that appends every accepted message to a file with one
    ``write`` (so a message sent by a process killed right after is still counted)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: EmailMessage) -> str:
        line = json.dumps(
            {
                "message_id": str(message["Message-ID"]),
                "to": str(message["To"]),
                "subject": str(message["Subject"]),
                "body": message.get_content(),
            }
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        return "250 accepted"

    def sent(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
