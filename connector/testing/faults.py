"""Faults that ``scripts/chaos.py``, the reliability and the service tests inject
around the sync engine rather than inside it: HubSpot webhook deliveries that fail
midway and are retried, a state database whose n-th write (or every write to one
table) fails, and vendor edits that the change search misses (the reason webhooks
exist). The misbehaving SMTP servers are in :mod:`connector.testing.mail`.

Everything here is seeded by the caller's random generator, so a campaign replays;
starlette's test client (httpx) is imported only when a :class:`WebhookEndpoint` is built.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

from connector.adapters.local import LocalCRM

# ---------------------------------------------------------------------- edits search misses


def late_indexed_edit(
    crm: LocalCRM, object_type: str, rid: str, properties: Mapping[str, str], at: datetime
) -> None:
    """Edit a record with modification time ``at`` (before the pass's change window):
    what a change looks like when HubSpot's search index shows it too late for the
    pass that covers its time. Only a read by id (a webhook's re-read) finds it."""
    clock, last = crm.clock, crm._last_stamp
    crm.clock, crm._last_stamp = (lambda: at), None
    try:
        crm.edit(object_type, rid, properties)
    finally:
        crm.clock, crm._last_stamp = clock, last


# ---------------------------------------------------------------------- webhooks

WEBHOOK_SECRET = "chaos-webhook-secret"
VENDOR_PORTAL, PARTNER_PORTAL = 1000, 2001
SUBSCRIPTION = {"deals": "deal", "contacts": "contact", "companies": "company"}
# what every event of the test app's subscription to the vendor portal carries
_DELIVERY = {"subscriptionId": 7, "portalId": VENDOR_PORTAL, "appId": 99, "attemptNumber": 0}


def webhook_event(
    event_id: int, object_type: str, object_id: str, prop: str, value: str
) -> dict[str, Any]:
    """One HubSpot ``<object>.propertyChange`` event from the vendor portal."""
    change = {"propertyName": prop, "propertyValue": value, "changeSource": "CRM_UI"}
    return {
        **_DELIVERY,
        "eventId": event_id,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": f"{SUBSCRIPTION[object_type]}.propertyChange",
        "objectId": int(object_id),
        **change,
    }


class FailingWrites:
    """Makes the ``n``-th write statement on ``engine`` fail as a locked SQLite database
    does, once (the delivery it hits fails midway; what came before is committed)."""

    def __init__(self, engine: Any, n: int) -> None:
        self.engine, self.left, self.fired = engine, n, False

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.fired or not statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            return
        self.left -= 1
        if self.left <= 0:
            self.fired = True
            raise sqlite3.OperationalError("database is locked")

    @contextlib.contextmanager
    def armed(self) -> Iterator[FailingWrites]:
        event.listen(self.engine, "before_cursor_execute", self._before)
        try:
            yield self
        finally:
            event.remove(self.engine, "before_cursor_execute", self._before)


class _NotedRunner:
    """Stands in for the service's pass runner: notes which passes a webhook asked for.
    The campaign runs its passes itself (on its own clock, in its own order)."""

    def __init__(self) -> None:
        self.requested: Counter[str] = Counter()

    def request(self, connection: str, trigger: str, *, follow_up: bool = False) -> Any:
        from connector.service.runner import Job

        self.requested[connection] += 1
        return Job(connection, trigger), False

    def is_running(self, connection: str) -> bool:
        return False

    def shutdown(self, wait: bool = True) -> None:
        return None


class WebhookEndpoint:
    """The service's real ``POST /v1/webhooks/hubspot`` (signature check, event dedupe,
    routing, re-read queue) over the campaign's project and state database, called
    in-process the way HubSpot calls it: signed, and retried with a fresh timestamp and
    signature (same event ids) until it answers 2xx."""

    URL = "http://testserver/v1/webhooks/hubspot"

    def __init__(self, config: Path, env: Mapping[str, str], factory: Any) -> None:
        import warnings

        with warnings.catch_warnings():  # starlette's note about httpx, not ours to act on
            warnings.simplefilter("ignore")
            from starlette.testclient import TestClient

        from connector.service import Service, build_app

        self.service = Service(
            config,
            env={**env, "DEALSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET},
            adapter_factory=factory,
            hooks=[],
        )
        self.runner = _NotedRunner()
        self.service.runner = self.runner  # type: ignore[assignment]
        self.client = TestClient(build_app(self.service), raise_server_exceptions=False)

    def post(
        self, events: list[dict[str, Any]], attempt: int, fail_write: int | None
    ) -> tuple[int, bool]:
        """One delivery attempt; ``fail_write``: the write statement that fails (None:
        no fault). Returns the HTTP status and whether the fault fired (a delivery
        with fewer writes than ``fail_write`` has none)."""
        from connector.service.webhooks import sign_v3

        body = json.dumps([{**e, "attemptNumber": attempt} for e in events]).encode()
        ts = str(int(time.time() * 1000))
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(WEBHOOK_SECRET, "POST", self.URL, body, ts),
            "X-HubSpot-Request-Timestamp": ts,
        }
        if fail_write is None:
            reply = self.client.post("/v1/webhooks/hubspot", content=body, headers=headers)
            return reply.status_code, False
        with FailingWrites(self.service.store.engine, fail_write).armed() as fault:
            reply = self.client.post("/v1/webhooks/hubspot", content=body, headers=headers)
        return reply.status_code, fault.fired

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            self.service.store.close()


@contextlib.contextmanager
def failing_statements(engine: Any, table: str) -> Iterator[list[str]]:
    """Make every write to ``table`` fail as a locked SQLite database does (an
    ``OperationalError`` from the driver) while the block runs; yields the failed
    statements. The fault is injected at the database boundary, so whatever the code
    above does with transactions is exercised as it is."""
    failed: list[str] = []

    def _fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split()
        verb = words[0].upper() if words else ""
        target = (
            words[2] if verb == "INSERT" and len(words) > 2 else words[1] if len(words) > 1 else ""
        )
        if verb in ("INSERT", "UPDATE") and target.strip('"') == table:
            failed.append(statement)
            raise sqlite3.OperationalError("database is locked")

    event.listen(engine, "before_cursor_execute", _fail)
    try:
        yield failed
    finally:
        event.remove(engine, "before_cursor_execute", _fail)
