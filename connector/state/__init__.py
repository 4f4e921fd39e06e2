"""The state store: every table and every query of the connector (sqlmodel).

:class:`StateStore` (``store.py``) holds links, base snapshots, cursors, retries,
conflicts, runs, locks and webhook dedupe, and composes the per-concept queries:
``store.registry`` (registrations, domain claims, commissions, tiers: ``registry.py``),
``store.outbox`` (the e-mail outbox's rows: ``outbox.py``), ``store.tokens`` (partner API
tokens: ``tokens.py``); lead notifications' rows are ``leads.py``. Tables are ``tables.py``,
schema upgrades ``migrations.py``.
"""

from connector.state.store import StateStore

__all__ = ["StateStore"]
