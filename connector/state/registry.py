"""Registrations and domain claims: their queries in the state store.

What to decide is :mod:`connector.program.decide`; this module makes a decision durable
(the domain claim and the registration row in one transaction) and answers the program's
questions (who holds a domain, how many registrations a partner holds). What partners
earned (commissions, tiers) is :mod:`connector.state.commissions`, mixed into
:class:`Registry` so the program asks one object.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

from sqlalchemy import Table, and_, bindparam, exists, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from connector.program.decide import (
    EXPIRED,
    REASONS,
    WITHDRAWN,
    Decision,
    Holder,
    Person,
    Submission,
    day_text,
)
from connector.program.lifecycle import EXTENDED, WITHDRAWN_BY, Activity, Extension
from connector.state.commissions import CommissionLedger
from connector.state.review import ReviewQueue
from connector.state.tables import (
    CHUNK,
    Commission,
    Database,
    DomainClaim,
    LeadActivity,
    Link,
    OutboxMessage,
    Registration,
    RegistrationChange,
    RegistrationContact,
    chunks,
    given,
)

# The bulk paths use Core statements on the tables, each executed once with a list of
# parameter sets (one executemany), as the state store's link writes do: the ORM's
# per-row unit of work and a transaction per row were most of a large pass. Core
# applies no model defaults, so every column a model would default is given.
_REG: Table = Registration.__table__  # type: ignore[attr-defined]
_CONTACT: Table = RegistrationContact.__table__  # type: ignore[attr-defined]
# a registration whose ownership the vendor's company does not show yet
_VENDOR_WRITE_PENDING = (
    _REG.c.vendor_written.is_(False),
    _REG.c.status.in_(("accepted", "expired", "withdrawn")),
)
_CLAIM: Table = DomainClaim.__table__  # type: ignore[attr-defined]
_CHUNK = CHUNK  # decisions per transaction in record_many (tests make it smaller)
MARK_SLICE = 1000  # consent marks per executemany in mark_consent

RegKey = tuple[str, str, str]  # partner, kind, partner record id


class VendorWrite(NamedTuple):
    """What the vendor ownership write reads of a registration
    (:meth:`Registry.pending_vendor_write_pages`): a plain tuple, about a fifth of an ORM
    row, since a first sync holds one per registration it decided (issue 17)."""

    id: int
    partner: str
    kind: str
    partner_record_id: str
    domain: str
    company_name: str
    status: str
    owned_until: datetime | None
    vendor_company_id: str | None


class AlreadyChanged(Exception):
    """The registration was already extended (or withdrawn) by hand: the change's
    unique key refused a second one (another process may have been first)."""


class WriteBack(NamedTuple):
    """What a partner write-back writes of a registration
    (:meth:`Registry.pending_write_backs_of`), and what its mark compares
    (:meth:`Registry.mark_written_back`): a plain tuple, since a first sync's stream
    holds one per registration it set going until the write's answer is in."""

    id: int
    partner_object: str
    partner_record_id: str
    status: str
    code: str | None
    reason: str | None
    owned_until: datetime | None


_Row = TypeVar("_Row", VendorWrite, WriteBack)  # the plain tuples of registrations


class _Contended(Exception):
    """A claim a batch meant to take over changed under it (another process)."""


def _lost(domain: str, until: str) -> Decision:
    """The rejection an acceptance becomes when another partner holds the domain."""
    return Decision(
        "rejected",
        domain,
        "owned_by_partner",
        REASONS["owned_by_partner"].format(domain=domain, until=until),
    )


def _decided(sub: Submission, decision: Decision, now: datetime) -> dict[str, Any]:
    """The columns a decision sets on its registration (a new one or a re-decided one):
    one list for :meth:`Registry.record` and the batch, so they cannot drift apart."""
    return {
        "domain": decision.domain,
        "company_name": sub.company_name,
        "status": decision.status,
        "code": decision.code,
        "reason": decision.reason,
        "decided_at": now,
        "owned_until": decision.owned_until,
        "fingerprint": sub.fingerprint(),
        "written_back": False,
        "vendor_written": False,
        "review_note": decision.note,
        "reviewed_by": None,
        "reviewed_at": None,
    }


def _update_by_id(s: Session, cols: Iterable[str], rows: list[dict[str, Any]]) -> None:
    """Set ``cols`` on registrations by id, each row its own values (``b_id``,
    ``b_<column>``): one executemany."""
    s.execute(
        update(_REG)
        .where(_REG.c.id == bindparam("b_id", type_=_REG.c.id.type))
        .values({c: bindparam(f"b_{c}", type_=_REG.c[c].type) for c in cols}),
        rows,
    )


class Registry(CommissionLedger, ReviewQueue):
    """Registrations and domain claims (and, mixed in, commissions and the review
    queue) in the state store."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    # ------------------------------------------------------------------ reads

    def find(self, partner: str, kind: str, record_id: str) -> Registration | None:
        with self.session() as s:
            return self._find(s, partner, kind, record_id)

    @staticmethod
    def _find(s: Session, partner: str, kind: str, record_id: str) -> Registration | None:
        return s.exec(
            select(Registration).where(
                Registration.partner == partner,
                Registration.kind == kind,
                Registration.partner_record_id == record_id,
            )
        ).first()

    def find_many(
        self, partner: str, kind: str, record_ids: Iterable[str]
    ) -> dict[str, Registration]:
        """:meth:`find` of many records at once (one query per 500), by record id; a
        record without a registration is absent."""
        ids = sorted(set(record_ids))
        out: dict[str, Registration] = {}
        with self.session() as s:
            for chunk in chunks(ids):
                for reg in s.exec(
                    select(Registration).where(
                        Registration.partner == partner,
                        Registration.kind == kind,
                        col(Registration.partner_record_id).in_(chunk),
                    )
                ).all():
                    out[reg.partner_record_id] = reg
        return out

    def holder(self, domain: str) -> Holder | None:
        with self.session() as s:
            row = s.get(DomainClaim, domain)
            return Holder(row.partner, row.owned_until) if row else None

    def holders(self, domains: Iterable[str]) -> dict[str, Holder]:
        """:meth:`holder` of many domains at once (one query per 500); a domain nobody
        holds is absent."""
        with self.session() as s:
            return self._claims(s, domains)

    @staticmethod
    def _claims(s: Session, domains: Iterable[str]) -> dict[str, Holder]:
        out: dict[str, Holder] = {}
        for chunk in chunks(sorted({d for d in domains if d})):
            rows = s.execute(
                sa_select(_CLAIM.c.domain, _CLAIM.c.partner, _CLAIM.c.owned_until).where(
                    _CLAIM.c.domain.in_(chunk)
                )
            ).all()
            out.update({domain: Holder(partner, until) for domain, partner, until in rows})
        return out

    def active_count(self, partner: str, now: datetime) -> int:
        return self.count(
            DomainClaim, DomainClaim.partner == partner, col(DomainClaim.owned_until) > now
        )

    def registrations(
        self, partner: str | None = None, status: str | None = None, kind: str | None = None
    ) -> list[Registration]:
        q = given(
            select(Registration),
            (Registration.partner, partner),
            (Registration.status, status),
            (Registration.kind, kind),
        )
        return self.rows(q.order_by(col(Registration.id)))

    def contacts(self, registration_id: int) -> list[RegistrationContact]:
        return self.rows(
            select(RegistrationContact).where(
                RegistrationContact.registration_id == registration_id
            )
        )

    def contacts_of(self, registration_ids: Iterable[int]) -> dict[int, list[RegistrationContact]]:
        """:meth:`contacts` of many registrations at once (one query per 500)."""
        ids = sorted(set(registration_ids))
        out: dict[int, list[RegistrationContact]] = {i: [] for i in ids}
        with self.session() as s:
            for chunk in chunks(ids):
                for row in s.exec(
                    select(RegistrationContact)
                    .where(col(RegistrationContact.registration_id).in_(chunk))
                    .order_by(col(RegistrationContact.id))
                ).all():
                    out[row.registration_id].append(row)
        return out

    def contact_emails_of(self, registration_ids: Iterable[int]) -> dict[int, list[str]]:
        """The e-mail addresses of many registrations' contacts (one query per 500), in
        the order :meth:`contacts_of` gives them: plain strings, not rows, for a caller
        that reads nothing else of N registrations' contacts (issue 17)."""
        ids = sorted(set(registration_ids))
        out: dict[int, list[str]] = {i: [] for i in ids}
        with self.session() as s:
            for chunk in chunks(ids):
                rows = s.execute(
                    sa_select(_CONTACT.c.registration_id, _CONTACT.c.email)
                    .where(_CONTACT.c.registration_id.in_(chunk))
                    .order_by(_CONTACT.c.id)
                )
                for rid, email in rows:
                    out[rid].append(email)
        return out

    def consent_due(
        self, partner: str, now: datetime
    ) -> list[tuple[Registration, RegistrationContact]]:
        """The contacts of ``partner``'s accepted registrations whose consent work is
        due at ``now`` (issue 17): never looked at for the registration's current
        decision (a new acceptance, a re-decided one), or due again by now (an EU
        notice's time). One query; the contacts with nothing due are never loaded, so a
        quiet pass does not grow with the number of registrations. By registration,
        then contact, in id order."""
        return [pair for page in self.consent_due_pages(partner, now) for pair in page]

    def consent_due_pages(
        self, partner: str, now: datetime, size: int = 1000
    ) -> Iterator[list[tuple[Registration, RegistrationContact]]]:
        """:meth:`consent_due` ``size`` contacts at a time, in the same order (keyset on
        registration id, then contact id; each page its own query): a first sync that
        accepted N registrations holds one page of rows, not N pairs of ORM rows
        (issue 17)."""
        decided = func.coalesce(Registration.decided_at, Registration.submitted_at)
        due = or_(
            col(RegistrationContact.consent_for).is_(None),
            col(RegistrationContact.consent_for) != decided,
            col(RegistrationContact.consent_next) <= now,
            # decided, but the decision's outbox row is gone (a migration that lets old
            # decisions be made again): decide again
            and_(
                col(RegistrationContact.consent_key).is_not(None),
                ~exists().where(
                    col(OutboxMessage.dedupe_key) == col(RegistrationContact.consent_key)
                ),
            ),
        )
        after: tuple[int, int] | None = None
        while True:
            where: list[Any] = [
                Registration.partner == partner,
                Registration.status == "accepted",
                due,
            ]
            if after is not None:
                where.append(
                    or_(
                        col(Registration.id) > after[0],
                        and_(
                            col(Registration.id) == after[0], col(RegistrationContact.id) > after[1]
                        ),
                    )
                )
            with self.session() as s:
                rows = s.exec(
                    select(Registration, RegistrationContact)
                    .join(
                        RegistrationContact,
                        col(RegistrationContact.registration_id) == col(Registration.id),
                    )
                    .where(*where)
                    .order_by(col(Registration.id), col(RegistrationContact.id))
                    .limit(size)
                ).all()
            if not rows:
                return
            yield [(reg, person) for reg, person in rows]
            last_reg, last_person = rows[-1]
            after = (last_reg.id or 0, last_person.id or 0)
            if len(rows) < size:
                return

    def mark_consent(
        self, items: Iterable[tuple[int, datetime, datetime | None, str | None]]
    ) -> None:
        """Remember that registration contacts were looked at, given as (contact id,
        the registration decision it was for, when to look again or None, the outbox
        key the decision rests on or None): one executemany. What :meth:`consent_due`
        reads."""
        rows = [
            {"b_id": cid, "b_for": for_, "b_next": nxt, "b_key": key}
            for cid, for_, nxt, key in items
        ]
        if not rows:
            return
        statement = (
            update(_CONTACT)
            .where(_CONTACT.c.id == bindparam("b_id", type_=_CONTACT.c.id.type))
            .values(
                consent_for=bindparam("b_for", type_=_CONTACT.c.consent_for.type),
                consent_next=bindparam("b_next", type_=_CONTACT.c.consent_next.type),
                consent_key=bindparam("b_key", type_=_CONTACT.c.consent_key.type),
            )
        )
        with self.session() as s:
            # in slices, one transaction: the driver's parameters for one slice at a
            # time, not for every contact a first sync looked at (issue 17)
            for i in range(0, len(rows), MARK_SLICE):
                s.execute(statement, rows[i : i + MARK_SLICE])
            s.commit()

    def status_counts(self) -> dict[tuple[str, str], int]:
        """Registrations by (partner, status): for ``/metrics``."""
        with self.session() as s:
            rows = s.exec(
                select(Registration.partner, Registration.status, func.count()).group_by(
                    Registration.partner, Registration.status
                )
            ).all()
        return {(partner, status): int(n) for partner, status, n in rows}

    def get(self, registration_id: int) -> Registration | None:
        with self.session() as s:
            return s.get(Registration, registration_id)

    def accepted_for_domain(self, partner: str, domain: str) -> Registration | None:
        with self.session() as s:
            return s.exec(
                select(Registration)
                .where(
                    Registration.partner == partner,
                    Registration.domain == domain,
                    Registration.status == "accepted",
                )
                .order_by(col(Registration.id))
            ).first()

    # ------------------------------------------------------------------ writes

    def record(self, sub: Submission, decision: Decision, *, now: datetime) -> Registration:
        """Make a decision durable. For an acceptance the domain claim is taken in the
        same transaction; if another partner took it first the registration is
        recorded as rejected (``owned_by_partner``) instead."""
        lost_until: str | None = None
        with self.session() as s:
            reg = self._find(s, sub.partner, sub.kind, sub.partner_record_id)
            if reg is None:
                reg = Registration(
                    partner=sub.partner,
                    kind=sub.kind,
                    partner_object=sub.partner_object,
                    partner_record_id=sub.partner_record_id,
                    status="pending",
                    submitted_at=now,
                )
            for column, value in _decided(sub, decision, now).items():
                setattr(reg, column, value)
            s.add(reg)
            s.flush()
            assert reg.id is not None
            if decision.status == "accepted":
                assert decision.owned_until is not None
                claim = s.get(DomainClaim, decision.domain)
                if claim is None:
                    s.add(
                        DomainClaim(
                            domain=decision.domain,
                            partner=sub.partner,
                            registration_id=reg.id,
                            owned_until=decision.owned_until,
                        )
                    )
                elif claim.partner != sub.partner and claim.owned_until > now:
                    lost_until = day_text(claim.owned_until)
                    s.rollback()
                elif claim.partner != sub.partner or claim.owned_until <= now:
                    claim.partner, claim.registration_id = sub.partner, reg.id
                    claim.owned_until = decision.owned_until
                    s.add(claim)
                if lost_until is None:
                    self._insert_contacts(s, {reg.id: decision.contacts})
            elif decision.status == "pending":  # its contacts, for the approval
                self._insert_contacts(s, {reg.id: decision.contacts})
            if lost_until is None:
                try:
                    s.commit()
                except IntegrityError:  # a concurrent process inserted the claim first
                    s.rollback()
                    lost_until = ""
                else:
                    return reg
        # lost the domain to another partner: record the rejection (outside the failed
        # transaction, so nothing of it lingers)
        if not lost_until:
            holder = self.holder(decision.domain)
            lost_until = day_text(holder.owned_until) if holder else "later"
        return self.record(sub, _lost(decision.domain, lost_until), now=now)

    def record_many(
        self, items: Sequence[tuple[Submission, Decision]], *, now: datetime
    ) -> list[str]:
        """:meth:`record` of many decisions, in order, in one transaction per 500; returns
        the status each was recorded with.

        The rules are :meth:`record`'s, applied to the claims as the batch reads them and
        leaves them: an acceptance of a domain another partner holds (before the batch or
        by an earlier decision of it) is recorded as ``owned_by_partner``. The claim row
        stays the arbiter across processes: if a claim insert of the batch loses to
        another process (unique violation), or a claim the batch takes over changed
        under it, the batch is rolled back whole and recorded row by row with
        :meth:`record`, which records the loser."""
        out: list[str] = []
        for chunk in chunks(items, _CHUNK):
            try:
                out += self._record_batch(chunk, now)
            except (IntegrityError, _Contended):
                out += [self.record(sub, decision, now=now).status for sub, decision in chunk]
        return out

    def _record_batch(
        self, items: Sequence[tuple[Submission, Decision]], now: datetime
    ) -> list[str]:
        with self.session() as s:
            ids = self._reg_ids(s, [(x.partner, x.kind, x.partner_record_id) for x, _ in items])
            in_db = set(ids)
            # the claims of the domains accepted here, as the batch leaves them
            claims = self._claims(s, (d.domain for _, d in items if d.status == "accepted"))
            claimed_before = set(claims)
            # domain → (registration, partner, until): claims to insert or take over
            taking: dict[str, tuple[RegKey, str, datetime]] = {}
            people: dict[RegKey, list[Person]] = {}
            values: dict[RegKey, dict[str, Any]] = {}
            new: dict[RegKey, dict[str, Any]] = {}
            statuses: list[str] = []
            for sub, decision in items:
                key: RegKey = (sub.partner, sub.kind, sub.partner_record_id)
                if decision.status == "accepted":
                    until = decision.owned_until
                    assert until is not None
                    domain = decision.domain
                    held = claims.get(domain)
                    if held is not None and held.partner != sub.partner and held.owned_until > now:
                        decision = _lost(domain, day_text(held.owned_until))
                    else:
                        if held is None or held.partner != sub.partner or held.owned_until <= now:
                            taking[domain] = (key, sub.partner, until)
                            claims[domain] = Holder(sub.partner, until)
                        people.setdefault(key, []).extend(decision.contacts)
                elif decision.status == "pending":  # its contacts, for the approval
                    people.setdefault(key, []).extend(decision.contacts)
                values[key] = _decided(sub, decision, now)
                if key not in in_db and key not in new:
                    new[key] = {
                        "partner": sub.partner,
                        "kind": sub.kind,
                        "partner_object": sub.partner_object,
                        "partner_record_id": sub.partner_record_id,
                        "submitted_at": now,
                        "ended_at": None,
                        "vendor_company_id": None,
                    }
                statuses.append(decision.status)
            if new:
                s.execute(insert(_REG), [{**row, **values[key]} for key, row in new.items()])
                ids.update(self._reg_ids(s, list(new)))
            changed = [key for key in values if key in in_db]
            if changed:
                cols = list(values[changed[0]])
                _update_by_id(
                    s,
                    cols,
                    [
                        {"b_id": ids[key], **{f"b_{c}": values[key][c] for c in cols}}
                        for key in changed
                    ],
                )
            inserts = [
                {
                    "domain": domain,
                    "partner": partner,
                    "registration_id": ids[key],
                    "owned_until": owned_until,
                }
                for domain, (key, partner, owned_until) in taking.items()
                if domain not in claimed_before
            ]
            if inserts:  # a unique violation here: another process claimed first
                s.execute(insert(_CLAIM), inserts)
            for domain, (key, partner, owned_until) in taking.items():
                if domain in claimed_before:
                    res = s.execute(
                        update(_CLAIM)
                        .where(_CLAIM.c.domain == domain)
                        .values(partner=partner, registration_id=ids[key], owned_until=owned_until)
                    )
                    if res.rowcount != 1:  # type: ignore[attr-defined]
                        raise _Contended(domain)
            self._insert_contacts(s, {ids[key]: found for key, found in people.items()})
            s.commit()
        return statuses

    @staticmethod
    def _reg_ids(s: Session, keys: Sequence[RegKey]) -> dict[RegKey, int]:
        """Ids of the registrations of these (partner, kind, record id) keys that exist."""
        groups: dict[tuple[str, str], list[str]] = {}
        for partner, kind, record_id in keys:
            groups.setdefault((partner, kind), []).append(record_id)
        out: dict[RegKey, int] = {}
        for (partner, kind), record_ids in groups.items():
            for chunk in chunks(sorted(set(record_ids))):
                rows = s.execute(
                    sa_select(_REG.c.id, _REG.c.partner_record_id).where(
                        _REG.c.partner == partner,
                        _REG.c.kind == kind,
                        _REG.c.partner_record_id.in_(chunk),
                    )
                ).all()
                out.update({(partner, kind, record_id): rid for rid, record_id in rows})
        return out

    @staticmethod
    def _insert_contacts(s: Session, people: Mapping[int, Sequence[Person]]) -> None:
        """Add the people a registration does not list yet (by lower-case e-mail), for
        many registrations in one executemany."""
        wanted = [rid for rid, found in people.items() if found]
        have: set[tuple[int, str]] = set()
        for chunk in chunks(sorted(wanted)):
            rows = s.execute(
                sa_select(_CONTACT.c.registration_id, _CONTACT.c.email).where(
                    _CONTACT.c.registration_id.in_(chunk)
                )
            ).all()
            have.update((rid, email) for rid, email in rows)
        rows_out: list[dict[str, Any]] = []
        for rid in wanted:
            for person in people[rid]:
                email = person.email.lower()
                if (rid, email) in have:
                    continue
                have.add((rid, email))
                rows_out.append(
                    {
                        "registration_id": rid,
                        "email": email,
                        "first_name": person.first_name,
                        "last_name": person.last_name,
                        "country": person.country,
                        "language": person.language,
                        "vendor_contact_id": None,
                    }
                )
        if rows_out:
            s.execute(insert(_CONTACT), rows_out)

    def end(
        self, reg_ids: Sequence[int], status: Literal["expired", "withdrawn"], now: datetime
    ) -> None:
        """End registrations and free their domains."""
        with self.session() as s:
            # load the rows and their claims up front (one query per 500 each): the
            # loop's ``get`` then finds them in the session instead of querying per row
            domains: set[str] = set()
            for chunk in chunks(sorted(set(reg_ids))):
                regs = s.exec(select(Registration).where(col(Registration.id).in_(chunk))).all()
                domains.update(r.domain for r in regs)
            for names in chunks(sorted(domains)):
                s.exec(select(DomainClaim).where(col(DomainClaim.domain).in_(names))).all()
            for rid in reg_ids:
                reg = s.get(Registration, rid)
                if reg is None or reg.status not in ("accepted", "pending"):
                    continue  # a pending one (waiting for review) may be withdrawn too
                reg.status = status
                reg.ended_at = now
                until = day_text(reg.owned_until) if reg.owned_until else ""
                reg.reason = (EXPIRED if status == "expired" else WITHDRAWN).format(
                    domain=reg.domain, until=until
                )
                reg.code = None
                reg.written_back = False
                reg.vendor_written = False
                s.add(reg)
                claim = s.get(DomainClaim, reg.domain)
                if claim is not None and claim.registration_id == rid:
                    s.delete(claim)
            s.commit()

    def due_to_expire(self, partner: str, now: datetime) -> list[Registration]:
        return self._of(
            partner, Registration.status == "accepted", col(Registration.owned_until) <= now
        )

    def pending_write_back(self, partner: str) -> list[Registration]:
        return self._of(partner, col(Registration.written_back).is_(False))

    def pending_write_back_pages(
        self, partner: str, size: int = 1000
    ) -> Iterator[list[Registration]]:
        """:meth:`pending_write_back` a page of ``size`` at a time: each partner object's
        registrations in id order, every page of one object, so a pass over N
        registrations holds one page of rows, not N (issue 17). Each page is read in a
        transaction of its own (after the rows before it may have been marked)."""
        where = (Registration.partner == partner, col(Registration.written_back).is_(False))
        with self.session() as s:
            objects = sorted(
                s.exec(select(Registration.partner_object).where(*where).distinct()).all()
            )
        for obj in objects:

            def page(after: int, obj: str = obj) -> list[Registration]:
                return self.rows(
                    select(Registration)
                    .where(*where, Registration.partner_object == obj, col(Registration.id) > after)
                    .order_by(col(Registration.id))
                    .limit(size)
                )

            yield from _keyset_pages(page, size)

    def pending_vendor_write_pages(
        self, partner: str, size: int = 5000
    ) -> Iterator[list[VendorWrite]]:
        """The registrations whose vendor ownership is to be written (or cleared), as
        plain tuples of what the ownership write reads, a page of ``size`` at a time, in
        id order, each page read in a transaction of its own (:func:`_keyset_pages`)."""
        columns = [_REG.c[name] for name in VendorWrite._fields]

        def page(after: int) -> list[VendorWrite]:
            with self.session() as s:
                rows = s.execute(
                    sa_select(*columns)
                    .where(_REG.c.partner == partner, _REG.c.id > after, *_VENDOR_WRITE_PENDING)
                    .order_by(_REG.c.id)
                    .limit(size)
                )
                return [VendorWrite(*row) for row in rows]

        return _keyset_pages(page, size)

    def pending_vendor_writes_of(
        self, partner: str, kind: str, record_ids: Iterable[str]
    ) -> list[VendorWrite]:
        """:meth:`pending_vendor_write_pages` of these partner records (of one kind) only:
        the ownership a chunk's company creates carry is looked up for that chunk's
        deals, not for every registration of the partner once per chunk (at 50,000
        deals that was 50 loads of 50,000 rows, and the pass's peak of memory: issue
        17)."""
        return self._tuples_of(VendorWrite, partner, kind, record_ids, *_VENDOR_WRITE_PENDING)

    def pending_vendor_write(self, partner: str) -> list[Registration]:
        return self._of(partner, *_VENDOR_WRITE_PENDING)

    def _of(self, partner: str, *where: Any) -> list[Registration]:
        """A partner's registrations that match ``where``."""
        return self.rows(select(Registration).where(Registration.partner == partner, *where))

    def mark(self, reg_ids: Sequence[int], **values: object) -> None:
        """Set the same values on these registrations (one transaction)."""
        if not reg_ids:
            return
        with self.session() as s:
            for chunk in chunks(sorted(set(reg_ids))):
                s.execute(
                    update(Registration).where(col(Registration.id).in_(chunk)).values(**values)
                )
            s.commit()

    def pending_write_backs_of(
        self, partner: str, kind: str, record_ids: Iterable[str]
    ) -> list[WriteBack]:
        """The registrations of these partner records (of one kind) not yet written
        back."""
        return self._tuples_of(WriteBack, partner, kind, record_ids, _REG.c.written_back.is_(False))

    def _tuples_of(
        self, shape: type[_Row], partner: str, kind: str, record_ids: Iterable[str], *where: Any
    ) -> list[_Row]:
        """The registrations of these partner records (of one kind) that match
        ``where``, as plain tuples of ``shape``'s columns, in id order: one query per
        500 records."""
        columns = [_REG.c[name] for name in shape._fields]
        # one object per distinct value of the columns rows share (status, reason,
        # object, end date): a first sync's stream holds a row per registration it set
        # going, and N copies of "accepted" and of one end date cost more than the rows
        shared: dict[Any, Any] = {}
        keep = [name not in ("id", "partner_record_id") for name in shape._fields]
        out: list[_Row] = []
        with self.session() as s:
            for chunk in chunks(sorted(set(record_ids))):
                rows = s.execute(
                    sa_select(*columns).where(
                        _REG.c.partner == partner,
                        _REG.c.kind == kind,
                        _REG.c.partner_record_id.in_(chunk),
                        *where,
                    )
                )
                out += [
                    shape(
                        *(
                            shared.setdefault(v, v) if k else v
                            for v, k in zip(row, keep, strict=True)
                        )
                    )
                    for row in rows
                ]
        return sorted(out, key=lambda r: r.id)

    def mark_written_back(self, written: Sequence[Registration | WriteBack]) -> None:
        """Mark registrations written back to their partner records, each only while it
        still holds what was written (status, code, reason, end): one that changed
        since it was read — withdrawn by a later chunk of the pass while its write was
        under way, re-decided, reviewed meanwhile — stays pending and is written again.
        One transaction, one executemany."""
        rows = [
            {
                "b_id": r.id,
                "b_status": r.status,
                "b_code": r.code,
                "b_reason": r.reason,
                "b_owned_until": r.owned_until,
            }
            for r in written
            if r.id is not None
        ]
        if not rows:
            return
        c = _REG.c
        same = [
            c[name].is_not_distinct_from(bindparam(f"b_{name}", type_=c[name].type))
            for name in ("code", "reason", "owned_until")
        ]
        with self.session() as s:
            s.execute(
                update(_REG)
                .where(
                    c.id == bindparam("b_id", type_=c.id.type),
                    c.status == bindparam("b_status", type_=c.status.type),
                    *same,
                )
                .values(written_back=True),
                rows,
            )
            s.commit()

    def mark_each(self, values: Mapping[int, Mapping[str, object]]) -> None:
        """Set values of its own on each registration (id → column → value): one
        transaction, one executemany per set of columns."""
        groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for rid, vals in values.items():
            row = {"b_id": rid, **{f"b_{c}": v for c, v in vals.items()}}
            groups.setdefault(tuple(sorted(vals)), []).append(row)
        groups.pop((), None)
        if not groups:
            return
        with self.session() as s:
            for cols, rows in groups.items():
                _update_by_id(s, cols, rows)
            s.commit()

    def set_contact_vendor_id(self, registration_id: int, email: str, vendor_id: str) -> None:
        self.set_contact_vendor_ids([(registration_id, email, vendor_id)])

    def set_contact_vendor_ids(self, items: Iterable[tuple[int, str, str]]) -> None:
        """Remember the vendor contact of registration contacts, given as
        (registration id, e-mail, vendor contact id): one transaction, one executemany
        per 1,000 (a first sync's N contacts are not N parameter sets at once: issue
        17, the pass's memory)."""
        statement = (
            update(_CONTACT)
            .where(
                _CONTACT.c.registration_id
                == bindparam("b_reg", type_=_CONTACT.c.registration_id.type),
                _CONTACT.c.email == bindparam("b_email", type_=_CONTACT.c.email.type),
            )
            .values(
                vendor_contact_id=bindparam("b_vendor", type_=_CONTACT.c.vendor_contact_id.type)
            )
        )
        todo = iter(items)
        with self.session() as s:
            while rows := [
                {"b_reg": rid, "b_email": email.lower(), "b_vendor": vendor_id}
                for rid, email, vendor_id in itertools.islice(todo, 1000)
            ]:
                s.execute(statement, rows)
            s.commit()

    # ------------------------------------------------------------------ lifecycle

    def expiring(self, partner: str, now: datetime, until: datetime) -> list[Registration]:
        """A partner's active registrations whose ownership ends after ``now`` and by
        ``until`` (the expiry reminders' candidates)."""
        return self._of(
            partner,
            Registration.status == "accepted",
            col(Registration.owned_until) > now,
            col(Registration.owned_until) <= until,
        )

    def changes(self, registration_id: int) -> list[RegistrationChange]:
        """The hand-made changes of a registration (extensions, withdrawal), oldest first."""
        return self.rows(
            select(RegistrationChange)
            .where(RegistrationChange.registration_id == registration_id)
            .order_by(col(RegistrationChange.id))
        )

    def extended_ids(self, registration_ids: Iterable[int]) -> set[int]:
        """Which of these registrations were extended already since their current
        decision (one query per 500)."""
        out: set[int] = set()
        with self.session() as s:
            for chunk in chunks(sorted(set(registration_ids))):
                out.update(
                    s.exec(
                        select(RegistrationChange.registration_id)
                        .join(
                            Registration,
                            col(Registration.id) == col(RegistrationChange.registration_id),
                        )
                        .where(
                            col(RegistrationChange.registration_id).in_(chunk),
                            RegistrationChange.action == "extended",
                            col(RegistrationChange.decided_at) == col(Registration.decided_at),
                        )
                    ).all()
                )
        return out

    def latest_activity(
        self, reg: Registration, now: datetime, deal_object: str | None = None
    ) -> Activity | None:
        """The latest activity dealsync knows of at a registration's domain, up to
        ``now``: a high-value web action recorded at the domain for its partner (lead
        notifications), a commission the partner earned on the domain, or — for a deal
        registration — a change of the registered deal synced (its link in the
        ``deal_object`` mapping was last written). None when there is none."""
        found: list[Activity] = []
        with self.session() as s:
            web = s.exec(
                select(func.max(LeadActivity.occurred_at)).where(
                    LeadActivity.partner == reg.partner,
                    LeadActivity.domain == reg.domain,
                    col(LeadActivity.occurred_at) <= now,
                )
            ).first()
            earned = s.exec(
                select(func.max(Commission.earned_at)).where(
                    Commission.partner == reg.partner,
                    Commission.domain == reg.domain,
                    col(Commission.earned_at) <= now,
                )
            ).first()
            synced = None
            if reg.kind == "deal" and deal_object is not None:
                synced = s.exec(
                    select(func.max(Link.updated_at)).where(
                        Link.connection == reg.partner,
                        Link.object == deal_object,
                        Link.partner_id == reg.partner_record_id,
                        col(Link.updated_at) <= now,
                    )
                ).first()
        for what, at in (("web activity", web), ("a commission", earned), ("a deal sync", synced)):
            if at is not None:
                found.append(Activity(what, _aware(at)))
        return max(found, key=lambda a: a.at) if found else None

    def extend(
        self, registration_id: int, ext: Extension, *, by: str, reason: str, now: datetime
    ) -> Registration:
        """Record an extension: the change row (its unique key makes it once, even
        racing: :class:`AlreadyChanged`), the registration's new end and reason, and its
        domain claim's new end, in one transaction; both CRMs are written again."""
        with self.session() as s:
            reg = s.get(Registration, registration_id)
            assert reg is not None
            s.add(
                RegistrationChange(
                    registration_id=registration_id,
                    decided_at=reg.decided_at,
                    action="extended",
                    at=now,
                    by=by,
                    reason=reason,
                    previous_until=ext.previous_until,
                    new_until=ext.new_until,
                )
            )
            reg.owned_until = ext.new_until
            reg.reason = EXTENDED.format(by=by, until=day_text(ext.new_until), reason=reason)
            reg.written_back = False
            reg.vendor_written = False
            s.add(reg)
            claim = s.get(DomainClaim, reg.domain)
            if claim is not None and claim.registration_id == registration_id:
                claim.owned_until = ext.new_until
                s.add(claim)
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                raise AlreadyChanged(registration_id) from None
            s.refresh(reg)
            return reg

    def withdraw(
        self, registration_id: int, *, by: str, reason: str, now: datetime
    ) -> Registration:
        """End a registration by hand (:meth:`end` with ``withdrawn``: its domain is
        free, its capacity released) and record who withdrew it and why."""
        self.end([registration_id], "withdrawn", now)
        with self.session() as s:
            reg = s.get(Registration, registration_id)
            assert reg is not None
            reg.reason = WITHDRAWN_BY.format(by=by, reason=reason, domain=reg.domain)
            s.add(reg)
            s.add(
                RegistrationChange(
                    registration_id=registration_id,
                    decided_at=reg.decided_at,
                    action="withdrawn",
                    at=now,
                    by=by,
                    reason=reason,
                    previous_until=reg.owned_until,
                )
            )
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                raise AlreadyChanged(registration_id) from None
            s.refresh(reg)
            return reg


def _aware(moment: datetime) -> datetime:
    """A MAX() over a UTC column comes back without the column's type on some
    dialects: naive means UTC."""
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _HasId(Protocol):
    @property
    def id(self) -> int | None: ...


_P = TypeVar("_P", bound=_HasId)


def _keyset_pages(read: Callable[[int], list[_P]], size: int) -> Iterator[list[_P]]:
    """Pages of ``size`` rows, ``read(after)`` each (the rows with ids after ``after``, in
    id order): a page starts after the last id of the one before, not at an offset, so
    rows the caller marked meanwhile (leaving the query) shift nothing."""
    after = 0
    while True:
        page = read(after)
        if not page:
            return
        yield page
        after = page[-1].id or after
        if len(page) < size:
            return
