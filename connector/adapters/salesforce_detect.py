"""Salesforce change detection: SOQL on ``SystemModstamp``, then the deletes.

Live records: ``SELECT … WHERE SystemModstamp >= since AND SystemModstamp <= until
ORDER BY SystemModstamp, Id``, paged through ``nextRecordsUrl`` (a query cursor holds
the whole result, so no window needs walking past a cap). Both bounds are inclusive:
the engine's overlap window re-reads the record at the cursor's instant.

Deletes: ``getDeleted`` (``/sobjects/{Object}/deleted/?start=&end=``) lists the ids
deleted in the window, and ``queryAll`` reads their last values from the recycle bin
(so ``where`` applies to them too). Salesforce answers ``getDeleted`` only for the
last 30 days (``INVALID_REPLICATION_DATE`` otherwise), and its
``earliestDateAvailable`` moves forward when the recycle bin (15 days) is purged:
when the cursor is older than either, the list may miss deletes, so detection falls
back to scanning the recycle bin itself (``queryAll`` for ``IsDeleted = true`` in the
window), which holds every delete not yet purged. A record deleted *and* purged before
the window was read can be listed by no Salesforce API: the fallback says so in the
log and counts it in ``api_calls()`` (``deletes_unlisted``); the engine still finds a
linked one gone when it reads it by id.

A first sync (no cursor) of more than ``bulk_threshold`` records goes through Bulk
API 2.0 (``sf.bulk2``: one job, CSV results) instead of 2,000-row REST pages.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Unpack

from connector.adapters.base import Chunked, Fields, Scope
from connector.adapters.salesforce_associations import SalesforceAssociations
from connector.adapters.salesforce_errors import RequestRefused
from connector.adapters.salesforce_records import to_record
from connector.adapters.salesforce_soql import (
    changes,
    chunks,
    count,
    field_list,
    literal,
    one_of,
    parse_datetime,
    select,
    sobject,
)
from connector.records import Record

log = logging.getLogger("dealsync.salesforce")

REPLICATION_DAYS = 30  # getDeleted answers for the last 30 days only
BULK_THRESHOLD = 10_000  # a first sync above this many records goes through Bulk API 2.0
CHUNK = 2_000  # one REST query page
BULK_POLL_S = 1  # seconds between the polls of a Bulk API 2.0 job's state


class SalesforceDetection(SalesforceAssociations):
    """Change windows of one org."""

    bulk_threshold = BULK_THRESHOLD

    def changed_since(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Scope]
    ) -> Iterator[Record]:
        everything = Chunked(**scope, chunk_size=sys.maxsize)
        for chunk in self.changed_since_chunks(object_type, since, properties, **everything):
            yield from chunk

    def changed_since_chunks(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """:meth:`changed_since` in lists of ``chunk_size`` live records; the deleted
        ones come with the last list."""
        chunk_size = max(1, scope.get("chunk_size", CHUNK))
        associations = scope.get("associations", ())
        until, where = scope.get("until"), scope.get("where")
        inline = self._inline(object_type, associations)
        wanted = list(dict.fromkeys([*properties, *inline.values()]))

        def attach(records: list[Record]) -> list[Record]:
            return self._with_associations(
                object_type, records, associations, inline=inline, asked=properties
            )

        buffer: list[Record] = []
        for rec in self._live_window(object_type, since, until, wanted, where):
            buffer.append(rec)
            if len(buffer) >= chunk_size:
                yield attach(buffer)
                buffer = []
        if since is not None:
            buffer += self._deleted_window(object_type, since, until, properties, where)
        if buffer:
            yield attach(buffer)

    # ------------------------------------------------------------------ live records

    def _where_types(
        self, object_type: str, where: Mapping[str, str] | None
    ) -> dict[str, str] | None:
        """The describe types of the fields ``where`` names (one describe per object
        and adapter, only when a window is narrowed), so a checkbox compares with
        ``true`` and a number unquoted, as SOQL requires."""
        if not where:
            return None
        cache: dict[str, dict[str, str]] = self.__dict__.setdefault("_field_types", {})
        name = sobject(object_type)
        if name not in cache:
            answer = self._rest("describe", f"sobjects/{name}/describe") or {}
            cache[name] = {
                str(f.get("name")): str(f.get("type")) for f in answer.get("fields") or []
            }
        return cache[name]

    def _live_window(
        self,
        object_type: str,
        since: datetime | None,
        until: datetime | None,
        properties: Fields,
        where: Mapping[str, str] | None,
    ) -> Iterator[Record]:
        types = self._where_types(object_type, where)
        soql = changes(object_type, properties, since, until, where, types=types)
        if since is None and self._bulk_worth_it(object_type, until, where):
            # a first sync has no cursor to keep in order, and Bulk API 2.0 sorts nothing
            unordered = changes(
                object_type, properties, since, until, where, ordered=False, types=types
            )
            yield from self._bulk_window(object_type, unordered, properties)
            return
        seen: set[str] = set()
        for row in self._rows("query", soql):
            rec = to_record(object_type, row, properties)
            if rec.id not in seen:
                seen.add(rec.id)
                yield rec

    def _bulk_worth_it(
        self, object_type: str, until: datetime | None, where: Mapping[str, str] | None
    ) -> bool:
        if self.bulk_threshold <= 0 or getattr(self, "_bulk_unsupported", False):
            return False
        return (
            self._count(
                "query_count",
                count(object_type, None, until, where, self._where_types(object_type, where)),
            )
            > self.bulk_threshold
        )

    def _bulk_window(self, object_type: str, soql: str, properties: Fields) -> Iterator[Record]:
        """A Bulk API 2.0 query job: create, wait, read the CSV results (one job,
        counted as the calls it takes). An org or sandbox without Bulk API 2.0 (404), or
        a job that failed, gets the REST query, told in the log and counted
        (``bulk_fallback``)."""
        name = sobject(object_type)

        def run(sf: Any) -> list[str]:
            return list(getattr(sf.bulk2, name).query(soql, wait=BULK_POLL_S))

        try:
            pages = self._call("bulk_query", run, cost=4)
        except RequestRefused as exc:
            # no Bulk API 2.0 here (404), or the job failed: the REST query reads the same
            self._bulk_unsupported = exc.status == 404
            self.calls["bulk_fallback"] += 1
            log.warning(
                "%s: Bulk API 2.0 query of %s failed (%s); reading by REST query",
                self.portal,
                name,
                exc,
            )
            for row in self._rows("query", soql):
                yield to_record(object_type, row, properties)
            return
        seen: set[str] = set()
        for page in pages:
            for row in csv.DictReader(io.StringIO(page)):
                typed = {k: (v if v != "" else None) for k, v in row.items()}
                typed["IsDeleted"] = None
                rec = to_record(object_type, typed, properties)
                if rec.id not in seen:
                    seen.add(rec.id)
                    yield rec

    # ------------------------------------------------------------------ deletes

    def _deleted_window(
        self,
        object_type: str,
        since: datetime,
        until: datetime | None,
        properties: Fields,
        where: Mapping[str, str] | None,
    ) -> list[Record]:
        end = until or self.now()
        if self.now() - since >= timedelta(days=REPLICATION_DAYS):
            return self._recycle_bin_scan(object_type, since, until, properties, where, None)
        name = sobject(object_type)
        start = since.replace(second=0, microsecond=0)
        stop = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
        params = {"start": _wire(start), "end": _wire(stop)}
        try:
            answer = self._rest("get_deleted", f"sobjects/{name}/deleted/", params=params)
        except RequestRefused as exc:
            if exc.code == "INVALID_REPLICATION_DATE":
                return self._recycle_bin_scan(object_type, since, until, properties, where, None)
            raise
        answer = answer or {}
        earliest = parse_datetime(answer.get("earliestDateAvailable"))
        if earliest is not None and earliest > since:
            return self._recycle_bin_scan(object_type, since, until, properties, where, earliest)
        deleted: dict[str, datetime] = {}
        for item in answer.get("deletedRecords") or []:
            when = parse_datetime(item.get("deletedDate"))
            if when is not None and since <= when <= end:
                deleted[str(item.get("id"))] = when
        return self._deleted_records(object_type, deleted, properties, where)

    def _deleted_records(
        self,
        object_type: str,
        deleted: Mapping[str, datetime],
        properties: Fields,
        where: Mapping[str, str] | None,
    ) -> list[Record]:
        """The deleted ids' last values from the recycle bin; one purged meanwhile
        comes with no values (``where`` cannot be told for it, so it is kept)."""
        found: dict[str, Record] = {}
        wanted = [*properties, *(where or {})]
        for chunk in chunks(list(deleted)):
            soql = select(
                object_type,
                [*field_list(wanted), "IsDeleted"],
                ["IsDeleted = true", one_of("Id", chunk)],
            )
            for row in self._rows("query_all", soql, deleted=True):
                rec = to_record(object_type, row, wanted)
                found[rec.id] = rec
        out = []
        for rid, when in deleted.items():
            last = found.get(rid)
            if last is not None and where and any(last.get(k) != v for k, v in where.items()):
                continue
            props = (
                {p: last.properties.get(p) for p in properties}
                if last
                else dict.fromkeys(properties)
            )
            out.append(Record(object_type, rid, props, when, True))
        return out

    def _recycle_bin_scan(
        self,
        object_type: str,
        since: datetime,
        until: datetime | None,
        properties: Fields,
        where: Mapping[str, str] | None,
        earliest: datetime | None,
    ) -> list[Record]:
        """Every record in the recycle bin deleted in the window (``queryAll``), for
        when ``getDeleted`` cannot vouch for the whole window."""
        self.calls["deleted_full_scan"] += 1
        self.calls["deletes_unlisted"] += 1
        warned: set[str] = self.__dict__.setdefault("_warned_unlisted", set())
        if object_type not in warned:  # once per object type and adapter, not every pass
            warned.add(object_type)
            log.warning(
                "%s: %s deletes since %s cannot all be listed by getDeleted (%s); scanning "
                "the recycle bin instead — a record deleted and purged from it before this "
                "pass (15 days) is found deleted only when dealsync reads it by id",
                self.portal,
                sobject(object_type),
                literal(since),
                f"earliest date available {literal(earliest)}"
                if earliest
                else f"the cursor is older than {REPLICATION_DAYS} days",
            )
        soql = changes(
            object_type,
            properties,
            since,
            until,
            where,
            extra=("IsDeleted",),
            deleted=True,
            types=self._where_types(object_type, where),
        )
        out = []
        for row in self._rows("query_all", soql, deleted=True):
            rec = to_record(object_type, row, properties)
            out.append(Record(object_type, rec.id, rec.properties, rec.updated_at, True))
        return out


def _wire(moment: datetime) -> str:
    """getDeleted's start/end: ISO 8601 in UTC, to the second (Salesforce ignores
    seconds there: the window is read wider and filtered here)."""
    return literal(moment).split(".")[0] + "Z"


__all__ = ["SalesforceDetection"]
