"""Detect: what changed on one side since its cursor.

The window is ``[cursor - overlap, high-water mark]``. The high-water mark is frozen
at the start of the pass (singer-sdk's rule): a record modified while the pass runs
falls in the next window, not lost between two. The overlap absorbs clock skew and
search indexing lag; re-reading a record is harmless because reconcile compares with
the base and finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from connector.adapters.base import CRMAdapter, SupportsChunkedDetection
from connector.records import Record


def window_start(cursor: datetime | None, overlap: timedelta) -> datetime | None:
    return None if cursor is None else cursor - overlap


def merge_latest(into: dict[str, Record], records: Iterable[Record]) -> dict[str, Record]:
    """Add records by id; a record seen twice keeps its latest version, and an archived
    version always wins (archiving does not move the modification time)."""
    for record in records:
        prev = into.get(record.id)
        if prev is None or record.updated_at >= prev.updated_at or record.archived:
            into[record.id] = record
    return into


def detect(
    crm: CRMAdapter,
    object_type: str,
    since: datetime | None,
    until: datetime,
    properties: Sequence[str],
    *,
    where: Mapping[str, str] | None = None,
    associations: Sequence[str] = (),
    chunk_size: int = 1000,
) -> Iterator[dict[str, Record]]:
    """Changed records by id, handed over in chunks as the CRM reads them (one chunk
    when the CRM cannot stream). A record is in one chunk, except that a later chunk
    may hold the archived version of a record an earlier chunk had live."""
    if isinstance(crm, SupportsChunkedDetection):
        chunks: Iterable[Iterable[Record]] = crm.changed_since_chunks(
            object_type,
            since,
            properties,
            where=where,
            until=until,
            associations=associations,
            chunk_size=chunk_size,
        )
    else:
        chunks = [
            crm.changed_since(
                object_type, since, properties, where=where, until=until, associations=associations
            )
        ]
    for chunk in chunks:
        yield merge_latest({}, chunk)
