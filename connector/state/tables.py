"""Tables of the state store.

One concept per table. The base snapshot lives on the link row as JSON (field key →
[partner value, vendor value]): it is always read and written with its link, and one
row per linked record keeps a 100,000-deal state small and fast to load.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, func, select
from sqlmodel.sql.expression import SelectOfScalar

from connector.records import utcnow

T = TypeVar("T")

MAX_ID = 2**63 - 1
"""The largest row id the databases store; a larger number cannot name a row (and
SQLite refuses to even compare with it)."""


def valid_id(value: int) -> bool:
    """Whether ``value`` can be a row id: a lookup by any other number answers "none"."""
    return 0 < value <= MAX_ID


class Database(Protocol):
    """What the per-concept queries need of the store: its engine (so that they need not
    import :class:`~connector.state.store.StateStore`, which composes them)."""

    @property
    def engine(self) -> Engine: ...


CHUNK = 500
"""Ids per ``IN (…)`` of the bulk queries (and decisions per transaction of a batch)."""


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``: every bulk query sends at most that many ids at
    once, so a 100,000-record pass never builds a statement the databases refuse."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def given(query: SelectOfScalar[T], *filters: tuple[Any, object]) -> SelectOfScalar[T]:
    """``query`` narrowed by each (column, value) whose value is given: the optional
    ``--partner``/``--status``/``--kind`` filters of the listing commands."""
    for column, value in filters:
        if value:
            query = query.where(column == value)
    return query


class Transactions:
    """The store's short transactions, for the classes that hold its per-concept queries
    and are mixed into :class:`~connector.state.store.StateStore` (which sets ``engine``)."""

    engine: Engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def rows(self, query: SelectOfScalar[T]) -> list[T]:
        """Every row ``query`` selects, read in a transaction of its own (the many
        "list what matches" queries)."""
        with self.session() as s:
            return list(s.exec(query).all())

    def count(self, model: type[SQLModel], *where: Any) -> int:
        """How many rows of ``model`` match ``where`` (the status counters)."""
        with self.session() as s:
            return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


def insert_once(s: Session, row: SQLModel) -> bool:
    """Insert ``row`` and commit, unless a unique key says it is there already (then
    roll back): the dedupe of outbox messages and lead activity. True when inserted."""
    s.add(row)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        return False
    return True


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite and PostgreSQL alike
    (SQLite keeps no offset, so a naive value read back is UTC by construction)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use UTC-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Link(SQLModel, table=True):
    """A partner record and its vendor counterpart.

    ``status``: ``pending`` — the create intent is recorded but the counterpart's id is
    not known yet (a crash here is adopted on rerun, never repeated); ``active``;
    ``flagged`` — one side was deleted and the policy is ``flag``; ``unlinked`` — kept
    for history only; ``relinked`` — one of its records moved to a newer link (a
    deleted record re-created with the same identity); that side's id is cleared and
    kept in ``base["@relinked"]``.
    """

    __tablename__ = "link"
    __table_args__ = (
        UniqueConstraint("connection", "object", "partner_id", name="uq_link_partner"),
        UniqueConstraint("connection", "object", "vendor_id", name="uq_link_vendor"),
        Index("ix_link_conn_obj_status", "connection", "object", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(max_length=64)
    object: str = Field(max_length=64)
    partner_id: str | None = Field(default=None, max_length=64)
    vendor_id: str | None = Field(default=None, max_length=64)
    origin: str = Field(default="partner", max_length=8)
    status: str = Field(default="active", max_length=16)
    base: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # each side's own modification time (its CRM's ``updatedAt``) of the version the
    # base was taken from: the write's answer, or the record as read. A search hit
    # newer than it cannot be a stale copy of what the base holds, so it is not read
    # again by id (gather.fresh_linked); ``None`` (unknown) means it is.
    base_partner_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    base_vendor_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Cursor(SQLModel, table=True):
    """High-water mark of change detection, per connection, side and object."""

    __tablename__ = "cursor"
    connection: str = Field(primary_key=True, max_length=64)
    side: str = Field(primary_key=True, max_length=8)
    object: str = Field(primary_key=True, max_length=64)
    value: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RetryItem(SQLModel, table=True):
    """A record whose last attempt failed: re-read by id on the next pass, so a cursor
    may move past it without losing it."""

    __tablename__ = "retry_item"
    connection: str = Field(primary_key=True, max_length=64)
    object: str = Field(primary_key=True, max_length=64)
    side: str = Field(primary_key=True, max_length=8)
    record_id: str = Field(primary_key=True, max_length=64)
    attempts: int = 1
    last_error: str = ""
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ConflictRow(SQLModel, table=True):
    __tablename__ = "conflict"
    __table_args__ = (Index("ix_conflict_open", "connection", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(max_length=64)
    object: str = Field(max_length=64)
    link_id: int = Field(index=True)
    partner_id: str = Field(max_length=64)
    vendor_id: str = Field(max_length=64)
    field: str = Field(max_length=256)
    partner_value: str | None = None
    vendor_value: str | None = None
    base_partner: str | None = None
    base_vendor: str | None = None
    status: str = Field(default="open", max_length=16)
    resolution: str | None = None
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Run(SQLModel, table=True):
    """One pass of one connection. ``status``: running, ok, conflicts, failed, fatal,
    or ``interrupted`` — its process died or lost the pass lock before it finished
    (``error`` says which, and when it was found). ``owner`` names the process that
    runs it: the pass lock's owner (``host:pid:lease``), or ``host:pid`` for a pass
    that takes no lock (a dry run)."""

    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(max_length=64, index=True)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(default="running", max_length=16)
    dry_run: bool = False
    trigger: str = Field(default="cli", max_length=32)
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    api_calls: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    owner: str | None = Field(default=None, max_length=128)


class RunRecord(SQLModel, table=True):
    """One record's outcome in one run: what was done, and the error if it failed."""

    __tablename__ = "run_record"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    object: str = Field(max_length=64)
    side: str = Field(max_length=8)
    record_id: str = Field(max_length=64)
    action: str = Field(max_length=32)
    outcome: str = Field(max_length=16)  # ok | failed | conflict
    field: str | None = None
    detail: str | None = None


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    version: int = Field(primary_key=True)
    applied_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    description: str = ""


class SyncLock(SQLModel, table=True):
    """Who is running a pass of a connection. Held in the database so it holds across
    processes and hosts sharing one state store; the holder renews ``expires_at`` while
    its pass runs, so it expires only when the holder stopped (a crash on another
    host) and a crashed holder does not block forever."""

    __tablename__ = "sync_lock"
    connection: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=128)
    acquired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class Registration(SQLModel, table=True):
    """A lead or deal registration and its decision.

    ``status``: ``accepted`` (owns ``domain`` until ``owned_until``), ``rejected`` (with
    ``code`` and ``reason``), ``pending`` (waiting for review: reserves ``domain``,
    owns nothing; ``code`` says why it waits), ``expired``, ``withdrawn``. ``written_back`` says whether
    the partner's record shows the latest status yet (retried until it does).
    """

    __tablename__ = "registration"
    __table_args__ = (
        UniqueConstraint("partner", "kind", "partner_record_id", name="uq_registration_record"),
        Index("ix_registration_status", "partner", "status"),
        Index("ix_registration_domain", "domain"),
        # a partner object's registrations in id order: the write-back's pages (issue 17)
        # each read one page of it, not all of the partner's registrations, sorted
        Index("ix_registration_object", "partner", "partner_object", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner: str = Field(max_length=64)
    kind: str = Field(max_length=8)  # lead | deal
    partner_object: str = Field(max_length=64)
    partner_record_id: str = Field(max_length=128)
    domain: str = Field(default="", max_length=255)
    company_name: str = Field(default="", max_length=512)
    status: str = Field(max_length=16)
    code: str | None = Field(default=None, max_length=32)
    reason: str | None = None
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    owned_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    vendor_company_id: str | None = Field(default=None, max_length=64)
    fingerprint: str = Field(default="", max_length=64)
    written_back: bool = False
    vendor_written: bool = False
    # review (issue 16 item 5): why a registration waits, for the program's admins
    # (ids, companies, domains), and who approved or rejected it, when
    review_note: str | None = None
    reviewed_by: str | None = Field(default=None, max_length=128)
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # where the registration's company is (the vendor company's ``country``, "" when it
    # has none), read once for contacts without a country of their own (issue 16 item
    # 4's fallback) and kept, so later passes do not read it again (issue 17)
    company_country: str | None = Field(default=None, max_length=64)


class RegistrationContact(SQLModel, table=True):
    """A person whose data the vendor received through a registration (for consent)."""

    __tablename__ = "registration_contact"
    __table_args__ = (
        UniqueConstraint("registration_id", "email", name="uq_regcontact"),
        Index("ix_regcontact_consent_next", "consent_next"),
    )

    id: int | None = Field(default=None, primary_key=True)
    registration_id: int = Field(index=True)
    email: str = Field(max_length=320)
    first_name: str = Field(default="", max_length=256)
    last_name: str = Field(default="", max_length=256)
    country: str | None = Field(default=None, max_length=128)
    language: str | None = Field(default=None, max_length=16)
    vendor_contact_id: str | None = Field(default=None, max_length=64)
    # the consent hook's bookkeeping (issue 17), so a pass reads only the contacts with
    # consent work due: which decision of the registration (its ``decided_at``, else
    # ``submitted_at``) the contact was looked at for (None: never), and when to look
    # again (None: nothing left for that decision — decided, or outside the EU), and the
    # outbox row the decision rests on (a row that disappears makes the contact due again)
    consent_for: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_next: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_key: str | None = Field(default=None, max_length=400)


class DomainClaim(SQLModel, table=True):
    """Who owns a domain now: one row per owned domain, so two partners (or two
    processes) racing for a domain cannot both win — the insert is the arbiter."""

    __tablename__ = "domain_claim"
    domain: str = Field(primary_key=True, max_length=255)
    partner: str = Field(max_length=64)
    registration_id: int
    owned_until: datetime = Field(sa_type=UTCDateTime)


class Commission(SQLModel, table=True):
    """A commission and MRR credit earned by a partner; one per vendor deal, ever."""

    __tablename__ = "commission"
    __table_args__ = (UniqueConstraint("vendor_deal_id", name="uq_commission_deal"),)

    id: int | None = Field(default=None, primary_key=True)
    partner: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # shared | vendor_led | self_serve
    vendor_deal_id: str = Field(max_length=64)
    partner_deal_id: str | None = Field(default=None, max_length=64)
    domain: str = Field(default="", max_length=255)
    registration_id: int | None = None
    amount: str = Field(max_length=64)
    currency: str | None = Field(default=None, max_length=8)
    rate: str = Field(max_length=16)
    commission: str = Field(max_length=64)
    mrr: str = Field(max_length=64)
    earned_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    written_back: bool = False


class UncreditedWin(SQLModel, table=True):
    """A won vendor deal that credits no one, and why (won after the domain's ownership
    ended, before its registration, on a domain nobody registered…): the decision
    ``dealsync commissions`` shows. One row per vendor deal; removed if the deal is
    credited later (its close date corrected into an ownership window)."""

    __tablename__ = "uncredited_win"
    vendor_deal_id: str = Field(primary_key=True, max_length=64)
    partner: str | None = Field(default=None, max_length=64, index=True)  # whose window it missed
    kind: str = Field(max_length=16)  # the kind of sale it would have been credited as
    domain: str = Field(default="", max_length=255)
    code: str = Field(max_length=32)
    reason: str = ""
    amount: str = Field(default="", max_length=64)
    currency: str | None = Field(default=None, max_length=8)
    closed_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OutboxMessage(SQLModel, table=True):
    """An e-mail decided and rendered, waiting to be (or already) delivered.

    ``dedupe_key`` makes each e-mail exist at most once (per contact and kind, or per
    partner, company, day and action); the row is written in the same transaction as
    the decision. ``status``: queued, sent, failed (gave up; ``dealsync outbox retry``),
    held (a privacy check objected: text kept, an admin releases or cancels it),
    suppressed (decided not to send, with the reason), cancelled (its registration
    ended before delivery, or an admin cancelled it).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=512)
    kind: str = Field(max_length=32)
    partner: str | None = Field(default=None, max_length=64)
    registration_id: int | None = None
    recipient: str = Field(default="", max_length=320)
    subject: str = ""
    body: str = ""
    language: str = Field(default="en", max_length=8)
    message_id: str = Field(default="", max_length=255)
    status: str = Field(default="queued", max_length=16)
    detail: str | None = None
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    server_response: str | None = None


class PartnerSubscription(SQLModel, table=True):
    """A partner's lead-notification subscription (overrides ``notify_email``)."""

    __tablename__ = "partner_subscription"
    partner: str = Field(primary_key=True, max_length=64)
    email: str = Field(max_length=320)
    enabled: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LeadActivity(SQLModel, table=True):
    """A high-value action at an owned domain, once per partner, company, day and
    action: the dedupe that keeps a partner from being flooded."""

    __tablename__ = "lead_activity"
    __table_args__ = (
        UniqueConstraint("partner", "domain", "day", "action", name="uq_lead_activity"),
    )

    id: int | None = Field(default=None, primary_key=True)
    partner: str = Field(max_length=64)
    domain: str = Field(max_length=255)
    company: str = Field(default="", max_length=512)
    day: str = Field(max_length=10)
    action: str = Field(max_length=128)
    label: str = Field(default="", max_length=256)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    outbox_id: int | None = None


class PartnerToken(SQLModel, table=True):
    """A partner's API token for ``dealsync serve``. Only a salted SHA-256 of the
    secret is kept; ``prefix`` (the token's public id) finds the row and shows in lists."""

    __tablename__ = "partner_token"

    id: int | None = Field(default=None, primary_key=True)
    partner: str = Field(max_length=64, index=True)
    prefix: str = Field(max_length=32, unique=True)
    salt: str = Field(max_length=64)
    digest: str = Field(max_length=128)
    label: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: never


class WebhookSeen(SQLModel, table=True):
    """A webhook event id (``event:<portal>:<id>``) or request signature
    (``signature:<sha256>``) already handled: events are processed once and a captured
    request cannot be replayed."""

    __tablename__ = "webhook_seen"

    key: str = Field(primary_key=True, max_length=128)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class MappingVersion(SQLModel, table=True):
    """A mapping a connection synced with: its fingerprint (object → share condition's
    hash and field key → the field's hash) and what changed from the version before.
    The newest row is what the next pass compares its mapping with; a row is written
    only after the migration it asked for committed (issue 15, mapping migrations)."""

    __tablename__ = "mapping_version"
    __table_args__ = (Index("ix_mapping_version_conn", "connection", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(max_length=64)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    fingerprint: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    changes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    run_id: int | None = None


class PrivacyAudit(SQLModel, table=True):
    """One data-subject request (issue 16, the lead's rights): a lead asking which
    partner gave the vendor its data (``source``), or to be erased (``erase``). Who
    asked the admin to run it, when, and what was answered — never the lead's e-mail in
    clear: ``subject`` is a keyed hash of it (:class:`PrivacyKey`), so requests about
    one person can be found again by hashing the address they give."""

    __tablename__ = "privacy_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    action: str = Field(max_length=16)  # source | erase
    requested_by: str = Field(max_length=128)
    subject: str = Field(max_length=64, index=True)
    outcome: str = Field(max_length=32)  # answered | no_record | erased
    answer: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class PrivacyKey(SQLModel, table=True):
    """The random key of the keyed hash that stands for an e-mail address in the
    privacy audit (one row, made on first use): an address can be checked against the
    audit by whoever holds the state, but not read off it or looked up in a table of
    precomputed hashes."""

    __tablename__ = "privacy_key"

    id: int = Field(default=1, primary_key=True)
    key: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RegistrationChange(SQLModel, table=True):
    """Who changed a registration by hand, when and why: an extension (with the old and
    new end of ownership) or a withdrawal. One per registration, decision and action
    (``decided_at`` is the decision it changed: a registration decided again later, a
    lead registered anew after its withdrawal, starts afresh): a second extension of
    the same decision is refused by this key, even racing."""

    __tablename__ = "registration_change"
    __table_args__ = (
        UniqueConstraint("registration_id", "decided_at", "action", name="uq_registration_change"),
    )

    id: int | None = Field(default=None, primary_key=True)
    registration_id: int = Field(index=True)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    action: str = Field(max_length=16)  # extended | withdrawn
    at: datetime = Field(sa_type=UTCDateTime)
    by: str = Field(default="", max_length=128)
    reason: str = ""
    previous_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    new_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class JobRequest(SQLModel, table=True):
    """A job the scale-out queue must be asked for (issue 18's outbox pattern): written
    in the same transaction as the state change that needs it (a webhook delivery's
    events), then relayed to the queue; ``enqueued_at`` stays empty until the queue
    took it (or joined it to a waiting job: ``job_id`` empty), so a request whose
    enqueue failed is relayed later, never lost."""

    __tablename__ = "job_request"
    __table_args__ = (Index("ix_job_request_pending", "enqueued_at"),)

    id: int | None = Field(default=None, primary_key=True)
    connection: str = Field(max_length=64)
    trigger: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    enqueued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    job_id: int | None = None


class RoundWindow(SQLModel, table=True):
    """A program-wide vendor read shared by the pass jobs of one enqueued round (issue
    18: ``enqueue sync --all`` / a scheduler tick through worker processes): the first
    job of the round that needs the window of ``key`` reads it and keeps it here
    (serialized with its ``since``/``until``), the round's later jobs take from it as
    :class:`~connector.engine.cycle.ProgramCycle` does in one process."""

    __tablename__ = "round_window"
    __table_args__ = (Index("ix_round_window_created", "created_at"),)

    round_id: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    until: datetime = Field(sa_type=UTCDateTime)
    data: bytes
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
