"""The properties the connector stamps on the records it writes.

Kept apart from the engine's pass so that the hooks, the adapters and the tests can name
them without importing the sync machinery.
"""

from __future__ import annotations

SOURCE_ID = "dealsync_source_id"
"""On every record the connector creates: ``<partner id>:<source record id>`` on the
vendor side, ``vendor:<vendor record id>`` on the partner side. Unique-value, so
creating by upsert on it is idempotent."""

PARTNER_ID = "dealsync_partner_id"
"""On the vendor side: which partner a shared record belongs to."""
