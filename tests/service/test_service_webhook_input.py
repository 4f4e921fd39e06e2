"""What the webhook endpoint accepts: bodies bounded before they are read (413), hostile
JSON refused with a clear 400 (never a 500), and the v3 signature computed over the URI
exactly as HubSpot signs it (query included, a fixed list of escapes decoded)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hubspot.utils.signature import Signature
from service_support import (
    ACME_PORTAL,
    ENV,
    WEBHOOK_SECRET,
    WEBHOOK_URL,
    Harness,
    hubspot_signature,
    webhook_event,
    write_project,
)
from starlette.testclient import TestClient

from connector.config import check_project
from connector.service import Service, build_app
from connector.service.webhooks import (
    SignatureRejected,
    hubspot_signed_uri,
    sign_v3,
    verify_v3,
)

PATH = "/v1/webhooks/hubspot"
CHUNK = 64 * 1024
DEFAULT_LIMIT = 1024 * 1024


@pytest.fixture
def lenient(service: Service) -> Iterator[TestClient]:
    """A client that shows a server error as the 500 HubSpot would get."""
    with TestClient(build_app(service), raise_server_exceptions=False) as c:
        yield c


def _signed_headers(body: bytes, uri: str = WEBHOOK_URL) -> dict[str, str]:
    ts = str(int(time.time() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": hubspot_signature(body, ts, uri),
        "X-HubSpot-Request-Timestamp": ts,
    }


def _post_signed(client: TestClient, body: bytes, target: str = PATH, uri: str = WEBHOOK_URL):
    return client.post(target, content=body, headers=_signed_headers(body, uri))


def _call_asgi(
    service: Service, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]
) -> tuple[int, dict[str, Any], int]:
    """Drive the app as uvicorn does, counting how many body chunks it pulls."""
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    asyncio.run(build_app(service)(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), reads


# --------------------------------------------------------------------------- size


def test_huge_content_length_is_refused_before_reading(service: Service) -> None:
    status, body, reads = _call_asgi(
        service,
        [(b"content-length", b"314572800"), (b"content-type", b"application/json")],
        itertools.repeat(b"x" * CHUNK, 64),
    )
    assert status == 413 and reads == 0
    assert "webhook_max_body_bytes" in body["error"]


def test_streamed_body_over_the_limit_stops_being_read(service: Service) -> None:
    """No Content-Length (chunked): reading stops at the limit."""
    status, body, reads = _call_asgi(
        service, [(b"transfer-encoding", b"chunked")], itertools.repeat(b"x" * CHUNK, 64)
    )
    assert status == 413 and "webhook_max_body_bytes" in body["error"]
    assert reads <= DEFAULT_LIMIT // CHUNK + 1  # not the 64 chunks offered


def test_chunked_upload_over_the_limit_is_413(lenient: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * CHUNK

    r = lenient.post(PATH, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


@pytest.mark.parametrize("value", [b"12abc", b"-1", "\u00b2".encode("latin-1"), b""])
def test_malformed_content_length_is_400(service: Service, value: bytes) -> None:
    status, body, _ = _call_asgi(service, [(b"content-length", value)], iter([b"[]"]))
    assert status == 400 and "Content-Length" in body["error"]


def test_body_limit_follows_the_service_config(harness: Harness) -> None:
    harness.config.write_text(
        harness.config.read_text().replace(
            "service:\n", "service:\n  webhook_max_body_bytes: 4096\n"
        )
    )
    service = harness.service()
    assert service.project.config.service.webhook_max_body_bytes == 4096
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    with TestClient(build_app(service), raise_server_exceptions=False) as client:
        small = json.dumps([webhook_event(60, ACME_PORTAL, deal.id)]).encode()
        big = json.dumps([webhook_event(61 + i, ACME_PORTAL, deal.id) for i in range(40)])
        assert len(big) > 4096
        refused = _post_signed(client, big.encode())
        assert refused.status_code == 413 and "4096" in refused.json()["error"]
        ok = _post_signed(client, small)
        assert ok.status_code == 200 and ok.json()["processed"] == 1
    harness.probe.hold.set()


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'[{"eventId": 1, "portalId": 2001,', "not valid JSON"),
        (b"\xff\xfe[]", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"eventId": 1, "portalId": 2001, "objectId": 5}', "JSON array"),
        (b'"hello"', "JSON array"),
    ],
    ids=["deep-nesting", "truncated", "not-utf8", "empty", "object", "string"],
)
def test_bad_json_is_a_clear_400(lenient: TestClient, body: bytes, says: str) -> None:
    r = _post_signed(lenient, body)
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]


def test_hostile_event_values_are_invalid_events_not_errors(
    harness: Harness, lenient: TestClient, service: Service
) -> None:
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    hostile = [
        {"eventId": 1, "portalId": 1e999, "objectId": 1},  # infinity
        {"eventId": 2, "portalId": ACME_PORTAL, "objectId": {"a": 1}},
        {"eventId": [3], "portalId": ACME_PORTAL, "objectId": 1},
        {"eventId": 4, "portalId": True, "objectId": 1},
        {"eventId": 5, "portalId": ACME_PORTAL, "objectId": "1" * 65},
        {"eventId": "x" * 200, "portalId": ACME_PORTAL, "objectId": 1},
        webhook_event(70, ACME_PORTAL, deal.id),
    ]
    r = _post_signed(lenient, json.dumps(hostile).encode())
    assert r.status_code == 200, r.text
    assert (r.json()["invalid"], r.json()["processed"]) == (6, 1)
    assert {x.record_id for x in service.store.retries("acme", "deals")} == {deal.id}
    harness.probe.hold.set()


# --------------------------------------------------------------------------- signature URI


def test_signed_uri_decodes_exactly_hubspots_list() -> None:
    decoded = "%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B"
    assert hubspot_signed_uri(decoded) == ": / ? @ ! $ ' ( ) * , ;"
    kept = "%20 %26 %3D %2B %23 %25 %5B %7E %C3%A4"
    assert hubspot_signed_uri(kept) == kept
    # a literal "%3A" sent as "%253A" stays "%253A": one pass, no double decoding
    assert hubspot_signed_uri("?a=%253A") == "?a=%253A"


def test_query_with_escaped_characters_is_accepted(
    harness: Harness, service: Service, client: TestClient
) -> None:
    """The webhook target URL carries a query with %3A, %2C and %2F: HubSpot signs it
    with those decoded (and %26, %20 as they are)."""
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    query = "portal=a%3Ab&ids=1%2C2&next=%2Fx%2Fy&q=a%26b%20c"
    signed = "http://testserver/v1/webhooks/hubspot?portal=a:b&ids=1,2&next=/x/y&q=a%26b%20c"
    body = json.dumps([webhook_event(80, ACME_PORTAL, deal.id)]).encode()
    ok = _post_signed(client, body, target=f"{PATH}?{query}", uri=signed)
    assert ok.status_code == 200 and ok.json()["processed"] == 1
    # HubSpot never signs the URI with those escapes left in: such a request is refused
    other = json.dumps([webhook_event(81, ACME_PORTAL, deal.id)]).encode()
    raw = _post_signed(client, other, target=f"{PATH}?{query}", uri=f"{WEBHOOK_URL}?{query}")
    assert raw.status_code == 401
    harness.probe.hold.set()


def test_public_url_replaces_scheme_and_host(harness: Harness) -> None:
    """Behind a proxy the service sees http://testserver; HubSpot signed the public
    https URL (``service.public_url``), path and query as requested."""
    harness.config.write_text(
        harness.config.read_text().replace(
            "service:\n", "service:\n  public_url: https://dealsync.example.com/\n"
        )
    )
    service = harness.service()
    deal = harness.seed_deal("acme")
    harness.probe.hold.clear()
    with TestClient(build_app(service)) as client:
        body = json.dumps([webhook_event(90, ACME_PORTAL, deal.id)]).encode()
        public = "https://dealsync.example.com/v1/webhooks/hubspot?x=a:b"
        ok = _post_signed(client, body, target=f"{PATH}?x=a%3Ab", uri=public)
        assert ok.status_code == 200 and ok.json()["processed"] == 1
        seen_by_server = "http://testserver/v1/webhooks/hubspot?x=a:b"
        other = json.dumps([webhook_event(91, ACME_PORTAL, deal.id)]).encode()
        refused = _post_signed(client, other, target=f"{PATH}?x=a%3Ab", uri=seen_by_server)
        assert refused.status_code == 401
    harness.probe.hold.set()


@pytest.mark.parametrize(
    "uri",
    [
        WEBHOOK_URL,
        "https://dealsync.example.com/v1/webhooks/hubspot?portal=a%3Ab&ids=1%2C2&n=%2Fx",
        "https://dealsync.example.com/hooks/v1/webhooks/hubspot?who=%40me%21&q=%28a%29%2A",
    ],
)
def test_signing_agrees_with_hubspots_client(uri: str) -> None:
    """Cross-check against ``hubspot.utils.signature.Signature`` (HubSpot's Python
    client), both ways, with a non-ASCII body."""
    body = json.dumps([{"eventId": 1, "propertyValue": "Yllä €"}], ensure_ascii=False)
    ts = str(int(time.time() * 1000))
    signed = hubspot_signed_uri(uri)
    ours = sign_v3(WEBHOOK_SECRET, "POST", signed, body.encode(), ts)
    assert Signature.is_valid(
        ours, WEBHOOK_SECRET, body, http_uri=signed, signature_version="v3", timestamp=ts
    )
    theirs = Signature.get_signature(WEBHOOK_SECRET, body, "v3", http_uri=signed, timestamp=ts)
    verify_v3(
        WEBHOOK_SECRET,
        method="POST",
        uri=uri,
        body=body.encode(),
        signature=theirs,
        timestamp=ts,
        now_ms=int(ts),
    )


def test_timestamp_must_be_within_five_minutes_either_way() -> None:
    body, now = b"[]", int(time.time() * 1000)

    def check(ts: int) -> None:
        sig = sign_v3(WEBHOOK_SECRET, "POST", WEBHOOK_URL, body, str(ts))
        verify_v3(
            WEBHOOK_SECRET,
            method="POST",
            uri=WEBHOOK_URL,
            body=body,
            signature=sig,
            timestamp=str(ts),
            now_ms=now,
        )

    check(now - 4 * 60 * 1000)
    check(now + 4 * 60 * 1000)
    for ts in (now - 5 * 60 * 1000 - 1, now + 5 * 60 * 1000 + 1):
        with pytest.raises(SignatureRejected, match="5-minute"):
            check(ts)


def test_check_refuses_a_body_limit_too_small(tmp_path: Path) -> None:
    """A limit under 1 KiB would refuse every genuine delivery: ``dealsync check``
    names the field instead."""
    config = write_project(tmp_path)
    config.write_text(
        config.read_text().replace("service:\n", "service:\n  webhook_max_body_bytes: 10\n")
    )
    problems = check_project(config, env=ENV)
    assert len(problems) == 1
    assert "webhook_max_body_bytes" in str(problems[0]) and problems[0].line
