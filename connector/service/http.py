"""The service's HTTP interface (Starlette): partner API, HubSpot webhooks, health and
metrics. Every handler is a few lines over :class:`~connector.service.core.Service`.

Partner endpoints answer 401 without a valid token and 403 for another partner's
connection; a run id that is not the caller's is 404 whether or not it exists, so ids
cannot be probed — and so is one that cannot be an id at all (``-1``, 23 digits).
A partner sees its run without the vendor's hosts or vendor-side error text
(:mod:`connector.service.partner_view`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.service.admin import admin_routes
from connector.service.core import Service
from connector.service.partner_view import partner_run_view
from connector.service.paths import path_id
from connector.service.webhooks import (
    SignatureRejected,
    WebhookEvent,
    fresh_events,
    route,
    signature_key,
    verify_v3,
)

log = logging.getLogger("dealsync.service.http")

MAX_EVENTS = 1000


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _unauthorized(message: str = "a valid partner API token is required") -> JSONResponse:
    return _error(401, message, {"WWW-Authenticate": 'Bearer realm="dealsync"'})


def _partner_of(service: Service, request: Request) -> str | JSONResponse:
    """The calling partner, or the 401 to answer (saying so when the token expired)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized()
    verdict = service.tokens.check(token.strip())
    return verdict.partner if verdict.partner is not None else _unauthorized(verdict.refusal)


def build_app(service: Service) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "connections": len(service.project.config.partners),
                "config_valid": service.reload.valid,
            }
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def trigger(request: Request) -> JSONResponse:
        # sync handler: Starlette runs it in a thread, so waiting for the run id is fine
        caller = _partner_of(service, request)
        if isinstance(caller, JSONResponse):
            return caller
        partner = request.path_params["partner"]
        if partner != caller or not service.has_partner(partner):
            service.metrics.triggers.labels(caller, "forbidden").inc()
            return _error(403, "this token may only trigger its own partner's connection")
        wait = service.trigger_limiter.check(partner)
        if wait:
            service.metrics.triggers.labels(partner, "rate_limited").inc()
            return _error(
                429,
                "too many sync triggers; retry later",
                {"Retry-After": str(math.ceil(wait))},
            )
        job, joined = service.request_pass(partner, "partner")
        service.metrics.triggers.labels(partner, "joined" if joined else "started").inc()
        if job.run_id is None:
            return _error(503, "the pass did not start in time; retry later")
        return JSONResponse(
            {"run_id": job.run_id, "joined": joined, "status_url": f"/v1/runs/{job.run_id}"},
            status_code=202,
        )

    def run_status(request: Request) -> JSONResponse:
        caller = _partner_of(service, request)
        if isinstance(caller, JSONResponse):
            return caller
        run_id = path_id(request.path_params["run_id"])
        if run_id is None:
            return _error(404, "no such run (a run id is a whole number, as in /v1/runs/42)")
        service.store.interrupt_orphaned_runs(caller)  # a dead pass's run is not "running"
        run = service.store.run(run_id)
        if run is None or run.connection != caller:
            return _error(404, "no such run")
        failed = service.store.run_records(run_id, "failed")
        body: dict[str, Any] = partner_run_view(run, failed, service.project.config.vendor.name)
        return JSONResponse(body)

    async def hubspot_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        return await run_in_threadpool(handle_webhook, request, body)

    def handle_webhook(request: Request, body: bytes) -> JSONResponse:
        public = service.project.config.service.public_url
        uri = str(request.url)
        if public:
            uri = public.rstrip("/") + request.url.path
            if request.url.query:
                uri += "?" + request.url.query
        signature = request.headers.get("x-hubspot-signature-v3")
        try:
            verify_v3(
                service.webhook_secret,
                method=request.method,
                uri=uri,
                body=body,
                signature=signature,
                timestamp=request.headers.get("x-hubspot-request-timestamp"),
                now_ms=int(time.time() * 1000),
            )
            assert signature is not None
            if not service.webhook_log.first_time(signature_key(signature)):
                raise SignatureRejected("signature already used (replay)")
        except SignatureRejected as exc:
            service.metrics.webhook_events.labels("rejected").inc()
            log.warning("webhook refused: %s", exc)
            return _error(401, "invalid webhook signature")
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return _error(400, "body is not JSON")
        raw_events = payload if isinstance(payload, list) else [payload]
        if len(raw_events) > MAX_EVENTS:
            return _error(413, f"at most {MAX_EVENTS} events per request")
        events = [e for e in (WebhookEvent.parse(r) for r in raw_events) if e is not None]
        fresh = fresh_events(service.webhook_log, events)
        routing = route(service.project, service.store, fresh)
        for portal in sorted(routing.unknown_portals):
            log.warning("webhook events for unknown portal id %s ignored", portal)
        for connection, items in routing.retries.items():
            service.queue_rereads(connection, items)
        for connection in sorted(routing.connections):
            service.runner.request(connection, "webhook", follow_up=True)
        service.metrics.webhook_events.labels("processed").inc(len(fresh))
        service.metrics.webhook_events.labels("duplicate").inc(len(events) - len(fresh))
        service.metrics.webhook_events.labels("invalid").inc(len(raw_events) - len(events))
        return JSONResponse(
            {
                "received": len(raw_events),
                "processed": len(fresh),
                "duplicates": len(events) - len(fresh),
                "invalid": len(raw_events) - len(events),
                "ignored_portals": sorted(routing.unknown_portals),
                "scheduled": sorted(routing.connections),
            }
        )

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/v1/partners/{partner}/sync", trigger, methods=["POST"]),
        Route("/v1/runs/{run_id}", run_status),
        Route("/v1/webhooks/hubspot", hubspot_webhook, methods=["POST"]),
        *admin_routes(service),
    ]
    return Starlette(routes=routes)
