"""Writes through sObject Collections: 200 records a call, one result per record.

``PATCH /composite/sobjects`` updates, ``POST`` creates, ``DELETE ?ids=`` deletes, and
``PATCH /composite/sobjects/{Object}/{ExternalIdField}`` upserts on an External ID
field — what makes a create idempotent: the counterpart carries its source's id in
``dealsync_source_id__c`` (External ID, unique), so a create repeated after a kill
finds the record the first attempt made instead of making a second. Every call is
``allOrNone: false``: a record Salesforce refuses fails alone, with Salesforce's
status code and message; a call refused whole (400: a field that is not an External
ID, an unknown field) fails each of its records with that refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.adapters.salesforce_errors import GaveUp, RequestRefused
from connector.adapters.salesforce_records import SalesforceReads, wire
from connector.adapters.salesforce_soql import api_name, sobject

COLLECTION = 200  # records per sObject Collections call (Salesforce's limit)


@dataclass(frozen=True)
class Outcome:
    """One record's result of a collection call."""

    key: str
    id: str | None = None
    error: str | None = None
    created: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def _errors(result: Mapping[str, Any]) -> str:
    parts = []
    for e in result.get("errors") or []:
        if isinstance(e, Mapping):
            fields = ", ".join(str(f) for f in e.get("fields") or [])
            where = f" ({fields})" if fields else ""
            parts.append(f"{e.get('statusCode') or 'ERROR'}: {e.get('message') or ''}{where}")
    return "; ".join(parts) or "Salesforce refused it without a message"


def _fields(props: Mapping[str, str | None]) -> dict[str, str | None]:
    return {api_name(k): wire(v) for k, v in props.items()}


class SalesforceWrites(SalesforceReads):
    """The collection calls of one org."""

    def _collection(
        self,
        kind: str,
        keys: Sequence[str],
        send: Any,
    ) -> list[Outcome]:
        """One collection call for ``keys`` (in order); its per-record results, or the
        whole call's refusal as every record's error."""
        try:
            answer = send()
        except RequestRefused as exc:
            return [Outcome(k, error=f"Salesforce refused it: {exc}") for k in keys]
        except GaveUp as exc:  # a create not repeated: the next pass checks and retries
            return [Outcome(k, error=f"not written, tried again next pass: {exc}") for k in keys]
        results = answer if isinstance(answer, list) else []
        out = []
        for i, key in enumerate(keys):
            res = results[i] if i < len(results) and isinstance(results[i], Mapping) else None
            if res is None:
                out.append(Outcome(key, error="no result returned for this record"))
            elif res.get("success"):
                out.append(
                    Outcome(key, str(res.get("id") or key), created=bool(res.get("created")))
                )
            else:
                out.append(Outcome(key, error=_errors(res)))
        return out

    def _update_raw(
        self, object_type: str, items: Sequence[tuple[str, Mapping[str, str | None]]]
    ) -> list[Outcome]:
        out: list[Outcome] = []
        kind = sobject(object_type)
        for i in range(0, len(items), COLLECTION):
            chunk = items[i : i + COLLECTION]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": kind}, "id": rid, **_fields(props)}
                    for rid, props in chunk
                ],
            }
            out += self._collection(
                "collection_update",
                [rid for rid, _ in chunk],
                lambda body=body: self._rest(
                    "collection_update", "composite/sobjects", "PATCH", json=body
                ),
            )
        return out

    def _create_raw(self, object_type: str, rows: Sequence[Mapping[str, str]]) -> list[str | None]:
        """Create records; per row, None or the error."""
        out: list[str | None] = []
        kind = sobject(object_type)
        for i in range(0, len(rows), COLLECTION):
            chunk = rows[i : i + COLLECTION]
            body = {
                "allOrNone": False,
                "records": [{"attributes": {"type": kind}, **_fields(r)} for r in chunk],
            }
            got = self._collection(
                "collection_create",
                [str(n) for n in range(len(chunk))],
                lambda body=body: self._rest(
                    "collection_create", "composite/sobjects", "POST", repeat=False, json=body
                ),
            )
            out += [o.error for o in got]
        return out

    def _upsert_raw(
        self, object_type: str, id_property: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[Outcome]:
        out: list[Outcome] = []
        kind, field = sobject(object_type), api_name(id_property)
        for i in range(0, len(items), COLLECTION):
            chunk = items[i : i + COLLECTION]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": kind}, **_fields(props), field: key}
                    for key, props in chunk
                ],
            }
            path = f"composite/sobjects/{kind}/{field}"
            out += self._collection(
                "collection_upsert",
                [key for key, _ in chunk],
                lambda body=body, path=path: self._rest(
                    "collection_upsert", path, "PATCH", json=body
                ),
            )
        return out

    def _delete_raw(self, ids: Sequence[str]) -> list[Outcome]:
        out: list[Outcome] = []
        for i in range(0, len(ids), COLLECTION):
            chunk = list(ids[i : i + COLLECTION])
            params = {"ids": ",".join(chunk), "allOrNone": "false"}
            out += self._collection(
                "collection_delete",
                chunk,
                lambda params=params: self._rest(
                    "collection_delete", "composite/sobjects", "DELETE", params=params
                ),
            )
        return out
