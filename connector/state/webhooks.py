"""Webhook deliveries: which signatures and event ids were already seen (so a replay
or HubSpot's redelivery is told apart from a fresh event), recorded together with the
re-reads a fresh event puts on the retry list, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from connector.records import Side
from connector.state.cursors import retry_item
from connector.state.tables import JobRequest, RetryItem, Transactions, WebhookSeen


class WebhookLedger(Transactions):
    """The webhooks queries of :class:`~connector.state.store.StateStore` (a mixin: callers
    keep calling them on the store)."""

    def record_webhook_delivery(
        self,
        signature_key: str,
        events: Sequence[tuple[str, Sequence[tuple[str, str, Side, str, str]]]],
        passes: Sequence[Sequence[str]] | None = None,
    ) -> list[bool] | None:
        """Accept one webhook delivery, all or nothing, in one transaction: its
        signature, each event key (``events``: key and the re-reads it asks for, as
        ``(connection, object, side, record id, note)``) not seen before, and the
        re-reads of those fresh events on the retry list.

        Returns, per event, whether it was fresh; ``None`` when the signature was
        already used (a replay: nothing recorded). A delivery that fails midway
        (database locked, process killed) commits nothing, so HubSpot's retry of it is
        processed rather than taken for a duplicate. A record already on the retry
        list stays as it is (a failing record keeps its error and attempt count).

        ``passes`` (the scale-out queue, aligned with ``events``): the connections
        each event needs a pass of; the fresh events' are recorded as job requests
        (``job_request``) in the same transaction, relayed to the queue after the
        commit — an event stored is never left without its pass."""
        for attempt in range(3):
            try:
                with self.session() as s:
                    if s.get(WebhookSeen, signature_key) is not None:
                        return None
                    s.add(WebhookSeen(key=signature_key))
                    fresh: list[bool] = []
                    keys: set[str] = set()
                    rereads: dict[tuple[str, str, Side, str], str] = {}
                    wanted: dict[str, None] = {}
                    for index, (key, items) in enumerate(events):
                        new = key not in keys and s.get(WebhookSeen, key) is None
                        fresh.append(new)
                        if not new:
                            continue
                        keys.add(key)
                        s.add(WebhookSeen(key=key))
                        for connection, obj, side, rid, note in items:
                            rereads.setdefault((connection, obj, side, rid), note)
                        if passes is not None:
                            wanted |= dict.fromkeys(passes[index])
                    s.flush()
                    for pk, note in rereads.items():
                        if s.get(RetryItem, pk) is None:
                            s.add(retry_item(*pk, note))
                    for connection in sorted(wanted):
                        s.add(JobRequest(connection=connection, trigger="webhook"))
                    s.commit()
                    return fresh
            except IntegrityError:
                # another process recorded one of these keys at the same moment
                # (PostgreSQL; SQLite transactions here are serialised): decide again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def prune_webhook_seen(self, before: datetime) -> int:
        """Forget signatures and event ids recorded before ``before``."""
        with self.session() as s:
            result = s.execute(delete(WebhookSeen).where(col(WebhookSeen.seen_at) < before))
            s.commit()
            return int(getattr(result, "rowcount", 0) or 0)
