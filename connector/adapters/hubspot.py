"""The HubSpot adapter, through the official ``hubspot-api-client``.

Everything HubSpot-specific stays in this module: SDK objects and exceptions are turned
into :class:`~connector.records.Record`, :class:`~connector.records.WriteResult` and
:class:`~connector.adapters.base.AdapterError` before they leave it.

Facts it honours (see ``HUBSPOT_API.md``): batches of at most 100 inputs; search pages
of at most 200 and at most 10,000 results per query (so change windows are walked
with a moving lower bound); search is eventually consistent and never shows archived
records (archives are found by listing the recycle bin); association batch reads page
per input (each input's ``paging.next.after`` is followed); the client does not retry
POSTs, so retries are ours (``tenacity``): 429 and 5xx and dropped connections are
retried with the server's ``Retry-After`` or policy honoured, 4xx validation errors
never are. A batch refused whole for one bad input is split until the bad input is
isolated, so the rest of the batch still goes through.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import urllib3
from hubspot import HubSpot
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from connector.adapters.base import AdapterError
from connector.adapters.ratelimit import limiter_for
from connector.records import Event, PropertySpec, Record, WriteResult, utcnow

log = logging.getLogger("dealsync.hubspot")

T = TypeVar("T")

DEFAULT_HOST = "https://api.hubapi.com"
BATCH = 100
SEARCH_PAGE = 200
SEARCH_CAP = 10_000
ASSOC_READ_BATCH = 1000
ASSOC_CREATE_BATCH = 2000  # v4 association batch create takes up to 2,000 inputs
_ONE_MS = timedelta(milliseconds=1)

MODIFIED = {"contacts": "lastmodifieddate"}  # everything else: hs_lastmodifieddate
# Ids merged into a record (semicolon-separated): read with every record, so the engine
# can follow a merge made in HubSpot (connector/engine/merges.py, follow_merges).
MERGED_IDS = "hs_merged_object_ids"

# (from, to) → HubSpot-defined association type id (the unlabelled default).
ASSOCIATION_TYPES = {
    ("deals", "companies"): 341,
    ("companies", "deals"): 342,
    ("deals", "contacts"): 3,
    ("contacts", "deals"): 4,
    ("contacts", "companies"): 279,
    ("companies", "contacts"): 280,
}

GROUPS = {
    "deals": "dealinformation",
    "companies": "companyinformation",
    "contacts": "contactinformation",
}
FIELD_TYPES = {
    "string": ("string", "text"),
    "number": ("number", "number"),
    "date": ("date", "date"),
    "datetime": ("datetime", "date"),
    "enumeration": ("enumeration", "select"),
    "bool": ("bool", "booleancheckbox"),
}


class Retriable(Exception):
    """A call worth repeating; ``wait`` is what the server asked for, if anything."""

    def __init__(self, message: str, wait: float | None = None, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.rate_limited = rate_limited


class RequestRefused(AdapterError):
    """HubSpot refused the request (4xx other than 429): repeating cannot help.

    An :class:`AdapterError` (not retriable), so a refused read or search that is not
    handled per record inside the adapter stops the pass cleanly instead of escaping
    the adapter boundary as an unknown exception."""

    def __init__(self, status: int, message: str, body: dict[str, Any]) -> None:
        super().__init__(message, retriable=False)
        self.status = status
        self.body = body


def _is_api_exception(exc: BaseException) -> bool:
    return any(c.__name__ == "ApiException" for c in type(exc).__mro__)


def _body(exc: Any) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": str(raw)[:500]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:500]}


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == name.lower():
            return str(v)
    return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return datetime.fromtimestamp(0, UTC)


class _View(dict[str, Any]):
    """A JSON object read with the generated models' attribute names.

    The hot calls (search, batch read/write, association reads) ask the client for the
    undecoded response (``_preload_content=False``) and parse it with ``json``: the
    generated models validate and convert every field of every record, which costs
    about ten times the HTTP round trip on a 200-record page. ``obj.updated_at`` reads
    ``updatedAt``, ``obj._from`` reads ``from``; a missing key reads as ``None``, as an
    unset model attribute does. Dates stay ISO strings (``_aware`` parses them)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        head, *rest = name.lstrip("_").split("_")
        value = self.get(head + "".join(w.title() for w in rest))
        if isinstance(value, dict) and not isinstance(value, _View):
            return _View(value)
        if isinstance(value, list):
            return [_View(v) if isinstance(v, dict) else v for v in value]
        return value


class HubSpotAdapter:
    """One HubSpot portal."""

    # HubSpot's search lags behind writes and may hand back a record's previous values
    # for a moment: the engine re-reads linked records a search found by id
    # (engine/gather.py, fresh_linked)
    search_may_be_stale = True

    def __init__(
        self,
        *,
        token: str,
        host: str | None = None,
        name: str = "hubspot",
        rate_limit_per_10s: int = 100,
        search_rate_per_s: float = 5.0,
        max_attempts: int = 8,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.name = name
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self._client = HubSpot(access_token=token, host=self.host)
        # Each attribute access of the SDK builds a new ApiClient and pool: keep them.
        crm = self._client.crm
        self._basic = crm.objects.basic_api
        self._batch = crm.objects.batch_api
        self._search = crm.objects.search_api
        self._assoc = crm.associations.v4.batch_api
        self._props = crm.properties.core_api
        self._events = self._client.events.events_api
        self._prefs = self._client.communication_preferences.status_api
        self.limits = limiter_for(self.host, token, rate_limit_per_10s, search_rate_per_s)
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._sleep = sleep
        self.calls: Counter[str] = Counter()
        self.rate_limited = 0
        self.retries = 0
        self.wait_seconds = 0.0
        self._rng = random.Random()

    # ------------------------------------------------------------------ transport

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        attempt = state.attempt_number
        if isinstance(exc, Retriable) and exc.wait is not None:
            delay = exc.wait
        elif isinstance(exc, Retriable) and exc.rate_limited:
            delay = 1.0 * attempt
        else:
            delay = min(0.25 * 2 ** (attempt - 1), 8.0)
        delay = min(delay, self.max_wait) * (1 + self._rng.random() * 0.1)
        self.wait_seconds += delay
        return delay

    def _call(
        self,
        kind: str,
        fn: Callable[..., Any],
        *args: Any,
        search: bool = False,
        raw: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One API call with the portal's limiter and our retry policy. ``raw``: parse
        the JSON answer ourselves into a :class:`_View` instead of the client's models."""

        def attempt() -> Any:
            self.wait_seconds += self.limits.requests.acquire() if not search else 0.0
            if search:
                self.wait_seconds += self.limits.search.acquire()
            self.calls[kind] += 1
            try:
                if raw:
                    resp = fn(*args, _preload_content=False, **kwargs)
                    try:
                        payload = resp.data
                        headers = resp.headers
                    finally:
                        resp.release_conn()
                    data = _View(json.loads(payload)) if payload else _View()
                else:
                    data, _status, headers = fn(*args, _return_http_data_only=False, **kwargs)
            except Exception as exc:
                raise self._classify(kind, exc) from exc
            if not search:
                self.limits.requests.learn(dict(headers or {}))
            return data

        retrying = Retrying(
            retry=retry_if_exception_type(Retriable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self._sleep or __import__("time").sleep,
            reraise=True,
            before_sleep=lambda s: self._count_retry(),
        )
        try:
            return retrying(attempt)
        except Retriable as exc:
            raise AdapterError(
                f"{self.name}: {kind} still failing after {self.max_attempts} attempts: {exc}",
                retriable=True,
            ) from None
        except RequestRefused as exc:
            if exc.status in (401, 403):
                raise AdapterError(f"{self.name}: {kind} refused ({exc.status}): {exc}") from None
            raise

    def _count_retry(self) -> None:
        self.retries += 1

    def _classify(self, kind: str, exc: Exception) -> Exception:
        if _is_api_exception(exc):
            status = int(getattr(exc, "status", 0) or 0)
            body = _body(exc)
            message = str(body.get("message") or getattr(exc, "reason", "") or "error")
            headers = getattr(exc, "headers", None)
            if status == 429:
                self.rate_limited += 1
                self.calls["429"] += 1
                retry_after = _header(headers, "Retry-After")
                wait: float | None = float(retry_after) if retry_after else None
                if wait is None and body.get("policyName") == "TEN_SECONDLY_ROLLING":
                    wait = 10.0 if not kind.startswith("search") else 1.0
                if wait:
                    (
                        self.limits.search if kind.startswith("search") else self.limits.requests
                    ).pause(wait)
                return Retriable(f"429 {message}", wait=wait, rate_limited=True)
            if status >= 500 or status in (408, 423) or status == 0:
                return Retriable(f"{status} {message}")
            return RequestRefused(status, message, body)
        if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError):
            return Retriable(f"connection error: {type(exc).__name__}: {exc}")
        return exc

    # ------------------------------------------------------------------ records

    def _record(
        self, object_type: str, obj: Any, properties: Sequence[str] | None = None
    ) -> Record:
        props: dict[str, str | None] = dict(obj.properties or {})
        if properties is not None:
            for p in properties:
                props.setdefault(p, None)
        updated = obj.updated_at or props.get(MODIFIED.get(object_type, "hs_lastmodifieddate"))
        return Record(object_type, str(obj.id), props, _aware(updated), bool(obj.archived))

    def now(self) -> datetime:
        return utcnow()

    def changed_since(
        self,
        object_type: str,
        since: datetime | None,
        properties: Sequence[str],
        *,
        where: Mapping[str, str] | None = None,
        until: datetime | None = None,
        associations: Sequence[str] = (),
    ) -> Iterator[Record]:
        """Search by modification time, walking past the 10,000-result cap by moving
        the window's lower bound to the last time seen (ties broken by id), then the
        archived records of the window from the recycle bin."""
        for chunk in self.changed_since_chunks(
            object_type,
            since,
            properties,
            where=where,
            until=until,
            associations=associations,
            chunk_size=sys.maxsize,
        ):
            yield from chunk

    def changed_since_chunks(
        self,
        object_type: str,
        since: datetime | None,
        properties: Sequence[str],
        *,
        where: Mapping[str, str] | None = None,
        until: datetime | None = None,
        associations: Sequence[str] = (),
        chunk_size: int = ASSOC_READ_BATCH,
    ) -> Iterator[list[Record]]:
        """:meth:`changed_since` handed over every ``chunk_size`` live records (keep it
        a multiple of 1,000, the association batch read, so chunking costs no extra
        call); the recycle bin's records come with the last chunk."""
        buffer: list[Record] = []
        for rec in self._search_window(object_type, since, until, properties, where):
            buffer.append(rec)
            if len(buffer) >= chunk_size:
                yield self._with_associations(object_type, buffer, associations)
                buffer = []
        buffer.extend(self._archived_window(object_type, since, until, properties, where))
        if buffer:
            yield self._with_associations(object_type, buffer, associations)

    def _with_associations(
        self, object_type: str, records: list[Record], associations: Sequence[str]
    ) -> list[Record]:
        if not associations:
            return records
        live = [r.id for r in records if not r.archived]
        if not live:
            return records
        assoc = self._read_associations(object_type, live, associations)
        return [
            r
            if r.archived
            else Record(
                r.object_type, r.id, r.properties, r.updated_at, r.archived, assoc.get(r.id, {})
            )
            for r in records
        ]

    def _search_window(
        self,
        object_type: str,
        since: datetime | None,
        until: datetime | None,
        properties: Sequence[str],
        where: Mapping[str, str] | None,
    ) -> Iterator[Record]:
        modified = MODIFIED.get(object_type, "hs_lastmodifieddate")
        wanted = sorted(set(properties) | {modified, MERGED_IDS})
        base_filters = [
            {"propertyName": k, "operator": "EQ", "value": v} for k, v in (where or {}).items()
        ]
        if until is not None:
            base_filters.append({"propertyName": modified, "operator": "LTE", "value": _ms(until)})
        lower = since
        tie: str | None = None  # tie mode: records at exactly `lower` with ids after this
        seen: set[str] = set()
        while True:
            filters = list(base_filters)
            if tie is not None and lower is not None:
                filters.append({"propertyName": modified, "operator": "EQ", "value": _ms(lower)})
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": tie})
                sorts = [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
            else:
                if lower is not None:
                    filters.append(
                        {"propertyName": modified, "operator": "GTE", "value": _ms(lower)}
                    )
                sorts = [{"propertyName": modified, "direction": "ASCENDING"}]
            last: Record | None = None
            capped = False
            after = 0
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [{"filters": filters}] if filters else [],
                    "sorts": sorts,
                    "properties": wanted,
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = str(after)
                page = self._call(
                    "search",
                    self._search.do_search_with_http_info,
                    object_type,
                    body,
                    search=True,
                    raw=True,
                )
                for obj in page.results or []:
                    rec = self._record(object_type, obj, properties)
                    last = rec
                    if rec.id not in seen:
                        seen.add(rec.id)
                        yield rec
                nxt = page.paging.next.after if page.paging and page.paging.next else None
                if not nxt:
                    break
                after = int(nxt)
                if after + SEARCH_PAGE > SEARCH_CAP:
                    capped = True
                    break
            if tie is not None:
                if capped and last is not None:
                    tie = last.id  # more ties at this instant: continue after the last id
                else:  # ties exhausted: go on strictly after this instant
                    tie = None
                    lower = lower + _ONE_MS if lower is not None else None
                continue
            if not capped or last is None:
                return
            last_time = _aware(last.properties.get(modified) or last.updated_at)
            if lower is not None and last_time <= lower:
                tie = "0"  # 10,000 records share one instant: walk them by id
            else:
                lower = last_time

    def _archived_window(
        self,
        object_type: str,
        since: datetime | None,
        until: datetime | None,
        properties: Sequence[str],
        where: Mapping[str, str] | None,
    ) -> Iterator[Record]:
        """Archiving does not move the modification time and archived records never
        appear in search: list the recycle bin and keep those archived in the window."""
        wanted = sorted(set(properties) | set((where or {}).keys()))
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": BATCH, "properties": wanted, "archived": True}
            if after:
                kwargs["after"] = after
            page = self._call(
                "list_archived",
                self._basic.get_page_with_http_info,
                object_type,
                raw=True,
                **kwargs,
            )
            for obj in page.results or []:
                when = _aware(obj.archived_at or obj.updated_at)
                if since is not None and when < since:
                    continue
                if until is not None and when > until:
                    continue
                props = dict(obj.properties or {})
                if where and any(props.get(k) != v for k, v in where.items()):
                    continue
                rec = self._record(object_type, obj, properties)
                yield Record(rec.object_type, rec.id, rec.properties, when, True)
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return

    def _read_associations(
        self, object_type: str, ids: Sequence[str], to_types: Sequence[str]
    ) -> dict[str, dict[str, tuple[str, ...]]]:
        """Every associated id per record and target type. HubSpot pages the batch read
        *per input*: a record with more associations than one page has
        ``results[].paging.next.after``, sent back with that id until no cursor is left,
        so a company with thousands of deals is read whole instead of truncated."""
        found: dict[str, dict[str, set[str]]] = {i: {t: set() for t in to_types} for i in ids}
        for to_type in to_types:
            pending: list[dict[str, str]] = [{"id": rid} for rid in ids]
            while pending:
                chunk, pending = pending[:ASSOC_READ_BATCH], pending[ASSOC_READ_BATCH:]
                resp = self._call(
                    "assoc_read",
                    self._assoc.get_page_with_http_info,
                    object_type,
                    to_type,
                    {"inputs": chunk},
                    raw=True,
                )
                for row in resp.results or []:
                    from_id = str(row._from.id)
                    if from_id not in found:
                        continue
                    found[from_id][to_type].update(str(t.to_object_id) for t in row.to or [])
                    nxt = row.paging.next.after if row.paging and row.paging.next else None
                    if nxt:
                        pending.append({"id": from_id, "after": str(nxt)})
        return {
            rid: {t: tuple(sorted(v, key=_id_key)) for t, v in by_type.items()}
            for rid, by_type in found.items()
        }

    def read(
        self,
        object_type: str,
        ids: Sequence[str],
        properties: Sequence[str],
        *,
        associations: Sequence[str] = (),
    ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        id_list = list(dict.fromkeys(ids))
        for i in range(0, len(id_list), BATCH):
            chunk = id_list[i : i + BATCH]
            body = {
                "inputs": [{"id": rid} for rid in chunk],
                "properties": sorted({*properties, MERGED_IDS}),
                "propertiesWithHistory": [],
            }
            resp = self._call(
                "batch_read",
                self._batch.read_with_http_info,
                object_type,
                body,
                archived=False,
                raw=True,
            )
            for obj in resp.results or []:
                # a merged-away id answers with its survivor (another id): kept under
                # the survivor's id, the engine follows the merge from its record
                out[str(obj.id)] = self._record(object_type, obj, properties)
        if associations and out:
            assoc = self._read_associations(object_type, list(out), associations)
            out = {
                rid: Record(
                    r.object_type, r.id, r.properties, r.updated_at, r.archived, assoc.get(rid, {})
                )
                for rid, r in out.items()
            }
        return out

    def find_by_property(
        self, object_type: str, name: str, values: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        vals = list(dict.fromkeys(values))
        for i in range(0, len(vals), 100):
            chunk = vals[i : i + 100]
            body = {
                "filterGroups": [
                    {"filters": [{"propertyName": name, "operator": "IN", "values": chunk}]}
                ],
                "properties": sorted({*properties, name}),
                "limit": SEARCH_PAGE,
            }
            page = self._call(
                "search",
                self._search.do_search_with_http_info,
                object_type,
                body,
                search=True,
                raw=True,
            )
            for obj in page.results or []:
                rec = self._record(object_type, obj, properties)
                key = rec.properties.get(name)
                if key is not None:
                    out[key] = rec
        return out

    # ------------------------------------------------------------------ writes

    def _batched(
        self,
        kind: str,
        object_type: str,
        items: Sequence[tuple[str, Any]],
        send: Callable[[Sequence[tuple[str, Any]]], Any],
        keys_of: Callable[[Any], str],
    ) -> list[WriteResult]:
        """Send ``items`` in batches of 100; per-input errors (207) become error
        results; a batch refused whole (400) is split to isolate the bad inputs."""
        results: list[WriteResult] = []
        for i in range(0, len(items), BATCH):
            results.extend(self._send_split(kind, object_type, items[i : i + BATCH], send, keys_of))
        return results

    def _send_split(self, kind, object_type, chunk, send, keys_of) -> list[WriteResult]:
        try:
            resp = send(chunk)
        except RequestRefused as exc:
            if len(chunk) == 1:
                return [
                    WriteResult(
                        chunk[0][0],
                        error=f"HubSpot refused it ({exc.status}): {_readable(exc)}",
                        existing_id=_existing_id(str(exc), exc.body.get("context"))
                        if exc.status == 409
                        else None,
                    )
                ]
            mid = len(chunk) // 2
            return self._send_split(
                kind, object_type, chunk[:mid], send, keys_of
            ) + self._send_split(kind, object_type, chunk[mid:], send, keys_of)
        ok: dict[str, WriteResult] = {}
        for obj in getattr(resp, "results", None) or []:
            key = keys_of(obj)
            ok[key] = WriteResult(
                key, record=self._record(object_type, obj), created=bool(getattr(obj, "new", False))
            )
        errors: dict[str, str] = {}
        existing: dict[str, str] = {}
        generic: list[str] = []
        for err in getattr(resp, "errors", None) or []:
            ctx = getattr(err, "context", None) or {}
            ids = [v for name, vals in ctx.items() if name != "existingId" for v in (vals or [])]
            message = str(getattr(err, "message", "error"))
            matched = [k for k, _ in chunk if k in ids]
            found = _existing_id(message, ctx)
            for k in matched:
                errors[k] = message
                if found:
                    existing[k] = found
            if not matched:
                generic.append(message)
        out = []
        for key, _ in chunk:
            if key in ok:
                out.append(ok[key])
            else:
                msg = errors.get(key) or (
                    "; ".join(generic) if generic else "no result returned for this input"
                )
                out.append(WriteResult(key, error=msg, existing_id=existing.get(key)))
        return out

    def upsert(
        self, object_type: str, id_property: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        def send(chunk: Sequence[tuple[str, Any]]) -> Any:
            body = {
                "inputs": [
                    {
                        "id": key,
                        "idProperty": id_property,
                        "properties": {**props, id_property: key},
                    }
                    for key, props in chunk
                ]
            }
            return self._call(
                "batch_upsert", self._batch.upsert_with_http_info, object_type, body, raw=True
            )

        return self._batched(
            "upsert",
            object_type,
            list(items),
            send,
            lambda obj: str((obj.properties or {}).get(id_property)),
        )

    def update(
        self, object_type: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        def send(chunk: Sequence[tuple[str, Any]]) -> Any:
            body = {"inputs": [{"id": rid, "properties": dict(props)} for rid, props in chunk]}
            return self._call(
                "batch_update", self._batch.update_with_http_info, object_type, body, raw=True
            )

        return self._batched("update", object_type, list(items), send, lambda obj: str(obj.id))

    def archive(self, object_type: str, ids: Sequence[str]) -> list[WriteResult]:
        results: list[WriteResult] = []
        id_list = list(ids)
        for i in range(0, len(id_list), BATCH):
            chunk = id_list[i : i + BATCH]
            try:
                self._call(
                    "batch_archive",
                    self._batch.archive_with_http_info,
                    object_type,
                    {"inputs": [{"id": rid} for rid in chunk]},
                )
                results.extend(WriteResult(rid) for rid in chunk)
            except RequestRefused as exc:
                results.extend(
                    WriteResult(rid, error=f"HubSpot refused the archive: {exc}") for rid in chunk
                )
        return results

    def associate(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, str]]
    ) -> list[WriteResult]:
        pair_list = list(pairs)
        type_id = ASSOCIATION_TYPES.get((from_type, to_type))
        results: list[WriteResult] = []
        for i in range(0, len(pair_list), ASSOC_CREATE_BATCH):
            chunk = pair_list[i : i + ASSOC_CREATE_BATCH]
            inputs = []
            for a, b in chunk:
                item: dict[str, Any] = {"from": {"id": a}, "to": {"id": b}}
                item["types"] = [
                    {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
                ]
                inputs.append(item)
            try:
                resp = self._call(
                    "assoc_create",
                    self._assoc.create_with_http_info,
                    from_type,
                    to_type,
                    {"inputs": inputs},
                    raw=True,
                )
                failed = _failed_pairs(chunk, getattr(resp, "errors", None) or [])
                results.extend(
                    WriteResult(a, error=failed.get(j)) for j, (a, _) in enumerate(chunk)
                )
            except RequestRefused as exc:
                results.extend(
                    WriteResult(a, error=f"HubSpot refused the association: {exc}")
                    for a, _ in chunk
                )
        return results

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> list[str]:
        created: list[str] = []
        existing: dict[str, set[str]] = {}
        for spec in specs:
            if spec.object_type not in existing:
                resp = self._call(
                    "properties_read", self._props.get_all_with_http_info, spec.object_type
                )
                existing[spec.object_type] = {p.name for p in resp.results or []}
            if spec.name in existing[spec.object_type]:
                continue
            kind, field_type = FIELD_TYPES.get(spec.type, ("string", "text"))
            body: dict[str, Any] = {
                "name": spec.name,
                "label": spec.label,
                "type": kind,
                "fieldType": field_type,
                "groupName": GROUPS.get(spec.object_type, "dealinformation"),
                "hasUniqueValue": spec.unique,
            }
            if spec.options:
                body["options"] = [
                    {"label": o, "value": o, "displayOrder": n, "hidden": False}
                    for n, o in enumerate(spec.options)
                ]
            try:
                self._call(
                    "properties_create", self._props.create_with_http_info, spec.object_type, body
                )
            except RequestRefused as exc:
                if exc.status != 409:  # 409: created meanwhile by someone else — fine
                    raise AdapterError(
                        f"{self.name}: creating property {spec.object_type}.{spec.name}: {exc}"
                    ) from None
            existing[spec.object_type].add(spec.name)
            created.append(f"{spec.object_type}.{spec.name}")
        return created

    # ------------------------------------------------------------------ engagement

    def events(
        self,
        event_type: str,
        occurred_after: datetime | None,
        occurred_before: datetime | None = None,
        *,
        object_id: str | None = None,
    ) -> list[Event]:
        """Contact events of one type in the window, oldest first (events API)."""
        out: list[Event] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "object_type": "contact",
                "event_type": event_type,
                "limit": 100,
                "sort": ["ASCENDING"],
            }
            if occurred_after is not None:
                kwargs["occurred_after"] = occurred_after
            if occurred_before is not None:
                kwargs["occurred_before"] = occurred_before
            if object_id is not None:
                kwargs["object_id"] = int(object_id) if object_id.isdigit() else object_id
            if after:
                kwargs["after"] = after
            page = self._call("events_read", self._events.get_page_with_http_info, **kwargs)
            for e in page.results or []:
                out.append(
                    Event(
                        str(e.id),
                        str(e.event_type),
                        str(e.object_id),
                        _aware(e.occurred_at),
                        {str(k): str(v) for k, v in (e.properties or {}).items()},
                    )
                )
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                break
        out.sort(key=lambda e: (e.occurred_at, e.id))
        return out

    def opted_in(self, email: str) -> bool:
        """Subscribed to any of the vendor's e-mail subscriptions (communication
        preferences API)."""
        try:
            status = self._call(
                "subscription_status", self._prefs.get_email_status_with_http_info, email
            )
        except RequestRefused as exc:
            if exc.status == 404:
                return False
            raise
        return any(
            getattr(s, "status", "") == "SUBSCRIBED" for s in status.subscription_statuses or []
        )

    def api_calls(self) -> dict[str, int]:
        out = dict(self.calls)
        out["retries"] = self.retries
        out["wait_ms"] = int(self.wait_seconds * 1000)
        return out


def _failed_pairs(chunk: Sequence[tuple[str, str]], errors: Sequence[Any]) -> dict[int, str]:
    """Which inputs of an association batch a 207 refused, by position. An error names
    its input by ``index`` or by an id of either end (HubSpot names the missing one,
    often the *to* record); an error naming nothing known fails the whole chunk, which
    is safe because associating is idempotent and the engine retries it."""
    out: dict[int, str] = {}
    for err in errors:
        ctx = getattr(err, "context", None) or {}
        message = f"association refused: {getattr(err, 'message', None) or 'error'}"
        hit: set[int] = set()
        for idx in ctx.get("index") or []:
            if str(idx).isdigit() and int(idx) < len(chunk):
                hit.add(int(idx))
        ids = {str(v) for k, vals in ctx.items() if k != "index" for v in (vals or [])}
        hit |= {j for j, (a, b) in enumerate(chunk) if a in ids or b in ids}
        for j in hit or range(len(chunk)):
            out.setdefault(j, message)
    return out


def _readable(exc: RequestRefused) -> str:
    """What a person can act on in a refusal: the property errors' own messages
    (HubSpot's ``message`` embeds them as JSON: ``Property values were not valid:
    [{"isValid":false, ...}]``), else the message."""
    messages = [
        str(e.get("message"))
        for e in exc.body.get("errors") or []
        if isinstance(e, Mapping) and e.get("message")
    ]
    return "; ".join(dict.fromkeys(messages)) if messages else str(exc)


_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)", re.IGNORECASE)


def _existing_id(message: str, context: Any) -> str | None:
    """The id HubSpot names when it refuses a write for a unique value that another
    record already has: ``Contact already exists. Existing ID: 12345`` (contacts'
    e-mail), ``... already has that value. Existing ID: 12345`` (unique custom
    properties); newer answers also carry it as ``context.existingId``."""
    if isinstance(context, Mapping):
        ids = context.get("existingId") or []
        if ids and str(ids[0]).isdigit():
            return str(ids[0])
    found = _EXISTING_ID.search(message or "")
    return found.group(1) if found else None


def _id_key(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)
