"""Salesforce records as dealsync :class:`~connector.records.Record`\\ s, and the paged
reads every other part of the adapter builds on.

Values are strings, as everywhere in dealsync: Salesforce's JSON numbers become their
shortest decimal (``100.0`` → ``"100"``), booleans ``"true"``/``"false"``; properties
are keyed by the names the caller asked for (``dealsync_source_id`` reads the field
``dealsync_source_id__c``), so the engine's and the mapping's names come back as they
went in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from connector.adapters.salesforce_soql import MODSTAMP, api_name, parse_datetime
from connector.adapters.salesforce_transport import SalesforceTransport
from connector.records import Record

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def text(value: Any) -> str | None:
    """A Salesforce JSON value as dealsync's string (None for no value)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)).normalize(), "f")
    if isinstance(value, dict | list):
        return None  # a relationship or compound value: not a property
    return str(value)


def wire(value: str | None) -> str | None:
    """A dealsync value for a Salesforce write: an empty string clears the field."""
    return None if value in (None, "") else value


def to_record(object_type: str, raw: Mapping[str, Any], properties: Sequence[str]) -> Record:
    """One query row as a Record of ``object_type`` (the name the caller used)."""
    props: dict[str, str | None] = {name: text(raw.get(api_name(name))) for name in properties}
    updated = parse_datetime(raw.get(MODSTAMP)) or EPOCH
    return Record(object_type, str(raw.get("Id")), props, updated, raw.get("IsDeleted") is True)


def _more(url: str, timeout: tuple[float, float], headers: dict[str, str]) -> Callable[[Any], Any]:
    """The call reading a query's next page."""

    def more(sf: Any) -> Any:
        return sf.query_more(url, identifier_is_url=True, timeout=timeout, headers=headers)

    return more


class SalesforceReads(SalesforceTransport):
    """Queries, page by page through ``nextRecordsUrl``, each page one counted call."""

    def _rows(self, kind: str, soql: str, *, deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Every row of a query (``deleted``: ``queryAll``, the recycle bin included)."""
        timeout, headers = self.timeout, self.query_headers
        page = self._call(
            kind,
            lambda sf: sf.query(soql, include_deleted=deleted, timeout=timeout, headers=headers),
        )
        while True:
            yield from page.get("records") or []
            nxt = page.get("nextRecordsUrl")
            if page.get("done", True) or not nxt:
                return
            page = self._call(kind, _more(str(nxt), timeout, headers))

    def now(self) -> datetime:
        """The org's time (the adapter may be given a clock)."""
        return datetime.now(UTC)

    def _count(self, kind: str, soql: str) -> int:
        timeout = self.timeout
        page = self._call(kind, lambda sf: sf.query(soql, timeout=timeout))
        return int(page.get("totalSize") or 0)

    def _rest(
        self, kind: str, path: str, method: str = "GET", *, repeat: bool = True, **kwargs: Any
    ) -> Any:
        """One REST call under ``/services/data/vNN.N/``."""
        timeout = self.timeout
        return self._call(
            kind,
            lambda sf: sf.restful(path, method=method, timeout=timeout, **kwargs),
            repeat=repeat,
        )
