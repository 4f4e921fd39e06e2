"""``dealsync serve``: scheduled passes, partner-triggered syncs, HubSpot webhooks,
metrics and the sync-health page, over the same API the CLI uses."""

from __future__ import annotations

from connector.service.core import Service
from connector.service.http import build_app, serve

__all__ = ["Service", "build_app", "serve"]
