"""The embedded local CRM: a small SQLite-backed CRM for the demo and the tests.

It behaves like a CRM where the engine can tell: ids assigned on create, a
modification time moved by every write that changes something (and not by
archiving, as HubSpot), archive as a soft delete, unique-value properties usable for
idempotent upserts, and associations. ``fail`` lets tests make chosen writes fail.

Unique values are enforced on the adapter's writes (upsert, update) as HubSpot and
its sandbox enforce them: a contact's ``email`` (case-insensitively) and every
property installed as unique. A write that would give a second live record such a
value is refused with HubSpot's message (``... already exists. Existing ID: N``) and
``WriteResult.existing_id``; archiving frees the value. Companies' domains and deals'
names are not unique, as at HubSpot. The direct-use methods (``create``, ``edit``)
stay unchecked so tests can seed whatever they need.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Unpack

from connector.adapters.base import (
    EPOCH,
    Chunked,
    EventQuery,
    Fields,
    Ids,
    ObjectSchema,
    ObjectTypes,
    Scope,
    SupportsEngagement,
)
from connector.adapters.naming import HUBSPOT_NAMING, Naming
from connector.records import Event, PropertySpec, Record, WriteResult, utcnow

# (operation, object type, record id or unique key) → error message, or None to succeed
FailureRule = Callable[[str, str, str], str | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    object_type TEXT NOT NULL,
    id INTEGER NOT NULL,
    properties TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    archived_at TEXT,
    PRIMARY KEY (object_type, id)
);
CREATE INDEX IF NOT EXISTS ix_record_updated ON record (object_type, updated_at);
CREATE TABLE IF NOT EXISTS association (
    from_type TEXT NOT NULL, from_id TEXT NOT NULL,
    to_type TEXT NOT NULL, to_id TEXT NOT NULL,
    PRIMARY KEY (from_type, from_id, to_type, to_id)
);
CREATE TABLE IF NOT EXISTS property (
    object_type TEXT NOT NULL, name TEXT NOT NULL, label TEXT NOT NULL,
    type TEXT NOT NULL, is_unique INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (object_type, name)
);
CREATE TABLE IF NOT EXISTS counter (object_type TEXT PRIMARY KEY, next_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT NOT NULL, object_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL, properties TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS subscription (email TEXT PRIMARY KEY, subscribed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subscription_change (email TEXT PRIMARY KEY, changed_at TEXT NOT NULL);
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LocalCRM(SupportsEngagement):
    """A CRM portal in one SQLite file (or in memory)."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        name: str = "local",
        *,
        clock: Callable[[], datetime] = utcnow,
        search_lag: timedelta = timedelta(0),
        naming: Naming = HUBSPOT_NAMING,
    ) -> None:
        """``search_lag``: a write shows in :meth:`changed_since` only that long after
        it (HubSpot's search is eventually consistent); reads by id are immediate.
        ``naming``: HubSpot's names by default; tests give other names to stand in for
        a CRM that spells the markers otherwise (``dealsync_source_id__c``)."""
        self.name = name
        self.naming = naming
        self.search_lag = search_lag
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30
        )
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self.clock = clock
        self._last_stamp: datetime | None = None
        self.fail: FailureRule | None = None
        self.calls: Counter[str] = Counter()

    # ------------------------------------------------------------------ helpers

    def _stamp(self) -> datetime:
        """Current time, strictly after the previous stamp (millisecond grain), so the
        order of writes is the order of modification times."""
        now = self.clock().astimezone(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = now
        return now

    def _row_to_record(
        self, row: tuple, properties: Sequence[str] | None, associations: Sequence[str] = ()
    ) -> Record:
        object_type, rid, props_json, updated_at, archived = row[:5]
        props: dict[str, str | None] = json.loads(props_json)
        if properties is not None:
            props = {p: props.get(p) for p in properties}
        assoc: dict[str, tuple[str, ...]] = {}
        for to_type in associations:
            assoc[to_type] = tuple(
                r[0]
                for r in self._db.execute(
                    "SELECT to_id FROM association WHERE from_type=? AND from_id=? AND to_type=?"
                    " ORDER BY CAST(to_id AS INTEGER)",
                    (object_type, str(rid), to_type),
                )
            )
        return Record(object_type, str(rid), props, _parse(updated_at), bool(archived), assoc)

    def _injected(self, op: str, object_type: str, key: str) -> WriteResult | None:
        """The failure a test asked for (``fail``) as a retriable result, if any."""
        error = self.fail(op, object_type, key) if self.fail else None
        return WriteResult(key, error=error, retriable=True) if error else None

    def _unique_props(self, object_type: str) -> set[str]:
        return {
            r[0]
            for r in self._db.execute(
                "SELECT name FROM property WHERE object_type=? AND is_unique=1", (object_type,)
            )
        }

    def _next_id(self, object_type: str) -> int:
        row = self._db.execute(
            "SELECT next_id FROM counter WHERE object_type=?", (object_type,)
        ).fetchone()
        nid = row[0] if row else 1001
        self._db.execute(
            "INSERT INTO counter(object_type, next_id) VALUES(?, ?) "
            "ON CONFLICT(object_type) DO UPDATE SET next_id=excluded.next_id",
            (object_type, nid + 1),
        )
        return nid

    def _find_live(self, object_type: str, name: str, value: str) -> tuple | None:
        # e-mail addresses are compared case-insensitively, as HubSpot does
        column = "json_extract(properties, '$.' || ?)"
        if name == "email":
            column, value = f"lower({column})", value.lower()
        return self._db.execute(
            "SELECT object_type, id, properties, updated_at, archived FROM record "
            f"WHERE object_type=? AND archived=0 AND {column}=?",
            (object_type, json.dumps(name)[1:-1], value),
        ).fetchone()

    def _clash(
        self, object_type: str, props: Mapping[str, str | None], rid: int | None
    ) -> WriteResult | None:
        """A refusal when ``props`` would give a second live record a unique value."""
        names = self._unique_props(object_type)
        if object_type == self.naming.contacts:
            names.add("email")
        for name in sorted(names):
            value = props.get(name)
            if value in (None, ""):
                continue
            row = self._find_live(object_type, name, str(value))
            if row is not None and row[1] != rid:
                singular = object_type[:-1] if object_type.endswith("s") else object_type
                return WriteResult(
                    "",
                    error=f'A {singular} with {name} "{value}" already exists. '
                    f"Existing ID: {row[1]}",
                    existing_id=str(row[1]),
                )
        return None

    # ------------------------------------------------------------------ direct use

    def create(self, object_type: str, properties: Mapping[str, str]) -> Record:
        """Create a record directly (seeding, tests, the demo's "user edits")."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            rid = self._next_id(object_type)
            stamp = self._stamp()
            props = {k: v for k, v in properties.items() if v not in (None, "")}
            self._db.execute(
                "INSERT INTO record(object_type, id, properties, updated_at) VALUES(?,?,?,?)",
                (object_type, rid, json.dumps(props), _iso(stamp)),
            )
            self._db.execute("COMMIT")
        return self.get(object_type, str(rid))

    def edit(self, object_type: str, rid: str, properties: Mapping[str, str]) -> Record:
        """Change a record as a user would (raises if it does not exist)."""
        results = self._write_updates(object_type, [(rid, properties)], count=False)
        if results[0].error:
            raise KeyError(results[0].error)
        return self.get(object_type, rid)

    def get(self, object_type: str, rid: str, *, include_archived: bool = True) -> Record:
        row = self._db.execute(
            "SELECT object_type, id, properties, updated_at, archived FROM record "
            "WHERE object_type=? AND id=?",
            (object_type, int(rid)),
        ).fetchone()
        if row is None or (row[4] and not include_archived):
            raise KeyError(f"{object_type} {rid} not found")
        return self._row_to_record(row, None, sorted(self.naming.objects))

    def all(self, object_type: str, *, archived: bool = False) -> list[Record]:
        rows = self._db.execute(
            "SELECT object_type, id, properties, updated_at, archived FROM record "
            "WHERE object_type=? AND archived=? ORDER BY id",
            (object_type, int(archived)),
        ).fetchall()
        return [self._row_to_record(r, None, sorted(self.naming.objects)) for r in rows]

    def remove(self, object_type: str, rid: str) -> None:
        """Archive a record as a user would."""
        self._archive_one(object_type, rid)

    def recreate(
        self,
        object_type: str,
        rid: str,
        changes: Mapping[str, str] | None = None,
        *,
        keep_connector_properties: bool = False,
    ) -> Record:
        """Delete a record and enter it again, as a user cleaning up would: ``rid`` is
        archived and a new record is created with its properties (and ``changes``)
        and its associations. The connector's own properties (``dealsync_source_id``,
        ``dealsync_partner_id``) are not typed in again unless
        ``keep_connector_properties``. Tests and
        ``scripts/chaos.py`` use it to inject delete-and-re-create; the new record
        keeps the identity (e-mail, domain, deal name) unless ``changes`` alter it.
        Associating does not move the other record's modification time: edit the
        deal too if the pass should look at it."""
        old = self.get(object_type, rid, include_archived=False)
        props = {
            k: v
            for k, v in old.properties.items()
            if v and (keep_connector_properties or k not in self.naming.markers)
        }
        self.remove(object_type, rid)
        new = self.create(object_type, {**props, **(changes or {})})
        for to_type, ids in old.associations.items():
            if ids:
                self.associate(object_type, to_type, [(new.id, i) for i in ids])
        return self.get(object_type, new.id)

    # ------------------------------------------------------------------ adapter API

    def now(self) -> datetime:
        return self.clock()

    def changed_since(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Scope]
    ) -> Iterator[Record]:
        self.calls["search"] += 1
        yield from self._window(object_type, since, properties, scope, searched=True)

    def listed_chunks(
        self, object_type: str, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """What :meth:`changed_since` with no cursor returns, as a listing: not subject
        to ``search_lag`` (a listing shows what was just written, as HubSpot's does),
        counted as one ``list`` call per 100 records (a page), at least one."""
        chunk_size = scope.get("chunk_size", 1000)
        chunk: list[Record] = []
        n = 0
        for record in self._window(object_type, None, properties, scope, searched=False):
            if n % 100 == 0:
                self.calls["list"] += 1  # a page starts
            n += 1
            chunk.append(record)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if n == 0:
            self.calls["list"] += 1  # one empty page
        if chunk:
            yield chunk

    def _window(
        self,
        object_type: str,
        since: datetime | None,
        properties: Fields,
        scope: Scope,
        *,
        searched: bool,
    ) -> Iterator[Record]:
        """The records of a change window (live ones and those archived in it);
        ``searched``: read as a search, which leaves out what ``search_lag`` hides."""
        where, until = scope.get("where"), scope.get("until")
        associations = scope.get("associations", ())
        lo = _iso(since) if since else None
        hi = _iso(until) if until else None
        sql = (
            "SELECT object_type, id, properties, updated_at, archived, archived_at FROM record "
            "WHERE object_type=?"
        )
        args: list[object] = [object_type]
        if lo is not None:
            sql += " AND ((archived=0 AND updated_at>=?) OR (archived=1 AND archived_at>=?))"
            args += [lo, lo]
        rows = self._db.execute(sql + " ORDER BY updated_at, id", args).fetchall()
        wanted = list(properties) + list((where or {}).keys())
        lagged = searched and self.search_lag
        unsearchable = _iso(self.clock() - self.search_lag) if lagged else None
        for row in rows:
            if unsearchable is not None and not row[4] and row[3] > unsearchable:
                continue  # written too recently to be searchable
            moment = row[5] if row[4] else row[3]
            if lo is not None and moment < lo:
                continue
            if hi is not None and moment > hi:
                continue
            record = self._row_to_record(row, wanted, associations)
            if where and any(record.properties.get(k) != v for k, v in where.items()):
                continue
            yield record

    def pending_search(self) -> bool:
        """Whether some live record was written too recently to be searchable."""
        if not self.search_lag:
            return False
        cutoff = _iso(self.clock() - self.search_lag)
        row = self._db.execute(
            "SELECT 1 FROM record WHERE archived=0 AND updated_at>? LIMIT 1", (cutoff,)
        ).fetchone()
        return row is not None

    def changed_since_chunks(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """:meth:`changed_since` in lists of ``chunk_size`` (the engine streams them)."""
        chunk_size = scope.get("chunk_size", 1000)
        window = Scope(where=scope.get("where"), until=scope.get("until"))
        window["associations"] = scope.get("associations", ())  # absent means ()
        chunk: list[Record] = []
        for record in self.changed_since(object_type, since, properties, **window):
            chunk.append(record)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def read(
        self, object_type: str, ids: Ids, properties: Fields, *, associations: ObjectTypes = ()
    ) -> dict[str, Record]:
        return self._read_live(object_type, list(ids), properties, associations, 100, "batch_read")

    def read_searched(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        """:meth:`read` counted as HubSpot's search by id: a search per 200 ids."""
        return self._read_live(object_type, list(dict.fromkeys(ids)), properties, (), 200, "search")

    def _read_live(
        self,
        object_type: str,
        ids: list[str],
        properties: Fields,
        associations: ObjectTypes,
        per_call: int,
        kind: str,
    ) -> dict[str, Record]:
        """The live records of ``ids``, each ``per_call`` of them counted as one call of
        ``kind`` (what the CRM this stands in for would send)."""
        out: dict[str, Record] = {}
        for i in range(0, len(ids), per_call):
            self.calls[kind] += 1
            for rid in ids[i : i + per_call]:
                row = self._db.execute(
                    "SELECT object_type, id, properties, updated_at, archived FROM record "
                    "WHERE object_type=? AND id=? AND archived=0",
                    (object_type, int(rid)),
                ).fetchone()
                if row is not None:
                    out[rid] = self._row_to_record(row, properties, associations)
        return out

    def find_by_property(
        self, object_type: str, name: str, values: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        self.calls["search"] += 1
        out: dict[str, Record] = {}
        for value in values:
            row = self._find_live(object_type, name, value)
            if row is not None:
                out[value] = self._row_to_record(row, [*properties, name])
        return out

    def upsert(
        self, object_type: str, id_property: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        results: list[WriteResult] = []
        for i in range(0, len(items), 100):
            self.calls["batch_upsert"] += 1
            for key, props in items[i : i + 100]:
                results.append(self._upsert_one(object_type, id_property, key, props))
        return results

    def _upsert_one(
        self, object_type: str, id_property: str, key: str, props: Mapping[str, str]
    ) -> WriteResult:
        if id_property not in self._unique_props(object_type):
            return WriteResult(
                key, error=f"{id_property} is not a unique-value property of {object_type}"
            )
        injected = self._injected("upsert", object_type, key)
        if injected is not None:
            return injected
        with self._lock:
            row = self._find_live(object_type, id_property, key)
            if row is None:
                clash = self._clash(object_type, {**props, id_property: key}, None)
                if clash is not None:
                    return WriteResult(key, error=clash.error, existing_id=clash.existing_id)
                record = self.create(object_type, {**props, id_property: key})
                return WriteResult(key, record=record, created=True)
        res = self._write_updates(object_type, [(str(row[1]), props)], count=False, check=True)[0]
        return WriteResult(
            key, record=res.record, error=res.error, created=False, existing_id=res.existing_id
        )

    def update(
        self, object_type: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        for _ in range(0, len(items), 100):
            self.calls["batch_update"] += 1
        return self._write_updates(object_type, items, count=False, check=True)

    def _write_updates(
        self,
        object_type: str,
        items: Sequence[tuple[str, Mapping[str, str]]],
        *,
        count: bool,
        check: bool = False,
    ) -> list[WriteResult]:
        """``check``: refuse a unique value another live record has (adapter writes)."""
        results: list[WriteResult] = []
        with self._lock:
            for rid, props in items:
                if (injected := self._injected("update", object_type, rid)) is not None:
                    results.append(injected)
                    continue
                row = self._db.execute(
                    "SELECT properties FROM record WHERE object_type=? AND id=? AND archived=0",
                    (object_type, int(rid)),
                ).fetchone()
                if row is None:
                    results.append(WriteResult(rid, error=f"{object_type} {rid} not found"))
                    continue
                current = json.loads(row[0])
                merged = dict(current)
                for k, v in props.items():
                    if v in (None, ""):
                        merged.pop(k, None)
                    else:
                        merged[k] = v
                if check:
                    changed = {k: v for k, v in merged.items() if current.get(k) != v}
                    clash = self._clash(object_type, changed, int(rid))
                    if clash is not None:
                        results.append(
                            WriteResult(rid, error=clash.error, existing_id=clash.existing_id)
                        )
                        continue
                if merged != current:
                    self._db.execute(
                        "UPDATE record SET properties=?, updated_at=? WHERE object_type=? AND id=?",
                        (json.dumps(merged), _iso(self._stamp()), object_type, int(rid)),
                    )
                results.append(WriteResult(rid, record=self.get(object_type, rid)))
        return results

    def archive(self, object_type: str, ids: Sequence[str]) -> list[WriteResult]:
        for _ in range(0, len(ids), 100):
            self.calls["batch_archive"] += 1
        results = []
        for rid in ids:
            if (injected := self._injected("archive", object_type, rid)) is not None:
                results.append(injected)
                continue
            self._archive_one(object_type, rid)
            results.append(WriteResult(rid))
        return results

    def _archive_one(self, object_type: str, rid: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE record SET archived=1, archived_at=? WHERE object_type=? AND id=? AND archived=0",
                (_iso(self._stamp()), object_type, int(rid)),
            )

    def associate(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, str]]
    ) -> list[WriteResult]:
        pair_list = list(pairs)
        for _ in range(0, len(pair_list), 100):
            self.calls["batch_associate"] += 1
        results = []
        with self._lock:
            for a, b in pair_list:
                if (injected := self._injected("associate", from_type, a)) is not None:
                    results.append(injected)
                    continue
                unknown = self._unknown(from_type, a) or self._unknown(to_type, b)
                if unknown:
                    results.append(WriteResult(a, error=unknown))
                    continue
                for row in ((from_type, a, to_type, b), (to_type, b, from_type, a)):
                    self._db.execute("INSERT OR IGNORE INTO association VALUES(?,?,?,?)", row)
                results.append(WriteResult(a))
        return results

    def _unknown(self, object_type: str, rid: str) -> str | None:
        """Why an association end is refused (it was never created), as HubSpot
        refuses one; None when it exists."""
        row = self._db.execute(
            "SELECT 1 FROM record WHERE object_type=? AND id=?",
            (object_type, int(rid) if str(rid).isdigit() else -1),
        ).fetchone()
        return None if row else f"{object_type} {rid} not found"

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> list[str]:
        created = []
        with self._lock:
            for spec in specs:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO property VALUES(?,?,?,?,?)",
                    (spec.object_type, spec.name, spec.label, spec.type, int(spec.unique)),
                )
                if cur.rowcount:
                    created.append(f"{spec.object_type}.{spec.name}")
        return created

    def api_calls(self) -> dict[str, int]:
        return dict(self.calls)

    def object_schema(self, object_type: str) -> ObjectSchema | None:
        """None: the embedded CRM takes any property, so there is nothing to check
        against (``dealsync check --online`` says so for local portals)."""
        return None

    # ------------------------------------------------------------------ engagement

    def record_event(
        self,
        event_type: str,
        contact_id: str,
        occurred_at: datetime | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> Event:
        """A contact did something on the site (tests and the demo)."""
        moment = occurred_at or self.clock()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO event(event_type, object_id, occurred_at, properties) VALUES(?,?,?,?)",
                (event_type, str(contact_id), _iso(moment), json.dumps(dict(properties or {}))),
            )
        return Event(
            str(cur.lastrowid),
            event_type,
            str(contact_id),
            _parse(_iso(moment)),
            dict(properties or {}),
        )

    def set_opted_in(self, email: str, subscribed: bool = True, at: datetime | None = None) -> None:
        """Subscribe (or unsubscribe) an address, the change dated ``at`` (default: the
        CRM's clock), as the vendor's subscription statuses record it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO subscription(email, subscribed) VALUES(?, ?) "
                "ON CONFLICT(email) DO UPDATE SET subscribed=excluded.subscribed",
                (email.lower(), int(subscribed)),
            )
            self._db.execute(
                "INSERT INTO subscription_change(email, changed_at) VALUES(?, ?) "
                "ON CONFLICT(email) DO UPDATE SET changed_at=excluded.changed_at",
                (email.lower(), _iso(at or self.clock())),
            )

    def query_events(self, query: EventQuery) -> list[Event]:
        self.calls["events"] += 1
        sql = "SELECT id, event_type, object_id, occurred_at, properties FROM event WHERE event_type=?"
        args: list[object] = [query.event_type]
        if query.after is not None:
            sql += " AND occurred_at > ?"
            args.append(_iso(query.after))
        if query.before is not None:
            sql += " AND occurred_at < ?"
            args.append(_iso(query.before))
        if query.object_id is not None:
            sql += " AND object_id = ?"
            args.append(str(query.object_id))
        rows = self._db.execute(sql + " ORDER BY occurred_at, id", args).fetchall()
        return [Event(str(r[0]), r[1], r[2], _parse(r[3]), json.loads(r[4])) for r in rows]

    def subscribed_since(self, emails: Sequence[str]) -> dict[str, datetime | None]:
        """One query for all addresses (counted as one ``subscription_status`` call)."""
        wanted = sorted({e.lower() for e in emails})
        out: dict[str, datetime | None] = dict.fromkeys(wanted)
        if not wanted:
            return out
        self.calls["subscription_status"] += 1
        marks = ",".join("?" * len(wanted))
        rows = self._db.execute(
            "SELECT s.email, c.changed_at FROM subscription s LEFT JOIN subscription_change c "
            f"ON c.email = s.email WHERE s.subscribed = 1 AND s.email IN ({marks})",
            wanted,
        ).fetchall()
        for email, changed in rows:
            out[email] = _parse(changed) if changed else EPOCH
        return out

    def opted_in(self, email: str) -> bool:
        self.calls["subscription_status"] += 1
        row = self._db.execute(
            "SELECT subscribed FROM subscription WHERE email=?", (email.lower(),)
        ).fetchone()
        return bool(row and row[0])
