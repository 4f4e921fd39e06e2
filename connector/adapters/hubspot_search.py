"""HubSpot change detection: search by modification time past the 10,000-result cap,
then the recycle bin for what was archived in the window (search never shows it).

Search pages hold at most 200 records and a query at most 10,000, so a window is walked
with a moving lower bound (ties at one instant broken by id). A first sync (no cursor)
may instead list every record (:meth:`HubSpotSearch.listed_chunks`: the list endpoint,
100 a page on the portal's general budget), so one object is read while another is
searched on the search budget.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Unpack

from connector.adapters.base import Chunked, Fields, Scope
from connector.adapters.hubspot_associations import HubSpotAssociations
from connector.adapters.hubspot_transport import (
    ASSOC_READ_BATCH,
    BATCH,
    MERGED_IDS,
    MODIFIED,
    SEARCH_CAP,
    SEARCH_PAGE,
    _aware,
    _ms,
)
from connector.records import Record

log = logging.getLogger("dealsync.hubspot")

_ONE_MS = timedelta(milliseconds=1)
# HubSpot's search limits: values in one IN filter, filter groups in one search
IN_VALUES = 100
IN_GROUPS = 5


class HubSpotSearch(HubSpotAssociations):
    """The search and recycle-bin reads of one portal."""

    def changed_since(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Scope]
    ) -> Iterator[Record]:
        """Search by modification time, walking past the 10,000-result cap by moving
        the window's lower bound to the last time seen (ties broken by id), then the
        archived records of the window from the recycle bin."""
        everything = Chunked(**scope, chunk_size=sys.maxsize)
        for chunk in self.changed_since_chunks(object_type, since, properties, **everything):
            yield from chunk

    def changed_since_chunks(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """:meth:`changed_since` handed over every ``chunk_size`` live records (keep it
        a multiple of 1,000, the association batch read, so chunking costs no extra
        call); the recycle bin's records come with the last chunk."""
        chunk_size = scope.get("chunk_size", ASSOC_READ_BATCH)
        associations = scope.get("associations", ())
        buffer: list[Record] = []
        for rec in self._search_window(object_type, since, properties, scope):
            buffer.append(rec)
            if len(buffer) >= chunk_size:
                yield self._with_associations(object_type, buffer, associations)
                buffer = []
        if not scope.get("live"):  # the recycle bin: a listing of its own
            buffer.extend(self._archived_window(object_type, since, properties, scope))
        if buffer:
            yield self._with_associations(object_type, buffer, associations)

    def listed_chunks(
        self, object_type: str, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """What ``changed_since_chunks(object_type, None, …)`` returns, read by the list
        endpoint (``GET /crm/v3/objects/{type}``, ``archived=false``, 100 a page: twice
        the calls of a search, but on the general budget, not search's 5 a second).
        The list endpoint takes no filter, so what the search's filters do is done
        here: a record modified after ``until`` is left out (the next pass's window has
        it) and ``where`` is compared as the recycle-bin listing does. The records come
        as the search's do (the modification property and merged ids read with them,
        associations by the batch read per chunk), then the recycle bin's unless
        ``live``. A listing is not eventually consistent (search is): a record written
        moments ago is listed."""
        chunk_size = scope.get("chunk_size", ASSOC_READ_BATCH)
        associations = scope.get("associations", ())
        where, until = scope.get("where"), scope.get("until")
        modified = MODIFIED.get(object_type, "hs_lastmodifieddate")
        wanted = sorted(set(properties) | {modified, MERGED_IDS} | set((where or {}).keys()))
        buffer: list[Record] = []
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": BATCH, "properties": wanted, "archived": False}
            if after:
                kwargs["after"] = after
            page = self._call(
                "list", self._basic.get_page_with_http_info, object_type, raw=True, **kwargs
            )
            for obj in page.results or []:
                rec = self._record(object_type, obj, properties)
                if (
                    until is not None
                    and _aware(rec.properties.get(modified) or rec.updated_at) > until
                ):
                    continue
                if where and any(rec.properties.get(k) != v for k, v in where.items()):
                    continue
                buffer.append(rec)
                if len(buffer) >= chunk_size:
                    yield self._with_associations(object_type, buffer, associations)
                    buffer = []
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                break
        if not scope.get("live"):  # the recycle bin: a listing of its own
            buffer.extend(self._archived_window(object_type, None, properties, scope))
        if buffer:
            yield self._with_associations(object_type, buffer, associations)

    def _search_page(self, object_type: str, body: dict[str, Any]) -> Any:
        """One page of a search (its own, slower rate budget)."""
        return self._call(
            "search",
            self._search.do_search_with_http_info,
            object_type,
            body,
            search=True,
            raw=True,
        )

    def _search_window(
        self, object_type: str, since: datetime | None, properties: Fields, scope: Scope
    ) -> Iterator[Record]:
        where, until = scope.get("where"), scope.get("until")
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
            total: int | None = None  # the query's matches, as the last page counted them
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [{"filters": filters}] if filters else [],
                    "sorts": sorts,
                    "properties": wanted,
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = str(after)
                page = self._search_page(object_type, body)
                for obj in page.results or []:
                    rec = self._record(object_type, obj, properties)
                    last = rec
                    if rec.id not in seen:
                        seen.add(rec.id)
                        yield rec
                # Pages are offsets into a query whose window (modified ≤ until) only
                # loses records while it is read: one written meanwhile — by this pass
                # (a chunk applied while the next is searched) or by a user — leaves it,
                # and every later record moves up. Fewer matches than at the page before
                # means the records moved past this page's offset were skipped: read
                # again from that many earlier (what was seen is dropped). One search
                # more per such page, none when nothing changed (issue 17).
                now_total = page.total if isinstance(page.total, int) else None
                left = total - now_total if total is not None and now_total is not None else 0
                total = now_total
                if left > 0 and after:
                    log.info(
                        "%s: %d %s left the search's window while it paged (written "
                        "meanwhile); reading again from %d records earlier",
                        self.name,
                        left,
                        object_type,
                        min(left, after),
                    )
                    after = max(0, after - left)
                    continue
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
        self, object_type: str, since: datetime | None, properties: Fields, scope: Scope
    ) -> Iterator[Record]:
        """Archiving does not move the modification time and archived records never
        appear in search: list the recycle bin and keep those archived in the window."""
        where, until = scope.get("where"), scope.get("until")
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

    def find_by_property(
        self, object_type: str, name: str, values: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        """Live records whose ``name`` is one of ``values``, keyed by the stored value.

        One search carries up to ``IN_GROUPS`` filter groups of one IN filter with
        ``IN_VALUES`` values each (HubSpot's limits; groups are ORed), so 500 values
        cost one search, not five; a search with more matches than a page holds is
        paged (by id, so the pages are stable and the last record per value wins, as
        with one page)."""
        return self._find_in(object_type, name, values, properties, IN_VALUES * IN_GROUPS)

    def read_searched(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        """Live records by id, by search on ``hs_object_id``: the ids of one page
        (200, two IN groups of 100) per search, so a search reads as many records as
        a page holds where a batch read takes 100 — and on the search budget, not the
        general one (:class:`~connector.adapters.base.SupportsSearchedReads`)."""
        found = self._find_in(object_type, "hs_object_id", ids, properties, SEARCH_PAGE)
        return {rec.id: rec for rec in found.values()}

    def _find_in(
        self,
        object_type: str,
        name: str,
        values: Sequence[str],
        properties: Sequence[str],
        per_search: int,
    ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        vals = list(dict.fromkeys(values))
        wanted = sorted({*properties, name})
        for i in range(0, len(vals), per_search):
            chunk = vals[i : i + per_search]
            groups = [
                {
                    "filters": [
                        {"propertyName": name, "operator": "IN", "values": chunk[j : j + IN_VALUES]}
                    ]
                }
                for j in range(0, len(chunk), IN_VALUES)
            ]
            after = 0
            while True:
                body: dict[str, Any] = {
                    "filterGroups": groups,
                    "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                    "properties": wanted,
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = str(after)
                page = self._search_page(object_type, body)
                for obj in page.results or []:
                    rec = self._record(object_type, obj, properties)
                    key = rec.properties.get(name)
                    if key is not None:
                        out[key] = rec
                nxt = page.paging.next.after if page.paging and page.paging.next else None
                if not nxt or int(nxt) + SEARCH_PAGE > SEARCH_CAP:
                    break
                after = int(nxt)
        return out
