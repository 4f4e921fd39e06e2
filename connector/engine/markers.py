"""The properties the connector stamps on the records it writes, as HubSpot (and the
embedded local CRM) name them.

Each adapter owns its names (``adapter.naming``, :mod:`connector.adapters.naming`) and
the engine uses those; these constants are HubSpot's, for code that has no adapter at
hand. Kept apart from the engine's pass so that the hooks and the tests can name them
without importing the sync machinery.
"""

from __future__ import annotations

from connector.adapters.naming import HUBSPOT_NAMING

SOURCE_ID = HUBSPOT_NAMING.source_id
"""On every record the connector creates: ``<partner id>:<source record id>`` on the
vendor side, ``vendor:<vendor record id>`` on the partner side. Unique-value, so
creating by upsert on it is idempotent."""

PARTNER_ID = HUBSPOT_NAMING.partner_id
"""On the vendor side: which partner a shared record belongs to."""
