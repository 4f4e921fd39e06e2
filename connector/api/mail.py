"""The API's e-mail commands: the outbox, its delivery and the admin's say over held
messages (mixed into :class:`connector.api.Dealsync`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from connector.api.errors import DealsyncError, DeliveryBusy
from connector.api.host import Host
from connector.mail.outbox import Delivery, Outbox, OutboxBusy
from connector.mail.transport import Transport, transport_from_env
from connector.state.outbox import OutboxError
from connector.state.tables import OutboxMessage

log = logging.getLogger("dealsync.api")


class MailCommands(Host):
    """Outbox delivery, listing, release, cancel and retry."""

    def _deliver_after_pass(
        self, now: datetime | None, crash_at: Callable[[str], None] | None
    ) -> list[Delivery] | None:
        """A pass delivers what is due, unless another delivery is running (it sends
        the same due messages; sending them here too would send them twice): what
        was attempted, or None when it was left to the other delivery."""
        try:
            return self.send_outbox(now=now, crash_at=crash_at)
        except DeliveryBusy:
            log.info("outbox not delivered after this pass: another delivery is running")
            return None

    def transport(self) -> Transport | None:
        """The configured mail transport (``DEALSYNC_MAIL_SINK`` or ``DEALSYNC_SMTP_*``)."""
        try:
            return transport_from_env(self.env)
        except ValueError as exc:
            raise DealsyncError(str(exc)) from None

    @property
    def outbox(self) -> Outbox:
        return Outbox(self.store, sender=self.env.get("DEALSYNC_MAIL_FROM") or "dealsync@localhost")

    def send_outbox(
        self, now: datetime | None = None, crash_at: Callable[[str], None] | None = None
    ) -> list[Delivery]:
        transport = self.transport()
        if transport is None:
            raise DealsyncError(
                "no mail transport configured: set DEALSYNC_SMTP_HOST (and DEALSYNC_SMTP_PORT, "
                "DEALSYNC_SMTP_SECURITY, DEALSYNC_SMTP_USER, DEALSYNC_SMTP_PASSWORD) or DEALSYNC_MAIL_SINK"
            )
        try:
            return self.outbox.deliver(transport, now=now, crash_at=crash_at)
        except OutboxBusy as exc:
            raise DeliveryBusy(f"{exc}; try again when it is done") from None

    def release_email(self, message_id: int, *, by: str = "cli") -> OutboxMessage:
        """Let a held e-mail go: queued, sent by the next delivery (audited in its row)."""
        try:
            return self.outbox.release(message_id, by=by)
        except OutboxError as exc:
            raise DealsyncError(str(exc)) from None

    def cancel_email(self, message_id: int, *, by: str = "cli") -> OutboxMessage:
        """Never send this e-mail (held, queued or failed); the row stays, audited."""
        try:
            return self.outbox.cancel(message_id, by=by)
        except OutboxError as exc:
            raise DealsyncError(str(exc)) from None

    def settle_email(self, message_id: int, action: str, *, by: str) -> OutboxMessage:
        """``release`` or ``cancel`` an e-mail: the admin page's and the CLI's one call."""
        if action == "release":
            return self.release_email(message_id, by=by)
        if action == "cancel":
            return self.cancel_email(message_id, by=by)
        raise DealsyncError(f"{action!r}: an e-mail is released or cancelled")

    def emails(self, status: str | None = None, kind: str | None = None) -> list[OutboxMessage]:
        return self.store.outbox.messages(status, kind)

    def email(self, message_id: int) -> OutboxMessage:
        row = self.store.outbox.get(message_id)
        if row is None:
            raise DealsyncError(f"no outbox message #{message_id}")
        return row

    def retry_emails(self, ids: Sequence[int] = ()) -> int:
        """Queue failed e-mails again (all of them, or these ids); how many were."""
        return self.store.outbox.retry(list(ids) or None)
