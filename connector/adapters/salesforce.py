"""The Salesforce adapter (partner side), through ``simple-salesforce``.

Opportunity ↔ deals, Account ↔ companies, Contact ↔ contacts (either name is accepted
and a record comes back under the name asked for); a deal's company is
``Opportunity.AccountId``, its contacts ``OpportunityContactRole`` rows, a contact's
company ``Contact.AccountId``. Property names are Salesforce's field names
(``StageName``, ``Amount``, ``CloseDate``, ``Website``); dealsync's own properties
are custom fields ending in ``__c`` (:data:`SALESFORCE_NAMING`).

Built in layers, one concept each, as the HubSpot adapter is:
``salesforce_auth`` (the OAuth token POST), ``salesforce_transport`` (client,
governor, retries, session refresh), ``salesforce_errors`` and ``salesforce_limits``
(what an answer means; the org's 24-hour allocation), ``salesforce_soql`` (every
statement), ``salesforce_records`` (rows as records, paged reads),
``salesforce_writes`` (sObject Collections), ``salesforce_associations``,
``salesforce_detect`` (change windows and deletes), ``salesforce_schema`` (describe,
custom fields) and this module (reads by id, lookups, the write results).
Salesforce's types and exceptions never leave these modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from connector.adapters.base import Fields, Ids, ObjectSchema, ObjectTypes
from connector.adapters.naming import Naming
from connector.adapters.salesforce_auth import Credentials
from connector.adapters.salesforce_detect import SalesforceDetection
from connector.adapters.salesforce_records import to_record
from connector.adapters.salesforce_soql import chunks, field_list, one_of, select
from connector.adapters.salesforce_writes import Outcome
from connector.records import PropertySpec, Record, WriteResult, utcnow

SALESFORCE_NAMING = Naming(
    *("dealsync_source_id__c", "dealsync_partner_id__c"),
    *("Opportunity", "Contact", "Account"),
    # Salesforce has no contact language nor a list of merged ids on the survivor (a
    # merge deletes the losers, each with MasterRecordId): custom fields of dealsync's
    *("dealsync_language__c", "dealsync_merged_ids__c"),
)
"""Salesforce's names: its objects, and dealsync's markers as custom fields."""

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
# "duplicate value found: dealsync_source_id__c duplicates value on record with id: 006…"
_EXISTING = re.compile(r"record with id:\s*([a-zA-Z0-9]{15,18})")


def existing_id(error: str | None) -> str | None:
    """The record a unique-value refusal (``DUPLICATE_VALUE``) names, if any."""
    if not error or "DUPLICATE" not in error:
        return None
    found = _EXISTING.search(error)
    return found.group(1) if found else None


def _already_deleted(error: str | None) -> bool:
    return bool(error) and "ENTITY_IS_DELETED" in str(error)


class SalesforceAdapter(SalesforceDetection):
    """One Salesforce org.

    No :class:`~connector.adapters.base.SupportsListing`: an org's calls share one API
    budget, so listing an object beside another's query would gain no time, and a first
    sync's SOQL (Bulk API 2.0 above ``bulk_threshold``) already reads everything. The
    engine searches it (``changed_since``) on every pass."""

    naming = SALESFORCE_NAMING
    # SOQL reads the database itself, not an index that lags behind writes
    search_may_be_stale = False

    def __init__(
        self,
        credentials: Credentials,
        *,
        clock: Callable[[], datetime] = utcnow,
        bulk_threshold: int | None = None,
        **kwargs: Any,
    ) -> None:
        """``kwargs`` go to :class:`~connector.adapters.salesforce_transport.SalesforceTransport`
        (name, portal, api_version, ca_bundle, api_reserve_percent, timeouts)."""
        super().__init__(credentials, clock=clock, **kwargs)
        self._clock = clock
        if bulk_threshold is not None:
            self.bulk_threshold = bulk_threshold

    def now(self) -> datetime:
        """The org's time (Salesforce's servers keep UTC by NTP; the engine's overlap
        window absorbs what skew is left)."""
        return self._clock()

    # ------------------------------------------------------------------ reads

    def read(
        self, object_type: str, ids: Ids, properties: Fields, *, associations: ObjectTypes = ()
    ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        inline = self._inline(object_type, associations)
        wanted = list(dict.fromkeys([*properties, *inline.values()]))
        # an id that is not one (a HubSpot id in a link, a typo) exists in no org:
        # left out here rather than failing the whole query with INVALID_QUERY_FILTER
        for chunk in chunks([i for i in ids if _ID.match(i)]):
            soql = select(object_type, field_list(wanted), [one_of("Id", chunk)])
            for row in self._rows("read", soql):
                rec = to_record(object_type, row, wanted)
                out[rec.id] = rec
        if associations and out:
            records = self._with_associations(
                object_type, list(out.values()), associations, inline=inline, asked=properties
            )
            out = {r.id: r for r in records}
        return out

    def find_by_property(
        self, object_type: str, name: str, values: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        out: dict[str, Record] = {}
        wanted = [*properties, name]
        for chunk in chunks(list(values)):
            soql = select(object_type, field_list(wanted), [one_of(name, chunk)], order_by=("Id",))
            for row in self._rows("find", soql):
                rec = to_record(object_type, row, wanted)
                key = rec.properties.get(name)
                if key is not None:
                    out[key] = rec
        return out

    # ------------------------------------------------------------------ writes

    def _results(
        self, object_type: str, outcomes: Sequence[Outcome], fields: Sequence[str]
    ) -> list[WriteResult]:
        """Write outcomes with the records as they are now (one read per 200)."""
        ok_ids = [o.id for o in outcomes if o.ok and o.id]
        records = self.read(object_type, ok_ids, fields) if ok_ids else {}
        out = []
        for o in outcomes:
            if not o.ok:
                out.append(WriteResult(o.key, error=o.error, existing_id=existing_id(o.error)))
                continue
            rec = records.get(o.id or "")
            if rec is None:
                out.append(WriteResult(o.key, error="written, but not found when read back"))
            else:
                out.append(WriteResult(o.key, record=rec, created=o.created))
        return out

    def upsert(
        self, object_type: str, id_property: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        """Create-or-update by an External ID field: a create repeated (after a kill,
        a lost answer) finds the record the first attempt made."""
        if not items:
            return []
        outcomes = self._upsert_raw(object_type, id_property, items)
        fields = sorted({id_property, *(k for _, props in items for k in props)})
        return self._results(object_type, outcomes, fields)

    def update(
        self, object_type: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        if not items:
            return []
        outcomes = self._update_raw(object_type, items)
        fields = sorted({k for _, props in items for k in props})
        return self._results(object_type, outcomes, fields)

    def archive(self, object_type: str, ids: Sequence[str]) -> list[WriteResult]:
        """Delete into the recycle bin (restorable there for 15 days). A record
        already deleted counts as archived (a delete repeated after a lost answer)."""
        return [
            WriteResult(o.key, error=None if _already_deleted(o.error) else o.error)
            for o in self._delete_raw(list(ids))
        ]

    # ------------------------------------------------------------------ schema

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> list[str]:
        from connector.adapters.salesforce_schema import ensure_properties

        return ensure_properties(self, specs)

    def object_schema(self, object_type: str) -> ObjectSchema:
        from connector.adapters.salesforce_schema import read_object_schema

        return read_object_schema(self, object_type)
