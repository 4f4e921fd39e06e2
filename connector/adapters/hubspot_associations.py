"""HubSpot associations: reading every associated id (paged per input) and creating
them in batches of up to 2,000, with a 207's refusals matched back to their inputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from connector.adapters.hubspot_errors import RequestRefused
from connector.adapters.hubspot_transport import (
    ASSOC_CREATE_BATCH,
    ASSOC_READ_BATCH,
    HubSpotTransport,
)
from connector.records import Record, WriteResult

# HubSpot-defined association type ids (the unlabelled default) of each pair of object
# types, one id per direction: (one type, other type, one → other, other → one).
_DEFAULT_TYPE_IDS = (
    ("deals", "companies", 341, 342),
    ("deals", "contacts", 3, 4),
    ("contacts", "companies", 279, 280),
)
# (from, to) → association type id
ASSOCIATION_TYPES = {(a, b): ab for a, b, ab, _ in _DEFAULT_TYPE_IDS} | {
    (b, a): ba for a, b, _, ba in _DEFAULT_TYPE_IDS
}


class HubSpotAssociations(HubSpotTransport):
    """The association calls of one portal."""

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

    def _read_associations(
        self, object_type: str, ids: Sequence[str], to_types: Sequence[str]
    ) -> dict[str, dict[str, tuple[str, ...]]]:
        """Every associated id per record and target type. HubSpot pages the batch read
        *per input*: a record with more associations than one page has
        ``results[].paging.next.after``, sent back with that id until no cursor is left,
        so a company with thousands of deals is read whole instead of truncated."""
        found: dict[str, dict[str, set[str]]] = {i: {t: set() for t in to_types} for i in ids}
        for to_type in to_types:

            def page(chunk: list[dict[str, str]], to_type: str = to_type) -> Any:
                return self._call(
                    "assoc_read",
                    self._assoc.get_page_with_http_info,
                    object_type,
                    to_type,
                    {"inputs": chunk},
                    raw=True,
                )

            pending: list[dict[str, str]] = [{"id": rid} for rid in ids]
            while pending:
                # the full batches side by side; a short rest waits for the cursors they
                # hand back, so the batches stay as full as when read one by one
                full = len(pending) // ASSOC_READ_BATCH * ASSOC_READ_BATCH or len(pending)
                chunks = [
                    pending[i : min(i + ASSOC_READ_BATCH, full)]
                    for i in range(0, full, ASSOC_READ_BATCH)
                ]
                pending = pending[full:]
                for resp in self.fan_out(page, chunks):
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

    def associate(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, str]]
    ) -> list[WriteResult]:
        pair_list = list(pairs)
        type_id = ASSOCIATION_TYPES.get((from_type, to_type))

        def create(chunk: list[tuple[str, str]]) -> list[WriteResult]:
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
            except RequestRefused as exc:
                return [
                    WriteResult(a, error=f"HubSpot refused the association: {exc}")
                    for a, _ in chunk
                ]
            failed = _failed_pairs(chunk, getattr(resp, "errors", None) or [])
            return [WriteResult(a, error=failed.get(j)) for j, (a, _) in enumerate(chunk)]

        chunks = [
            pair_list[i : i + ASSOC_CREATE_BATCH]
            for i in range(0, len(pair_list), ASSOC_CREATE_BATCH)
        ]
        return [res for answer in self.fan_out(create, chunks) for res in answer]


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


def _id_key(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (0, value)
