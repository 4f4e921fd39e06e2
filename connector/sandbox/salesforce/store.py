"""One Salesforce org in memory: records, recycle bin, custom fields, clock and sessions.

Everything the REST layer does goes through :class:`Org`, and so do the tests'
backdoor calls (``seed``, ``edit``, ``remove``, ``advance``, ``purge_recycle_bin``),
under one lock: the server thread and the test thread see the same org.  Validation
follows Salesforce's (required fields, restricted picklists, lengths, e-mail format,
lookups, unique external ids), each failure an :class:`SfError` with Salesforce's error
code and the fields it names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.sandbox.faults import FaultInjector, FaultSpec
from connector.sandbox.salesforce import soql
from connector.sandbox.salesforce.limits import ApiUsage
from connector.sandbox.salesforce.schema import (
    CUSTOM_NAME_RE,
    CUSTOM_TYPES,
    NUMBER_TYPES,
    STAGES,
    STRING_TYPES,
    CustomFieldDef,
    Field,
    SObject,
    format_datetime,
    make_id,
    parse_date,
    parse_datetime,
    standard_objects,
    to_id18,
)

# Deleted records stay in the recycle bin this long, then are purged for good.
RECYCLE_BIN_DAYS = 15
# getDeleted/getUpdated refuse a start further back than this.
REPLICATION_DAYS = 30
# A query cursor (nextRecordsUrl) is forgotten after this much inactivity.
CURSOR_IDLE = timedelta(minutes=15)
DEFAULT_SESSION_TTL = 2 * 60 * 60

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_STAGE = {s[0]: s for s in STAGES}


class SfError(Exception):
    """A Salesforce error: HTTP status, ``errorCode``, message and the fields it names."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []

    def body(self) -> list[dict[str, Any]]:
        """The REST error body: a list of ``{message, errorCode, fields}``."""
        out: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields:
            out["fields"] = self.fields
        return [out]

    def entry(self) -> dict[str, Any]:
        """This error inside a Collections result (``statusCode`` instead of errorCode)."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def not_found() -> SfError:
    """404 NOT_FOUND, Salesforce's answer for an unknown record or resource."""
    return SfError(404, "NOT_FOUND", "The requested resource does not exist")


ORG_AGE = timedelta(days=365)
"""How old the orgs of ``dealsync sandbox --salesforce`` and of the demo are."""


@dataclass(frozen=True)
class OrgSpec:
    """An org the sandbox hosts and how a client logs in to it.

    ``client_id``/``client_secret`` are the connected app's consumer key and secret
    (client-credentials flow); ``jwt_public_key_pem`` is the certificate's public key
    (or the certificate) the JWT bearer flow's assertions are checked with, for
    ``username``.  ``api_allocation`` is the rolling 24-hour request allocation;
    ``concurrent_long_limit`` requests running ``long_request_seconds`` or longer
    refuse new ones; ``faults`` is the HubSpot sandbox's FaultSpec.
    """

    name: str
    client_id: str
    client_secret: str
    jwt_public_key_pem: str | None = None
    username: str | None = None
    api_allocation: int = 100_000
    faults: FaultSpec = field(default_factory=FaultSpec)
    org_id: str | None = None
    # Salesforce refuses new requests while this many are running 20 s or longer
    concurrent_long_limit: int = 25
    long_request_seconds: float = 20.0
    # how long the org existed before the sandbox started: a partner's real org is older
    # than its integration, so getDeleted's earliestDateAvailable (the org's creation
    # while nothing was purged) lies before a first cursor's overlap window
    existed_for: timedelta = timedelta(0)


@dataclass
class Session:
    """An access token, when it was issued and last used (org clock)."""

    token: str
    issued_at: datetime
    username: str
    last_used: datetime


@dataclass
class Cursor:
    """The rest of a query's result, served page by page through nextRecordsUrl."""

    rows: list[dict[str, Any]]
    batch: int
    touched: datetime
    endpoint: str


class Transaction:
    """A snapshot of an org's records to roll an allOrNone call back to.  Shallow
    copies suffice because every write stores a new record dict."""

    def __init__(self, org: Org, snapshot: bool) -> None:
        self.org = org
        self._records = {k: dict(v) for k, v in org.records.items()} if snapshot else {}
        self._deleted_at = dict(org.deleted_at)
        self._snapshot = snapshot

    def rollback(self) -> None:
        """Put the records back as they were when the transaction began."""
        if not self._snapshot:
            raise RuntimeError("rollback() of a transaction opened without a snapshot")
        self.org.records = {k: dict(v) for k, v in self._records.items()}
        self.org.deleted_at = dict(self._deleted_at)
        self.org.rebuild_index()


class Org:
    """An in-memory Salesforce org (see module docstring)."""

    def __init__(self, spec: OrgSpec, index: int = 0, limits: bool = True) -> None:
        self._lock = threading.RLock()
        self.spec = spec
        self.name = spec.name
        self.index = index
        self.limits_enabled = limits
        self.pod = f"{index + 1:02d}"[-2:]
        self.org_id = spec.org_id or make_id("00D", self.pod, 1000 + index)
        self._offset = timedelta(0)
        self.created_at = self.now() - spec.existed_for
        self.objects: dict[str, SObject] = standard_objects()
        self.custom_fields: list[CustomFieldDef] = []
        self.records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self.objects}
        # live records by the value of each unique or external-id field, so uniqueness
        # checks and upsert matches stay O(1) in the size of the org
        self._index: dict[tuple[str, str], dict[Any, set[str]]] = {}
        self.deleted_at: dict[str, datetime] = {}
        self.purged_until: dict[str, datetime] = {}
        self._counter = 0
        self.sessions: dict[str, Session] = {}
        self.session_ttl = timedelta(seconds=DEFAULT_SESSION_TTL)
        self.cursors: dict[str, Cursor] = {}
        self.jobs: dict[str, Any] = {}
        self.api = ApiUsage(spec.api_allocation, self.now)
        self.faults = FaultInjector(spec.faults)
        self.calls: Counter[str] = Counter()
        self._in_flight: dict[int, float] = {}
        self._next_request = 0
        self.username = spec.username or f"integration@{spec.name}.sandbox"
        self.user_id = self._new_id("User")
        self._put(
            "User",
            self.user_id,
            self._system_values(self.user_id, self.now(), self.user_id)
            | {
                "Username": self.username,
                "Name": "Integration User",
                "Email": None,
                "IsActive": True,
            },
        )

    # ------------------------------------------------------------------ storage

    def _indexed(self, type_name: str) -> list[Field]:
        return [f for f in self.objects[type_name].fields if f.unique or f.external_id]

    def _index_record(self, type_name: str, record: dict[str, Any] | None, add: bool) -> None:
        if record is None or record["IsDeleted"]:
            return
        for f in self._indexed(type_name):
            value = record.get(f.name)
            if value is None:
                continue
            bucket = self._index.setdefault((type_name, f.name), {})
            key = self._key(f, value)
            if add:
                bucket.setdefault(key, set()).add(record["Id"])
            else:
                ids = bucket.get(key)
                if ids is not None:
                    ids.discard(record["Id"])
                    if not ids:
                        del bucket[key]

    def _put(self, type_name: str, rid: str, record: dict[str, Any]) -> None:
        """Store a record (always a new dict) and keep the index in step."""
        self._index_record(type_name, self.records[type_name].get(rid), add=False)
        self.records[type_name][rid] = record
        self._index_record(type_name, record, add=True)

    def _drop(self, type_name: str, rid: str) -> None:
        self._index_record(type_name, self.records.get(type_name, {}).pop(rid, None), add=False)

    def rebuild_index(self) -> None:
        """Index every live record again (after a rollback, a load or a new field)."""
        with self._lock:
            self._index = {}
            for type_name, rows in self.records.items():
                for record in rows.values():
                    self._index_record(type_name, record, add=True)

    # ------------------------------------------------------------------ clock

    def now(self) -> datetime:
        """The org's time: the wall clock plus what tests advanced, to milliseconds
        (Salesforce's precision)."""
        moment = datetime.now(UTC) + self._offset
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def advance(self, **delta: float) -> datetime:
        """Move the org's clock forward (``days=16``, ``seconds=5``...); the recycle
        bin, sessions, cursors and the 24-hour API window all follow it."""
        with self._lock:
            self._offset += timedelta(**delta)
            return self.now()

    def set_clock(self, moment: datetime) -> None:
        """Make the org's clock read ``moment`` now (it keeps running from there)."""
        with self._lock:
            self._offset = moment.astimezone(UTC) - datetime.now(UTC)
            self.created_at = min(self.created_at, self.now())

    # ------------------------------------------------------------------ ids & objects

    def _new_id(self, type_name: str) -> str:
        self._counter += 1
        return make_id(self.objects[type_name].key_prefix, self.pod, self._counter)

    def sobject(self, name: str) -> SObject:
        """An object by name, case-insensitively; 404 NOT_FOUND when the org has none."""
        for n, o in self.objects.items():
            if n.lower() == name.lower():
                return o
        raise SfError(
            404, "NOT_FOUND", f"The requested resource does not exist (no sObject type {name!r})"
        )

    def type_of(self, record_id: str) -> str | None:
        """The object an id belongs to, by its key prefix."""
        return self._type_of(record_id)

    @contextmanager
    def transaction(self, snapshot: bool = True) -> Iterator[Transaction]:
        """Hold the org for a Collections call; with a snapshot ``rollback()`` undoes
        its writes (allOrNone)."""
        with self._lock:
            yield Transaction(self, snapshot)

    def _type_of(self, record_id: str) -> str | None:
        prefix = record_id[:3]
        for n, o in self.objects.items():
            if o.key_prefix == prefix:
                return n
        return None

    # ------------------------------------------------------------------ sessions

    def new_session(self, username: str | None = None) -> Session:
        """Issue an access token (``00D…!…`` like Salesforce's)."""
        with self._lock:
            token = f"{self.org_id[:15]}!{secrets.token_urlsafe(48)}"
            now = self.now()
            session = Session(token, now, username or self.username, now)
            self.sessions[token] = session
            return session

    def session_valid(self, token: str) -> bool:
        """Whether a token is known and not expired, and mark it used: like an org's
        session timeout, a session lapses after ``session_ttl`` without a request."""
        with self._lock:
            session = self.sessions.get(token)
            if session is None:
                return False
            now = self.now()
            if now - session.last_used >= self.session_ttl:
                del self.sessions[token]
                return False
            session.last_used = max(session.last_used, now)
            return True

    def expire_sessions(self) -> None:
        """Invalidate every access token (a test's admin revoking sessions)."""
        with self._lock:
            self.sessions.clear()

    def signature(self, identity_url: str, issued_at: str) -> str:
        """The token answer's ``signature``: HMAC-SHA256 of id + issued_at with the
        client secret, base64 (Salesforce's documented scheme)."""
        digest = hmac.new(
            self.spec.client_secret.encode(), (identity_url + issued_at).encode(), hashlib.sha256
        ).digest()
        return base64.b64encode(digest).decode()

    # ------------------------------------------------------------------ recycle bin

    def _purge(self) -> None:
        """Physically delete what has been in the recycle bin 15 days; getDeleted's
        ``earliestDateAvailable`` moves to the last such deletion."""
        horizon = self.now() - timedelta(days=RECYCLE_BIN_DAYS)
        for rid, when in list(self.deleted_at.items()):
            if when <= horizon:
                self._purge_one(rid, when)

    def _purge_one(self, rid: str, when: datetime) -> None:
        type_name = self._type_of(rid) or ""
        self._drop(type_name, rid)
        self.deleted_at.pop(rid, None)
        previous = self.purged_until.get(type_name)
        if previous is None or when > previous:
            self.purged_until[type_name] = when

    def purge_recycle_bin(self, type_name: str | None = None) -> int:
        """Empty the recycle bin now (all types, or one); returns how many records went."""
        with self._lock:
            gone = 0
            for rid, when in list(self.deleted_at.items()):
                if type_name is None or self._type_of(rid) == type_name:
                    self._purge_one(rid, when)
                    gone += 1
            return gone

    # ------------------------------------------------------------------ reading

    def _active(self, type_name: str, rid: str) -> dict[str, Any]:
        record = self.records[type_name].get(rid)
        if record is None or record["IsDeleted"]:
            raise not_found()
        return record

    def _resolve_id(self, obj: SObject, raw: str) -> str:
        rid = to_id18(raw)
        if rid is None or not rid.startswith(obj.key_prefix):
            raise not_found()
        return rid

    def get(self, type_name: str, raw_id: str, fields: list[str] | None = None) -> dict[str, Any]:
        """A live record (all fields, or ``fields``); 404 when unknown or deleted."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            record = self._active(obj.name, self._resolve_id(obj, raw_id))
            return self._project(obj, record, self._field_list(obj, fields))

    def _field_list(self, obj: SObject, names: list[str] | None) -> list[Field]:
        if not names:
            return list(obj.fields)
        out = []
        for n in names:
            f = obj.field(n.strip())
            if f is None:
                raise SfError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{n.strip()}' on entity '{obj.name}'. If you are "
                    "attempting to use a custom field, be sure to append the '__c' after the "
                    "custom field name.",
                )
            out.append(f)
        return out

    def _project(self, obj: SObject, record: dict[str, Any], fields: list[Field]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {"type": obj.name, "url": f"/sobjects/{obj.name}/{record['Id']}"}
        }
        for f in fields:
            out[f.name] = record.get(f.name)
        return out

    def retrieve_many(
        self, type_name: str, ids: list[str], fields: list[str]
    ) -> list[dict[str, Any] | None]:
        """Collections retrieve: each id's record, None where unknown or deleted."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            wanted = self._field_list(obj, fields)
            out: list[dict[str, Any] | None] = []
            for raw in ids:
                rid = to_id18(raw.strip())
                record = self.records[obj.name].get(rid or "")
                out.append(
                    None
                    if record is None or record["IsDeleted"]
                    else self._project(obj, record, wanted)
                )
            return out

    def query(
        self, text: str, include_deleted: bool, batch: int, endpoint: str = "query"
    ) -> tuple[dict[str, Any], str | None]:
        """Run SOQL; the first page and the cursor locator for the rest (None: done)."""
        with self._lock:
            self._purge()
            try:
                parsed = soql.parse(text)
                plan = soql.plan(parsed, self.objects)
                rows = [
                    r
                    for r in self.records[plan.obj.name].values()
                    if include_deleted or not r["IsDeleted"]
                ]
                # a stable base order (creation) so unordered queries page predictably
                rows.sort(key=lambda r: (r["CreatedDate"], r["Id"]))
                hits = soql.run(plan, rows)
            except soql.SoqlError as exc:
                raise SfError(400, exc.code, exc.message) from None
            if plan.count:
                return {"totalSize": len(hits), "done": True, "records": []}, None
            projected = [self._project(plan.obj, r, plan.fields) for r in hits]
            first, rest = projected[:batch], projected[batch:]
            page: dict[str, Any] = {"totalSize": len(projected), "done": not rest, "records": first}
            if not rest:
                return page, None
            locator = make_id("01g", self.pod, len(self.cursors) + 1)[:15] + secrets.token_hex(2)
            self.cursors[locator] = Cursor(projected, batch, self.now(), endpoint)
            return page, f"{locator}-{batch}"

    def query_more(self, locator_offset: str) -> tuple[dict[str, Any], str | None, str]:
        """The page a nextRecordsUrl names; 400 INVALID_QUERY_LOCATOR when unknown or
        idle for 15 minutes."""
        with self._lock:
            locator, _, offset_text = locator_offset.rpartition("-")
            cursor = self.cursors.get(locator)
            if cursor is not None and self.now() - cursor.touched > CURSOR_IDLE:
                del self.cursors[locator]
                cursor = None
            if cursor is None or not offset_text.isdigit():
                raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            offset = int(offset_text)
            cursor.touched = self.now()
            chunk = cursor.rows[offset : offset + cursor.batch]
            nxt = offset + cursor.batch
            done = nxt >= len(cursor.rows)
            page = {"totalSize": len(cursor.rows), "done": done, "records": chunk}
            if done:
                del self.cursors[locator]
                return page, None, cursor.endpoint
            return page, f"{locator}-{nxt}", cursor.endpoint

    # ------------------------------------------------------------------ replication

    def _window(self, start_text: str, end_text: str) -> tuple[datetime, datetime]:
        start = parse_datetime(start_text or "")
        end = parse_datetime(end_text or "")
        if start is None or end is None:
            raise SfError(
                400,
                "INVALID_REPLICATION_DATE" if (start_text and end_text) else "MISSING_ARGUMENT",
                "start and end must be ISO 8601 dateTimes, e.g. 2026-12-01T10:00:00+00:00",
            )
        # the API ignores the seconds of both ends
        start = start.replace(second=0, microsecond=0)
        end = end.replace(second=0, microsecond=0)
        now = self.now()
        if start < now - timedelta(days=REPLICATION_DAYS):
            raise SfError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate must be within the last {REPLICATION_DAYS} days "
                f"(got {format_datetime(start)}, now {format_datetime(now)})",
            )
        if end <= start:
            raise SfError(
                400, "INVALID_REPLICATION_DATE", "EndDate must chronologically follow the StartDate"
            )
        return start, end

    def get_deleted(self, type_name: str, start_text: str, end_text: str) -> dict[str, Any]:
        """getDeleted: the records deleted in [start, end] still in the recycle bin, and
        the date before which deletions may have been purged."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            start, end = self._window(start_text, end_text)
            latest = min(end, self.now().replace(second=0, microsecond=0))
            hits = sorted(
                (when, rid)
                for rid, when in self.deleted_at.items()
                if rid in self.records[obj.name] and start <= when <= end
            )
            earliest = self.purged_until.get(obj.name, self.created_at)
            return {
                "deletedRecords": [
                    {"id": rid, "deletedDate": format_datetime(when)} for when, rid in hits
                ],
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(latest),
            }

    def get_updated(self, type_name: str, start_text: str, end_text: str) -> dict[str, Any]:
        """getUpdated: ids of live records whose SystemModstamp is in [start, end]."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            start, end = self._window(start_text, end_text)
            latest = min(end, self.now().replace(second=0, microsecond=0))
            ids = [
                r["Id"]
                for r in self.records[obj.name].values()
                if not r["IsDeleted"]
                and start <= (parse_datetime(r["SystemModstamp"]) or start) <= end
            ]
            return {"ids": ids, "latestDateCovered": format_datetime(latest)}

    # ------------------------------------------------------------------ writing

    def _system_values(self, rid: str, when: datetime, user: str) -> dict[str, Any]:
        stamp = format_datetime(when)
        return {
            "Id": rid,
            "IsDeleted": False,
            "CreatedDate": stamp,
            "CreatedById": user,
            "LastModifiedDate": stamp,
            "LastModifiedById": user,
            "SystemModstamp": stamp,
        }

    def _convert(self, obj: SObject, f: Field, value: Any) -> Any:
        """A JSON value as the field stores it, or the Salesforce error for it."""
        label = f.label
        if value is None:
            if f.type == "boolean":
                return f.default if f.default is not None else False
            if not f.nillable:
                raise SfError(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{f.name}]",
                    [f.name],
                )
            return None
        t = f.type
        if t in STRING_TYPES:
            if isinstance(value, (bool, dict | list)):
                raise self._json_error(f, value)
            text = str(value)
            if f.length and len(text) > f.length:
                raise SfError(
                    400,
                    "STRING_TOO_LONG",
                    f"{label}: data value too large: {text[:40]} (max length={f.length})",
                    [f.name],
                )
            if t == "email" and text and not _EMAIL_RE.match(text):
                raise SfError(
                    400,
                    "INVALID_EMAIL_ADDRESS",
                    f"{label}: invalid email address: {text}",
                    [f.name],
                )
            if t == "picklist" and f.restricted and text not in f.picklist:
                raise SfError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{label}: bad value for restricted picklist field: {text}",
                    [f.name],
                )
            return text if text != "" else None
        if t == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise self._json_error(f, value)
        if t in NUMBER_TYPES:
            if isinstance(value, bool):
                raise self._json_error(f, value)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise self._json_error(f, value) from None
            return int(number) if t == "int" else number
        if t == "date":
            day = parse_date(value) if isinstance(value, str) else None
            if day is None:
                raise self._json_error(f, value)
            return day.isoformat()
        if t == "datetime":
            moment = parse_datetime(value) if isinstance(value, str) else None
            if moment is None:
                raise self._json_error(f, value)
            return format_datetime(moment)
        if t == "reference":
            return self._reference(f, value)
        raise self._json_error(f, value)

    def _json_error(self, f: Field, value: Any) -> SfError:
        kind = {"datetime": "datetime", "date": "date", "boolean": "boolean"}.get(
            f.type, "double" if f.type in NUMBER_TYPES else "string"
        )
        return SfError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {kind} from {type(value).__name__} value "
            f"{value!r} or request may be missing a required field (field {f.name})",
            [f.name],
        )

    def _reference(self, f: Field, value: Any) -> str:
        rid = to_id18(value) if isinstance(value, str) else None
        if rid is None:
            raise SfError(
                400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name]
            )
        target = self._type_of(rid)
        if target not in f.reference_to:
            raise SfError(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                f"{f.label}: id value of incorrect type: {value}",
                [f.name],
            )
        record = self.records[target].get(rid)
        if record is None:
            raise SfError(
                400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f.name]
            )
        if record["IsDeleted"]:
            raise SfError(400, "ENTITY_IS_DELETED", "entity is deleted", [f.name])
        return rid

    def _prepare(
        self, obj: SObject, body: Any, creating: bool, system_ok: bool = False
    ) -> dict[str, Any]:
        """Validate a create/update body into stored values (canonical field names)."""
        if not isinstance(body, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        values: dict[str, Any] = {}
        refused: list[str] = []
        for key, raw in body.items():
            if key == "attributes":
                continue
            f = obj.field(key)
            if f is None:
                raise SfError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{key}' on sobject of type {obj.name}",
                    [key],
                )
            allowed = f.createable if creating else f.updateable
            if not allowed and not (system_ok and f.name not in ("Id", "IsDeleted")):
                refused.append(f.name)
                continue
            if system_ok and f.type == "datetime" and not f.createable:
                moment = parse_datetime(raw) if isinstance(raw, str) else None
                if moment is None:
                    raise self._json_error(f, raw)
                values[f.name] = format_datetime(moment)
                continue
            values[f.name] = self._convert(obj, f, raw)
        if refused:
            raise SfError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(refused)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.",
                refused,
            )
        return values

    def _check_required(self, obj: SObject, record: dict[str, Any]) -> None:
        missing = [f.name for f in obj.fields if f.required and record.get(f.name) in (None, "")]
        if missing:
            raise SfError(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )

    def _check_unique(self, obj: SObject, record: dict[str, Any]) -> None:
        for f in obj.fields:
            if not f.unique or record.get(f.name) is None:
                continue
            bucket = self._index.get((obj.name, f.name), {})
            others = sorted(bucket.get(self._key(f, record[f.name]), set()) - {record["Id"]})
            if others:
                raise SfError(
                    400,
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with "
                    f"id: {others[0]}",
                    [f.name],
                )

    @staticmethod
    def _key(f: Field, value: Any) -> Any:
        return value if f.case_sensitive or not isinstance(value, str) else value.casefold()

    def _derive(self, obj: SObject, record: dict[str, Any], changed: dict[str, Any]) -> None:
        """Fields Salesforce computes: a contact's Name, an opportunity's IsClosed, IsWon
        and (unless given) Probability from its stage."""
        if obj.name == "Contact":
            parts = [record.get("FirstName"), record.get("LastName")]
            record["Name"] = " ".join(p for p in parts if p) or None
        if obj.name == "Opportunity":
            stage = _STAGE.get(record.get("StageName") or "")
            if stage:
                record["IsClosed"], record["IsWon"] = stage[2], stage[3]
                if "StageName" in changed and "Probability" not in changed:
                    record["Probability"] = float(stage[1])

    def _defaults(self, obj: SObject) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in obj.fields:
            if f.name in ("Id", "IsDeleted") or f.name in out:
                continue
            out[f.name] = f.default
        if obj.field("OwnerId"):
            out["OwnerId"] = self.user_id
        if obj.name == "Opportunity":
            out["IsClosed"] = out["IsWon"] = False
        return out

    def create(self, type_name: str, body: Any, *, system_ok: bool = False) -> str:
        """Create a record; its 18-character id, or the SfError Salesforce would give."""
        with self._lock:
            obj = self.sobject(type_name)
            if not obj.createable and not system_ok:
                raise SfError(
                    400,
                    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                    f"entity type {obj.name} does not support create through this sandbox",
                )
            values = self._prepare(obj, body, creating=True, system_ok=system_ok)
            rid = self._new_id(obj.name)
            when = self.now()
            record = self._defaults(obj) | self._system_values(rid, when, self.user_id)
            record.update(values)
            if "CreatedDate" in values:
                record.setdefault("LastModifiedDate", values["CreatedDate"])
                if "LastModifiedDate" not in values:
                    record["LastModifiedDate"] = values["CreatedDate"]
                if "SystemModstamp" not in values:
                    record["SystemModstamp"] = record["LastModifiedDate"]
            self._derive(obj, record, values)
            self._check_required(obj, record)
            self._check_unique(obj, record)
            self._put(obj.name, rid, record)
            return rid

    def update(self, type_name: str, raw_id: str, body: Any, *, system_ok: bool = False) -> None:
        """Update a live record; 404 when unknown, ENTITY_IS_DELETED when in the bin."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            rid = self._resolve_id(obj, raw_id)
            current = self.records[obj.name].get(rid)
            if current is None:
                raise not_found()
            if current["IsDeleted"]:
                raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
            values = self._prepare(obj, body, creating=False, system_ok=system_ok)
            record = dict(current) | values
            self._derive(obj, record, values)
            self._check_required(obj, record)
            self._check_unique(obj, record)
            stamp = format_datetime(self.now())
            if "LastModifiedDate" not in values:
                record["LastModifiedDate"] = stamp
            if "SystemModstamp" not in values:
                record["SystemModstamp"] = values.get("LastModifiedDate", stamp)
            record["LastModifiedById"] = self.user_id
            self._put(obj.name, rid, record)

    def delete(self, type_name: str, raw_id: str) -> None:
        """Move a record (and what Salesforce deletes with it) to the recycle bin."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            rid = self._resolve_id(obj, raw_id)
            record = self.records[obj.name].get(rid)
            if record is None:
                raise not_found()
            if record["IsDeleted"]:
                raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
            when = self.now()
            for type_of, victim in self._cascade(obj.name, rid):
                row = self.records[type_of][victim]
                if row["IsDeleted"]:
                    continue
                # a new dict, never an edit in place: transaction() snapshots are shallow
                self._put(
                    type_of,
                    victim,
                    row | {"IsDeleted": True, "SystemModstamp": format_datetime(when)},
                )
                self.deleted_at[victim] = when

    def _cascade(self, type_name: str, rid: str) -> list[tuple[str, str]]:
        """The record and its dependants: an account's contacts and opportunities, and
        the contact roles of a deleted opportunity or contact."""
        out = [(type_name, rid)]
        if type_name == "Account":
            for child in ("Contact", "Opportunity"):
                for r in self.records[child].values():
                    if r.get("AccountId") == rid and not r["IsDeleted"]:
                        out.extend(self._cascade(child, r["Id"]))
        if type_name in ("Opportunity", "Contact"):
            key = f"{type_name}Id"
            for r in self.records["OpportunityContactRole"].values():
                if r.get(key) == rid and not r["IsDeleted"]:
                    out.append(("OpportunityContactRole", r["Id"]))
        return out

    def undelete(self, type_name: str, raw_id: str) -> None:
        """Restore a record from the recycle bin (backdoor: a user's undelete)."""
        with self._lock:
            obj = self.sobject(type_name)
            rid = self._resolve_id(obj, raw_id)
            record = self.records[obj.name].get(rid)
            if record is None or not record["IsDeleted"]:
                raise not_found()
            self._put(
                obj.name,
                rid,
                record | {"IsDeleted": False, "SystemModstamp": format_datetime(self.now())},
            )
            self.deleted_at.pop(rid, None)

    def upsert(self, type_name: str, ext_field: str, value: str, body: Any) -> tuple[str, bool]:
        """Upsert on an external id (or ``Id``): ``(id, created)``; 300 on several
        matches, 404 NOT_FOUND when the field is not an external id."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            f = obj.field(ext_field)
            if f is None or not (f.external_id or f.type == "id"):
                raise SfError(
                    404,
                    "NOT_FOUND",
                    f"Provided external ID field does not exist or is not accessible: {ext_field}",
                )
            if isinstance(body, dict) and any(k.lower() == f.name.lower() for k in body):
                clash = [k for k in body if k.lower() == f.name.lower()]
                body = {k: v for k, v in body.items() if k not in clash}
            matches = self.find_by(obj.name, f.name, value)
            if len(matches) > 1:
                raise SfError(
                    300,
                    "MULTIPLE_CHOICES",
                    f"more than one record found for external id field {f.name}: "
                    + ", ".join(matches),
                )
            if matches:
                self.update(obj.name, matches[0], body)
                return matches[0], False
            if f.type == "id":
                raise not_found()
            data = dict(body or {}) if isinstance(body, dict) else body
            if isinstance(data, dict):
                data[f.name] = value
            return self.create(obj.name, data), True

    def find_by(self, type_name: str, field_name: str, value: Any) -> list[str]:
        """Ids of live records whose ``field_name`` equals ``value`` (an external id's
        comparison: case-insensitive unless the field is case-sensitive)."""
        with self._lock:
            obj = self.sobject(type_name)
            f = obj.field(field_name)
            if f is None:
                return []
            if f.type == "id":
                rid = to_id18(str(value))
                record = self.records[obj.name].get(rid or "")
                return [record["Id"]] if record and not record["IsDeleted"] else []
            key = self._key(f, value)
            if f.unique or f.external_id:
                return sorted(self._index.get((obj.name, f.name), {}).get(key, set()))
            return [
                r["Id"]
                for r in self.records[obj.name].values()
                if not r["IsDeleted"]
                and r.get(f.name) is not None
                and self._key(f, r[f.name]) == key
            ]

    # ------------------------------------------------------------------ custom fields

    def add_custom_field(self, full_name: Any, metadata: Any) -> str:
        """Tooling API CustomField create: ``Object.Name__c`` with its metadata."""
        with self._lock:
            if not isinstance(full_name, str) or "." not in full_name:
                raise SfError(
                    400,
                    "INVALID_FIELD",
                    "FullName must be Object.Field__c, e.g. Opportunity.dealsync_source_id__c",
                    ["FullName"],
                )
            object_name, _, field_name = full_name.partition(".")
            obj = self.sobject(object_name)
            if not CUSTOM_NAME_RE.match(field_name):
                raise SfError(
                    400,
                    "INVALID_FIELD",
                    f"The custom field name {field_name!r} must start with a letter, use only "
                    "letters, digits and single underscores, and end in __c",
                    ["FullName"],
                )
            if not isinstance(metadata, dict):
                raise SfError(400, "INVALID_FIELD", "Metadata must be an object", ["Metadata"])
            kind = metadata.get("type")
            if kind not in CUSTOM_TYPES:
                raise SfError(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"Metadata.type {kind!r} is not one of {', '.join(sorted(CUSTOM_TYPES))}",
                    ["Metadata"],
                )
            if obj.field(field_name) is not None:
                raise SfError(
                    400,
                    "DUPLICATE_DEVELOPER_NAME",
                    f"Duplicate Developer Name: a field named {field_name} already exists on "
                    f"{obj.name}",
                    ["FullName"],
                )
            self._counter += 1
            definition = CustomFieldDef(
                obj.name, field_name, dict(metadata), make_id("00N", self.pod, self._counter)
            )
            self._install(definition)
            return definition.id

    def _install(self, definition: CustomFieldDef) -> None:
        new = definition.to_field()
        obj = self.objects[definition.object_name]
        self.objects[obj.name] = obj.with_field(new)
        self.custom_fields.append(definition)
        for rid, record in list(self.records[obj.name].items()):
            if new.name not in record:
                self.records[obj.name][rid] = record | {new.name: new.default}
        self.rebuild_index()

    # ------------------------------------------------------------------ backdoor

    def seed(self, type_name: str, fields: dict[str, Any]) -> str:
        """Create a record as a user would in the org (no API call counted); system
        dates (CreatedDate, LastModifiedDate, SystemModstamp) may be given."""
        return self.create(type_name, fields, system_ok=True)

    def edit(self, type_name: str, record_id: str, fields: dict[str, Any]) -> None:
        """Change a record as a user would in the org (no API call counted)."""
        self.update(type_name, record_id, fields, system_ok=True)

    def remove(self, type_name: str, record_id: str) -> None:
        """Delete a record as a user would (to the recycle bin; no API call counted)."""
        self.delete(type_name, record_id)

    def rows(self, type_name: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of the stored records of a type (live ones unless asked)."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            return [
                dict(r)
                for r in self.records[obj.name].values()
                if include_deleted or not r["IsDeleted"]
            ]

    def record(self, type_name: str, record_id: str) -> dict[str, Any] | None:
        """A copy of one stored record (deleted ones too), or None."""
        with self._lock:
            self._purge()
            obj = self.sobject(type_name)
            row = self.records[obj.name].get(to_id18(record_id) or "")
            return dict(row) if row else None

    def count(self, type_name: str) -> int:
        """Live records of a type."""
        return len(self.rows(type_name))

    def begin_request(self, enforce: bool) -> int | None:
        """Register a request in flight; None (refused) when ``concurrent_long_limit``
        requests have run ``long_request_seconds`` or longer.  Durations are real
        time (``time.monotonic``), not the org's clock."""
        with self._lock:
            now = time.monotonic()
            long_running = sum(
                1 for t in self._in_flight.values() if now - t >= self.spec.long_request_seconds
            )
            if enforce and long_running >= self.spec.concurrent_long_limit:
                return None
            self._next_request += 1
            self._in_flight[self._next_request] = now
            return self._next_request

    def end_request(self, token: int) -> None:
        """A request registered by :meth:`begin_request` has been answered."""
        with self._lock:
            self._in_flight.pop(token, None)

    @property
    def requests_in_flight(self) -> int:
        """Requests being served now."""
        with self._lock:
            return len(self._in_flight)

    @property
    def api_calls(self) -> int:
        """API requests counted in the current 24-hour window."""
        return self.api.used

    def reset_stats(self) -> None:
        """Zero the per-kind counters and the API usage window."""
        with self._lock:
            self.calls.clear()
            self.api.reset()

    def record_call(self, kind: str) -> None:
        """Count one request by kind (``query``, ``composite_create``...)."""
        with self._lock:
            self.calls[kind] += 1

    # ------------------------------------------------------------------ persistence

    def dump(self) -> dict[str, Any]:
        """The org as JSON (records, recycle bin, custom fields, counters)."""
        with self._lock:
            return {
                "name": self.name,
                "counter": self._counter,
                "created_at": format_datetime(self.created_at),
                "records": {k: list(v.values()) for k, v in self.records.items()},
                "deleted_at": {k: format_datetime(v) for k, v in self.deleted_at.items()},
                "purged_until": {k: format_datetime(v) for k, v in self.purged_until.items()},
                "custom_fields": [
                    {
                        "object": d.object_name,
                        "field": d.field_name,
                        "metadata": d.metadata,
                        "id": d.id,
                    }
                    for d in self.custom_fields
                ],
            }

    def load(self, data: dict[str, Any]) -> None:
        """Restore what :meth:`dump` wrote (sessions and usage start afresh)."""
        with self._lock:
            self.objects = standard_objects()
            self.custom_fields = []
            self.records = {n: {} for n in self.objects}
            for d in data.get("custom_fields", []):
                self._install(CustomFieldDef(d["object"], d["field"], d["metadata"], d["id"]))
            for type_name, rows in data.get("records", {}).items():
                if type_name in self.records:
                    self.records[type_name] = {r["Id"]: r for r in rows}
            if self.user_id not in self.records["User"]:
                users = list(self.records["User"])
                if users:
                    self.user_id = users[0]
            self.deleted_at = {
                k: parse_datetime(v) or self.now() for k, v in data.get("deleted_at", {}).items()
            }
            self.purged_until = {
                k: parse_datetime(v) or self.now() for k, v in data.get("purged_until", {}).items()
            }
            self.created_at = parse_datetime(data.get("created_at", "")) or self.created_at
            self._counter = max(self._counter, int(data.get("counter", 0)))
            self.rebuild_index()


__all__ = ["Org", "OrgSpec", "SfError"]
