"""Detect: what changed on one side since its cursor.

The window is ``[cursor - overlap, high-water mark]``. The high-water mark is frozen
at the start of the pass (singer-sdk's rule): a record modified while the pass runs
falls in the next window, not lost between two. The overlap absorbs clock skew and
search indexing lag; re-reading a record is harmless because reconcile compares with
the base and finds nothing to do.

A pass runs detection in a thread of its own (:class:`Detection`), ahead of reconcile
and apply, which take its records as it hands them over. A first sync with the
program's hooks may read one held object by the CRM's listing in a second thread,
beside the others' searches (:func:`plan_listing`).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from connector.adapters.base import (
    CRMAdapter,
    SupportsChunkedDetection,
    SupportsListing,
    UnknownProperty,
)
from connector.records import SIDES, Record, Side


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
    listed: bool = False,
) -> Iterator[dict[str, Record]]:
    """Changed records by id, handed over in chunks as the CRM reads them (one chunk
    when the CRM cannot stream). A record is in one chunk, except that a later chunk
    may hold the archived version of a record an earlier chunk had live. ``listed``
    (no cursor, a CRM that lists): the same records read by the CRM's listing."""
    what = (object_type, since, properties)
    if listed and since is None and isinstance(crm, SupportsListing):
        chunks: Iterable[Iterable[Record]] = crm.listed_chunks(
            object_type,
            properties,
            where=where,
            until=until,
            associations=associations,
            chunk_size=chunk_size,
        )
    elif isinstance(crm, SupportsChunkedDetection):
        chunks = crm.changed_since_chunks(
            *what, where=where, until=until, associations=associations, chunk_size=chunk_size
        )
    else:
        chunks = [crm.changed_since(*what, where=where, until=until, associations=associations)]
    for chunk in chunks:
        yield merge_latest({}, chunk)


@dataclass(frozen=True)
class DetectJob:
    mapping: str
    side: Side
    object_type: str
    since: datetime | None
    until: datetime
    properties: list[str]
    where: dict[str, str] | None
    associations: list[str]
    listed: bool = False
    """Read by the CRM's listing, not its search, in detection's second thread
    (:func:`plan_listing`)."""
    skip: bool = False
    """Read nothing: the side's records are read by id with the streamed mapping's
    chunks instead (a first hooked sync's companies and contacts, engine/sync.py)."""


def plan_listing(
    jobs: Sequence[DetectJob], held: Sequence[str], partner: CRMAdapter
) -> list[DetectJob]:
    """The jobs with one held mapping's partner side read by listing (issue 17).

    With the program's hooks the mappings held whole (companies, contacts) are
    detected before any deal can be decided, one search after another on the partner
    portal's search budget (5 a second) while its general budget is idle. On a first
    sync of the partner side (no cursor) of two or more of them, and with a partner
    CRM that lists on a budget apart (:class:`SupportsListing`), the last of them is
    listed instead, beside the others' searches: both budgets are used at once. The
    trade: a list page holds 100 records where a search page holds 200, so listing
    costs twice the calls of the search it replaces (at N = 10,000 contacts, 100 list
    pages for 50 searches). A first sync whose children are read with the deals
    (``SyncPass.read_with_stream``) holds none of them whole, so lists nothing: this
    is for a first sync that must detect them (a rerun after one that linked some).
    The records are the ones the search would return (the adapter's promise), and the
    cursor moves to the same high-water mark. An incremental pass (a cursor) always
    searches."""
    if not isinstance(partner, SupportsListing):
        return list(jobs)
    first = [
        j.mapping
        for j in jobs
        if j.side == "partner" and j.since is None and j.mapping in held and not j.listed
    ]
    if len(first) < 2:
        return list(jobs)
    chosen = first[-1]
    return [
        replace(j, listed=True) if j.mapping == chosen and j.side == "partner" else j for j in jobs
    ]


class _NoLock:
    """The lock of an adapter that is safe to share between threads: none."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def lock_for(crm: CRMAdapter) -> AbstractContextManager[Any]:
    """The lock both threads take around ``crm``'s calls: none for an adapter whose
    class says it is thread-safe (``thread_safe = True``: the HubSpot adapter, its
    counters locked), so the partner portal's reads by id in the applying thread go
    out while detection searches the same portal; an ``RLock`` for any other. Asked
    of the class, never through a wrapper's ``__getattr__`` that would answer for
    the adapter it wraps."""
    return _NoLock() if getattr(type(crm), "thread_safe", False) is True else threading.RLock()


class LockedAdapter:
    """An adapter whose every call holds a lock shared with the detection thread."""

    def __init__(self, lock: AbstractContextManager[Any], inner: CRMAdapter) -> None:
        self._lock = lock
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


AHEAD = 3
"""Items (chunks) detection may hand over before apply takes them."""


class Detection:
    """Detection in a thread of its own, running ahead of reconcile and apply.

    Jobs run in order (each mapping's vendor side, then its partner side). The vendor
    side is handed over whole; the partner side in chunks as the CRM reads them. Every
    adapter call, here and in the applying thread, holds that CRM's lock (none for a
    thread-safe adapter, :func:`lock_for`): the partner portal's searches and the
    vendor portal's writes (different portals, separate rate budgets) proceed side by
    side, and with a thread-safe adapter the partner portal's reads by id too.
    A mapping with a listed job (:func:`plan_listing`) is detected, both its sides in
    order, by a second thread, beside the first thread's searches of the others: a
    held mapping, which the applying thread takes only after the ones before it and
    holds whole then anyway, so its chunks wait unbounded (not :data:`AHEAD`) while
    the searches go on. The state store is never touched here. An error ends
    detection and is raised in the applying thread when it next asks for records."""

    def __init__(
        self, crms: Mapping[Side, CRMAdapter], jobs: Sequence[DetectJob], chunk_size: int
    ) -> None:
        self.crms = crms
        self.jobs = list(jobs)
        self.chunk_size = chunk_size
        self.locks: dict[Side, AbstractContextManager[Any]] = {s: lock_for(crms[s]) for s in SIDES}
        listed = {j.mapping for j in self.jobs if j.listed}
        # bounded: detection runs at most AHEAD chunks ahead of apply, so a pass whose
        # searches outpace its writes does not hold every record it detected (issue 17)
        self._queues: dict[str, queue.Queue[tuple[str, Any]]] = {
            j.mapping: queue.Queue(maxsize=0 if j.mapping in listed else AHEAD) for j in self.jobs
        }
        self._stop = threading.Event()
        # mappings whose partner records were all read (their last page fetched)
        self._read_all: set[str] = set()
        self._error: BaseException | None = None  # the first detection thread's failure
        # mapping -> the property of its ``where`` the partner portal does not have
        # (no record matched: nothing was detected; the pass says so)
        self.unmatched: dict[str, str] = {}
        self._error_lock = threading.Lock()
        lanes = [
            [j for j in self.jobs if j.mapping not in listed],
            [j for j in self.jobs if j.mapping in listed],
        ]
        # in the pass's logging context (connection, run id: connector/logs.py)
        self._threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._work, lane),
                name="dealsync-detect" if i == 0 else "dealsync-detect-list",
                daemon=True,
            )
            for i, lane in enumerate(lanes)
            if lane
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop early (the pass failed) and wait for the threads to leave their call."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=300)

    def _work(self, jobs: Sequence[DetectJob]) -> None:
        try:
            for job in jobs:
                out = self._queues[job.mapping]
                chunks: Iterator[dict[str, Record]] = (
                    iter(())
                    if job.skip
                    else detect(
                        self.crms[job.side],
                        job.object_type,
                        job.since,
                        job.until,
                        job.properties,
                        where=job.where,
                        associations=job.associations,
                        chunk_size=self.chunk_size,
                        listed=job.listed,
                    )
                )
                whole: dict[str, Record] = {}
                while True:
                    if self._stop.is_set():
                        return
                    with self.locks[job.side]:
                        try:
                            chunk = next(chunks, None)
                        except UnknownProperty as exc:
                            if exc.name not in (job.where or {}):
                                raise
                            # nothing can match a filter on a property the portal lacks
                            self.unmatched[job.mapping] = exc.name
                            chunk = None
                    if chunk is None:
                        if job.side == "partner":
                            self._read_all.add(job.mapping)
                        break
                    if job.side == "partner":
                        if not self._put(out, ("partner", chunk)):
                            return
                    else:
                        merge_latest(whole, chunk.values())
                if not self._put(out, ("vendor", whole) if job.side == "vendor" else ("end", None)):
                    return
        except BaseException as exc:  # the applying thread raises it (:meth:`_get`)
            with self._error_lock:
                if self._error is None:
                    self._error = exc

    def _put(self, q: queue.Queue[tuple[str, Any]], item: tuple[str, Any]) -> bool:
        """Hand ``item`` over, waiting while apply is AHEAD chunks behind; ``False``
        when the pass stopped meanwhile (nobody will take it)."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, mapping: str) -> tuple[str, Any]:
        """The mapping's next item; once its queue is empty and a detection thread
        failed (either: the other may be the one this mapping waits on, or be blocked
        handing over a mapping apply has not reached), that thread's error."""
        q = self._queues[mapping]
        while True:
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                with self._error_lock:
                    error = self._error
                if error is not None:
                    raise error from None

    def vendor(self, mapping: str) -> dict[str, Record]:
        """The mapping's changed vendor records (waits for them)."""
        kind, payload = self._get(mapping)
        assert kind == "vendor", kind
        return cast(dict[str, Record], payload)

    def detected_all(self, mapping: str) -> bool:
        """Whether every page of the mapping's partner records has been read (the
        chunks may still be waiting to be handed over): from then on, writing to the
        partner's records of it shifts no page still to read (:class:`Chunk`)."""
        return mapping in self._read_all

    def partner_chunks(self, mapping: str) -> Iterator[dict[str, Record]]:
        """The mapping's changed partner records, chunk by chunk as they arrive."""
        while True:
            kind, payload = self._get(mapping)
            if kind == "end":
                return
            yield cast(dict[str, Record], payload)
