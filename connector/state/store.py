"""The state store's Python API.

Everything the engine remembers between passes goes through here, in short
transactions, so a crash at any point leaves a state a rerun can continue from.
SQLite by default; any SQLAlchemy URL (PostgreSQL) works the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    insert,
    or_,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select

from connector.records import Side, utcnow
from connector.state import migrations
from connector.state.conflicts import ConflictLedger
from connector.state.cursors import WEBHOOK_PREFIX as WEBHOOK_PREFIX  # re-exported
from connector.state.cursors import ReadPositions
from connector.state.mappings import MappingVersions
from connector.state.outbox import OutboxRows
from connector.state.registry import Registry
from connector.state.runs import LOCK_TTL, RunLedger
from connector.state.runs import LockHeld as LockHeld  # re-exported: callers import them here
from connector.state.runs import LockLease as LockLease
from connector.state.runs import LockLost as LockLost
from connector.state.runs import RecordOutcome as RecordOutcome
from connector.state.tables import (
    Link,
    chunks,
    valid_id,
)
from connector.state.tokens import PartnerTokens
from connector.state.webhooks import WebhookLedger

log = logging.getLogger("dealsync.state")

# The bulk write paths below use Core statements on the tables themselves, executed
# with a list of parameter sets (one executemany): the ORM's per-row unit of work was
# most of a large pass's CPU. Core applies no pydantic ``default_factory``, so every
# column the models would have defaulted is given explicitly.
_LINK: Table = Link.__table__  # type: ignore[attr-defined]


def _id_column(side: Side) -> str:
    return "partner_id" if side == "partner" else "vendor_id"


def _of_records(
    connection: str, obj: str, side: Side, ids: Iterable[str]
) -> Iterator[list[ColumnElement[bool]]]:
    """The conditions that pick the links of ``connection``/``obj`` holding these records
    on ``side``, one list per 500 ids: every "links of these records" query starts here.

    Which statuses are wanted is checked on the rows read, not in the query: given a
    status condition too, SQLite looks the rows up by the (connection, object, status)
    index and so reads every link of the object once per 500 ids (10,000 links: 20
    times over, issue 17), where the side's unique index finds each record's one row.
    The unique key also means a record has at most that one row, so filtering
    afterwards picks exactly the rows the condition would."""
    column = _LINK.c.partner_id if side == "partner" else _LINK.c.vendor_id
    for chunk in chunks(sorted(set(ids))):
        yield [_LINK.c.connection == connection, _LINK.c.object == obj, column.in_(chunk)]


class LinkRef(NamedTuple):
    """A link row as a plain tuple: what the sync engine reads for thousands of links
    per pass. Loading ORM objects costs several times more per row and buys nothing
    there, since the engine writes links back with bulk statements by id."""

    id: int
    connection: str
    object: str
    partner_id: str | None
    vendor_id: str | None
    origin: str
    status: str
    base: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    base_partner_at: datetime | None = None
    base_vendor_at: datetime | None = None

    def base_at(self, side: Side) -> datetime | None:
        """That side's modification time of the version the base was taken from
        (``None``: unknown)."""
        return self.base_partner_at if side == "partner" else self.base_vendor_at


BaseTimes = tuple[datetime | None, datetime | None]
"""(partner, vendor) modification times of the versions a link's base was taken from."""


_REF_COLUMNS = [_LINK.c[name] for name in LinkRef._fields]
_LIVE = frozenset(("pending", "active", "flagged"))
_ENDED = frozenset(("unlinked", "deleted", "relinked"))


_TIME_VALUES = {
    "base_partner_at": bindparam("b_partner_at", type_=_LINK.c.base_partner_at.type),
    "base_vendor_at": bindparam("b_vendor_at", type_=_LINK.c.base_vendor_at.type),
}


def _time_params(times: BaseTimes | None) -> dict[str, datetime | None]:
    partner_at, vendor_at = times or (None, None)
    return {"b_partner_at": partner_at, "b_vendor_at": vendor_at}


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created, WAL and a busy
    timeout so a second process waits instead of failing; a server's connections are
    checked when taken from the pool (``pool_pre_ping``)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        # a pooled connection the server ended (PostgreSQL restarted, a network cut) is
        # replaced when taken, not handed to a query that then fails: `serve`'s first
        # /metrics after an outage, a worker's next pass (one round trip per checkout)
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # transactions are begun by us (below), not by the driver
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if db and db != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Take the write lock up front: a transaction that reads and then writes
            # would otherwise fail at once ("database is locked") when another process
            # wrote in between, instead of waiting its turn within the busy timeout.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class StateStore(ReadPositions, WebhookLedger, ConflictLedger, RunLedger, MappingVersions):
    """Links and their base snapshots (here); cursors and retries
    (:mod:`~connector.state.cursors`), webhook dedupe (:mod:`~connector.state.webhooks`),
    conflicts (:mod:`~connector.state.conflicts`), runs and the pass lock
    (:mod:`~connector.state.runs`), mapping versions (:mod:`~connector.state.mappings`),
    mixed in so callers call them on the store; and, by
    concept, the partner program's rows (:attr:`registry`), the e-mail outbox's
    (:attr:`outbox`) and partner tokens (:attr:`tokens`). Every query of the connector
    goes through one of these.

    ``lock_ttl`` is how long a pass lock lasts unrenewed (tests shorten it); ``clock``
    is the time locks and interrupted runs are judged by (tests stop it)."""

    def __init__(self, url: str, *, lock_ttl: timedelta | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.lock_ttl = lock_ttl or LOCK_TTL
        self.clock: Callable[[], datetime] = utcnow
        migrations.migrate(self.engine)
        self.registry = Registry(self)
        self.outbox = OutboxRows(self)
        self.tokens = PartnerTokens(self)
        # called with a new run's id as soon as it is committed: the service tells the
        # request waiting for a pass its run id before detection starts
        self.on_run_started: Callable[[int], None] | None = None

    def close(self) -> None:
        self.engine.dispose()

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return max(migrations.applied_versions(conn), default=0)

    # ------------------------------------------------------------------ links

    def links_by_ids(
        self, connection: str, obj: str, side: Side, ids: Iterable[str]
    ) -> dict[str, Link]:
        """Live links (pending, active, flagged) keyed by the given side's record id."""
        with self.session() as s:
            return self._links_by_ids(s, connection, obj, side, ids)

    @staticmethod
    def _links_by_ids(
        s: Session, connection: str, obj: str, side: Side, ids: Iterable[str]
    ) -> dict[str, Link]:
        out: dict[str, Link] = {}
        for where in _of_records(connection, obj, side, ids):
            for row in s.exec(select(Link).where(*where)).all():
                if row.status not in _LIVE:
                    continue
                key = row.partner_id if side == "partner" else row.vendor_id
                assert key is not None
                out[key] = row
        return out

    def link_refs(
        self, connection: str, obj: str, side: Side, ids: Iterable[str], *, base: bool = True
    ) -> dict[str, LinkRef]:
        """:meth:`links_by_ids` as plain tuples (the engine's hot path). ``base=False``
        skips loading (and decoding) the bases: the refs then carry ``{}``."""
        with self.session() as s:
            return self._link_refs(s, connection, obj, side, ids, base=base)

    @staticmethod
    def _link_refs(
        s: Session,
        connection: str,
        obj: str,
        side: Side,
        ids: Iterable[str],
        *,
        base: bool = True,
    ) -> dict[str, LinkRef]:
        key_at = LinkRef._fields.index(_id_column(side))
        columns = _REF_COLUMNS if base else [c for c in _REF_COLUMNS if c.name != "base"]
        base_at = LinkRef._fields.index("base")
        status_at = LinkRef._fields.index("status")
        out: dict[str, LinkRef] = {}
        for where in _of_records(connection, obj, side, ids):
            for row in s.connection().execute(sa_select(*columns).where(*where)):
                if row[status_at] not in _LIVE:
                    continue
                values = tuple(row) if base else (*row[:base_at], {}, *row[base_at:])
                out[row[key_at]] = LinkRef(*values)
        return out

    @staticmethod
    def _link_ids(
        s: Session, connection: str, obj: str, side: Side, ids: Iterable[str]
    ) -> dict[str, int]:
        """The ids of the links (any status) that hold these records on ``side``, keyed
        by the record's id: only the two columns, for a caller that knows the rest."""
        column = _LINK.c.partner_id if side == "partner" else _LINK.c.vendor_id
        out: dict[str, int] = {}
        for where in _of_records(connection, obj, side, ids):
            rows = s.connection().execute(sa_select(column, _LINK.c.id).where(*where))
            out.update((rid, int(link_id)) for rid, link_id in rows if rid is not None)
        return out

    def ended_ids(self, connection: str, obj: str, side: Side, ids: Iterable[str]) -> set[str]:
        """The given side's record ids whose link has ended (``unlinked``/``deleted``/
        ``relinked``): such a record stopped being shared and is never shared again
        automatically."""
        column = _LINK.c.partner_id if side == "partner" else _LINK.c.vendor_id
        out: set[str] = set()
        with self.session() as s:
            for where in _of_records(connection, obj, side, ids):
                rows = s.connection().execute(sa_select(column, _LINK.c.status).where(*where))
                out.update(r for r, status in rows if r is not None and status in _ENDED)
        return out

    def holders(
        self, connection: str, obj: str, side: Side, ids: Iterable[str]
    ) -> dict[str, LinkRef]:
        """The link row of any status that holds each of these records (at most one per
        record and side: the table's unique constraints), keyed by the record's id.
        Re-linking a record first has to free it from its old, ended row."""
        key_at = LinkRef._fields.index(_id_column(side))
        out: dict[str, LinkRef] = {}
        with self.session() as s:
            for where in _of_records(connection, obj, side, ids):
                for row in s.connection().execute(sa_select(*_REF_COLUMNS).where(*where)):
                    out[row[key_at]] = LinkRef(*row)
        return out

    def links_mirroring(
        self, connection: str, obj: str, key: str, partner_ids: Iterable[str]
    ) -> dict[str, list[LinkRef]]:
        """Active links of ``obj`` whose base lists one of these partner record ids
        under ``key`` (``@assoc:<mapping>``: the associations the pass mirrored), keyed
        by the listed id. Which shared deals a deleted company was on, after the
        company is gone from both CRMs: the bases keep what was mirrored (add-only).
        Rare (a deleted shared record), so the bases are matched as text first and
        checked exactly here, rather than kept in an index table of their own."""
        wanted = sorted(set(partner_ids))
        out: dict[str, list[LinkRef]] = {}
        if not wanted:
            return out
        text = cast(_LINK.c.base, Text)
        with self.session() as s:
            for chunk in chunks(wanted, 50):
                rows = s.connection().execute(
                    sa_select(*_REF_COLUMNS).where(
                        _LINK.c.connection == connection,
                        _LINK.c.object == obj,
                        _LINK.c.status == "active",
                        or_(*(text.contains(f'"{pid}"', autoescape=True) for pid in chunk)),
                    )
                )
                for row in rows:
                    ref = LinkRef(*row)
                    listed = ref.base.get(key) or []
                    for pid in chunk:
                        if pid in listed:
                            out.setdefault(pid, []).append(ref)
        return out

    def relink(
        self,
        released: Sequence[tuple[int, Side, str, int]],
        *,
        completed: Sequence[tuple[int, str, dict[str, Any]]] = (),
        origin: Side = "partner",
        moved: Sequence[tuple[int, Side, str, dict[str, Any]]] = (),
        unlinked: Sequence[int] = (),
    ) -> None:
        """Move records to new links in one transaction, so a crash leaves either the
        old links or the new ones, never a record held by none or two.

        ``released``: (old link, side, record id, new link) — the old link gives the
        record up: status ``relinked``, that side's id cleared (the table allows one
        row per record) and kept, with the new link's id, in the row's base under
        ``@relinked`` for history. ``completed``: pending links to finish as
        :meth:`complete_links` does. ``moved``: (link, side, new record id, base) —
        a live link whose record on ``side`` was replaced by another record.
        ``unlinked``: moved links that end at once (the record on the other side is
        gone too): status ``unlinked``, still holding the new record."""
        now = utcnow()
        counterpart = "vendor_id" if origin == "partner" else "partner_id"
        # (link, new status, id column, its new value, new base), in this order
        changes: list[tuple[int, str, str, str | None, dict[str, Any]]] = [
            (
                old_id,
                "relinked",
                _id_column(side),
                None,
                {"@relinked": {"side": side, "id": rid, "to": new_id}},
            )
            for old_id, side, rid, new_id in released
        ]
        changes += [
            (link_id, "unlinked" if link_id in unlinked else "active", _id_column(side), rid, base)
            for link_id, side, rid, base in moved
        ]
        changes += [(link_id, "active", counterpart, cid, base) for link_id, cid, base in completed]
        with self.session() as s:
            for link_id, status, column, value, base in changes:
                s.execute(
                    update(_LINK)
                    .where(_LINK.c.id == link_id)
                    .values(
                        {
                            "status": status,
                            column: value,
                            "base": base,
                            "updated_at": now,
                            # a record moved in: the versions the base came from are
                            # not known, so its search hits are read again by id
                            "base_partner_at": None,
                            "base_vendor_at": None,
                        }
                    )
                )
            s.commit()

    def links(self, connection: str, obj: str, statuses: Sequence[str] = ("active",)) -> list[Link]:
        return self.rows(
            select(Link).where(
                Link.connection == connection, Link.object == obj, col(Link.status).in_(statuses)
            )
        )

    def linked_pairs(
        self, connection: str, obj: str, *, after: int = 0, limit: int = 1000
    ) -> list[tuple[int, str, str]]:
        """``(link id, partner id, vendor id)`` of active links with an id above
        ``after``, in id order, ``limit`` at a time: ``sync --full`` walks every linked
        pair with it page by page (keyset paging, so memory stays bounded and a link
        written meanwhile neither shifts nor repeats a page)."""
        with self.session() as s:
            rows = s.connection().execute(
                sa_select(_LINK.c.id, _LINK.c.partner_id, _LINK.c.vendor_id)
                .where(
                    _LINK.c.connection == connection,
                    _LINK.c.object == obj,
                    _LINK.c.status == "active",
                    _LINK.c.id > after,
                    _LINK.c.partner_id.is_not(None),
                    _LINK.c.vendor_id.is_not(None),
                )
                .order_by(_LINK.c.id)
                .limit(limit)
            )
            return [(int(i), str(p), str(v)) for i, p, v in rows]

    def link(self, link_id: int) -> Link | None:
        if not valid_id(link_id):
            return None
        with self.session() as s:
            return s.get(Link, link_id)

    def record_intents(
        self, connection: str, obj: str, origin: Side, source_ids: Sequence[str]
    ) -> dict[str, LinkRef]:
        """Record, before any write, that counterparts of these records are being
        created (status ``pending``); existing intents are returned as they are."""
        now = utcnow()
        with self.session() as s:
            existing = self._link_refs(s, connection, obj, origin, source_ids)
            new_ids = list(dict.fromkeys(sid for sid in source_ids if sid not in existing))
            if new_ids:
                s.execute(
                    insert(_LINK),
                    [
                        {
                            "connection": connection,
                            "object": obj,
                            "origin": origin,
                            "status": "pending",
                            "partner_id": sid if origin == "partner" else None,
                            "vendor_id": sid if origin == "vendor" else None,
                            "base": {},
                            "created_at": now,
                            "updated_at": now,
                        }
                        for sid in new_ids
                    ],
                )
                # read the new rows' ids back in the same transaction; the rest of each
                # row is what was just inserted (reading it all back, bases decoded and
                # times parsed, cost more than the insert: issue 17)
                created = self._link_ids(s, connection, obj, origin, new_ids)
                for sid in new_ids:
                    existing[sid] = LinkRef(
                        id=created[sid],
                        connection=connection,
                        object=obj,
                        partner_id=sid if origin == "partner" else None,
                        vendor_id=sid if origin == "vendor" else None,
                        origin=origin,
                        status="pending",
                        base={},
                        created_at=now,
                        updated_at=now,
                    )
            s.commit()
        return existing

    def complete_links(
        self,
        items: Sequence[tuple[int, str, dict[str, Any]]],
        *,
        origin: Side,
        times: Mapping[int, BaseTimes] | None = None,
    ) -> None:
        """Fill in counterpart ids and bases of pending links; they become active.
        ``times``: per link, the versions the base was taken from (unknown if not
        given: a search hit of such a link is read again by id)."""
        if not items:
            return
        counterpart = "vendor_id" if origin == "partner" else "partner_id"
        stmt = (
            update(_LINK)
            .where(_LINK.c.id == bindparam("b_id", type_=_LINK.c.id.type))
            .values(
                {
                    "status": "active",
                    counterpart: bindparam("b_counterpart", type_=_LINK.c[counterpart].type),
                    "base": bindparam("b_base", type_=_LINK.c.base.type),
                    "updated_at": utcnow(),
                    **_TIME_VALUES,
                }
            )
        )
        times = times or {}
        with self.session() as s:
            s.execute(
                stmt,
                [
                    {
                        "b_id": link_id,
                        "b_counterpart": counterpart_id,
                        "b_base": base,
                        **_time_params(times.get(link_id)),
                    }
                    for link_id, counterpart_id, base in items
                ],
            )
            s.commit()

    def save_bases(
        self,
        items: Sequence[tuple[int, dict[str, Any]]],
        *,
        times: Mapping[int, BaseTimes] | None = None,
        keep_times: bool = False,
    ) -> None:
        """Store links' new bases. Their base times are set from ``times`` (unknown
        for a link not in it), unless ``keep_times``: a base change that leaves the
        synced values as they were (the associations it mirrored)."""
        if not items:
            return
        values: dict[str, Any] = {
            "base": bindparam("b_base", type_=_LINK.c.base.type),
            "updated_at": utcnow(),
        }
        if not keep_times:
            values.update(_TIME_VALUES)
        stmt = (
            update(_LINK)
            .where(_LINK.c.id == bindparam("b_id", type_=_LINK.c.id.type))
            .values(values)
        )
        times = times or {}
        with self.session() as s:
            s.execute(
                stmt,
                [
                    {
                        "b_id": link_id,
                        "b_base": base,
                        **({} if keep_times else _time_params(times.get(link_id))),
                    }
                    for link_id, base in items
                ],
            )
            s.commit()

    def set_link_status(self, link_ids: Sequence[int], status: str) -> None:
        now = utcnow()
        with self.session() as s:
            for chunk in chunks(list(link_ids)):
                s.execute(
                    update(Link)
                    .where(col(Link.id).in_(chunk))
                    .values(status=status, updated_at=now)
                )
            s.commit()

    def link_counts(self, connection: str) -> dict[str, dict[str, int]]:
        """``{object: {status: n}}`` for status displays."""
        with self.session() as s:
            rows = s.exec(
                select(Link.object, Link.status, func.count())
                .where(Link.connection == connection)
                .group_by(Link.object, Link.status)
            ).all()
        out: dict[str, dict[str, int]] = {}
        for obj, status, n in rows:
            out.setdefault(obj, {})[status] = n
        return out
