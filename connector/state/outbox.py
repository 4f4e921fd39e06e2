"""The outbox's rows: every query on the e-mail outbox table.

A row is a decided e-mail (its key, text, Message-ID and status); delivery, which reads
and moves these rows, lives in :mod:`connector.mail.outbox`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, update
from sqlmodel import col, select

from connector.records import utcnow
from connector.state.tables import (
    Database,
    OutboxMessage,
    Registration,
    Transactions,
    chunks,
    given,
    insert_once,
)

log = logging.getLogger("dealsync.outbox")

KINDS = (
    "consent_request",
    "data_notice",
    "lead_notification",
    "review_reminder",
    "expiry_reminder",
)
# queued → sent | failed (gave up; retry) ; held (a privacy check objected; release or
# cancel) ; suppressed (decided not to send) ; cancelled (registration ended, or an admin)
STATUSES = ("queued", "sent", "failed", "held", "suppressed", "cancelled")


class OutboxError(Exception):
    """An admin action the outbox cannot do (no such message, or not in that state)."""


class MessageText(Protocol):
    """A rendered message as the row keeps it (:class:`connector.mail.render.Rendered`)."""

    @property
    def subject(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def language(self) -> str: ...


def message_id(dedupe_key: str, domain: str = "dealsync.invalid") -> str:
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:24]
    return f"<{digest}@{domain}>"


class OutboxRows(Transactions):
    """The outbox table: queue, look up, count and move rows between statuses."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    def existing(self, dedupe_keys: Iterable[str]) -> set[str]:
        """Which of these decision keys already have a row (one query per 500 keys)."""
        keys = sorted(set(dedupe_keys))
        out: set[str] = set()
        with self.session() as s:
            for chunk in chunks(keys):
                out.update(
                    s.exec(
                        select(OutboxMessage.dedupe_key).where(
                            col(OutboxMessage.dedupe_key).in_(chunk)
                        )
                    ).all()
                )
        return out

    def exists(self, dedupe_key: str) -> bool:
        with self.session() as s:
            return (
                s.exec(
                    select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
                ).first()
                is not None
            )

    def id_of(self, dedupe_key: str) -> int | None:
        with self.session() as s:
            return s.exec(
                select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
            ).first()

    def queue(
        self,
        *,
        dedupe_key: str,
        kind: str,
        recipient: str,
        rendered: MessageText | None,
        partner: str | None = None,
        registration_id: int | None = None,
        status: str = "queued",
        detail: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Insert the message unless one with this key exists; True when inserted."""
        moment = now or utcnow()
        row = OutboxMessage(
            dedupe_key=dedupe_key,
            message_id=message_id(dedupe_key),
            subject=rendered.subject if rendered else "",
            body=rendered.body if rendered else "",
            language=rendered.language if rendered else "en",
            kind=kind,
            partner=partner,
            registration_id=registration_id,
            recipient=recipient,
            status=status,
            detail=detail,
            next_attempt_at=moment,
            created_at=moment,
        )
        with self.session() as s:
            return insert_once(s, row)

    def messages(
        self, status: str | None = None, kind: str | None = None, limit: int = 200
    ) -> list[OutboxMessage]:
        q = given(select(OutboxMessage), (OutboxMessage.status, status), (OutboxMessage.kind, kind))
        return self.rows(q.order_by(col(OutboxMessage.id)).limit(limit))

    def of_registration(self, registration_id: int) -> list[OutboxMessage]:
        """The e-mails decided for one registration, oldest first."""
        q = select(OutboxMessage).where(col(OutboxMessage.registration_id) == registration_id)
        return self.rows(q.order_by(col(OutboxMessage.id)))

    def backlog(self) -> int:
        return self.count(OutboxMessage, OutboxMessage.status == "queued")

    def retry(self, ids: Sequence[int] | None = None, now: datetime | None = None) -> int:
        """Put failed messages back in the queue, due now."""
        with self.session() as s:
            q = update(OutboxMessage).where(col(OutboxMessage.status) == "failed")
            if ids:
                q = q.where(col(OutboxMessage.id).in_(list(ids)))
            result = s.execute(
                q.values(status="queued", next_attempt_at=now or utcnow(), attempts=0)
            )
            n = getattr(result, "rowcount", 0)
            s.commit()
            return int(n or 0)

    def get(self, row_id: int) -> OutboxMessage | None:
        with self.session() as s:
            return s.get(OutboxMessage, row_id)

    def counts(self) -> dict[tuple[str | None, str, str], int]:
        """Messages by (partner, kind, status): for ``status``, the admin page, metrics."""
        with self.session() as s:
            rows = s.exec(
                select(
                    OutboxMessage.partner, OutboxMessage.kind, OutboxMessage.status, func.count()
                ).group_by(OutboxMessage.partner, OutboxMessage.kind, OutboxMessage.status)
            ).all()
        return {(partner, kind, status): int(n) for partner, kind, status, n in rows}

    def release(self, row_id: int, *, by: str, now: datetime | None = None) -> OutboxMessage:
        """An admin read a held message and lets it go: queued, due now, sent by the next
        delivery. The row (its key, Message-ID and text) stays the same one; its detail
        records who released it, when, and why it had been held."""
        allowed = ("held",)
        row = self._admin_target(row_id, allowed)
        moment = now or utcnow()
        self._transition(
            row_id,
            allowed,
            status="queued",
            attempts=0,
            next_attempt_at=moment,
            detail=f"released by {by} at {moment.isoformat(timespec='seconds')}; "
            f"it had been {_reason(row.detail)}",
        )
        released = self.get(row_id)
        assert released is not None
        log.info("outbox #%s released by %s", row_id, by)
        return released

    def cancel(self, row_id: int, *, by: str, now: datetime | None = None) -> OutboxMessage:
        """Never send this message (held, queued or failed): ``cancelled``, with who and
        when in its detail. The row stays, so the decision is not made again."""
        allowed = ("held", "queued", "failed")
        row = self._admin_target(row_id, allowed)
        moment = now or utcnow()
        was = f"; it had been {_reason(row.detail)}" if row.detail else f"; it was {row.status}"
        self._transition(
            row_id,
            (row.status,),
            status="cancelled",
            detail=f"cancelled by {by} at {moment.isoformat(timespec='seconds')}{was}",
        )
        cancelled = self.get(row_id)
        assert cancelled is not None
        log.info("outbox #%s cancelled by %s", row_id, by)
        return cancelled

    def cancel_for_registration(
        self, registration_id: int, *, by: str, why: str, now: datetime | None = None
    ) -> list[int]:
        """Cancel every e-mail of a registration not sent yet (queued, held or failed):
        ``cancelled`` with who, when and why in its detail. Returns the ids cancelled."""
        moment = now or utcnow()
        open_ = ("queued", "held", "failed")
        with self.session() as s:
            rows = s.exec(
                select(OutboxMessage).where(
                    OutboxMessage.registration_id == registration_id,
                    col(OutboxMessage.status).in_(open_),
                )
            ).all()
            ids = []
            for row in rows:
                assert row.id is not None
                was = f"; it was {row.status}"
                row.status = "cancelled"
                row.detail = (
                    f"cancelled by {by} at {moment.isoformat(timespec='seconds')}: {why}{was}"
                )
                s.add(row)
                ids.append(row.id)
            s.commit()
        for row_id in ids:
            log.info("outbox #%s cancelled by %s (registration %s)", row_id, by, registration_id)
        return ids

    def _transition(self, row_id: int, allowed: tuple[str, ...], **values: Any) -> None:
        """Update the row only if it is still in an allowed status (a delivery or
        another admin may have moved it since it was read)."""
        with self.session() as s:
            result = s.execute(
                update(OutboxMessage)
                .where(col(OutboxMessage.id) == row_id, col(OutboxMessage.status).in_(allowed))
                .values(**values)
            )
            s.commit()
        if not getattr(result, "rowcount", 0):
            row = self.get(row_id)
            raise OutboxError(
                f"outbox message #{row_id} changed meanwhile (now {row.status if row else 'gone'})"
            )

    def _admin_target(self, row_id: int, allowed: tuple[str, ...]) -> OutboxMessage:
        row = self.get(row_id)
        if row is None:
            raise OutboxError(f"no outbox message #{row_id}")
        if row.status not in allowed:
            raise OutboxError(
                f"outbox message #{row_id} is {row.status}, not {' or '.join(allowed)}"
            )
        return row

    def due(self, moment: datetime, limit: int) -> list[OutboxMessage]:
        """Queued messages whose next attempt is due by ``moment``, oldest first."""
        return self.rows(
            select(OutboxMessage)
            .where(OutboxMessage.status == "queued", col(OutboxMessage.next_attempt_at) <= moment)
            .order_by(col(OutboxMessage.id))
            .limit(limit)
        )

    def registration_live(self, registration_id: int) -> bool:
        """A message about a registration is sent only while it stands."""
        with self.session() as s:
            reg = s.get(Registration, registration_id)
            return reg is not None and reg.status == "accepted"

    def set(self, row_id: int, **values: Any) -> None:
        with self.session() as s:
            s.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row_id).values(**values))
            s.commit()


def _reason(detail: str | None) -> str:
    """``held: …`` as it reads after "it had been"."""
    return (detail or "held").splitlines()[0]
