"""The lead's rights (issue 16, item 7) in the state store: which registrations gave
the vendor a person's data, erasing that person from the state and the outbox, and the
audit of both requests.

A person is found by e-mail address, compared lower-case: the registration contacts
that list it (lead and deal registrations keep the people they brought), and the lead
registrations made with ``dealsync register lead``, whose record id is ``cli:<e-mail>``,
and the synced contact records whose base snapshot holds it (a contact put on a shared
deal after its registration was decided is listed by no registration).

Erasure keeps what the program's books need and removes the person:

* registration contact rows of the person are deleted (the registration itself —
  partner, domain, company, dates, status — stays: commissions point at it, and it is
  what says who owned the domain); a ``cli:<e-mail>`` record id becomes
  ``cli:erased-<audit id>``;
* outbox messages to the person lose their address, subject, body and Message-ID
  (now ``erased-<audit id>`` and an empty text); one not delivered yet is cancelled,
  saying why; the row stays, as the record that the e-mail was (or was not) sent;
* the links of the person's contact record end (``unlinked``) with their base
  snapshot emptied: a later pass neither re-shares that contact nor copies its fields
  into the state again (an ended link's records are never shared automatically);
  another link whose base holds the address or the full name loses those fields;
  conflicts on the ended links lose their values (an open one is resolved), and the
  run log's and retries' details about the person's records become ``[erased]``;
* free text naming the person (by address or full name) in other outbox messages,
  lead activity, run records, runs, retries, conflicts and registration reasons is
  replaced by ``[erased]``.

Commissions hold no personal data (partner, deal ids, domain, amounts): they stay as
they are. The e-mail address itself is never written to the audit: ``subject`` is a
keyed hash (:func:`PrivacyRows.subject_of`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, Text, cast, delete, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from connector.records import utcnow
from connector.state.outbox import message_id
from connector.state.tables import (
    ConflictRow,
    Database,
    LeadActivity,
    Link,
    OutboxMessage,
    PrivacyAudit,
    PrivacyKey,
    Registration,
    RegistrationContact,
    RetryItem,
    Run,
    RunRecord,
    Transactions,
    chunks,
    given,
)

ERASED = "[erased]"
"""What stands in free text where the person's address or name was."""

UNSENT = ("queued", "held", "failed")
"""Outbox statuses of a message not delivered (yet): an erased person's is cancelled."""

_LINK: Table = Link.__table__  # type: ignore[attr-defined]

# Free text that may quote a person (an error naming an address, a conflict on a name
# field): table → its text columns. Rows are found by ``LIKE`` and rewritten in Python.
_FREE_TEXT: dict[type[Any], tuple[str, ...]] = {
    OutboxMessage: ("subject", "body", "detail", "server_response"),
    LeadActivity: ("company", "label"),
    RunRecord: ("detail",),
    Run: ("error",),
    RetryItem: ("last_error",),
    ConflictRow: ("partner_value", "vendor_value", "base_partner", "base_vendor"),
    Registration: ("reason", "company_name"),
}


def normalised(email: str) -> str:
    """The form an address is compared in (the state keeps contacts' lower-case)."""
    return email.strip().lower()


def cli_record_id(email: str) -> str:
    """The record id of a lead registered with ``dealsync register lead``."""
    return f"cli:{normalised(email)}"


@dataclass(frozen=True)
class Source:
    """One registration that brought the person's data: the answer to "who gave you my
    data". ``contact`` is None for a lead registered by command that kept no contact
    row (rejected: its record id names the address)."""

    registration: Registration
    contact: RegistrationContact | None


@dataclass
class Erasure:
    """What erasing one person changes (computed first as a plan, then what was done):
    rows by kind of change. ``texts`` counts rows whose free text was scrubbed, by
    table."""

    registrations: list[int] = field(default_factory=list)
    contacts_deleted: int = 0
    record_ids_pseudonymised: int = 0
    emails_erased: int = 0
    emails_cancelled: int = 0
    links_ended: int = 0
    link_fields_dropped: int = 0
    texts: dict[str, int] = field(default_factory=dict)
    vendor_records: list[str] = field(default_factory=list)
    """The person's vendor CRM contacts dealsync knew of (it deletes no CRM record)."""
    partner_records: list[tuple[str, str]] = field(default_factory=list)
    """(partner, contact id) of the person's records in partners' CRMs."""

    @property
    def total(self) -> int:
        return (
            self.contacts_deleted
            + self.record_ids_pseudonymised
            + self.emails_erased
            + self.links_ended
            + self.link_fields_dropped
            + sum(self.texts.values())
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "registrations": list(self.registrations),
            "contacts_deleted": self.contacts_deleted,
            "record_ids_pseudonymised": self.record_ids_pseudonymised,
            "emails_erased": self.emails_erased,
            "emails_cancelled": self.emails_cancelled,
            "links_ended": self.links_ended,
            "link_fields_dropped": self.link_fields_dropped,
            "texts_scrubbed": dict(self.texts),
            "vendor_records": list(self.vendor_records),
            "partner_records": [list(p) for p in self.partner_records],
        }


class _Person:
    """The needles one person is found by in free text and base snapshots."""

    def __init__(self, email: str, names: Iterable[tuple[str, str]]) -> None:
        self.email = normalised(email)
        # a full name only: a first or last name alone would match other people and
        # companies ("Baker Logistics")
        full = {f"{f.strip()} {la.strip()}" for f, la in names if f.strip() and la.strip()}
        self.needles = [self.email, *sorted(n for n in full if len(n) >= 5)]
        self.pattern = re.compile(
            "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in self.needles), re.IGNORECASE
        )

    def mentioned_in(self, value: object) -> bool:
        return isinstance(value, str) and self.pattern.search(value) is not None

    def scrub(self, value: str) -> str:
        return self.pattern.sub(ERASED, value)


class PrivacyRows(Transactions):
    """The queries of the lead's rights: sources, erasure, and the audit."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    # ------------------------------------------------------------------ the audit

    def _key(self) -> bytes:
        """The audit's hashing key, made once (two processes racing: one wins)."""
        with self.session() as s:
            row = s.get(PrivacyKey, 1)
            if row is None:
                s.add(PrivacyKey(id=1, key=secrets.token_hex(32)))
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
                row = s.get(PrivacyKey, 1)
            assert row is not None
            return row.key.encode()

    def _has_key(self) -> bool:
        with self.session() as s:
            return s.get(PrivacyKey, 1) is not None

    def subject_of(self, email: str) -> str:
        """The keyed SHA-256 (HMAC) of the address that stands for it in the audit."""
        return hmac.new(self._key(), normalised(email).encode(), hashlib.sha256).hexdigest()

    def record_request(
        self,
        action: str,
        email: str,
        *,
        requested_by: str,
        outcome: str,
        answer: dict[str, Any],
        now: datetime | None = None,
    ) -> PrivacyAudit:
        """Audit one request (its answer as given; never the address in clear)."""
        row = PrivacyAudit(
            at=now or utcnow(),
            action=action,
            requested_by=requested_by,
            subject=self.subject_of(email),
            outcome=outcome,
            answer=answer,
        )
        with self.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return row

    def audit_entries(
        self, action: str | None = None, email: str | None = None, limit: int = 1000
    ) -> list[PrivacyAudit]:
        """The audit, oldest first; only one action's, or one address's (by its hash)."""
        if email and not self._has_key():
            return []  # no request was ever audited
        subject = self.subject_of(email) if email else None
        q = given(
            select(PrivacyAudit), (PrivacyAudit.action, action), (PrivacyAudit.subject, subject)
        )
        return self.rows(q.order_by(col(PrivacyAudit.id)).limit(limit))

    # ------------------------------------------------------------------ sources

    def sources(self, email: str) -> list[Source]:
        """Every registration that brought the person's data, oldest first."""
        address = normalised(email)
        with self.session() as s:
            contacts = s.exec(
                select(RegistrationContact).where(func.lower(RegistrationContact.email) == address)
            ).all()
            by_reg = {c.registration_id: c for c in contacts}
            regs = list(
                s.exec(
                    select(Registration).where(
                        or_(
                            col(Registration.id).in_(sorted(by_reg) or [0]),
                            col(Registration.partner_record_id) == cli_record_id(address),
                        )
                    )
                ).all()
            )
        regs.sort(key=lambda r: (r.submitted_at, r.id or 0))
        return [Source(r, by_reg.get(r.id or 0)) for r in regs]

    def synced_contacts(self, email: str, contact_objects: Sequence[str]) -> list[Link]:
        """The links of contact records a partner shared whose base holds this address
        (a contact shared because it is on a registered deal, also one added to the deal
        after its registration was decided), oldest first. A link the vendor's side
        started (its contact mirrored to the partner) is not a partner's source."""
        address = normalised(email)
        text = func.lower(cast(_LINK.c.base, Text))
        with self.session() as s:
            found = s.exec(
                select(Link).where(
                    col(Link.object).in_(sorted(contact_objects) or [""]),
                    Link.origin == "partner",
                    text.contains(address, autoescape=True),
                )
            ).all()
        return sorted(
            (link for link in found if _holds(link.base or {}, address)),
            key=lambda link: link.id or 0,
        )

    # ------------------------------------------------------------------ erasure

    def erase(
        self,
        email: str,
        *,
        contact_objects: Sequence[str],
        requested_by: str,
        apply: bool,
        now: datetime | None = None,
    ) -> tuple[Erasure, PrivacyAudit | None]:
        """Erase the person from the state (``apply``) or only say what that would
        change. Applied, it is one transaction with its audit row (whose id names the
        pseudonyms), so a crash leaves either the person or the erasure and its audit.
        ``contact_objects``: the mappings that sync contacts (their links are the
        person's record)."""
        moment = now or utcnow()
        subject = self.subject_of(email) if apply else ""  # a plan writes nothing, no key
        with self.session() as s:
            audit = PrivacyAudit(
                at=moment,
                action="erase",
                requested_by=requested_by,
                subject=subject,
                outcome="erased",
                answer={},
            )
            if apply:
                s.add(audit)
                s.flush()
            pseudonym = f"erased-{audit.id or 0}"
            done = _erase(s, email, set(contact_objects), pseudonym, moment, apply=apply)
            if not apply:
                s.rollback()
                return done, None
            if done.total == 0:
                audit.outcome = "no_record"
            audit.answer = {"pseudonym": pseudonym, **done.as_dict()}
            s.add(audit)
            s.commit()
            s.refresh(audit)
        return done, audit

    def compact(self) -> str:
        """After an erasure: what a SQLite file still holds of deleted rows goes (VACUUM
        rewrites it; the WAL is checkpointed and truncated). PostgreSQL keeps dead
        row versions until its (auto)vacuum: said, not done here."""
        if self.engine.dialect.name != "sqlite":
            return (
                f"{self.engine.dialect.name}: deleted row versions remain until VACUUM "
                "(autovacuum runs it; run `VACUUM` on the state database to do it now)"
            )
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                cur.execute("VACUUM")
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                busy = cur.fetchone()
            finally:
                cur.close()
        except Exception as exc:  # another process holds the file: say so, do not fail
            return f"the SQLite file was not compacted ({exc}); run `sqlite3 <state> VACUUM`"
        finally:
            raw.close()
        if busy and busy[0]:
            return "the SQLite file was compacted; its WAL is still read by another process"
        return "the SQLite file was compacted (VACUUM): no deleted bytes remain in it"


def _holds(base: dict[str, Any], address: str) -> bool:
    """Whether a base snapshot has the address as a field's value (either side's)."""
    for key, pair in base.items():
        if key.startswith("@"):
            continue
        for value in pair if isinstance(pair, list) else [pair]:
            if isinstance(value, str) and normalised(value) == address:
                return True
    return False


def _names(base: dict[str, Any]) -> tuple[str, str]:
    """A contact's first and last name as its base snapshot holds them (fields whose
    property is ``firstname`` / ``lastname`` on either side, as the program reads a
    person), "" where it holds none."""
    out = {"firstname": "", "lastname": ""}
    for key, pair in base.items():
        props = key.split(">")
        values = pair if isinstance(pair, list) else [pair]
        for prop in out:
            if prop in props and not out[prop]:
                out[prop] = next((v for v in values if isinstance(v, str) and v.strip()), "")
    return out["firstname"], out["lastname"]


def _erase(
    s: Session,
    email: str,
    contact_objects: set[str],
    pseudonym: str,
    now: datetime,
    *,
    apply: bool,
) -> Erasure:
    """Find the person everywhere and (``apply``) erase them, in the session ``s``."""
    address = normalised(email)
    out = Erasure()
    contacts = list(
        s.execute(
            sa_select(RegistrationContact).where(func.lower(RegistrationContact.email) == address)
        ).scalars()
    )
    vendor_ids = {c.vendor_contact_id for c in contacts if c.vendor_contact_id}
    text = func.lower(cast(_LINK.c.base, Text))
    links = list(
        s.execute(
            sa_select(Link).where(
                or_(
                    text.contains(address, autoescape=True),
                    col(Link.vendor_id).in_(sorted(vendor_ids) or [""])
                    & col(Link.object).in_(sorted(contact_objects) or [""]),
                )
            )
        ).scalars()
    )
    # the names to look for: the registrations', and the synced contact records' (a
    # contact no registration lists is known by its base snapshot only)
    names = [(c.first_name, c.last_name) for c in contacts]
    names += [
        _names(link.base or {})
        for link in links
        if link.object in contact_objects and _holds(link.base or {}, address)
    ]
    person = _Person(address, names)
    _registrations(s, out, address, contacts, pseudonym, apply=apply)
    erased_mail = _outbox(s, out, person, pseudonym, now, apply=apply)
    ended = _links(s, out, person, links, contact_objects, vendor_ids, pseudonym, now, apply=apply)
    erased_conflicts = _conflicts(
        s, out, [e.id for e in ended if e.id], pseudonym, now, apply=apply
    )
    erased_runs = _record_outcomes(s, out, ended, apply=apply)
    done = {"outbox": erased_mail, "conflict": erased_conflicts, "run_record": erased_runs}
    _free_text(s, out, person, done, apply=apply)
    if apply:
        s.flush()
    return out


def _registrations(
    s: Session,
    out: Erasure,
    address: str,
    contacts: list[RegistrationContact],
    pseudonym: str,
    *,
    apply: bool,
) -> None:
    """The person's registration contact rows go; a by-command record id (which is
    the address) is pseudonymised; the registrations themselves stay."""
    reg_ids = {c.registration_id for c in contacts}
    by_command = list(
        s.execute(
            sa_select(Registration).where(
                col(Registration.partner_record_id) == cli_record_id(address)
            )
        ).scalars()
    )
    reg_ids.update(r.id for r in by_command if r.id is not None)
    out.registrations = sorted(reg_ids)
    out.contacts_deleted = len(contacts)
    out.record_ids_pseudonymised = len(by_command)
    if not apply:
        return
    for chunk in chunks([c.id for c in contacts if c.id is not None]):
        s.execute(delete(RegistrationContact).where(col(RegistrationContact.id).in_(chunk)))
    for reg in by_command:
        reg.partner_record_id = f"cli:{pseudonym}"
        s.add(reg)
    # the fingerprint digests the person's address and names; a standing or ended
    # registration is never compared with it again (only a rejected one is)
    s.execute(
        update(Registration)
        .where(
            col(Registration.id).in_(out.registrations or [0]),
            col(Registration.status).in_(("accepted", "expired", "withdrawn")),
        )
        .values(fingerprint="")
    )


def _outbox(
    s: Session, out: Erasure, person: _Person, pseudonym: str, now: datetime, *, apply: bool
) -> set[int]:
    """Messages to the person lose address and text (the rows stay, as the record of
    what was or was not sent); unsent ones are cancelled. Returns their ids."""
    to_person = list(
        s.execute(
            sa_select(OutboxMessage).where(func.lower(OutboxMessage.recipient) == person.email)
        ).scalars()
    )
    out.emails_erased = len(to_person)
    out.emails_cancelled = sum(1 for m in to_person if m.status in UNSENT)
    if apply:
        note = f"erased at {now.isoformat(timespec='seconds')} ({pseudonym}: the lead's data)"
        for m in to_person:
            key = f"{pseudonym}:{m.id}"
            was = m.status
            m.recipient, m.subject, m.body = pseudonym, "", ""
            m.dedupe_key, m.message_id = key, message_id(key)
            m.server_response = person.scrub(m.server_response) if m.server_response else None
            if was in UNSENT:
                m.status = "cancelled"
                m.detail = f"cancelled: {note}; it was {was}"
            else:
                m.detail = f"{note}; " + (person.scrub(m.detail) if m.detail else was)
            s.add(m)
    return {m.id for m in to_person if m.id is not None}


def _links(
    s: Session,
    out: Erasure,
    person: _Person,
    links: list[Link],
    contact_objects: set[str],
    vendor_ids: set[str],
    pseudonym: str,
    now: datetime,
    *,
    apply: bool,
) -> list[Link]:
    """The person's contact links end, their bases emptied (an ended link's records
    are never shared again, so no pass copies the person back); other bases lose the
    fields naming the person. Returns the ended links."""
    ended: list[Link] = []
    for link in links:
        base = dict(link.base or {})
        fields = [
            k
            for k, v in base.items()
            if not k.startswith("@")
            and any(person.mentioned_in(x) for x in (v if isinstance(v, list) else [v]))
        ]
        if link.object in contact_objects and (fields or link.vendor_id in vendor_ids):
            out.links_ended += 1
            ended.append(link)
            if link.vendor_id:
                vendor_ids.add(link.vendor_id)
            if link.partner_id:
                out.partner_records.append((link.connection, link.partner_id))
            if apply:
                if link.status in ("active", "pending", "flagged"):
                    link.status = "unlinked"
                link.base = {"@erased": pseudonym}
                link.updated_at = now
                s.add(link)
        elif fields:
            out.link_fields_dropped += len(fields)
            if apply:
                link.base = {k: v for k, v in base.items() if k not in fields}
                link.updated_at = now
                s.add(link)
    out.vendor_records = sorted(vendor_ids)
    out.partner_records.sort()
    return ended


def _conflicts(
    s: Session, out: Erasure, ended: list[int], pseudonym: str, now: datetime, *, apply: bool
) -> set[int]:
    """Conflicts on the person's ended links hold their field values (a first name
    alone, say): the values go, an open one is resolved saying why. Returns their ids."""
    if not ended:
        return set()
    rows = list(
        s.execute(sa_select(ConflictRow).where(col(ConflictRow.link_id).in_(ended))).scalars()
    )
    if rows:
        out.texts["conflict"] = out.texts.get("conflict", 0) + len(rows)
    if apply:
        for row in rows:
            _settle(row, pseudonym, now)
            s.add(row)
    return {row.id for row in rows if row.id is not None}


def _record_outcomes(s: Session, out: Erasure, ended: list[Link], *, apply: bool) -> set[int]:
    """What the run log and the retries say about the person's contact records (a
    conflict's two values, an error quoting a field): the detail goes, the outcome
    stays. Returns the run records' ids."""
    keys = {
        (link.object, side, rid)
        for link in ended
        for side, rid in (("partner", link.partner_id), ("vendor", link.vendor_id))
        if rid
    }
    if not keys:
        return set()
    ids = sorted({rid for _, _, rid in keys})
    records = [
        r
        for r in s.execute(sa_select(RunRecord).where(col(RunRecord.record_id).in_(ids))).scalars()
        if (r.object, r.side, r.record_id) in keys and r.detail
    ]
    retries = [
        r
        for r in s.execute(sa_select(RetryItem).where(col(RetryItem.record_id).in_(ids))).scalars()
        if (r.object, r.side, r.record_id) in keys and r.last_error
    ]
    for name, rows in (("run_record", records), ("retry_item", retries)):
        if rows:
            out.texts[name] = out.texts.get(name, 0) + len(rows)
    if apply:
        for rec in records:
            rec.detail = ERASED
            s.add(rec)
        for retry in retries:
            retry.last_error = ERASED
            s.add(retry)
    return {r.id for r in records if r.id is not None}


def _settle(row: ConflictRow, pseudonym: str, now: datetime) -> None:
    """A conflict on an erased contact: its values go; an open one is resolved."""
    row.partner_value = row.vendor_value = row.base_partner = row.base_vendor = None
    if row.status == "open":
        row.status, row.resolved_at = "resolved", now
        row.resolution = f"erased ({pseudonym}): the lead's data"


def _free_text(
    s: Session, out: Erasure, person: _Person, done: dict[str, set[int]], *, apply: bool
) -> None:
    """Free text elsewhere that quotes the person's address or full name (rows erased
    whole already, by table name in ``done``, are skipped)."""
    for model, columns in _FREE_TEXT.items():
        table: Table = model.__table__
        where = [
            func.lower(table.c[c]).contains(n.lower(), autoescape=True)
            for c in columns
            for n in person.needles
        ]
        hits = 0
        for row in s.execute(sa_select(model).where(or_(*where))).scalars().all():
            if getattr(row, "id", None) in done.get(table.name, set()):
                continue
            changed = False
            for c in columns:
                value = getattr(row, c)
                if person.mentioned_in(value):
                    changed = True
                    if apply:
                        setattr(row, c, person.scrub(value))
            if changed:
                hits += 1
                if apply:
                    s.add(row)
        if hits:
            out.texts[table.name] = out.texts.get(table.name, 0) + hits
