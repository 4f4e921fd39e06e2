"""HubSpot webhooks: v3 signatures (bad, stale, replayed → 401 and nothing done),
durable event dedupe, routing by portal id to a targeted re-read, and deliveries that
fail midway (nothing recorded, so HubSpot's retry is processed)."""

from __future__ import annotations

import json
import time
from typing import Any

from service_support import (
    ACME_PORTAL,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    Harness,
    failing_statements,
    finished,
    wait_for,
    webhook_event,
)
from starlette.testclient import TestClient

from connector.service import Service, build_app
from connector.service.webhooks import sign_v3

URL = WEBHOOK_URL
_event = webhook_event


def _post(
    client: TestClient,
    events: list[dict[str, Any]],
    *,
    secret: str = WEBHOOK_SECRET,
    age_ms: int = 0,
    signature: str | None = None,
    timestamp: str | None = None,
) -> tuple[Any, str, str]:
    body = json.dumps(events).encode()
    ts = timestamp or str(int(time.time() * 1000) - age_ms)
    sig = signature or sign_v3(secret, "POST", URL, body, ts)
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": sig,
        "X-HubSpot-Request-Timestamp": ts,
    }
    return client.post("/v1/webhooks/hubspot", content=body, headers=headers), sig, ts


def _retry_ids(service: Service, connection: str = "acme") -> set[str]:
    return {r.record_id for r in service.store.retries(connection, "deals")}


def test_bad_stale_and_replayed_signatures_are_refused(
    harness: Harness, service: Service, client: TestClient
) -> None:
    deal = harness.seed_deal("acme")
    events = [_event(1, ACME_PORTAL, deal.id)]
    bad, _, _ = _post(client, events, secret="wrong-secret")
    stale, _, _ = _post(client, [_event(2, ACME_PORTAL, deal.id)], age_ms=5 * 60 * 1000 + 1000)
    missing = client.post("/v1/webhooks/hubspot", content=json.dumps(events))
    assert (bad.status_code, stale.status_code, missing.status_code) == (401, 401, 401)
    assert _retry_ids(service) == set() and service.store.runs() == []

    ok, sig, ts = _post(client, events)
    assert ok.status_code == 200 and ok.json()["processed"] == 1
    wait_for(
        lambda: service.store.runs("acme") and finished(service, service.store.runs("acme")[0].id)
    )
    runs_before = len(service.store.runs())
    # the very same signed request again (a capture replayed within the window)
    replay, _, _ = _post(client, events, signature=sig, timestamp=ts)
    assert replay.status_code == 401
    assert len(service.store.runs()) == runs_before and _retry_ids(service) == set()


def test_duplicate_events_processed_once(
    harness: Harness, service: Service, client: TestClient
) -> None:
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()  # keep passes from consuming the retry list meanwhile
    first, _, _ = _post(
        client, [_event(10, ACME_PORTAL, deal.id), _event(10, ACME_PORTAL, deal.id)]
    )
    assert (first.json()["processed"], first.json()["duplicates"]) == (1, 1)
    # HubSpot's retry of the same event: a new timestamp and signature, same eventId
    again, _, _ = _post(client, [_event(10, ACME_PORTAL, deal.id)])
    assert again.status_code == 200
    assert (again.json()["processed"], again.json()["duplicates"]) == (0, 1)
    assert again.json()["scheduled"] == []
    harness.probe.hold.set()
    wait_for(lambda: not service.runner.is_running("acme"))
    attempts = [r.attempts for r in service.store.retries("acme", "deals")]
    assert attempts in ([], [1])  # queued once (already consumed, or still pending)


def test_webhook_targets_the_portals_connection(
    harness: Harness, service: Service, client: TestClient
) -> None:
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    r, _, _ = _post(
        client,
        [_event(20, ACME_PORTAL, deal.id), _event(21, 424242, "5"), {"not": "an event"}],
    )
    body = r.json()
    assert body["scheduled"] == ["acme"]
    assert body["ignored_portals"] == [424242] and body["invalid"] == 1
    # the record is queued for a by-id re-read of acme's connection only
    assert _retry_ids(service, "acme") == {deal.id}
    assert service.store.retries("globex", "deals") == []
    harness.probe.hold.set()
    wait_for(lambda: harness.vendor_deal("acme", deal.id) is not None)
    wait_for(lambda: not service.runner.is_running("acme"))
    assert [run.trigger for run in service.store.runs("acme")][-1] == "webhook"
    assert service.store.runs("globex") == []


def _metric(client: TestClient, series: str) -> float:
    """The value of one sample of ``/metrics`` (0 when the series has no sample yet)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_delivery_failing_midway_is_processed_on_hubspots_retry(
    harness: Harness, service: Service
) -> None:
    """The state database refuses the queue step (locked by another process): the
    delivery answers 503 and records nothing, so HubSpot's retry — same events, new
    timestamp and signature — is processed, not dropped as a duplicate."""
    deal = harness.seed_deal("acme")
    events = [_event(30, ACME_PORTAL, deal.id)]
    with TestClient(build_app(service), raise_server_exceptions=False) as client:
        with failing_statements(service.store.engine, "retry_item") as failed:
            first, _, _ = _post(client, events)
        assert failed, "the fault was not hit: the delivery never queued its re-read"
        assert first.status_code == 503
        assert "HubSpot will retry" in first.json()["error"]
        assert _retry_ids(service) == set() and service.store.runs() == []

        retry, _, _ = _post(client, events, age_ms=1000)  # HubSpot's next attempt
        assert retry.status_code == 200
        assert (retry.json()["processed"], retry.json()["duplicates"]) == (1, 0)
        assert retry.json()["scheduled"] == ["acme"]
        # the change reaches the other side
        wait_for(lambda: harness.vendor_deal("acme", deal.id) is not None)
        wait_for(lambda: not service.runner.is_running("acme"))
        assert _metric(client, 'dealsync_webhook_deliveries_total{result="failed"}') == 1
        assert _metric(client, 'dealsync_webhook_deliveries_total{result="accepted"}') == 1


def test_failed_delivery_does_not_burn_its_signature(harness: Harness, service: Service) -> None:
    """A signature is recorded as used only with a delivery that was processed: the
    very same signed request after a failure is processed; after success it is a
    replay (401)."""
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    events = [_event(40, ACME_PORTAL, deal.id)]
    with TestClient(build_app(service), raise_server_exceptions=False) as client:
        with failing_statements(service.store.engine, "retry_item"):
            first, sig, ts = _post(client, events)
        assert first.status_code == 503
        again, _, _ = _post(client, events, signature=sig, timestamp=ts)
        assert again.status_code == 200 and again.json()["processed"] == 1
        assert _retry_ids(service) == {deal.id}
        replay, _, _ = _post(client, events, signature=sig, timestamp=ts)
        assert replay.status_code == 401
        assert _metric(client, 'dealsync_webhook_deliveries_total{result="rejected"}') == 1
    harness.probe.hold.set()


def test_dropped_events_are_counted_and_reported(
    harness: Harness, service: Service, client: TestClient
) -> None:
    """Nothing is dropped silently: duplicates, events of unknown portals and
    malformed events are in the answer and in ``/metrics``."""
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    r, _, _ = _post(
        client,
        [
            _event(50, ACME_PORTAL, deal.id),
            _event(50, ACME_PORTAL, deal.id),
            _event(51, 424242, "5"),
            {"eventId": {"not": "an id"}, "portalId": ACME_PORTAL, "objectId": 1},
        ],
    )
    body = r.json()
    assert r.status_code == 200
    assert (body["received"], body["processed"], body["duplicates"]) == (4, 1, 1)
    assert (body["ignored"], body["ignored_portals"], body["invalid"]) == (1, [424242], 1)
    assert _metric(client, 'dealsync_webhook_events_total{result="processed"}') == 1
    assert _metric(client, 'dealsync_webhook_events_total{result="duplicate"}') == 1
    assert _metric(client, 'dealsync_webhook_events_total{result="ignored"}') == 1
    assert _metric(client, 'dealsync_webhook_events_total{result="invalid"}') == 1
    harness.probe.hold.set()


def test_state_database_locked_by_another_process_answers_503_then_retry_processed(
    harness: Harness, service: Service
) -> None:
    """A real lock: another connection holds the SQLite database's write lock (as
    another process would, e.g. for 40 s). The delivery waits out the busy timeout
    (shortened here), answers 503 with nothing recorded, and HubSpot's retry after the
    lock is gone is processed."""
    import sqlite3

    from sqlalchemy import event

    deal = harness.seed_deal("acme")
    engine = service.store.engine

    def short_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout = 200")

    event.listen(engine, "connect", short_busy_timeout)
    engine.dispose()  # new connections get the short timeout
    holder = sqlite3.connect(harness.root / "state.db", isolation_level=None)
    events = [_event(100, ACME_PORTAL, deal.id)]
    try:
        with TestClient(build_app(service), raise_server_exceptions=False) as client:
            holder.execute("BEGIN EXCLUSIVE")
            try:
                locked, _, _ = _post(client, events)
            finally:
                holder.execute("ROLLBACK")
            assert locked.status_code == 503, locked.text
            assert _retry_ids(service) == set()
            retry, _, _ = _post(client, events, age_ms=1000)
            assert retry.status_code == 200
            assert (retry.json()["processed"], retry.json()["duplicates"]) == (1, 0)
            wait_for(lambda: harness.vendor_deal("acme", deal.id) is not None)
            wait_for(lambda: not service.runner.is_running("acme"))
    finally:
        holder.close()
        event.remove(engine, "connect", short_busy_timeout)


def test_same_event_to_two_services_at_once_is_processed_once(harness: Harness) -> None:
    """Two services (two processes' engines) get HubSpot's original delivery and its
    retry at the same moment: the event is queued by exactly one of them."""
    import threading

    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    services = [harness.service(), harness.service()]
    clients = [TestClient(build_app(s)) for s in services]
    events = [_event(110 + n, ACME_PORTAL, deal.id) for n in range(20)]
    start = threading.Barrier(2)
    answers: list[dict[str, Any]] = []

    def deliver(i: int) -> None:
        start.wait(10)
        r, _, _ = _post(clients[i], events, age_ms=i)  # distinct timestamps, signatures
        answers.append(r.json())

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 2
    assert sum(a["processed"] for a in answers) == 20  # each event once, in all
    assert all(a["processed"] + a["duplicates"] == 20 for a in answers)
    assert _retry_ids(services[0]) == {deal.id}
    harness.probe.hold.set()
    for c in clients:
        c.close()
