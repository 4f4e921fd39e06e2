"""The state store: every table and every query of the connector (sqlmodel).

:class:`StateStore` (``store.py``) holds links and base snapshots, mixes in cursors and
retries (``cursors.py``), webhook dedupe (``webhooks.py``), conflicts (``conflicts.py``),
runs and the pass lock (``runs.py``) so callers call them on the store, and composes the
per-concept queries:
``store.registry`` (registrations and domain claims: ``registry.py``, with the commission
ledger and tiers of ``commissions.py`` mixed in),
``store.outbox`` (the e-mail outbox's rows: ``outbox.py``), ``store.tokens`` (partner API
tokens: ``tokens.py``); lead notifications' rows are ``leads.py``. Tables (and the shared
chunked and filtered query helpers) are ``tables.py``, schema upgrades ``migrations.py``.
"""

from connector.state.store import StateStore

__all__ = ["StateStore"]
