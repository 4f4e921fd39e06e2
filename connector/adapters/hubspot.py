"""The HubSpot adapter, through the official ``hubspot-api-client``.

Everything HubSpot-specific stays in ``connector/adapters/hubspot*.py``: SDK objects and
exceptions are turned into :class:`~connector.records.Record`,
:class:`~connector.records.WriteResult` and :class:`~connector.adapters.base.AdapterError`
before they leave. The adapter is built in layers, one concept each:
``hubspot_transport`` (calls, limiter, retries), ``hubspot_associations``,
``hubspot_search`` (change detection), and this module (reads by id, writes,
properties, engagement).

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

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from connector.adapters.base import (
    EventQuery,
    Fields,
    Ids,
    ObjectSchema,
    ObjectTypes,
    SupportsEngagement,
    SupportsPropertyHistory,
)
from connector.adapters.hubspot_associations import ASSOCIATION_TYPES, _failed_pairs
from connector.adapters.hubspot_errors import (
    RequestRefused,
    Retriable,
    _existing_id,
    _readable,
)
from connector.adapters.hubspot_search import HubSpotSearch
from connector.adapters.hubspot_transport import BATCH, DEFAULT_HOST, MERGED_IDS, _aware, _View
from connector.adapters.naming import HUBSPOT_NAMING
from connector.records import Event, PropertySpec, Record, WriteResult, utcnow

HISTORY_BATCH = 50  # ids per batch read that asks for property history (HubSpot's limit)

__all__ = [
    "ASSOCIATION_TYPES",
    "DEFAULT_HOST",
    "MERGED_IDS",
    "HubSpotAdapter",
    "RequestRefused",
    "Retriable",
    "_View",
    "_existing_id",
    "_failed_pairs",
]


class HubSpotAdapter(HubSpotSearch, SupportsEngagement, SupportsPropertyHistory):
    """One HubSpot portal."""

    # HubSpot's search lags behind writes and may hand back a record's previous values
    # for a moment: the engine re-reads linked records a search found by id
    # (engine/gather.py, fresh_linked)
    search_may_be_stale = True
    naming = HUBSPOT_NAMING

    def now(self) -> datetime:
        return utcnow()

    def read(
        self, object_type: str, ids: Ids, properties: Fields, *, associations: ObjectTypes = ()
    ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        id_list = list(dict.fromkeys(ids))
        wanted = sorted({*properties, MERGED_IDS})

        def read_batch(chunk: list[str]) -> Any:
            body = {
                "inputs": [{"id": rid} for rid in chunk],
                "properties": wanted,
                "propertiesWithHistory": [],
            }
            return self._call(
                "batch_read",
                self._batch.read_with_http_info,
                object_type,
                body,
                archived=False,
                raw=True,
            )

        chunks = [id_list[i : i + BATCH] for i in range(0, len(id_list), BATCH)]
        for resp in self.fan_out(read_batch, chunks):  # side by side, answers in order
            for obj in resp.results or []:
                # a merged-away id answers with its survivor (another id): kept under
                # the survivor's id, the engine follows the merge from its record
                out[str(obj.id)] = self._record(object_type, obj, properties)
        if associations and out:
            with_assoc = self._with_associations(object_type, list(out.values()), associations)
            out = {r.id: r for r in with_assoc}
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
        chunks = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
        answers = self.fan_out(  # side by side (max_in_flight), results in input order
            lambda chunk: self._send_split(kind, object_type, chunk, send, keys_of), chunks
        )
        return [res for answer in answers for res in answer]

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
        id_list = list(ids)

        def archive_batch(chunk: list[str]) -> list[WriteResult]:
            try:
                self._call(
                    "batch_archive",
                    self._batch.archive_with_http_info,
                    object_type,
                    {"inputs": [{"id": rid} for rid in chunk]},
                )
                return [WriteResult(rid) for rid in chunk]
            except RequestRefused as exc:
                return [
                    WriteResult(rid, error=f"HubSpot refused the archive: {exc}") for rid in chunk
                ]

        chunks = [id_list[i : i + BATCH] for i in range(0, len(id_list), BATCH)]
        return [res for answer in self.fan_out(archive_batch, chunks) for res in answer]

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> list[str]:
        """Create the missing custom properties (``hubspot_properties``)."""
        from connector.adapters.hubspot_properties import ensure_properties

        return ensure_properties(self, specs)

    # ------------------------------------------------------------------ engagement

    def query_events(self, query: EventQuery) -> list[Event]:
        """Contact events of one type in the window, oldest first (events API)."""
        out: list[Event] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "object_type": "contact",
                "event_type": query.event_type,
                "limit": 100,
                "sort": ["ASCENDING"],
            }
            if query.after is not None:
                kwargs["occurred_after"] = query.after
            if query.before is not None:
                kwargs["occurred_before"] = query.before
            if (object_id := query.object_id) is not None:
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

    def values_since(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> dict[str, dict[str, datetime]]:
        """One batch read with ``propertiesWithHistory`` per 50 ids (HubSpot's limit
        for history reads): each value's history, newest first, dates the current one."""
        out: dict[str, dict[str, datetime]] = {}
        id_list = list(dict.fromkeys(ids))
        for i in range(0, len(id_list), HISTORY_BATCH):
            body = {
                "inputs": [{"id": rid} for rid in id_list[i : i + HISTORY_BATCH]],
                "properties": sorted(properties),
                "propertiesWithHistory": sorted(properties),
            }
            resp = self._call(
                "history_read",  # reported apart from the engine's reads by id
                self._batch.read_with_http_info,
                object_type,
                body,
                archived=False,
                raw=True,
            )
            for obj in resp.results or []:
                current = dict(obj.get("properties") or {})
                history = dict(obj.get("propertiesWithHistory") or {})
                since: dict[str, datetime] = {}
                for name in properties:
                    value = current.get(name)
                    if value in (None, ""):
                        continue
                    when = None
                    for entry in history.get(name) or []:  # newest first
                        if entry.get("value") != value:
                            break
                        when = entry.get("timestamp") or when
                    if when:
                        since[name] = _aware(when)
                out[str(obj.id)] = since
        return out

    def subscribed_since(self, emails: Sequence[str]) -> dict[str, datetime | None]:
        """Since when each address is subscribed (communication preferences v4 batch
        read: each status carries the ``timestamp`` of its last change), 100
        addresses a call. An address subscribed to several subscriptions counts from
        the earliest of them."""
        wanted = sorted({e.lower() for e in emails})
        out: dict[str, datetime | None] = dict.fromkeys(wanted)
        client = self._prefs.api_client
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]

            def read(
                *,
                _preload_content: bool = False,
                _request_timeout: Any = None,  # the transport's connect/read timeout
                chunk: list[str] = chunk,
            ) -> Any:
                return client.call_api(
                    "/communication-preferences/v4/statuses/batch/read",
                    "POST",
                    {},
                    [("channel", "EMAIL")],
                    {"Accept": "application/json", "Content-Type": "application/json"},
                    body={"inputs": chunk},
                    response_types_map={},
                    auth_settings=["oauth2"],
                    _return_http_data_only=False,
                    _preload_content=_preload_content,
                    _request_timeout=_request_timeout,
                )

            page = self._call("subscription_status", read, raw=True)
            for result in page.results or []:
                email = str(result.subscriber_id_string or "").lower()
                times = [
                    _aware(s.timestamp)
                    for s in result.statuses or []
                    if s.status == "SUBSCRIBED" and s.timestamp
                ]
                if email in out and times:
                    out[email] = min(times)
        return out

    def object_schema(self, object_type: str) -> ObjectSchema:
        """Properties and pipelines of one object type (``hubspot_properties``)."""
        from connector.adapters.hubspot_properties import read_object_schema

        return read_object_schema(self, object_type)
