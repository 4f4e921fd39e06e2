"""What the program's concepts are called in one CRM.

The engine and the program speak of "the source-id marker", "deals" or "the contact's
language"; each CRM spells them its own way (a Salesforce custom field ends in
``__c``, its deals are ``Opportunity``). An adapter says how through its
:attr:`~connector.adapters.base.CRMAdapter.naming`, so adding a CRM changes no engine
or program code. The conformance kit (:mod:`connector.testing.adapter_suite`) checks
that an adapter's naming is complete and that its markers work as unique-value
properties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Naming:
    """The names one CRM uses for what the connector and the program need."""

    source_id: str
    """Marker on every record the connector creates: ``<partner id>:<source record
    id>`` on the vendor side, ``vendor:<vendor record id>`` on the partner side.
    Unique-value, so creating by upsert on it is idempotent."""
    partner_id: str
    """Marker on the vendor side: which partner a shared record belongs to."""
    deals: str
    """The object type of deals (opportunities)."""
    contacts: str
    """The object type of contacts (people)."""
    companies: str
    """The object type of companies (accounts)."""
    language: str
    """The contact property holding the contact's preferred language."""
    merged_ids: str
    """The property listing the ids merged into a record (``;``-separated), by which
    the engine follows a merge made in the CRM."""
    custom_suffix: str | None = None
    """How this CRM ends the API name of a custom field (Salesforce: ``__c``), which the
    program's own fields (registration status, commission, the lead flag) get on this
    side. None: as the source-id marker ends (``__c`` when it does, else nothing), so a
    naming whose markers are custom fields names the program's fields alike."""

    def custom(self, name: str) -> str:
        """The API name of the connector's custom field ``name`` (``dealsync_...``) in
        this CRM: ``dealsync_registration_status`` is
        ``dealsync_registration_status__c`` at Salesforce, itself at HubSpot."""
        suffix = self.custom_suffix
        if suffix is None:
            suffix = "__c" if self.source_id.endswith("__c") else ""
        return name if not suffix or name.endswith(suffix) else f"{name}{suffix}"

    @property
    def markers(self) -> tuple[str, str]:
        """The properties the connector itself stamps, which a person re-entering a
        record by hand would not type again."""
        return (self.source_id, self.partner_id)

    @property
    def objects(self) -> tuple[str, str, str]:
        return (self.deals, self.contacts, self.companies)

    def problems(self) -> list[str]:
        """Why this naming cannot work (empty when it can): every name set and usable
        as an API name, the two markers distinct, the three object types distinct."""
        out = [
            f"{f.name} is {getattr(self, f.name)!r}, not an API name (letters, digits, _)"
            for f in fields(self)
            if f.name != "custom_suffix" and not _NAME.match(str(getattr(self, f.name) or ""))
        ]
        if self.source_id == self.partner_id:
            out.append(f"source_id and partner_id are both {self.source_id!r}")
        if len(set(self.objects)) != len(self.objects):
            out.append(f"deals, contacts and companies are not distinct: {self.objects}")
        return out


HUBSPOT_NAMING = Naming(  # the markers, the objects, the properties
    *("dealsync_source_id", "dealsync_partner_id"),
    *("deals", "contacts", "companies"),
    *("hs_language", "hs_merged_object_ids"),
)
"""HubSpot's names (custom properties are plain lowercase names). The embedded local
CRM imitates HubSpot, so it uses them too."""
