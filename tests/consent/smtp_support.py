"""A real SMTP server that accepts a message and then misbehaves (issue 12).

Only the standard library and ``aiosmtpd``, so the chaos script can use it too::

    sys.path.insert(0, str(ROOT / "tests" / "consent"))
    from smtp_support import MisbehavingSMTP

    with MisbehavingSMTP("quit_421") as server:
        env = server.env            # DEALSYNC_SMTP_HOST / DEALSYNC_SMTP_PORT
        ...                         # deliver the outbox a few times
        assert server.message_ids() == {"<...@dealsync.invalid>": 1}

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
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

MODES = ("ok", "quit_421", "drop_after_data", "reset_after_data", "refuse_data", "refuse_recipient")


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
        self._controller: Controller | None = None

    def start(self) -> MisbehavingSMTP:
        if self._controller is None:
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
    ) -> AuthResult:
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
