"""Faults that ``scripts/chaos.py`` injects around the sync engine rather than inside
it: a real SMTP server that misbehaves after accepting a message, HubSpot webhook
deliveries that fail midway and are retried, and vendor edits that the change search
misses (the reason webhooks exist).

Everything here is seeded by the caller's random generator, so a campaign replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import event

from connector.adapters.local import LocalCRM

# ---------------------------------------------------------------------- SMTP

SMTP_FAULTS = ("quit_421", "drop_after_data", "reset_after_data", "refuse_data", "reset_at_data")
"""What :class:`ChaosSMTP` may do to one session (the names of the issue-12 modes of
``tests/consent/smtp_support.MisbehavingSMTP``, plus one):

* ``quit_421`` — answers 250 to DATA (the message is accepted), then 421 to QUIT;
* ``drop_after_data`` — answers 250 to DATA, then closes the connection;
* ``reset_after_data`` — answers 250 to DATA, then resets the connection (TCP RST) at QUIT;
* ``refuse_data`` — answers 451 to DATA (a temporary failure: nothing accepted);
* ``reset_at_data`` — resets the connection at DATA before answering (nothing accepted).

The first three are the ones a client can get wrong: the message *was* delivered."""


def _reset(server: Any) -> None:
    """Abort the connection with a TCP RST (``SO_LINGER`` 0), not a clean FIN."""
    transport = server.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Handler:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChaosSMTP:
    """A real SMTP server on 127.0.0.1 (aiosmtpd, in a thread of this process) that
    misbehaves in a ``rate`` of its sessions (one of :data:`SMTP_FAULTS`). Every
    message it answers 250 to is appended to ``log`` with one ``write``, so a message
    taken from a client that is killed right after is still counted."""

    def __init__(self, log: Path, rng: random.Random, rate: float = 0.4) -> None:
        self.log = log
        self.handler = _Handler(log, rng, rate)
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


# ---------------------------------------------------------------------- edits search misses


def late_indexed_edit(
    crm: LocalCRM, object_type: str, rid: str, properties: Mapping[str, str], at: datetime
) -> None:
    """Edit a record with modification time ``at`` (before the pass's change window):
    what a change looks like when HubSpot's search index shows it too late for the
    pass that covers its time. Only a read by id (a webhook's re-read) finds it."""
    clock, last = crm.clock, crm._last_stamp
    crm.clock, crm._last_stamp = (lambda: at), None
    try:
        crm.edit(object_type, rid, properties)
    finally:
        crm.clock, crm._last_stamp = clock, last


# ---------------------------------------------------------------------- webhooks

WEBHOOK_SECRET = "chaos-webhook-secret"
VENDOR_PORTAL, PARTNER_PORTAL = 1000, 2001
SUBSCRIPTION = {"deals": "deal", "contacts": "contact", "companies": "company"}


def webhook_event(
    event_id: int, object_type: str, object_id: str, prop: str, value: str
) -> dict[str, Any]:
    """One HubSpot ``<object>.propertyChange`` event from the vendor portal."""
    return {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": VENDOR_PORTAL,
        "appId": 99,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": f"{SUBSCRIPTION[object_type]}.propertyChange",
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": prop,
        "propertyValue": value,
        "changeSource": "CRM_UI",
    }


class FailingWrites:
    """Makes the ``n``-th write statement on ``engine`` fail as a locked SQLite database
    does, once (the delivery it hits fails midway; what came before is committed)."""

    def __init__(self, engine: Any, n: int) -> None:
        self.engine, self.left, self.fired = engine, n, False

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.fired or not statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            return
        self.left -= 1
        if self.left <= 0:
            self.fired = True
            raise sqlite3.OperationalError("database is locked")

    @contextlib.contextmanager
    def armed(self) -> Iterator[FailingWrites]:
        event.listen(self.engine, "before_cursor_execute", self._before)
        try:
            yield self
        finally:
            event.remove(self.engine, "before_cursor_execute", self._before)


class _NotedRunner:
    """Stands in for the service's pass runner: notes which passes a webhook asked for.
    The campaign runs its passes itself (on its own clock, in its own order)."""

    def __init__(self) -> None:
        self.requested: Counter[str] = Counter()

    def request(self, connection: str, trigger: str, *, follow_up: bool = False) -> Any:
        from connector.service.runner import Job

        self.requested[connection] += 1
        return Job(connection, trigger), False

    def is_running(self, connection: str) -> bool:
        return False

    def shutdown(self, wait: bool = True) -> None:
        return None


class WebhookEndpoint:
    """The service's real ``POST /v1/webhooks/hubspot`` (signature check, event dedupe,
    routing, re-read queue) over the campaign's project and state database, called
    in-process the way HubSpot calls it: signed, and retried with a fresh timestamp and
    signature (same event ids) until it answers 2xx."""

    URL = "http://testserver/v1/webhooks/hubspot"

    def __init__(self, config: Path, env: Mapping[str, str], factory: Any) -> None:
        import warnings

        with warnings.catch_warnings():  # starlette's note about httpx, not ours to act on
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        from connector.service import Service, build_app

        self.service = Service(
            config,
            env={**env, "DEALSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET},
            adapter_factory=factory,
            hooks=[],
        )
        self.runner = _NotedRunner()
        self.service.runner = self.runner  # type: ignore[assignment]
        self.client = TestClient(build_app(self.service), raise_server_exceptions=False)

    def post(
        self, events: list[dict[str, Any]], attempt: int, fail_write: int | None
    ) -> tuple[int, bool]:
        """One delivery attempt; ``fail_write``: the write statement that fails (None:
        no fault). Returns the HTTP status and whether the fault fired (a delivery
        with fewer writes than ``fail_write`` has none)."""
        from connector.service.webhooks import sign_v3

        body = json.dumps([{**e, "attemptNumber": attempt} for e in events]).encode()
        ts = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(WEBHOOK_SECRET, "POST", self.URL, body, ts),
            "X-HubSpot-Request-Timestamp": ts,
        }
        if fail_write is None:
            reply = self.client.post("/v1/webhooks/hubspot", content=body, headers=headers)
            return reply.status_code, False
        with FailingWrites(self.service.store.engine, fail_write).armed() as fault:
            reply = self.client.post("/v1/webhooks/hubspot", content=body, headers=headers)
        return reply.status_code, fault.fired

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.service.store.close()
