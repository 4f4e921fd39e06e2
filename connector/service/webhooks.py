"""HubSpot webhooks: v3 signature check, durable dedupe, and routing events to the
connections whose portal they came from.

HubSpot signs ``method + uri + body + timestamp`` with the app secret (HMAC-SHA256,
base64), the URI being the target URL as requested with a fixed list of escapes
decoded (:func:`hubspot_signed_uri`), and retries a failed delivery with a fresh
timestamp. A request older than five minutes or a signature already used is refused
(401) before any event is looked at. Events carry no ordering guarantee and may repeat:
each ``eventId`` is handled once. A delivery is recorded all or nothing
(:meth:`~connector.state.store.StateStore.record_webhook_delivery`): its signature,
its new event ids and the re-reads they ask for commit together, so a delivery that
fails midway leaves nothing behind and HubSpot's retry of it is processed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connector.config import Project
from connector.records import Side, utcnow
from connector.state import StateStore

log = logging.getLogger("dealsync.service.webhooks")

MAX_AGE_MS = 5 * 60 * 1000
KEEP_SEEN = timedelta(days=3)  # HubSpot retries a delivery for up to 24 h
_KEY_LENGTH = 128  # webhook_seen.key
_ID_LENGTH = 64  # retry_item.record_id

# subscriptionType "deal.propertyChange" → CRM object type "deals"
_OBJECT_TYPES = {
    "deal": "deals",
    "company": "companies",
    "contact": "contacts",
    "ticket": "tickets",
    "line_item": "line_items",
    "product": "products",
}

# The escapes HubSpot decodes in the target URL before signing it (its "Validate the
# v3 request signature" table); every other escape (%20, %26, %3D, %25, …) is signed
# as it is.
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPES = re.compile("|".join(_DECODED))
_ESCAPES_ANY_CASE = re.compile("|".join(_DECODED), re.IGNORECASE)


class SignatureRejected(Exception):
    """The request is not a fresh, authentic HubSpot delivery; nothing is processed."""


def hubspot_signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it: ``uri`` (scheme, host, path and query as
    requested) with exactly HubSpot's list of escapes decoded, in one pass (so
    ``%253A`` stays ``%253A``)."""
    return _ESCAPES.sub(lambda m: _DECODED[m.group(0)], uri)


def _signed_uri_candidates(uri: str) -> list[str]:
    """HubSpot's table lists the escapes upper-case; percent-encoding is
    case-insensitive (RFC 3986 §2.1), so a target URL written with ``%3a`` is also
    tried with it decoded. Both are HMACs under the secret: no forgery is easier."""
    exact = hubspot_signed_uri(uri)
    any_case = _ESCAPES_ANY_CASE.sub(lambda m: _DECODED[m.group(0).upper()], uri)
    return [exact] if any_case == exact else [exact, any_case]


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The ``X-HubSpot-Signature-v3`` value for a request whose signed URI (already
    passed through :func:`hubspot_signed_uri`) is ``uri``."""
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_v3(
    secret: str,
    *,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int,
) -> None:
    """Raise :class:`SignatureRejected` unless the signature matches and is fresh.
    ``uri`` is the URL as requested (escapes as received)."""
    if not secret:
        raise SignatureRejected("webhook secret is not configured")
    if not signature or not timestamp:
        raise SignatureRejected("missing signature headers")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureRejected("malformed timestamp") from None
    if now_ms - ts > MAX_AGE_MS or ts - now_ms > MAX_AGE_MS:
        raise SignatureRejected("timestamp outside the 5-minute window")
    for candidate in _signed_uri_candidates(uri):
        expected = sign_v3(secret, method, candidate, body, timestamp)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return
    raise SignatureRejected("signature mismatch")


def _plain_int(value: Any) -> int | None:
    """``value`` as HubSpot's ids are sent (an integer, or its digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= _ID_LENGTH:
        return int(value)
    return None


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    portal_id: int
    object_type: str | None
    object_id: str
    subscription_type: str

    @classmethod
    def parse(cls, raw: Any) -> WebhookEvent | None:
        """The event, or None when it is not one HubSpot could have sent (counted as
        invalid): ids must be integers (or their digits) of sane length, so no value
        can overflow a column or make a delivery fail on every retry."""
        if not isinstance(raw, dict):
            return None
        event_id, portal_id = raw.get("eventId"), _plain_int(raw.get("portalId"))
        if isinstance(event_id, bool) or not isinstance(event_id, int | str):
            return None
        event_id = str(event_id)
        if not event_id or len(event_id) > _ID_LENGTH or portal_id is None:
            return None
        object_id = raw.get("objectId")
        if object_id in (None, "", 0):
            object_text = ""
        else:
            parsed = _plain_int(object_id)
            if parsed is None or len(str(parsed)) > _ID_LENGTH:
                return None
            object_text = str(parsed)
        sub = raw.get("subscriptionType") or ""
        if not isinstance(sub, str):
            return None
        return cls(
            event_id=event_id,
            portal_id=portal_id,
            object_type=_OBJECT_TYPES.get(sub.split(".", 1)[0]),
            object_id=object_text,
            subscription_type=sub[:200],
        )

    @property
    def key(self) -> str:
        """Its ``webhook_seen`` key: one per (portal, event id)."""
        key = f"event:{self.portal_id}:{self.event_id}"
        if len(key) > _KEY_LENGTH:  # never truncated: two long ids must not collide
            key = "event:" + hashlib.sha256(key.encode()).hexdigest()
        return key


Reread = tuple[str, str, Side, str, str]  # connection, object, side, record id, note


@dataclass
class EventPlan:
    """What one event asks for: records to re-read by id, connections that need a
    normal pass (a vendor record no connection is linked to yet, or an event without
    a mapped record), or nothing (``ignored``: unknown portal, unmapped object)."""

    event: WebhookEvent
    rereads: list[Reread] = field(default_factory=list)
    full_pass: set[str] = field(default_factory=set)
    unknown_portal: bool = False

    @property
    def ignored(self) -> bool:
        return not self.rereads and not self.full_pass


@dataclass
class Routing:
    """What the fresh events of a delivery asked for, and what was dropped."""

    rereads: dict[str, list[Reread]] = field(default_factory=dict)
    full_pass: set[str] = field(default_factory=set)
    unknown_portals: set[int] = field(default_factory=set)
    processed: int = 0
    ignored: int = 0
    duplicates: int = 0

    @property
    def connections(self) -> set[str]:
        return set(self.rereads) | self.full_pass


class SeenLog:
    """Durable memory of handled event ids and signatures (the ``webhook_seen``
    table, written by :meth:`StateStore.record_webhook_delivery`)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def prune(self) -> None:
        """Forget old signatures and event ids, and the job requests the queue took."""
        from connector.state.jobs import JobRequests

        before = utcnow() - KEEP_SEEN
        self.store.prune_webhook_seen(before)
        JobRequests(self.store).prune(before)


def signature_key(signature: str) -> str:
    return "signature:" + hashlib.sha256(signature.encode()).hexdigest()


def plan(project: Project, store: StateStore, events: Sequence[WebhookEvent]) -> list[EventPlan]:
    """Which connections must re-read which records, per event (reads links only).

    A partner portal's event: that connection re-reads the record (retry list). A
    vendor portal's event: every connection linked to the record re-reads it; a vendor
    record no connection links yet gets a normal pass of the connections that map its
    object type (normal detection decides whether it is shared)."""
    cfg = project.config
    vendor_portal = cfg.vendor.portal_id
    out: list[EventPlan] = []
    for ev in events:
        entry = EventPlan(ev)
        out.append(entry)
        note = "webhook " + ev.subscription_type
        partners = [p for p in cfg.partners if p.portal_id == ev.portal_id]
        is_vendor = vendor_portal is not None and vendor_portal == ev.portal_id
        if not partners and not is_vendor:
            entry.unknown_portal = True
            continue
        for p in partners:
            mapped = [m for m in project.mappings if m.partner_object == ev.object_type]
            if not mapped or not ev.object_id:
                entry.full_pass.add(p.id)
                continue
            for m in mapped:
                entry.rereads.append((p.id, m.name, "partner", ev.object_id, note))
        if is_vendor:
            mapped = [m for m in project.mappings if m.vendor_object == ev.object_type]
            for p in cfg.partners:
                for m in mapped:
                    if not ev.object_id:
                        entry.full_pass.add(p.id)
                    elif store.links_by_ids(p.id, m.name, "vendor", [ev.object_id]):
                        entry.rereads.append((p.id, m.name, "vendor", ev.object_id, note))
                    else:
                        entry.full_pass.add(p.id)
    return out


def accept(
    store: StateStore, signature: str, plans: Sequence[EventPlan], *, queued: bool = False
) -> Routing | None:
    """Record the delivery (signature, fresh events, their re-reads) in one
    transaction; None if the signature was used before (a replay, nothing done).
    A database error propagates with nothing recorded: the caller answers 5xx and
    HubSpot retries. ``queued`` (a deployment with a queue): the passes the fresh
    events need are recorded as job requests in the same transaction, for the relay
    (:mod:`connector.scale.relay`)."""
    passes = [sorted({r[0] for r in p.rereads} | p.full_pass) for p in plans] if queued else None
    fresh = store.record_webhook_delivery(
        signature_key(signature), [(p.event.key, p.rereads) for p in plans], passes
    )
    if fresh is None:
        return None
    out = Routing()
    for p, is_fresh in zip(plans, fresh, strict=True):
        if not is_fresh:
            out.duplicates += 1
            continue
        if p.unknown_portal:
            out.unknown_portals.add(p.event.portal_id)
        if p.ignored:
            out.ignored += 1
            continue
        out.processed += 1
        out.full_pass |= p.full_pass
        for item in p.rereads:
            out.rereads.setdefault(item[0], []).append(item)
    return out
