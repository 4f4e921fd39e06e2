"""HubSpot webhooks: v3 signature check, durable dedupe, and routing events to the
connections whose portal they came from.

HubSpot signs ``method + uri + body + timestamp`` with the app secret (HMAC-SHA256,
base64) and retries a delivery with a fresh timestamp, so a request older than five
minutes or a signature already seen is refused (401) before any event is looked at.
Events carry no ordering guarantee and may repeat: each ``eventId`` is handled once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from connector.config import Project
from connector.records import Side, utcnow
from connector.state import StateStore
from connector.state.tables import WebhookSeen

log = logging.getLogger("dealsync.service.webhooks")

MAX_AGE_MS = 5 * 60 * 1000
KEEP_SEEN = timedelta(days=3)  # HubSpot retries a delivery for up to 24 h

# subscriptionType "deal.propertyChange" → CRM object type "deals"
_OBJECT_TYPES = {
    "deal": "deals",
    "company": "companies",
    "contact": "contacts",
    "ticket": "tickets",
    "line_item": "line_items",
    "product": "products",
}


class SignatureRejected(Exception):
    """The request is not a fresh, authentic HubSpot delivery; nothing is processed."""


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The ``X-HubSpot-Signature-v3`` value for a request (also used by tests)."""
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
    """Raise :class:`SignatureRejected` unless the signature matches and is fresh."""
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
    expected = sign_v3(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureRejected("signature mismatch")


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    portal_id: int
    object_type: str | None
    object_id: str
    subscription_type: str

    @classmethod
    def parse(cls, raw: Any) -> WebhookEvent | None:
        if not isinstance(raw, dict):
            return None
        try:
            sub = str(raw.get("subscriptionType") or "")
            return cls(
                event_id=str(raw["eventId"]),
                portal_id=int(raw["portalId"]),
                object_type=_OBJECT_TYPES.get(sub.split(".", 1)[0]),
                object_id=str(raw.get("objectId") or ""),
                subscription_type=sub,
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Routing:
    """What a batch of events asks for: retry items per connection, and connections
    that need a full pass (a vendor record no connection is linked to yet)."""

    retries: dict[str, list[tuple[str, Side, str, str]]] = field(default_factory=dict)
    full_pass: set[str] = field(default_factory=set)
    unknown_portals: set[int] = field(default_factory=set)

    @property
    def connections(self) -> set[str]:
        return set(self.retries) | self.full_pass


class SeenLog:
    """Durable memory of handled event ids and signatures (the ``webhook_seen`` table)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def first_time(self, key: str) -> bool:
        """Record ``key``; True if it had not been seen before (atomic across processes)."""
        with self.store.session() as s:
            s.add(WebhookSeen(key=key[:128]))
            try:
                s.commit()
                return True
            except IntegrityError:
                s.rollback()
                return False

    def prune(self) -> None:
        with self.store.session() as s:
            s.execute(delete(WebhookSeen).where(col(WebhookSeen.seen_at) < utcnow() - KEEP_SEEN))
            s.commit()


def signature_key(signature: str) -> str:
    return "signature:" + hashlib.sha256(signature.encode()).hexdigest()


def route(project: Project, store: StateStore, events: Sequence[WebhookEvent]) -> Routing:
    """Which connections must re-read which records.

    A partner portal's event: that connection re-reads the record (retry list). A
    vendor portal's event: every connection linked to the record re-reads it; a vendor
    record no connection links yet gets a normal pass of the connections that map its
    object type (normal detection decides whether it is shared)."""
    out = Routing()
    cfg = project.config
    vendor_portal = cfg.vendor.portal_id
    for ev in events:
        partners = [p for p in cfg.partners if p.portal_id == ev.portal_id]
        is_vendor = vendor_portal is not None and vendor_portal == ev.portal_id
        if not partners and not is_vendor:
            out.unknown_portals.add(ev.portal_id)
            continue
        for p in partners:
            mapped = [m for m in project.mappings if m.partner_object == ev.object_type]
            if not mapped or not ev.object_id:
                out.full_pass.add(p.id)
                continue
            for m in mapped:
                out.retries.setdefault(p.id, []).append(
                    (m.name, "partner", ev.object_id, "webhook " + ev.subscription_type)
                )
        if is_vendor:
            mapped = [m for m in project.mappings if m.vendor_object == ev.object_type]
            for p in cfg.partners:
                for m in mapped:
                    if not ev.object_id:
                        out.full_pass.add(p.id)
                    elif store.links_by_ids(p.id, m.name, "vendor", [ev.object_id]):
                        out.retries.setdefault(p.id, []).append(
                            (m.name, "vendor", ev.object_id, "webhook " + ev.subscription_type)
                        )
                    else:
                        out.full_pass.add(p.id)
    return out


def fresh_events(seen: SeenLog, events: Iterable[WebhookEvent]) -> list[WebhookEvent]:
    """The events not handled before (each recorded as handled now)."""
    return [e for e in events if seen.first_time(f"event:{e.portal_id}:{e.event_id}")]
