"""dealsync: keeps partner-registered deals in sync between a partner CRM and a vendor CRM."""

from __future__ import annotations

__version__ = "0.1.0"
