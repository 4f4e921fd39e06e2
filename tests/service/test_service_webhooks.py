"""HubSpot webhooks: v3 signatures (bad, stale, replayed → 401 and nothing done),
durable event dedupe, routing by portal id to a targeted re-read."""

from __future__ import annotations

import json
import time

from service_support import (
    ACME_PORTAL,
    WEBHOOK_SECRET,
    Harness,
    finished,
    wait_for,
)
from starlette.testclient import TestClient

from connector.service import Service
from connector.service.webhooks import sign_v3

URL = "http://testserver/v1/webhooks/hubspot"


def _event(event_id: int, portal: int, object_id: str, kind: str = "deal.propertyChange") -> dict:
    return {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": portal,
        "appId": 99,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": int(object_id),
        "propertyName": "amount",
        "propertyValue": "250",
    }


def _post(
    client: TestClient,
    events: list[dict],
    *,
    secret: str = WEBHOOK_SECRET,
    age_ms: int = 0,
    signature: str | None = None,
    timestamp: str | None = None,
):
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
