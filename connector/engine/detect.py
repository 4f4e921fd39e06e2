"""Detect: what changed on one side since its cursor.

The window is ``[cursor - overlap, high-water mark]``. The high-water mark is frozen
at the start of the pass (singer-sdk's rule): a record modified while the pass runs
falls in the next window, not lost between two. The overlap absorbs clock skew and
search indexing lag; re-reading a record is harmless because reconcile compares with
the base and finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from connector.adapters.base import CRMAdapter, SupportsChunkedDetection
from connector.records import Record


def window_start(cursor: datetime | None, overlap: timedelta) -> datetime | None:
    return None if cursor is None else cursor - overlap


def detect(
    crm: CRMAdapter,
    object_type: str,
    since: datetime | None,
    until: datetime,
    properties: Sequence[str],
    *,
    where: Mapping[str, str] | None = None,
    associations: Sequence[str] = (),
) -> dict[str, Record]:
    """Changed records by id; a record seen twice keeps its latest version."""
    out: dict[str, Record] = {}
    for record in crm.changed_since(
        object_type, since, properties, where=where, until=until, associations=associations
    ):
        prev = out.get(record.id)
        if prev is None or record.updated_at >= prev.updated_at or record.archived:
            out[record.id] = record
    return out


def detect_chunks(
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
    """:func:`detect` handed over in chunks as the CRM reads them (one chunk when the
    CRM cannot stream). A record is in one chunk, except that a later chunk may hold
    the archived version of a record an earlier chunk had live."""
    if not isinstance(crm, SupportsChunkedDetection):
        yield detect(
            crm, object_type, since, until, properties, where=where, associations=associations
        )
        return
    for chunk in crm.changed_since_chunks(
        object_type,
        since,
        properties,
        where=where,
        until=until,
        associations=associations,
        chunk_size=chunk_size,
    ):
        out: dict[str, Record] = {}
        for record in chunk:
            prev = out.get(record.id)
            if prev is None or record.updated_at >= prev.updated_at or record.archived:
                out[record.id] = record
        yield out
