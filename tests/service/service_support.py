"""Helpers of the service tests: a service over a project of two partner connections
(acme, globex) whose portals are embedded local CRMs, shared between the test and the
service by the adapter factory (so a test can seed records and inject write failures)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.adapters.local import LocalCRM
from connector.config.models import PortalConfig
from connector.engine.hooks import BaseHook, PassContext
from connector.records import Record
from connector.service import Service
from connector.testing.faults import failing_statements as failing_statements  # re-exported
from connector.testing.wait import wait_for as wait_for  # re-exported for the tests
from connector.testing.world import project_yaml, seed_deal
from connector.testing.world import write_project as _write_project

ADMIN_TOKEN = "admin-secret-7f3a9c"
WEBHOOK_SECRET = "hubspot-app-secret-1b2c"
ENV = {"DEALSYNC_ADMIN_TOKEN": ADMIN_TOKEN, "DEALSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET}
VENDOR_PORTAL, ACME_PORTAL, GLOBEX_PORTAL = 1000, 2001, 2002

CONFIG = project_yaml(
    ("acme", "globex"),
    portal_ids=True,
    extra="service:\n  trigger_limit: {limit}\n  trigger_window_seconds: 3600\n",
)


def write_project(root: Path, trigger_limit: int = 50) -> Path:
    return _write_project(root, CONFIG.format(limit=trigger_limit))


class PassProbe(BaseHook):
    """Records when each pass is inside its lock (after detection .. after the pass),
    and can hold a pass open until released, to make passes overlap in time."""

    name = "probe"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[str, int | None, float, float]] = []
        self._open: dict[int | None, float] = {}
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.only: str | None = None  # hold only this connection's passes

    def after_detect(self, ctx: PassContext, seen: Any) -> None:
        import time

        with self.lock:
            self._open[ctx.run_id] = time.monotonic()
        if self.only in (None, ctx.partner.id):
            self.entered.set()
            self.hold.wait(30)

    def after_pass(self, ctx: PassContext) -> None:
        import time

        with self.lock:
            start = self._open.pop(ctx.run_id)
            self.spans.append((ctx.partner.id, ctx.run_id, start, time.monotonic()))


@dataclass
class Harness:
    root: Path
    config: Path
    crms: dict[str, LocalCRM]
    probe: PassProbe
    services: list[Service] = field(default_factory=list)
    _serial: int = 0

    def factory(self, name: str, portal: PortalConfig) -> LocalCRM:
        return self.crms[name]

    def service(self, **kwargs: Any) -> Service:
        kwargs.setdefault("env", ENV)
        kwargs.setdefault("adapter_factory", self.factory)
        kwargs.setdefault("hooks", [self.probe])
        svc = Service(self.config, **kwargs)
        svc.admin_app.setup()
        self.services.append(svc)
        return svc

    def seed_deal(self, partner: str = "acme", **props: str) -> Record:
        self._serial += 1
        n = self._serial
        person = {
            "firstname": "Ann",
            "lastname": f"L{n}",
            "email": f"ann@c{n}.com",
            "country": "US",
        }
        deal = {"dealname": f"Deal {n}", "amount": "100", **props}
        return seed_deal(
            self.crms[partner],
            company=f"Company {n}",
            domain=f"c{n}.com",
            country=None,
            contacts=[person],
            closedate=None,
            currency=None,
            **deal,
        ).deal

    def vendor_deal(self, partner: str, partner_deal_id: str) -> Record | None:
        want = f"{partner}:{partner_deal_id}"
        found = [r for r in self.crms["vendor"].all("deals") if r.get("dealsync_source_id") == want]
        return found[0] if found else None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def finished(service: Service, run_id: int) -> bool:
    run = service.store.run(run_id)
    return (
        run is not None
        and run.status != "running"
        and not service.runner.is_running(run.connection)
    )


NOW = datetime.now(UTC)


# --------------------------------------------------------------------------- webhooks

WEBHOOK_URL = "http://testserver/v1/webhooks/hubspot"


def webhook_event(
    event_id: int, portal: int, object_id: str, kind: str = "deal.propertyChange"
) -> dict[str, Any]:
    """One event as HubSpot sends it (a deal property change by default)."""
    import time

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


def hubspot_signature(body: bytes, timestamp: str, uri: str = WEBHOOK_URL) -> str:
    """The ``X-HubSpot-Signature-v3`` HubSpot would send, computed by HubSpot's own
    Python client (not by dealsync), for the URI as HubSpot signs it. The client takes
    text: a body that is not UTF-8 (a hostile one) is signed by dealsync's function."""
    from hubspot.utils.signature import Signature

    from connector.service.webhooks import sign_v3

    try:
        body.decode()
    except UnicodeDecodeError:
        return sign_v3(WEBHOOK_SECRET, "POST", uri, body, timestamp)
    return Signature.get_signature(
        WEBHOOK_SECRET, body.decode(), "v3", http_uri=uri, http_method="POST", timestamp=timestamp
    )


# headless Chromium for the admin page's browser tests (Debian's package, never a download)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
