"""The e-mail outbox: decided e-mails are rows first, deliveries second.

A hook *queues* a message (rendered, checked for privacy leaks, with a stable
Message-ID) in the same transaction as its decision, keyed so it can exist only once.
A sender *delivers* due messages over SMTP (or to a file sink for the demo), retries
failures with backoff and records the server's answer.

A message is sent when the server answers 2xx to DATA; what QUIT or the connection
does after that cannot make it fail (and be sent again). Delivery is at-least-once
within one narrow window: if the process dies after the SMTP server accepted a
message and before the row is marked sent, the next delivery sends it again — with
the same Message-ID, so mail systems and people can recognise the duplicate. Nothing
else can send a message twice.

A message a privacy check objects to is *held*: kept with its text, key and reason,
never delivered until an admin releases it (or cancels it). Nothing is dropped
silently. Logs name outbox ids, never a recipient's address.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate

from connector.mail.privacy import redact_addresses
from connector.mail.transport import Transport
from connector.records import utcnow
from connector.state.outbox import OutboxRows
from connector.state.store import LockHeld, StateStore
from connector.state.tables import OutboxMessage

log = logging.getLogger("dealsync.outbox")

MAX_ATTEMPTS = 10
AUDIT_PREFIXES = ("released by ", "cancelled by ")


# deliveries take this store lock: two at once (the service's passes of several
# connections, an admin's `outbox send`) would both send the same due messages
DELIVERY_LOCK = "@outbox"
DELIVERY_LOCK_TTL = timedelta(hours=2)


class OutboxBusy(Exception):
    """Another process (or thread) is delivering the outbox right now; it sends what
    is due, so this delivery does not."""


@dataclass(frozen=True)
class Delivery:
    id: int
    recipient: str
    ok: bool
    detail: str


class Outbox(OutboxRows):
    """The outbox worker: the rows' queries, plus delivery of the due ones."""

    def __init__(self, store: StateStore, *, sender: str = "dealsync@localhost") -> None:
        super().__init__(store)
        self.store: StateStore = store  # delivery takes the store's lock, too
        self.sender = sender

    def _email(self, row: OutboxMessage) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = row.recipient
        msg["Subject"] = row.subject
        msg["Message-ID"] = row.message_id
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg.set_content(row.body)
        # after set_content, which drops every Content-* header set before it
        msg["Content-Language"] = row.language
        return msg

    def deliver(
        self,
        transport: Transport,
        *,
        now: datetime | None = None,
        limit: int = 500,
        crash_at: Callable[[str], None] | None = None,
    ) -> list[Delivery]:
        """Send every due queued message; each outcome is recorded at once.
        ``crash_at`` (tests) is called at ``"while_sending_outbox"``: the transport
        accepted a message, its row is not marked sent yet.

        One delivery at a time per database (raises :class:`OutboxBusy` otherwise); a
        delivery killed mid-way leaves its lock to be taken over (its process is gone,
        or the lock expires), like a pass's."""
        owner = f"{socket.gethostname()}:{os.getpid()}:outbox:{threading.get_ident()}"
        try:
            self.store.acquire_lock(DELIVERY_LOCK, ttl=DELIVERY_LOCK_TTL, owner=owner)
        except LockHeld:
            raise OutboxBusy(
                "another process is delivering the outbox right now; it sends what is due"
            ) from None
        try:
            return self._deliver(transport, now=now, limit=limit, crash_at=crash_at)
        finally:
            self.store.release_lock(DELIVERY_LOCK, owner)

    def _deliver(
        self,
        transport: Transport,
        *,
        now: datetime | None,
        limit: int,
        crash_at: Callable[[str], None] | None,
    ) -> list[Delivery]:
        moment = now or utcnow()
        due = self.due(moment, limit)
        out: list[Delivery] = []
        for row in due:
            assert row.id is not None
            current = self.get(row.id)
            if current is None or current.status != "queued":
                continue  # an admin cancelled it meanwhile
            if row.registration_id is not None and not self.registration_live(row.registration_id):
                self.set(
                    row.id, status="cancelled", detail="the registration ended before delivery"
                )
                out.append(Delivery(row.id, row.recipient, False, "cancelled"))
                continue
            try:
                answer = transport.send(self._email(row))
            except (OSError, smtplib.SMTPException) as exc:
                attempts = row.attempts + 1
                delay = timedelta(seconds=min(60 * 2 ** (attempts - 1), 6 * 3600))
                status = "failed" if attempts >= MAX_ATTEMPTS else "queued"
                self.set(
                    row.id,
                    status=status,
                    attempts=attempts,
                    detail="\n".join([f"{type(exc).__name__}: {exc}"[:2000], *_audit(row.detail)]),
                    next_attempt_at=moment + delay,
                )
                out.append(Delivery(row.id, row.recipient, False, str(exc)))
                # ids only: the recipient may be a contact (its address stays in the row)
                log.warning(
                    "outbox #%s (%s) failed (attempt %s): %s",
                    row.id,
                    row.kind,
                    attempts,
                    redact_addresses(str(exc)),
                )
                continue
            if crash_at is not None:
                crash_at("while_sending_outbox")
            self.set(
                row.id,
                status="sent",
                attempts=row.attempts + 1,
                sent_at=utcnow(),
                server_response=answer[:2000],
                detail="\n".join(_audit(row.detail)) or None,
            )
            out.append(Delivery(row.id, row.recipient, True, answer))
        return out


def _audit(detail: str | None) -> list[str]:
    """The lines of a detail that record an admin's action: kept through retries."""
    return [line for line in (detail or "").splitlines() if line.startswith(AUDIT_PREFIXES)]
