"""Detect: what changed on one side since its cursor.

The window is ``[cursor - overlap, high-water mark]``. The high-water mark is frozen
at the start of the pass (singer-sdk's rule): a record modified while the pass runs
falls in the next window, not lost between two. The overlap absorbs clock skew and
search indexing lag; re-reading a record is harmless because reconcile compares with
the base and finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from connector.adapters.base import CRMAdapter
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
