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

import hashlib
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from connector.records import utcnow
from connector.state.store import LockHeld, StateStore
from connector.state.tables import OutboxMessage, Registration

log = logging.getLogger("dealsync.outbox")

MAX_ATTEMPTS = 10
LANGUAGES = ("en", "de", "fr")
KINDS = ("consent_request", "data_notice", "lead_notification")
# queued → sent | failed (gave up; retry) ; held (a privacy check objected; release or
# cancel) ; suppressed (decided not to send) ; cancelled (registration ended, or an admin)
STATUSES = ("queued", "sent", "failed", "held", "suppressed", "cancelled")
AUDIT_PREFIXES = ("released by ", "cancelled by ")


# deliveries take this store lock: two at once (the service's passes of several
# connections, an admin's `outbox send`) would both send the same due messages
DELIVERY_LOCK = "@outbox"
DELIVERY_LOCK_TTL = timedelta(hours=2)


class OutboxError(Exception):
    """An admin action the outbox cannot do (no such message, or not in that state)."""


class OutboxBusy(Exception):
    """Another process (or thread) is delivering the outbox right now; it sends what
    is due, so this delivery does not."""


_ENV = Environment(
    loader=PackageLoader("connector", "templates"),
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


class PlaintextAuthRefused(smtplib.SMTPException):
    """SMTP credentials would travel unencrypted and the configuration did not allow it.
    An ``SMTPException``, so the delivery fails with this reason in the outbox row."""


class PrivacyViolation(Exception):
    """A rendered e-mail contains something it must never contain. ``what`` names the
    kind of thing (safe to log); ``item`` is the text found (not for logs: it may be
    the contact's name)."""

    def __init__(self, what: str, item: str) -> None:
        super().__init__(f"the message would reveal {what} ({item!r})")
        self.what = what
        self.item = item


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    language: str


def render(kind: str, language: str | None, context: Mapping[str, Any]) -> Rendered:
    """Render ``<kind>.<language>.txt`` (falling back to English); its first line is
    ``Subject: …``."""
    lang = (language or "en").lower()[:2]
    try:
        template = _ENV.get_template(f"{kind}.{lang}.txt")
    except TemplateNotFound:
        lang = "en"
        template = _ENV.get_template(f"{kind}.en.txt")
    text = template.render(**context)
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {kind}.{lang}.txt must start with a 'Subject: ' line")
    return Rendered(first.removeprefix("Subject: ").strip(), rest.lstrip("\n"), lang)


_TOKEN = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text)]


def _occurrences(haystack: Sequence[str], needle: Sequence[str]) -> Iterable[range]:
    n = len(needle)
    for i in range(len(haystack) - n + 1):
        if list(haystack[i : i + n]) == list(needle):
            yield range(i, i + n)


def assert_clean(
    message: Rendered,
    forbidden: Iterable[str],
    what: str,
    *,
    partial: Iterable[str] = (),
    named: Iterable[str] = (),
) -> None:
    """Refuse a message whose subject or body contains a forbidden item as whole words.

    Items and text are compared as sequences of words (case-insensitive; any run of
    punctuation or space separates words), so partner ``orbit`` is found in "Orbit's"
    or "orbit-partners.example" but not in "Orbital Kitchens", and "Acme Agency" also
    in "ACME-AGENCY". ``forbidden`` items identify on their own (a full name, an
    e-mail address) and count anywhere. ``partial`` items (a surname, an e-mail's local
    part) count only outside the ``named`` phrases — the company the message is
    legitimately about: "Baker Logistics" does not name Tom Baker, "Baker visited"
    does. Items shorter than three characters are ignored."""
    words = _tokens(f"{message.subject}\n{message.body}")
    legit: set[int] = set()
    for phrase in named:
        needle = _tokens(phrase or "")
        if needle:
            for span in _occurrences(words, needle):
                legit.update(span)
    for items, anywhere in ((forbidden, True), (partial, False)):
        for item in items:
            needle = _tokens(item or "")
            if len("".join(needle)) < 3:
                continue
            for span in _occurrences(words, needle):
                if anywhere or not legit.issuperset(span):
                    raise PrivacyViolation(what, (item or "").strip())


_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact_addresses(text: str) -> str:
    """A server's error often quotes the recipient ("550 <ann@x.com>: rejected"): logs
    get ``<address>`` instead; the outbox row keeps the full answer."""
    return _ADDRESS.sub("<address>", text)


def message_id(dedupe_key: str, domain: str = "dealsync.invalid") -> str:
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:24]
    return f"<{digest}@{domain}>"


class Transport(Protocol):
    def send(self, message: EmailMessage) -> str:
        """Deliver; return the server's answer; raise on failure."""
        ...


@dataclass
class SmtpTransport:
    host: str
    port: int = 25
    security: str = "none"  # none | starttls | ssl
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0

    allow_plaintext_auth: bool = False

    def send(self, message: EmailMessage) -> str:
        """Deliver one message; its answer is the server's reply to DATA.

        The message is sent the moment the server answers 2xx to DATA: what happens to
        QUIT or the connection afterwards (a 421, a drop, a reset) is logged, never a
        failure — a failure here would make the outbox send it again."""
        if self.user and self.security == "none" and not self.allow_plaintext_auth:
            raise PlaintextAuthRefused(
                "refusing to send the SMTP user and password unencrypted: set "
                "DEALSYNC_SMTP_SECURITY=starttls or ssl, or DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH=1 "
                "if the network to the mail server is trusted"
            )
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        # the server's answer to this message is its reply to DATA (e.g. "250 2.0.0
        # Ok: queued as ABC123"), which send_message() does not return
        replies: list[tuple[int, bytes]] = []
        try:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password or "")
            data = smtp.data

            def recording_data(msg: Any) -> tuple[int, bytes]:
                reply = data(msg)
                replies.append(reply)
                return reply

            smtp.data = recording_data  # type: ignore[method-assign]
            refused = smtp.send_message(message)
        except BaseException:
            smtp.close()
            raise
        code, answer = replies[-1]
        sent = f"accepted ({code} {answer.decode(errors='replace')})"
        if refused:
            # some recipients took it: sending again would duplicate it for them
            sent += f"; refused by the server for {len(refused)} recipient(s)"
        try:
            quit_code, _ = smtp.quit()
            if quit_code != 221:
                log.info(
                    "the SMTP server accepted %s, then answered %s to QUIT: it counts as sent",
                    message["Message-ID"],
                    quit_code,
                )
        except (OSError, smtplib.SMTPException) as exc:
            log.info(
                "the SMTP server accepted %s, then QUIT failed (%s): it counts as sent",
                message["Message-ID"],
                exc,
            )
        finally:
            smtp.close()
        return sent


@dataclass
class FileSink:
    """Writes each message as an ``.eml`` file: the demo's mail server."""

    directory: Path

    def send(self, message: EmailMessage) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(message["Message-ID"]).encode()).hexdigest()[:16]
        path = self.directory / f"{name}.eml"
        path.write_bytes(bytes(message))
        return f"written to {path}"


def transport_from_env(env: Mapping[str, str]) -> Transport | None:
    """``DEALSYNC_MAIL_SINK`` (a folder) or ``DEALSYNC_SMTP_HOST`` and friends."""
    if env.get("DEALSYNC_MAIL_SINK"):
        return FileSink(Path(env["DEALSYNC_MAIL_SINK"]))
    host = env.get("DEALSYNC_SMTP_HOST")
    if not host:
        return None
    security = env.get("DEALSYNC_SMTP_SECURITY", "none").lower()
    if security not in ("none", "starttls", "ssl"):
        raise ValueError(f"DEALSYNC_SMTP_SECURITY must be none, starttls or ssl, not {security!r}")
    default_port = {"none": 25, "starttls": 587, "ssl": 465}[security]
    return SmtpTransport(
        host=host,
        port=int(env.get("DEALSYNC_SMTP_PORT") or default_port),
        security=security,
        user=env.get("DEALSYNC_SMTP_USER") or None,
        password=env.get("DEALSYNC_SMTP_PASSWORD") or None,
        allow_plaintext_auth=_flag(env, "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH"),
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1 or 0 (true/false), not {value!r}")


@dataclass(frozen=True)
class Delivery:
    id: int
    recipient: str
    ok: bool
    detail: str


class Outbox:
    def __init__(self, store: StateStore, *, sender: str = "dealsync@localhost") -> None:
        self.store = store
        self.sender = sender

    def _session(self) -> Session:
        return Session(self.store.engine, expire_on_commit=False)

    def existing(self, dedupe_keys: Iterable[str]) -> set[str]:
        """Which of these decision keys already have a row (one query per 500 keys)."""
        keys = sorted(set(dedupe_keys))
        out: set[str] = set()
        with self._session() as s:
            for i in range(0, len(keys), 500):
                out.update(
                    s.exec(
                        select(OutboxMessage.dedupe_key).where(
                            col(OutboxMessage.dedupe_key).in_(keys[i : i + 500])
                        )
                    ).all()
                )
        return out

    def exists(self, dedupe_key: str) -> bool:
        with self._session() as s:
            return (
                s.exec(
                    select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
                ).first()
                is not None
            )

    def id_of(self, dedupe_key: str) -> int | None:
        with self._session() as s:
            return s.exec(
                select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key)
            ).first()

    def queue(
        self,
        *,
        dedupe_key: str,
        kind: str,
        recipient: str,
        rendered: Rendered | None,
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
            kind=kind,
            partner=partner,
            registration_id=registration_id,
            recipient=recipient,
            subject=rendered.subject if rendered else "",
            body=rendered.body if rendered else "",
            language=rendered.language if rendered else "en",
            message_id=message_id(dedupe_key),
            status=status,
            detail=detail,
            next_attempt_at=moment,
            created_at=moment,
        )
        with self._session() as s:
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return False
        return True

    def messages(
        self, status: str | None = None, kind: str | None = None, limit: int = 200
    ) -> list[OutboxMessage]:
        with self._session() as s:
            q = select(OutboxMessage)
            if status:
                q = q.where(OutboxMessage.status == status)
            if kind:
                q = q.where(OutboxMessage.kind == kind)
            return list(s.exec(q.order_by(col(OutboxMessage.id)).limit(limit)).all())

    def backlog(self) -> int:
        with self._session() as s:
            return len(
                s.exec(select(OutboxMessage.id).where(OutboxMessage.status == "queued")).all()
            )

    def retry(self, ids: Sequence[int] | None = None, now: datetime | None = None) -> int:
        """Put failed messages back in the queue, due now."""
        with self._session() as s:
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
        with self._session() as s:
            return s.get(OutboxMessage, row_id)

    def counts(self) -> dict[tuple[str | None, str, str], int]:
        """Messages by (partner, kind, status): for ``status``, the admin page, metrics."""
        with self._session() as s:
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

    def _transition(self, row_id: int, allowed: tuple[str, ...], **values: Any) -> None:
        """Update the row only if it is still in an allowed status (a delivery or
        another admin may have moved it since it was read)."""
        with self._session() as s:
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

    def _email(self, row: OutboxMessage) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = row.recipient
        msg["Subject"] = row.subject
        msg["Message-ID"] = row.message_id
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Content-Language"] = row.language
        msg.set_content(row.body)
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
        with self._session() as s:
            due = list(
                s.exec(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.status == "queued",
                        col(OutboxMessage.next_attempt_at) <= moment,
                    )
                    .order_by(col(OutboxMessage.id))
                    .limit(limit)
                ).all()
            )
        out: list[Delivery] = []
        for row in due:
            assert row.id is not None
            current = self.get(row.id)
            if current is None or current.status != "queued":
                continue  # an admin cancelled it meanwhile
            if row.registration_id is not None and not self._registration_live(row.registration_id):
                self._set(
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
                self._set(
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
            self._set(
                row.id,
                status="sent",
                attempts=row.attempts + 1,
                sent_at=utcnow(),
                server_response=answer[:2000],
                detail="\n".join(_audit(row.detail)) or None,
            )
            out.append(Delivery(row.id, row.recipient, True, answer))
        return out

    def _registration_live(self, registration_id: int) -> bool:
        with self._session() as s:
            reg = s.get(Registration, registration_id)
            return reg is not None and reg.status == "accepted"

    def _set(self, row_id: int, **values: Any) -> None:
        with self._session() as s:
            s.execute(update(OutboxMessage).where(col(OutboxMessage.id) == row_id).values(**values))
            s.commit()


def _audit(detail: str | None) -> list[str]:
    """The lines of a detail that record an admin's action: kept through retries."""
    return [line for line in (detail or "").splitlines() if line.startswith(AUDIT_PREFIXES)]


def _reason(detail: str | None) -> str:
    """``held: …`` as it reads after "it had been"."""
    return (detail or "held").splitlines()[0]
