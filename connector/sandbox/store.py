"""In-memory state of one fake HubSpot portal, and every operation on it.

HTTP handlers (``app.py``) and in-process callers (tests, the demo) share these methods,
so both see the same validation and the same timestamps.  All state is guarded by one
re-entrant lock because uvicorn serves requests on its own thread while tests poke the
portal from theirs.

Behaviour chosen where HubSpot leaves room (and relied upon by the tests):

* Writes to ``hs_object_id``, ``createdate``, ``hs_lastmodifieddate`` and
  ``lastmodifieddate`` are **rejected** with VALIDATION_ERROR (READ_ONLY_VALUE), so a
  connector that copies system properties between portals fails loudly.
* The modification time moves only when a write changes a value.  Archiving never
  moves it (it sets ``archivedAt``), as in HubSpot.
* ``""`` clears a property; cleared and never-set properties read back as ``null``.
* Contacts' ``email`` is unique (case-insensitively) like HubSpot; custom properties
  created with ``hasUniqueValue`` are unique (case-sensitively).  Archiving frees the
  value.
* Eventual consistency, on by default: each write becomes searchable only after a lag
  drawn per write from ``search_lag`` (default 1–3 s, on the portal's clock); until then
  search misses a new record and shows an updated one as it was. Reads by id, batch
  reads and the list are immediate, as in HubSpot. ``index_now()`` makes every write
  searchable at once (tests).
* Merges (``merge``): the merged id disappears; reads by it answer with the survivor.
"""

from __future__ import annotations

import base64
import bisect
import collections
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.sandbox.errors import ApiError, not_found, validation
from connector.sandbox.faults import FaultInjector, FaultSpec
from connector.sandbox.limits import RateLimiter, SearchLimiter
from connector.sandbox.schema import (
    ALWAYS_RETURNED,
    DEFAULT_RETURNED,
    DEFAULT_STAGES,
    FIELD_TYPES,
    GROUPS,
    OBJECT_TYPES,
    PROPERTY_TYPES,
    QUERY_PROPERTIES,
    READ_ONLY,
    SINGULAR,
    TYPE_IDS,
    PropertyDef,
    ValidationFailure,
    canonical_datetime,
    default_properties,
    normalize_object_type,
    normalize_value,
    to_iso,
)
from connector.sandbox.search import CompiledSearch, compile_search, matches, sort_key

MAX_BATCH = 100
MAX_LIST_LIMIT = 100
# Associated records per input in one v4 association batch read page; more come back
# with ``results[].paging.next.after`` (HubSpot pages per input; 500 is the documented
# page cap of the v4 association reads, see docs/sandbox.md).
ASSOC_READ_PAGE = 500
# Seconds a write takes to become searchable, drawn per write (HubSpot: "moments"; see
# docs/sandbox.md). Tests that need search to be immediate ask for (0, 0).
DEFAULT_SEARCH_LAG: tuple[float, float] = (1.0, 3.0)

# Association type ids (HUBSPOT_DEFINED): default (unlabeled) and primary. HubSpot
# numbers each direction of a pair: (one type, other type, id one way, id back).
_ASSOC_TYPES = (
    ("deals", "companies", 341, 342, 5, 6),
    ("deals", "contacts", 3, 4, None, None),
    ("contacts", "companies", 279, 280, 1, 2),
)
ASSOC_DEFAULT: dict[tuple[str, str], int] = {}
ASSOC_PRIMARY: dict[tuple[str, str], int] = {}
_REVERSE: dict[int, int] = {}  # an association type id → the id of the way back
for _one, _other, _there, _back, _primary, _primary_back in _ASSOC_TYPES:
    ASSOC_DEFAULT.update({(_one, _other): _there, (_other, _one): _back})
    _REVERSE.update({_there: _back, _back: _there})
    if _primary is not None and _primary_back is not None:
        ASSOC_PRIMARY.update({(_one, _other): _primary, (_other, _one): _primary_back})
        _REVERSE.update({_primary: _primary_back, _primary_back: _primary})

SUBSCRIPTION_DEFINITIONS: tuple[tuple[str, str, str], ...] = (
    ("1001", "Marketing Information", "Marketing offers and updates."),
    ("1002", "One to One", "One to one emails."),
    ("1003", "Product Updates", "News about product changes."),
)

AssocKey = tuple[str, str, str]  # (from type, from id, to type)
AssocSpec = tuple[str, int]  # (category, type id)


def _assoc_cursor(offset: int) -> str:
    """An opaque association paging cursor (HubSpot's are base64 tokens too)."""
    return base64.urlsafe_b64encode(f"assoc:{offset}".encode()).decode()


def _assoc_offset(cursor: Any) -> int:
    try:
        text = base64.urlsafe_b64decode(str(cursor).encode()).decode()
        kind, _, number = text.partition(":")
        if kind != "assoc" or not number.isdigit():
            raise ValueError(cursor)
        return int(number)
    except ValueError:
        raise validation(
            f"Invalid after cursor: {cursor}", context={"after": [str(cursor)]}
        ) from None


def parse_search_lag(value: Any) -> tuple[float, float]:
    """``(min, max)`` seconds from a pair, one number or ``"MIN-MAX"`` text (CLI)."""
    if isinstance(value, str):
        low_text, sep, high_text = value.strip().partition("-")
        try:
            low = float(low_text)
            high = float(high_text) if sep else low
        except ValueError:
            raise ValueError(
                f"search lag {value!r} is not MIN-MAX seconds, e.g. 1-3 (or 0 for none)"
            ) from None
    elif isinstance(value, int | float):
        low = high = float(value)
    else:
        low, high = (float(v) for v in value)
    if low < 0 or high < low:
        raise ValueError(f"search lag {value!r}: need 0 <= MIN <= MAX")
    return low, high


def utcnow() -> datetime:
    """Default portal clock: real time."""
    return datetime.now(UTC)


@dataclass
class PortalSpec:
    """Configuration of one sandbox portal (one access token)."""

    name: str
    token: str
    portal_id: int | None = None
    rate_limit_per_10s: int = 100
    search_rate_per_s: float = 5.0
    search_lag: tuple[float, float] = DEFAULT_SEARCH_LAG
    faults: FaultSpec = field(default_factory=FaultSpec)
    deal_stages: list[str] | None = None
    daily_limit: int | None = None


@dataclass(slots=True)
class Record:
    """One CRM object.  ``props`` holds canonical wire strings, system ones included."""

    id: str
    props: dict[str, str]
    created_at: str
    updated_at: str
    archived: bool = False
    archived_at: str | None = None
    # Search sees ``indexed_props`` (None: not at all) until the portal clock reaches
    # ``visible_at``, then ``props``.
    visible_at: float = 0.0
    indexed_props: dict[str, str] | None = None
    # Per property, every value it has had, oldest first: (value, timestamp, sourceType).
    # Served as ``propertiesWithHistory`` (newest first, as HubSpot answers).
    history: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)


def _stage_meta(stage_id: str, index: int, count: int) -> tuple[float, bool]:
    low = stage_id.lower()
    if "lost" in low:
        return 0.0, True
    if "won" in low:
        return 1.0, True
    return round(min(0.9, (index + 1) / max(1, count)), 2), False


def build_pipeline(
    pipeline_id: str, label: str, stages: Iterable[str | tuple[str, str, float, bool]], now: str
) -> dict[str, Any]:
    """A pipeline in the pipelines API's shape, from stage ids or full stage tuples."""
    stage_list = list(stages)
    out = []
    for i, s in enumerate(stage_list):
        if isinstance(s, tuple):
            sid, slabel, prob, closed = s
        else:
            sid, slabel = s, s.replace("_", " ").title()
            prob, closed = _stage_meta(s, i, len(stage_list))
        out.append(
            {
                "id": sid,
                "label": slabel,
                "displayOrder": i,
                "metadata": {"isClosed": "true" if closed else "false", "probability": str(prob)},
                "createdAt": now,
                "updatedAt": now,
                "archived": False,
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            }
        )
    return {
        "id": pipeline_id,
        "label": label,
        "displayOrder": 0,
        "stages": out,
        "createdAt": now,
        "updatedAt": now,
        "archived": False,
    }


class Portal:
    """One fake HubSpot account: records, schema, associations, events, limits, faults."""

    def __init__(self, spec: PortalSpec, portal_id: int, limits: bool = True) -> None:
        self.spec = spec
        self.name = spec.name
        self.token = spec.token
        self.portal_id = portal_id
        self.limits_enabled = limits
        self.search_lag = parse_search_lag(spec.search_lag)
        self._lag_rng = random.Random()
        self.clock: Callable[[], datetime] = utcnow
        # merged-away id -> the id it was merged into (reads follow it)
        self.merged: dict[str, dict[str, str]] = {t: {} for t in OBJECT_TYPES}
        self.lock = threading.RLock()
        self.faults = FaultInjector(spec.faults)
        self.limiter = RateLimiter(spec.rate_limit_per_10s, spec.daily_limit)
        self.search_limiter = SearchLimiter(spec.search_rate_per_s)
        self.records: dict[str, dict[str, Record]] = {t: {} for t in OBJECT_TYPES}
        self._order: dict[str, list[int]] = {t: [] for t in OBJECT_TYPES}
        self.properties: dict[str, dict[str, PropertyDef]] = {
            t: default_properties(t) for t in OBJECT_TYPES
        }
        self._unique: dict[str, dict[str, dict[str, str]]] = {
            t: {n: {} for n, p in self.properties[t].items() if p.has_unique_value}
            for t in OBJECT_TYPES
        }
        now = to_iso(self.clock())
        stages: Iterable[str | tuple[str, str, float, bool]] = (
            spec.deal_stages if spec.deal_stages else DEFAULT_STAGES
        )
        self.pipelines: dict[str, dict[str, Any]] = {
            "default": build_pipeline("default", "Sales Pipeline", stages, now)
        }
        self._assoc: dict[AssocKey, dict[str, set[AssocSpec]]] = {}
        self.events: list[dict[str, Any]] = []
        self.event_types: set[str] = {
            "e_visited_page",
            "e_submitted_form",
            "e_clicked_link_in_email",
        }
        self.subscriptions: dict[str, dict[str, dict[str, Any]]] = {}
        self._next_id = 10_000_001
        # Bumped on every write; lets search reuse the sorted hit list while a client
        # pages through one query (50 pages of 200 would otherwise sort 50 times).
        self._version = 0
        self._search_cache: tuple[Any, list[tuple[Record, Mapping[str, str]]]] | None = None
        self._cache_until = math.inf
        self._stats_lock = threading.Lock()
        self._by_kind: collections.Counter[str] = collections.Counter()
        self._counts: collections.Counter[str] = collections.Counter()
        self.calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=10_000)

    # ------------------------------------------------------------------ stats / faults

    def record_call(self, method: str, path: str, kind: str, status: int) -> None:
        """Count one served request (admin endpoints are not counted)."""
        with self._stats_lock:
            self._by_kind[kind] += 1
            self._counts["total"] += 1
            if status == 429:
                self._counts["rate_limited"] += 1
            elif status == -1:
                self._counts["dropped"] += 1
            elif status >= 500:
                self._counts["errors_5xx"] += 1
            self.calls.append(
                {"method": method, "path": path, "kind": kind, "status": status, "at": time.time()}
            )

    def stats(self) -> dict[str, Any]:
        """Requests by kind, 429s sent, injected 5xx, dropped connections, total."""
        with self._stats_lock:
            return {
                "portal": self.name,
                "total": self._counts["total"],
                "rate_limited": self._counts["rate_limited"],
                "errors_5xx": self._counts["errors_5xx"],
                "dropped": self._counts["dropped"],
                "by_kind": dict(self._by_kind),
            }

    def reset_stats(self) -> None:
        """Zero the counters and the rate-limit windows, so scenarios start clean."""
        with self._stats_lock:
            self._by_kind.clear()
            self._counts.clear()
            self.calls.clear()
        self.limiter.reset()
        self.search_limiter.reset()

    def set_faults(self, spec: FaultSpec) -> None:
        """Change this portal's faults at runtime."""
        self.faults.set_spec(spec)

    # ------------------------------------------------------------------ helpers

    def _now(self) -> str:
        return to_iso(self.clock())

    def _type(self, raw: str) -> str:
        t = normalize_object_type(raw)
        if t is None:
            raise validation(f"Unable to infer object type from: {raw}")
        return t

    def _new_id(self) -> str:
        i = self._next_id
        self._next_id += 1
        return str(i)

    def _unique_key(self, t: str, name: str, value: str) -> str:
        return value.lower() if (t == "contacts" and name == "email") else value

    def _enum_allowed(self, t: str, name: str, props_after: Mapping[str, str]) -> set[str] | None:
        if t == "deals" and name == "pipeline":
            return set(self.pipelines)
        if t == "deals" and name == "dealstage":
            pipeline = self.pipelines.get(props_after.get("pipeline") or "default")
            return {s["id"] for s in pipeline["stages"]} if pipeline else set()
        return None

    # ------------------------------------------------------------------ validation

    def _validate(
        self, t: str, properties: Any, rec: Record | None, *, creating: bool
    ) -> dict[str, str]:
        """Normalise a property write; raise 400 listing every bad property, or 409."""
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise validation("properties must be an object of name -> string value")
        defs = self.properties[t]
        failures: list[ValidationFailure] = []
        out: dict[str, str] = {}
        for name, value in properties.items():
            prop = defs.get(name)
            if prop is None:
                failures.append(
                    ValidationFailure(
                        name, f'Property "{name}" does not exist', "PROPERTY_DOESNT_EXIST"
                    )
                )
                continue
            if name in READ_ONLY or prop.read_only:
                failures.append(
                    ValidationFailure(
                        name, f'Property "{name}" is read-only and cannot be set', "READ_ONLY_VALUE"
                    )
                )
                continue
            if prop.dynamic_options and name in ("pipeline", "dealstage"):
                out[name] = value if isinstance(value, str) else str(value)
                continue
            try:
                out[name] = normalize_value(prop, value)
            except ValidationFailure as exc:
                failures.append(exc)
        if t == "deals" and ("pipeline" in out or "dealstage" in out):
            after = dict(rec.props) if rec else {}
            after.update({k: v for k, v in out.items() if v != ""})
            if creating and "dealstage" in out and not after.get("pipeline"):
                out["pipeline"] = after["pipeline"] = "default"
            for name in ("pipeline", "dealstage"):
                value = out.get(
                    name, after.get(name) if name == "dealstage" and "pipeline" in out else None
                )
                if not value:
                    continue
                allowed = self._enum_allowed(t, name, after) or set()
                if value not in allowed:
                    where = (
                        f' of pipeline "{after.get("pipeline") or "default"}"'
                        if name == "dealstage"
                        else ""
                    )
                    failures.append(
                        ValidationFailure(
                            name,
                            f"{value} was not one of the allowed options for property "
                            f'"{name}"{where}: {sorted(allowed)}',
                            "INVALID_OPTION",
                        )
                    )
        if failures:
            # HubSpot's message embeds the property errors as JSON (see docs/sandbox.md)
            detail = json.dumps(
                [
                    {
                        "isValid": False,
                        "message": f.message,
                        "error": f.code,
                        "name": f.name,
                        "localizedErrorMessage": f.message,
                        "portalId": self.portal_id,
                    }
                    for f in failures
                ]
            )
            raise validation(
                f"Property values were not valid: {detail}",
                errors=[
                    {"message": f.message, "code": f.code, "context": {"propertyName": [f.name]}}
                    for f in failures
                ],
                context={"propertyName": [f.name for f in failures]},
            )
        # Unique values: checked last, and as CONFLICT like HubSpot.
        for name, index in self._unique[t].items():
            value = out.get(name)
            if not value:
                continue
            owner = index.get(self._unique_key(t, name, value))
            if owner is not None and (rec is None or owner != rec.id):
                raise ApiError(
                    409,
                    "CONFLICT",
                    f'A {SINGULAR[t]} with {name} "{value}" already exists. Existing ID: {owner}',
                    context={"existingId": [owner], "propertyName": [name]},
                )
        return out

    # ------------------------------------------------------------------ writes

    def _draw_lag(self) -> float:
        low, high = self.search_lag
        return low if high <= low else self._lag_rng.uniform(low, high)

    def _reindex(self, rec: Record, *, creating: bool) -> None:
        """A write to ``rec`` is about to land: search keeps showing the version it has
        indexed (none for a new record) until the write's own lag has passed."""
        lag = self._draw_lag()
        if lag <= 0:
            rec.visible_at = 0.0  # searchable at once, whatever the clock says
            return
        now = self.clock().timestamp()
        if creating:
            rec.indexed_props = None
        elif now >= rec.visible_at:
            rec.indexed_props = dict(rec.props)
        rec.visible_at = now + lag

    def index_now(self) -> None:
        """Make every write searchable at once (tests that mean to skip the lag)."""
        with self.lock:
            self._version += 1
            for recs in self.records.values():
                for rec in recs.values():
                    rec.visible_at = 0.0

    def pending_index(self) -> int:
        """How many records have a write search does not show yet."""
        with self.lock:
            now = self.clock().timestamp()
            return sum(
                1 for recs in self.records.values() for r in recs.values() if now < r.visible_at
            )

    def _apply(
        self, t: str, rec: Record, changes: Mapping[str, str], now: str, *, force: bool = False
    ) -> None:
        self._version += 1
        props = rec.props
        if force or any((props.get(n) or "") != v for n, v in changes.items()):
            self._reindex(rec, creating=force and rec.id not in self.records[t])
        changed = force
        uniq = self._unique[t]
        for name, value in changes.items():
            old = props.get(name)
            if value == "":
                if old is None:
                    continue
                del props[name]
            elif old == value:
                continue
            else:
                props[name] = value
            changed = True
            rec.history.setdefault(name, []).append((value, now, "API"))
            if name in uniq:
                index = uniq[name]
                if old:
                    index.pop(self._unique_key(t, name, old), None)
                if value:
                    index[self._unique_key(t, name, value)] = rec.id
        if changed:
            rec.updated_at = now
            props["hs_lastmodifieddate"] = now
            rec.history.setdefault("hs_lastmodifieddate", []).append((now, now, "CALCULATED"))
            if t == "contacts":
                props["lastmodifieddate"] = now
                rec.history.setdefault("lastmodifieddate", []).append((now, now, "CALCULATED"))

    def _create(self, t: str, changes: Mapping[str, str]) -> Record:
        now = self._now()
        rid = self._new_id()
        rec = Record(
            id=rid, props={"hs_object_id": rid, "createdate": now}, created_at=now, updated_at=now
        )
        rec.history = {
            "hs_object_id": [(rid, now, "CALCULATED")],
            "createdate": [(now, now, "CALCULATED")],
        }
        self._apply(t, rec, changes, now, force=True)
        self.records[t][rid] = rec
        self._order[t].append(int(rid))
        return rec

    def create(self, object_type: str, properties: Mapping[str, Any]) -> dict[str, Any]:
        """Create one record (validated); returns its JSON with all properties."""
        with self.lock:
            t = self._type(object_type)
            rec = self._create(t, self._validate(t, dict(properties), None, creating=True))
            return self.to_json(t, rec, all_props=True)

    def seed(self, object_type: str, records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Bulk insert without limits (fast test and benchmark setup); returns new ids.

        Values are validated like any write; the first invalid record raises ``ApiError``
        and stops the seed (records before it stay).
        """
        with self.lock:
            t = self._type(object_type)
            ids = []
            for props in records:
                rec = self._create(t, self._validate(t, dict(props), None, creating=True))
                ids.append(rec.id)
            return ids

    def _find(
        self, t: str, rid: str, id_property: str | None = None, *, archived: bool = False
    ) -> Record | None:
        if id_property and id_property != "hs_object_id":
            index = self._unique[t].get(id_property)
            if index is None:
                if id_property not in self.properties[t]:
                    raise validation(
                        f'Property "{id_property}" does not exist',
                        context={"idProperty": [id_property]},
                    )
                raise validation(
                    f'Property "{id_property}" is not a unique-value property '
                    "and cannot be used as idProperty"
                )
            found = index.get(self._unique_key(t, id_property, str(rid)))
            rec = self.records[t].get(found) if found else None
        else:
            rec = self.records[t].get(self.resolve_id(t, str(rid)))
        if rec is None or rec.archived != archived:
            return None
        return rec

    def resolve_id(self, t: str, rid: str) -> str:
        """The id a record answers to now: a merged-away id leads to its survivor."""
        seen = 0
        while rid in self.merged[t] and seen < 100:
            rid = self.merged[t][rid]
            seen += 1
        return rid

    def merge(self, object_type: str, primary_id: Any, merged_id: Any) -> dict[str, Any]:
        """``POST /crm/v3/objects/{type}/merge``, as HubSpot merges now: both records
        are merged into a *new* record with a new id (HubSpot's changelog, "Updated
        merge functionality for contacts and companies"). It takes the primary's values
        and the merged record's where the primary has none, the associations of both,
        and lists both ids (primary first, then what had been merged into either) in
        ``hs_merged_object_ids``. The two old ids disappear from lists and search;
        reads by either answer with the new record. Unique values (a contact's
        e-mail, the merged one too) stay taken by the new record."""
        with self.lock:
            t = self._type(object_type)
            pid, mid = str(primary_id or ""), str(merged_id or "")
            if not pid or not mid:
                raise validation(
                    "primaryObjectId and objectIdToMerge are required",
                    context={"primaryObjectId": [pid], "objectIdToMerge": [mid]},
                )
            primary = self._require(t, pid)
            gone = self._require(t, mid)
            if primary.id == gone.id:
                raise validation(f"Cannot merge {SINGULAR[t]} {pid} into itself")
            values: dict[str, str] = {}
            for source in (gone, primary):  # the primary's values win
                values.update(
                    {
                        k: v
                        for k, v in source.props.items()
                        if v
                        and k not in READ_ONLY
                        and k != "hs_merged_object_ids"
                        and k in self.properties[t]
                    }
                )
            ids: list[str] = []
            for old in (primary, gone):
                for i in [old.id, *(old.props.get("hs_merged_object_ids") or "").split(";")]:
                    if i and i not in ids:
                        ids.append(i)
            # free the old records' unique values, then create the merged record
            for old in (primary, gone):
                for name, index in self._unique[t].items():
                    value = old.props.get(name)
                    if value and index.get(self._unique_key(t, name, value)) == old.id:
                        del index[self._unique_key(t, name, value)]
                del self.records[t][old.id]
            merged = self._create(t, values)
            merged.created_at = primary.created_at
            merged.props["createdate"] = primary.props.get("createdate", primary.created_at)
            merged.props["hs_merged_object_ids"] = ";".join(ids)
            merged.history.setdefault("hs_merged_object_ids", []).append(
                (";".join(ids), self._now(), "CALCULATED")
            )
            # the merged-away e-mail stays taken (HubSpot keeps it as a secondary one)
            email = gone.props.get("email") if t == "contacts" else None
            if email:
                self._unique[t]["email"].setdefault(email.lower(), merged.id)
            for old in (primary, gone):
                self.merged[t][old.id] = merged.id
                for other, redirect in self.merged[t].items():
                    if redirect == old.id:
                        self.merged[t][other] = merged.id
                # associations move to the merged record
                for key in [k for k in self._assoc if k[0] == t and k[1] == old.id]:
                    for tid, specs in self._assoc.pop(key).items():
                        self._assoc.get((key[2], tid, t), {}).pop(old.id, None)
                        self._link(t, merged.id, key[2], tid, specs)
            return self.to_json(t, merged, all_props=True)

    def _require(
        self, t: str, rid: str, id_property: str | None = None, *, archived: bool = False
    ) -> Record:
        rec = self._find(t, rid, id_property, archived=archived)
        if rec is None:
            raise not_found(
                f"Object not found.  objectId are usually numeric. ({SINGULAR[t]} {rid})",
                context={"id": [str(rid)]},
            )
        return rec

    def update(
        self,
        object_type: str,
        rid: str,
        properties: Mapping[str, Any],
        id_property: str | None = None,
    ) -> dict[str, Any]:
        """Patch one record (validated); returns its JSON with all properties."""
        with self.lock:
            t = self._type(object_type)
            rec = self._require(t, rid, id_property)
            changes = self._validate(t, dict(properties), rec, creating=False)
            self._apply(t, rec, changes, self._now())
            return self.to_json(t, rec, all_props=True)

    def archive(self, object_type: str, rid: str) -> bool:
        """Archive (soft-delete) one record; modification time is left alone."""
        with self.lock:
            t = self._type(object_type)
            rec = self._find(t, rid)
            if rec is None:
                return False
            rec.archived = True
            rec.archived_at = self._now()
            self._version += 1
            for name, index in self._unique[t].items():
                value = rec.props.get(name)
                if value and index.get(self._unique_key(t, name, value)) == rec.id:
                    del index[self._unique_key(t, name, value)]
            return True

    def get(
        self, object_type: str, rid: str, archived: bool | None = None
    ) -> dict[str, Any] | None:
        """A record's JSON with all properties (any state unless ``archived`` says), or None."""
        with self.lock:
            t = self._type(object_type)
            rec = self.records[t].get(self.resolve_id(t, str(rid)))
            if rec is None or (archived is not None and rec.archived != archived):
                return None
            return self.to_json(t, rec, all_props=True)

    def all(self, object_type: str, archived: bool = False) -> list[dict[str, Any]]:
        """Every live (or every archived) record's JSON, by id."""
        with self.lock:
            t = self._type(object_type)
            return [
                self.to_json(t, r, all_props=True)
                for r in self.records[t].values()
                if r.archived == archived
            ]

    def count(self, object_type: str, archived: bool = False) -> int:
        """How many live (or archived) records of a type exist."""
        with self.lock:
            t = self._type(object_type)
            return sum(1 for r in self.records[t].values() if r.archived == archived)

    # ------------------------------------------------------------------ JSON

    def returned_names(self, t: str, requested: list[str] | None) -> list[str]:
        """Which properties an answer carries: the requested ones plus HubSpot's fixed few."""
        if not requested:
            return list(DEFAULT_RETURNED[t])
        defs = self.properties[t]
        names = [n for n in dict.fromkeys(requested) if n in defs]
        names.extend(n for n in ALWAYS_RETURNED[t] if n not in names)
        return names

    def to_json(
        self,
        t: str,
        rec: Record,
        requested: list[str] | None = None,
        *,
        all_props: bool = False,
        props: Mapping[str, str] | None = None,
        names: list[str] | None = None,
    ) -> dict[str, Any]:
        """A record as ``SimplePublicObject`` JSON."""
        src = rec.props if props is None else props
        if t != "contacts":
            # computed from the associations on every read, as HubSpot keeps it
            links = self._assoc.get((t, rec.id, "contacts"), {})
            count = sum(
                1
                for cid, specs in links.items()
                if specs
                and cid in self.records["contacts"]
                and not self.records["contacts"][cid].archived
            )
            src = {**src, "num_associated_contacts": str(count)}
        if all_props:
            properties: dict[str, str | None] = dict(src)
        else:
            properties = {
                n: src.get(n)
                for n in (names if names is not None else self.returned_names(t, requested))
            }
        out: dict[str, Any] = {
            "id": rec.id,
            "properties": properties,
            "createdAt": rec.created_at,
            "updatedAt": src.get("hs_lastmodifieddate", rec.updated_at),
            "archived": rec.archived,
        }
        if rec.archived:
            out["archivedAt"] = rec.archived_at
        return out

    def history_json(
        self, t: str, rec: Record, requested: Iterable[str] | None
    ) -> dict[str, list[dict[str, Any]]] | None:
        """``propertiesWithHistory`` of a record: each requested, existing property's
        values newest first, as ``ValueWithTimestamp`` (unknown names are ignored, as
        HubSpot documents); None when nothing was requested."""
        names = [n for n in dict.fromkeys(requested or []) if n in self.properties[t]]
        if not requested:
            return None
        return {
            n: [
                {"value": v, "timestamp": ts, "sourceType": src}
                | ({"sourceId": f"private-app:{self.portal_id}"} if src == "API" else {})
                for v, ts, src in reversed(rec.history.get(n, []))
            ]
            for n in names
        }

    # ------------------------------------------------------------------ reads

    def list_page(
        self, object_type: str, limit: int, after: str | None, archived: bool
    ) -> tuple[list[Record], str | None]:
        """A page of records by ascending id; ``after`` is the next id to return."""
        with self.lock:
            t = self._type(object_type)
            order = self._order[t]
            start = 0
            if after:
                try:
                    start = bisect.bisect_left(order, int(after))
                except ValueError:
                    raise validation(f"Invalid after cursor: {after}") from None
            page: list[Record] = []
            records = self.records[t]
            i = start
            while i < len(order):
                rec = records.get(str(order[i]))
                i += 1
                if rec is None or rec.archived != archived:
                    continue
                if len(page) == limit:
                    return page, rec.id
                page.append(rec)
            return page, None

    def search(self, object_type: str, body: Any) -> dict[str, Any]:
        """Run a search request; returns the response body."""
        with self.lock:
            t = self._type(object_type)
            defs = self.properties[t]
            cs = compile_search(body, defs)
            now = self.clock().timestamp()
            qprops = QUERY_PROPERTIES[t]
            cache_key = None
            if isinstance(body, dict):
                query_shape = {
                    k: v for k, v in body.items() if k not in ("after", "limit", "properties")
                }
                cache_key = (t, self._version, json.dumps(query_shape, sort_keys=True, default=str))
                cached = self._search_cache
                # valid until the next pending write becomes searchable
                if cached is not None and cached[0] == cache_key and now < self._cache_until:
                    return self._search_page(t, cs, cached[1])
            hits: list[tuple[Record, Mapping[str, str]]] = []
            until = math.inf
            for rec in self.records[t].values():
                if rec.archived:
                    continue
                visible: Mapping[str, str] = rec.props
                if now < rec.visible_at:
                    until = min(until, rec.visible_at)
                    if rec.indexed_props is None:
                        continue  # created too recently to be indexed
                    visible = rec.indexed_props
                if matches(cs, visible, qprops):
                    hits.append((rec, visible))
            if cs.sort_prop:
                sp = cs.sort_prop
                key = sort_key(defs[sp])
                present = [h for h in hits if h[1].get(sp)]
                missing = [h for h in hits if not h[1].get(sp)]
                present.sort(key=lambda h: key(h[1].get(sp)), reverse=cs.descending)
                hits = present + missing
            if cache_key is not None:
                self._search_cache = (cache_key, hits)
                self._cache_until = until
            return self._search_page(t, cs, hits)

    def _search_page(
        self, t: str, cs: CompiledSearch, hits: list[tuple[Record, Mapping[str, str]]]
    ) -> dict[str, Any]:
        """One page of an evaluated search, as the response body."""
        total = len(hits)
        page = hits[cs.offset : cs.offset + cs.limit]
        names = self.returned_names(t, cs.properties)
        results = [self.to_json(t, rec, props=visible, names=names) for rec, visible in page]
        out: dict[str, Any] = {"total": total, "results": results}
        nxt = cs.offset + cs.limit
        if nxt < total:
            out["paging"] = {"next": {"after": str(nxt), "link": ""}}
        return out

    # ------------------------------------------------------------------ batches

    @staticmethod
    def _check_batch(inputs: Any, maximum: int = MAX_BATCH) -> list[Any]:
        if not isinstance(inputs, list):
            raise validation("Request body must have an inputs list")
        if len(inputs) > maximum:
            raise validation(
                f"Batch input limit exceeded: {len(inputs)} inputs, the maximum is {maximum}",
                context={"inputs": [str(len(inputs))]},
            )
        return inputs

    def batch_read(
        self,
        object_type: str,
        inputs: Any,
        properties: list[str] | None,
        id_property: str | None,
        archived: bool = False,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Read up to 100 records; missing ones become per-input OBJECT_NOT_FOUND errors."""
        with self.lock:
            t = self._type(object_type)
            items = self._check_batch(inputs)
            names = self.returned_names(t, properties)
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            seen: set[str] = set()
            for i, item in enumerate(items):
                rid = str(item.get("id", "")) if isinstance(item, dict) else ""
                if rid in seen:
                    continue
                seen.add(rid)
                rec = self._find(t, rid, id_property, archived=archived)
                if rec is None:
                    err = not_found(
                        f"Could not get some {SINGULAR[t].upper()} objects, they may be deleted "
                        "or not exist. Check that ids are valid."
                    )
                    errors.append(err.batch_entry({"id": [rid], "index": [str(i)]}))
                    continue
                results.append(self.to_json(t, rec, names=names))
            return results, errors

    def _unique_within(
        self, t: str, planned: Iterable[tuple[Record | None, Mapping[str, str]]]
    ) -> None:
        """Two inputs of one batch giving one unique value to different records: the
        batch is refused (HubSpot cannot write both)."""
        for name in self._unique[t]:
            seen: dict[str, str | None] = {}
            for rec, out in planned:
                value = out.get(name)
                if not value:
                    continue
                key = self._unique_key(t, name, value)
                owner = rec.id if rec is not None else None
                if key in seen and (owner is None or seen[key] != owner):
                    raise validation(
                        f'Duplicate value "{value}" for unique property {name} in batch input',
                        context={"propertyName": [name]},
                    )
                seen[key] = owner

    def batch_create(
        self, object_type: str, inputs: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Create up to 100 records.

        As HubSpot: only when *every* input carries an ``objectWriteTraceId``
        (multi-status error handling) are invalid inputs per-input errors (207) beside the
        created records; otherwise one invalid input refuses the whole batch (400, or 409
        naming the record that has the unique value) and nothing is created."""
        with self.lock:
            t = self._type(object_type)
            items = self._check_batch(inputs)
            traced = bool(items) and all(
                isinstance(i, dict) and i.get("objectWriteTraceId") for i in items
            )
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            if not traced:
                planned: list[tuple[Record | None, dict[str, str]]] = []
                for item in items:
                    if not isinstance(item, dict):
                        raise validation("Each input must be an object with properties")
                    planned.append(
                        (None, self._validate(t, item.get("properties"), None, creating=True))
                    )
                self._unique_within(t, planned)
                for _, changes in planned:
                    results.append(self.to_json(t, self._create(t, changes), all_props=True))
                return results, errors
            for i, item in enumerate(items):
                trace = str(item["objectWriteTraceId"])
                ctx = {"index": [str(i)], "objectWriteTraceId": [trace]}
                try:
                    rec = self._create(
                        t, self._validate(t, item.get("properties"), None, creating=True)
                    )
                except ApiError as exc:
                    errors.append(exc.batch_entry(ctx))
                    continue
                out = self.to_json(t, rec, all_props=True)
                out["objectWriteTraceId"] = trace
                results.append(out)
            return results, errors

    def batch_update(
        self, object_type: str, inputs: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Update up to 100 records by id (or ``idProperty``), all or nothing, as HubSpot:
        an unknown id, a bad value or a unique value another record has refuses the
        whole batch (404, 400 or 409) and nothing is written."""
        with self.lock:
            t = self._type(object_type)
            items = self._check_batch(inputs)
            ids = [str(i.get("id")) for i in items if isinstance(i, dict)]
            dupes = (
                sorted({x for x in ids if ids.count(x) > 1}) if len(set(ids)) != len(ids) else []
            )
            if dupes:
                raise validation(
                    f"Duplicate IDs found in batch input: {dupes}. IDs must be unique",
                    context={"ids": dupes},
                )
            planned: list[tuple[Record, dict[str, str], str | None]] = []
            for item in items:
                if not isinstance(item, dict):
                    raise validation("Each input must be an object with id and properties")
                rec = self._require(t, str(item.get("id", "")), item.get("idProperty"))
                changes = self._validate(t, item.get("properties"), rec, creating=False)
                trace = item.get("objectWriteTraceId")
                planned.append((rec, changes, str(trace) if trace else None))
            self._unique_within(t, [(rec, changes) for rec, changes, _ in planned])
            results: list[dict[str, Any]] = []
            now = self._now()
            for rec, changes, trace in planned:
                self._apply(t, rec, changes, now)
                out = self.to_json(t, rec, all_props=True)
                if trace:
                    out["objectWriteTraceId"] = trace
                results.append(out)
            return results, []

    def batch_upsert(
        self, object_type: str, inputs: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Create-or-update up to 100 records keyed by a unique property; results carry
        ``new``. All or nothing, as HubSpot: a non-unique ``idProperty`` or a bad value
        refuses the batch (400), a unique value another record has too (409)."""
        with self.lock:
            t = self._type(object_type)
            items = self._check_batch(inputs)
            planned: list[tuple[Record | None, dict[str, str]]] = []
            keys: list[str] = []
            for item in items:
                rid = str(item.get("id", "")) if isinstance(item, dict) else ""
                id_prop = item.get("idProperty") if isinstance(item, dict) else None
                if not isinstance(item, dict) or not rid:
                    raise validation("Each upsert input needs id, idProperty and properties")
                if not id_prop or id_prop == "hs_object_id" or id_prop not in self._unique[t]:
                    raise validation(
                        f"Unable to perform update/upsert by non-unique {TYPE_IDS[t]} "
                        f"property {id_prop} in portal ID {self.portal_id}",
                        context={"idProperty": [str(id_prop)]},
                    )
                key = f"{id_prop}:{self._unique_key(t, id_prop, rid)}"
                if key in keys:
                    raise validation(
                        f"Duplicate IDs found in batch input: [{rid}]. IDs must be unique",
                        context={"ids": [rid]},
                    )
                keys.append(key)
                rec = self._find(t, rid, id_prop)
                props = dict(item.get("properties") or {})
                if rec is None:
                    props.setdefault(id_prop, rid)
                    planned.append((None, self._validate(t, props, None, creating=True)))
                else:
                    planned.append((rec, self._validate(t, props, rec, creating=False)))
            self._unique_within(t, planned)
            results: list[dict[str, Any]] = []
            now = self._now()
            for found, changes in planned:
                if found is None:
                    rec = self._create(t, changes)
                else:
                    rec = found
                    self._apply(t, rec, changes, now)
                out = self.to_json(t, rec, all_props=True)
                out["new"] = found is None
                results.append(out)
            return results, []

    def batch_archive(self, object_type: str, inputs: Any) -> None:
        """Archive up to 100 records; unknown ids are ignored (HubSpot answers 204 anyway)."""
        with self.lock:
            items = self._check_batch(inputs)
            for item in items:
                if isinstance(item, dict) and item.get("id") is not None:
                    self.archive(object_type, str(item["id"]))

    # ------------------------------------------------------------------ properties

    def property_json(self, t: str, prop: PropertyDef) -> dict[str, Any]:
        """A property's JSON, with pipeline-driven options filled in."""
        if t == "deals" and prop.name == "pipeline":
            opts = [
                {
                    "label": p["label"],
                    "value": pid,
                    "displayOrder": i,
                    "hidden": False,
                    "description": "",
                }
                for i, (pid, p) in enumerate(self.pipelines.items())
            ]
            return prop.to_json(opts)
        if t == "deals" and prop.name == "dealstage":
            opts = []
            for p in self.pipelines.values():
                for s in p["stages"]:
                    opts.append(
                        {
                            "label": s["label"],
                            "value": s["id"],
                            "displayOrder": s["displayOrder"],
                            "hidden": False,
                            "description": "",
                        }
                    )
            return prop.to_json(opts)
        return prop.to_json()

    def list_properties(self, object_type: str) -> list[dict[str, Any]]:
        """Every property definition of a type."""
        with self.lock:
            t = self._type(object_type)
            return [self.property_json(t, p) for p in self.properties[t].values()]

    def get_property(self, object_type: str, name: str) -> dict[str, Any]:
        """One property definition, 404 if unknown."""
        with self.lock:
            t = self._type(object_type)
            prop = self.properties[t].get(name)
            if prop is None:
                raise not_found(
                    f"Unable to find property {name} on {t}", context={"propertyName": [name]}
                )
            return self.property_json(t, prop)

    @staticmethod
    def _options(raw: Any) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise validation("options must be a list")
        out = []
        for i, o in enumerate(raw):
            if not isinstance(o, dict) or "value" not in o:
                raise validation("each option needs label and value")
            out.append(
                {
                    "label": str(o.get("label", o["value"])),
                    "value": str(o["value"]),
                    "displayOrder": int(
                        o.get("displayOrder", i) if o.get("displayOrder") is not None else i
                    ),
                    "hidden": bool(o.get("hidden", False)),
                    "description": str(o.get("description") or ""),
                }
            )
        return out

    def create_property(self, object_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a custom property; 409 if the name exists; ``hasUniqueValue`` builds an index."""
        with self.lock:
            t = self._type(object_type)
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise validation("name is required")
            if name in self.properties[t]:
                raise ApiError(
                    409,
                    "OBJECT_ALREADY_EXISTS",
                    f"Property named '{name}' already exists.",
                    context={"name": [name]},
                )
            ptype = body.get("type")
            if ptype not in PROPERTY_TYPES:
                raise validation(f"type must be one of {list(PROPERTY_TYPES)}, got {ptype!r}")
            field_type = body.get("fieldType") or {
                "number": "number",
                "date": "date",
                "datetime": "date",
                "bool": "booleancheckbox",
                "enumeration": "select",
            }.get(str(ptype), "text")
            if field_type not in FIELD_TYPES:
                raise validation(
                    f"fieldType must be one of {list(FIELD_TYPES)}, got {field_type!r}"
                )
            groups = {g for g, _ in GROUPS[t]}
            group = body.get("groupName") or GROUPS[t][0][0]
            if group not in groups:
                raise validation(
                    f"Property group {group!r} does not exist; groups: {sorted(groups)}"
                )
            options = self._options(body.get("options"))
            if ptype == "enumeration" and not options:
                raise validation("enumeration properties need at least one option")
            if ptype == "bool" and not options:
                options = self._options(
                    [{"label": "Yes", "value": "true"}, {"label": "No", "value": "false"}]
                )
            now = self._now()
            prop = PropertyDef(
                name=name,
                label=str(body.get("label") or name),
                type=str(ptype),
                field_type=str(field_type),
                group_name=str(group),
                options=options,
                has_unique_value=bool(body.get("hasUniqueValue", False)),
                hubspot_defined=False,
                description=str(body.get("description") or ""),
                display_order=int(
                    body.get("displayOrder", -1) if body.get("displayOrder") is not None else -1
                ),
                hidden=bool(body.get("hidden", False)),
                created_at=now,
                updated_at=now,
            )
            self.properties[t][name] = prop
            if prop.has_unique_value:
                self._unique[t][name] = {}
            return self.property_json(t, prop)

    def update_property(
        self, object_type: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Update label/description/options/group of a property (not its uniqueness)."""
        with self.lock:
            t = self._type(object_type)
            prop = self.properties[t].get(name)
            if prop is None:
                raise not_found(f"Unable to find property {name} on {t}")
            if "label" in body:
                prop.label = str(body["label"])
            if "description" in body:
                prop.description = str(body["description"] or "")
            if "options" in body:
                prop.options = self._options(body["options"])
            if "groupName" in body:
                prop.group_name = str(body["groupName"])
            if "hidden" in body:
                prop.hidden = bool(body["hidden"])
            if "displayOrder" in body:
                prop.display_order = int(body["displayOrder"])
            if "type" in body and body["type"] in PROPERTY_TYPES and not prop.hubspot_defined:
                prop.type = str(body["type"])
            if "fieldType" in body and body["fieldType"] in FIELD_TYPES:
                prop.field_type = str(body["fieldType"])
            prop.updated_at = self._now()
            return self.property_json(t, prop)

    def archive_property(self, object_type: str, name: str) -> None:
        """Delete a custom property (values stay on records but are no longer readable)."""
        with self.lock:
            t = self._type(object_type)
            prop = self.properties[t].get(name)
            if prop is None:
                raise not_found(f"Unable to find property {name} on {t}")
            if prop.hubspot_defined:
                raise validation(f"Property {name} is HubSpot-defined and cannot be archived")
            del self.properties[t][name]
            self._unique[t].pop(name, None)

    def property_groups(self, object_type: str) -> list[dict[str, Any]]:
        """The (fixed) property groups of a type."""
        t = self._type(object_type)
        return [
            {"name": g, "label": label, "displayOrder": i, "archived": False}
            for i, (g, label) in enumerate(GROUPS[t])
        ]

    # ------------------------------------------------------------------ pipelines

    def add_pipeline(self, pipeline_id: str, label: str, stages: list[str]) -> dict[str, Any]:
        """Add a deal pipeline (in-process only), e.g. to test per-portal stage mapping."""
        with self.lock:
            p = build_pipeline(pipeline_id, label, stages, self._now())
            p["displayOrder"] = len(self.pipelines)
            self.pipelines[pipeline_id] = p
            return p

    def get_pipelines(self, object_type: str) -> list[dict[str, Any]]:
        """Pipelines of a type (only deals have any here)."""
        with self.lock:
            return list(self.pipelines.values()) if self._type(object_type) == "deals" else []

    # ------------------------------------------------------------------ associations

    def _assoc_pair(self, from_raw: str, to_raw: str) -> tuple[str, str]:
        return self._type(from_raw), self._type(to_raw)

    def _check_spec(self, ft: str, tt: str, category: str, type_id: int) -> None:
        if category == "HUBSPOT_DEFINED":
            valid = {
                x
                for x in (ASSOC_DEFAULT.get((ft, tt)), ASSOC_PRIMARY.get((ft, tt)))
                if x is not None
            }
            if type_id not in valid:
                raise validation(
                    f"associationTypeId {type_id} is not valid for {SINGULAR[ft]} to "
                    f"{SINGULAR[tt]} (valid: {sorted(valid)})"
                )
        elif category not in ("USER_DEFINED", "INTEGRATOR_DEFINED"):
            raise validation(f"Unknown associationCategory {category!r}")

    def _link(self, ft: str, fid: str, tt: str, tid: str, specs: Iterable[AssocSpec]) -> None:
        fwd = self._assoc.setdefault((ft, fid, tt), {}).setdefault(tid, set())
        rev = self._assoc.setdefault((tt, tid, ft), {}).setdefault(fid, set())
        for category, type_id in specs:
            if category == "HUBSPOT_DEFINED" and type_id == ASSOC_PRIMARY.get((ft, tt)):
                # Only one primary per record: moving it unsets the previous one.
                for other, other_specs in self._assoc.get((ft, fid, tt), {}).items():
                    if other != tid and (category, type_id) in other_specs:
                        other_specs.discard((category, type_id))
                        self._assoc.get((tt, other, ft), {}).get(fid, set()).discard(
                            (category, _REVERSE[type_id])
                        )
            fwd.add((category, type_id))
            rev.add(
                (
                    category,
                    _REVERSE.get(type_id, type_id) if category == "HUBSPOT_DEFINED" else type_id,
                )
            )

    def _require_ids(self, ft: str, fid: str, tt: str, tid: str) -> None:
        self._require(ft, fid)
        self._require(tt, tid)

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        specs: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create association(s) in both directions; default (unlabeled) when no specs given."""
        with self.lock:
            ft, tt = self._assoc_pair(from_type, to_type)
            fid, tid = str(from_id), str(to_id)
            self._require_ids(ft, fid, tt, tid)
            parsed = self._parse_specs(ft, tt, specs)
            self._link(ft, fid, tt, tid, parsed)
            return self._labels_json(ft, fid, tt, tid)

    def _parse_specs(self, ft: str, tt: str, specs: Any) -> list[AssocSpec]:
        if specs is None:
            default = ASSOC_DEFAULT.get((ft, tt))
            if default is None:
                raise validation(f"No default association between {ft} and {tt}")
            return [("HUBSPOT_DEFINED", default)]
        if not isinstance(specs, list) or not specs:
            raise validation(
                "Association body must be a non-empty list of "
                "{associationCategory, associationTypeId}"
            )
        out: list[AssocSpec] = []
        for s in specs:
            if not isinstance(s, dict):
                raise validation("Each association spec must be an object")
            category = str(s.get("associationCategory", "HUBSPOT_DEFINED"))
            try:
                type_id = int(s.get("associationTypeId"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise validation("associationTypeId must be an integer") from None
            self._check_spec(ft, tt, category, type_id)
            out.append((category, type_id))
        return out

    def _labels_json(self, ft: str, fid: str, tt: str, tid: str) -> dict[str, Any]:
        specs = self._assoc.get((ft, fid, tt), {}).get(tid, set())
        labels = sorted(
            "Primary"
            for c, i in specs
            if c == "HUBSPOT_DEFINED" and i == ASSOC_PRIMARY.get((ft, tt))
        )
        return {
            "fromObjectTypeId": TYPE_IDS[ft],
            "fromObjectId": int(fid),
            "toObjectTypeId": TYPE_IDS[tt],
            "toObjectId": int(tid),
            "labels": labels,
        }

    def _types_json(self, ft: str, tt: str, specs: set[AssocSpec]) -> list[dict[str, Any]]:
        out = []
        for category, type_id in sorted(specs, key=lambda s: (s[0], s[1])):
            label = (
                "Primary"
                if category == "HUBSPOT_DEFINED" and type_id == ASSOC_PRIMARY.get((ft, tt))
                else None
            )
            out.append({"category": category, "typeId": type_id, "label": label})
        return out

    def associations_of(self, from_type: str, from_id: str, to_type: str) -> list[dict[str, Any]]:
        """Live associated records of one record: ``[{toObjectId, associationTypes}]``."""
        with self.lock:
            ft, tt = self._assoc_pair(from_type, to_type)
            links = self._assoc.get((ft, str(from_id), tt), {})
            out = []
            for tid in sorted(links, key=int):
                specs = links[tid]
                target = self.records[tt].get(tid)
                if not specs or target is None or target.archived:
                    continue
                out.append(
                    {"toObjectId": int(tid), "associationTypes": self._types_json(ft, tt, specs)}
                )
            return out

    def unassociate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        specs: list[AssocSpec] | None = None,
    ) -> None:
        """Remove association(s) in both directions (all types when ``specs`` is None)."""
        with self.lock:
            ft, tt = self._assoc_pair(from_type, to_type)
            fid, tid = str(from_id), str(to_id)
            fwd = self._assoc.get((ft, fid, tt), {})
            rev = self._assoc.get((tt, tid, ft), {})
            if specs is None:
                fwd.pop(tid, None)
                rev.pop(fid, None)
                return
            for category, type_id in specs:
                fwd.get(tid, set()).discard((category, type_id))
                rev.get(fid, set()).discard(
                    (
                        category,
                        _REVERSE.get(type_id, type_id)
                        if category == "HUBSPOT_DEFINED"
                        else type_id,
                    )
                )

    def _assoc_batch(
        self, from_type: str, to_type: str, inputs: Any, limit: int
    ) -> tuple[str, str, list[Any]]:
        """The object types and the checked inputs of an association batch call."""
        ft, tt = self._assoc_pair(from_type, to_type)
        return ft, tt, self._check_batch(inputs, limit)

    def assoc_batch_read(
        self, from_type: str, to_type: str, inputs: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Batch read (≤1,000): ids without associations become NO_ASSOCIATIONS_FOUND errors.

        Each input gets at most :data:`ASSOC_READ_PAGE` associated records; when it has
        more, its result carries ``paging.next.after``, which the client sends back as
        that input's ``after`` to read the next page (HubSpot pages per input)."""
        with self.lock:
            ft, tt, items = self._assoc_batch(from_type, to_type, inputs, 1000)
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for i, item in enumerate(items):
                fid = str(item.get("id", "")) if isinstance(item, dict) else ""
                after = item.get("after") if isinstance(item, dict) else None
                start = _assoc_offset(after) if after else 0
                every = self.associations_of(ft, fid, tt)
                to = every[start : start + ASSOC_READ_PAGE]
                if not to:
                    err = ApiError(
                        404,
                        "OBJECT_NOT_FOUND",
                        f"No {SINGULAR[tt]} is associated with {SINGULAR[ft]} {fid}.",
                        sub_category="crm.associations.NO_ASSOCIATIONS_FOUND",
                    )
                    errors.append(err.batch_entry({"fromObjectId": [fid], "index": [str(i)]}))
                    continue
                row: dict[str, Any] = {"from": {"id": fid}, "to": to}
                if start + ASSOC_READ_PAGE < len(every):
                    row["paging"] = {
                        "next": {"after": _assoc_cursor(start + ASSOC_READ_PAGE), "link": None}
                    }
                results.append(row)
            return results, errors

    def assoc_batch_create(
        self, from_type: str, to_type: str, inputs: Any
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Batch create (≤2,000) ``{from:{id}, to:{id}, types:[...]}``; per-input errors."""
        with self.lock:
            ft, tt, items = self._assoc_batch(from_type, to_type, inputs, 2000)
            results: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            for i, item in enumerate(items):
                try:
                    if not isinstance(item, dict):
                        raise validation("Each input needs from, to and types")
                    fid = str((item.get("from") or {}).get("id", ""))
                    tid = str((item.get("to") or {}).get("id", ""))
                    self._require_ids(ft, fid, tt, tid)
                    specs = self._parse_specs(ft, tt, item.get("types"))
                except ApiError as exc:
                    errors.append(exc.batch_entry({"index": [str(i)]}))
                    continue
                self._link(ft, fid, tt, tid, specs)
                results.append(self._labels_json(ft, fid, tt, tid))
            return results, errors

    def assoc_batch_archive(self, from_type: str, to_type: str, inputs: Any) -> None:
        """Batch archive ``{from:{id}, to:[{id}]}``; unknown pairs are ignored."""
        with self.lock:
            items = self._check_batch(inputs, 2000)
            for item in items:
                if not isinstance(item, dict):
                    continue
                fid = str((item.get("from") or {}).get("id", ""))
                to = item.get("to") or []
                for target in to if isinstance(to, list) else [to]:
                    if isinstance(target, dict):
                        self.unassociate(from_type, fid, to_type, str(target.get("id", "")))

    # ------------------------------------------------------------------ events

    def send_event(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Record a custom behavioural event.

        ``email`` resolves to the contact with that email, creating the contact when none
        exists (HubSpot documents the same).  Unknown event names are registered on first
        use instead of requiring an event definition.
        """
        with self.lock:
            name = body.get("eventName")
            if not isinstance(name, str) or not name:
                raise validation("eventName is required")
            object_id = body.get("objectId")
            email = body.get("email")
            utk = body.get("utk")
            if object_id:
                self._require("contacts", str(object_id))
                oid = str(object_id)
            elif email:
                found = self._unique["contacts"]["email"].get(str(email).lower())
                oid = (
                    found
                    if found
                    else self._create(
                        "contacts",
                        self._validate("contacts", {"email": str(email)}, None, creating=True),
                    ).id
                )
            elif utk:
                oid = "utk:" + str(utk)
            else:
                raise validation("One of email, objectId or utk is required")
            occurred = body.get("occurredAt")
            try:
                occurred_iso = canonical_datetime(str(occurred)) if occurred else self._now()
            except ValueError:
                raise validation(f"occurredAt {occurred!r} is not a valid datetime") from None
            props = body.get("properties") or {}
            if not isinstance(props, dict):
                raise validation("properties must be an object")
            event = {
                "id": str(uuid.uuid4()),
                "eventType": name,
                "objectType": "contact",
                "objectId": oid,
                "occurredAt": occurred_iso,
                "properties": {str(k): "" if v is None else str(v) for k, v in props.items()},
            }
            self.events.append(event)
            self.event_types.add(name)
            return event

    def list_events(
        self,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        event_type: str | None = None,
        occurred_after: str | None = None,
        occurred_before: str | None = None,
        descending: bool = True,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Filtered, sorted page of events; ``after`` is an offset cursor."""
        with self.lock:
            want_type = None
            if object_type:
                nt = normalize_object_type(object_type)
                want_type = SINGULAR[nt] if nt else object_type
            try:
                lo = canonical_datetime(occurred_after) if occurred_after else None
                hi = canonical_datetime(occurred_before) if occurred_before else None
            except ValueError:
                raise validation(
                    "occurredAfter/occurredBefore must be ISO-8601 or epoch milliseconds"
                ) from None
            hits = [
                e
                for e in self.events
                if (want_type is None or e["objectType"] == want_type)
                and (object_id is None or e["objectId"] == str(object_id))
                and (event_type is None or e["eventType"] == event_type)
                and (lo is None or e["occurredAt"] > lo)
                and (hi is None or e["occurredAt"] < hi)
            ]
            hits.sort(key=lambda e: (e["occurredAt"], e["id"]), reverse=descending)
            try:
                start = int(after) if after else 0
            except ValueError:
                raise validation(f"Invalid after cursor: {after}") from None
            page = [dict(e, properties=dict(e["properties"])) for e in hits[start : start + limit]]
            nxt = str(start + limit) if start + limit < len(hits) else None
            return page, nxt

    # ------------------------------------------------------------------ communication preferences

    def subscription_definitions(self) -> list[dict[str, Any]]:
        """The portal's (fixed) subscription types."""
        return [
            {
                "id": sid,
                "name": name,
                "description": desc,
                "isActive": True,
                "isDefault": sid == "1001",
                "isInternal": False,
                "purpose": "Marketing",
                "communicationMethod": "Email",
                "createdAt": "2020-01-01T00:00:00.000Z",
                "updatedAt": "2020-01-01T00:00:00.000Z",
            }
            for sid, name, desc in SUBSCRIPTION_DEFINITIONS
        ]

    def email_status(self, email: str) -> dict[str, Any]:
        """Subscription statuses of an address (NOT_SUBSCRIBED unless subscribed)."""
        with self.lock:
            mine = self.subscriptions.get(email.lower(), {})
            statuses = []
            for sid, name, desc in SUBSCRIPTION_DEFINITIONS:
                entry = mine.get(sid)
                statuses.append(self._status_json(sid, name, desc, entry))
            return {"recipient": email, "subscriptionStatuses": statuses}

    @staticmethod
    def _status_json(
        sid: str, name: str, desc: str, entry: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return {
            "id": sid,
            "name": name,
            "description": desc,
            "status": entry["status"] if entry else "NOT_SUBSCRIBED",
            "sourceOfStatus": "SUBSCRIPTION_STATUS",
            "legalBasis": entry.get("legalBasis") if entry else None,
            "legalBasisExplanation": entry.get("legalBasisExplanation") if entry else None,
            "preferenceGroupName": None,
            "brandId": None,
        }

    def set_subscription(
        self,
        email: str,
        subscription_id: str,
        subscribed: bool,
        legal_basis: str | None = None,
        explanation: str | None = None,
    ) -> dict[str, Any]:
        """Subscribe/unsubscribe an address; 400 if it is already in that state, like HubSpot."""
        with self.lock:
            defs = {sid: (name, desc) for sid, name, desc in SUBSCRIPTION_DEFINITIONS}
            sid = str(subscription_id)
            if sid not in defs:
                raise validation(f"Subscription id {sid} does not exist")
            if not email or "@" not in email:
                raise validation(f"{email!r} is not a valid email address")
            mine = self.subscriptions.setdefault(email.lower(), {})
            current = mine.get(sid, {}).get("status", "NOT_SUBSCRIBED")
            target = "SUBSCRIBED" if subscribed else "NOT_SUBSCRIBED"
            if current == target:
                verb = "subscribed to" if subscribed else "unsubscribed from"
                raise validation(f"{email} is already {verb} subscription {sid}")
            mine[sid] = {
                "status": target,
                "legalBasis": legal_basis,
                "legalBasisExplanation": explanation,
                # when the status changed, on the portal's clock (v4 reads show it)
                "timestamp": self._now(),
            }
            return self._status_json(sid, defs[sid][0], defs[sid][1], mine[sid])

    def now_iso(self) -> str:
        """The portal clock's time, as HubSpot writes times."""
        return self._now()

    def email_statuses_v4(self, emails: Sequence[str]) -> list[dict[str, Any]]:
        """v4 statuses of each address: one entry per subscription whose status was
        ever set (``status``, ``timestamp`` of that change, ``source``), as HubSpot's
        ``/communication-preferences/v4/statuses/batch/read`` answers."""
        names = {sid: name for sid, name, _ in SUBSCRIPTION_DEFINITIONS}
        with self.lock:
            out = []
            for email in emails:
                mine = self.subscriptions.get(email.lower(), {})
                statuses = [
                    {
                        "channel": "EMAIL",
                        "status": entry["status"],
                        "subscriberIdString": email,
                        "subscriptionId": int(sid),
                        "subscriptionName": names.get(sid, sid),
                        "timestamp": entry.get("timestamp") or "1970-01-01T00:00:00.000Z",
                        "source": "Public API",
                        "legalBasis": entry.get("legalBasis"),
                        "legalBasisExplanation": entry.get("legalBasisExplanation"),
                    }
                    for sid, entry in sorted(mine.items())
                ]
                out.append({"subscriberIdString": email, "statuses": statuses})
            return out

    # ------------------------------------------------------------------ persistence

    def dump(self) -> dict[str, Any]:
        """Everything needed to restore this portal (``--data FILE``)."""
        with self.lock:
            return {
                "name": self.name,
                "portal_id": self.portal_id,
                "next_id": self._next_id,
                "records": {
                    t: [
                        {
                            "id": r.id,
                            "props": r.props,
                            "createdAt": r.created_at,
                            "updatedAt": r.updated_at,
                            "archived": r.archived,
                            "archivedAt": r.archived_at,
                        }
                        for r in recs.values()
                    ]
                    for t, recs in self.records.items()
                },
                "custom_properties": {
                    t: [p.to_store() for p in ps.values() if not p.hubspot_defined]
                    for t, ps in self.properties.items()
                },
                "pipelines": self.pipelines,
                "associations": [
                    [k[0], k[1], k[2], tid, sorted([list(s) for s in specs])]
                    for k, links in self._assoc.items()
                    for tid, specs in links.items()
                    if specs
                ],
                "events": self.events,
                "event_types": sorted(self.event_types),
                "subscriptions": self.subscriptions,
                "merged": self.merged,
            }

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore state saved by :meth:`dump` (replaces current records)."""
        with self.lock:
            self._version += 1
            for t, plist in (data.get("custom_properties") or {}).items():
                for p in plist:
                    prop = PropertyDef(hubspot_defined=False, **p)
                    self.properties[t][prop.name] = prop
                    if prop.has_unique_value:
                        self._unique[t][prop.name] = {}
            for t in OBJECT_TYPES:
                self.records[t] = {}
                self._order[t] = []
                for name in self._unique[t]:
                    self._unique[t][name] = {}
            for t, recs in (data.get("records") or {}).items():
                for r in sorted(recs, key=lambda r: int(r["id"])):
                    rec = Record(
                        id=r["id"],
                        props=dict(r["props"]),
                        created_at=r["createdAt"],
                        updated_at=r["updatedAt"],
                        archived=r["archived"],
                        archived_at=r.get("archivedAt"),
                    )
                    # a saved portal keeps values, not their history: each starts anew
                    rec.history = {k: [(v, rec.updated_at, "API")] for k, v in rec.props.items()}
                    self.records[t][rec.id] = rec
                    self._order[t].append(int(rec.id))
                    if not rec.archived:
                        for name, index in self._unique[t].items():
                            value = rec.props.get(name)
                            if value:
                                index[self._unique_key(t, name, value)] = rec.id
            if data.get("pipelines"):
                self.pipelines = dict(data["pipelines"])
            self._assoc = {}
            for ft, fid, tt, tid, specs in data.get("associations") or []:
                self._assoc.setdefault((ft, fid, tt), {})[tid] = {
                    (str(c), int(i)) for c, i in specs
                }
            self.events = list(data.get("events") or [])
            self.event_types.update(data.get("event_types") or [])
            self.subscriptions = dict(data.get("subscriptions") or {})
            for t, redirects in (data.get("merged") or {}).items():
                self.merged.setdefault(t, {}).update(redirects)
            self._next_id = max(int(data.get("next_id", self._next_id)), self._next_id)
