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
from urllib.parse import quote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.config import config_path_from
from connector.logs import configure_logging
from connector.service.admin import admin_routes
from connector.service.core import Service
from connector.service.partner_view import partner_run_view
from connector.service.paths import path_id
from connector.service.webhooks import SignatureRejected, WebhookEvent, verify_v3

log = logging.getLogger("dealsync.service.http")

MAX_EVENTS = 1000  # HubSpot sends at most 100 per request
_JSON_TYPES = {
    dict: "an object",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}


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


def _requested_uri(request: Request, public_url: str | None) -> str:
    """The URL HubSpot called, escapes as they were sent: scheme and host as this
    server sees them — or ``service.public_url`` when a proxy stands between — then
    the raw path and the raw query (the decoded path Starlette routes on would lose
    the escapes HubSpot signs)."""
    scope = request.scope
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path:
        path = raw_path.decode("utf-8", "replace")
    else:
        path = quote(scope.get("root_path", "") + scope["path"])
    query = scope.get("query_string", b"").decode("utf-8", "replace")
    seen = f"{request.url.scheme}://{request.url.netloc}"
    base = public_url.rstrip("/") if public_url else seen
    return base + path + ("?" + query if query else "")


def serve(
    config: str | None,
    host: str,
    port: int,
    *,
    debug: bool,
    log_level: str | None = None,
    log_format: str = "text",
) -> None:
    """``dealsync serve``: start the service of the config at ``config`` (None: the
    default), answer HTTP on ``host``:``port`` until stopped, then stop its passes.
    Logs at ``log_level`` (None: info, debug with ``debug``) in ``log_format``; what
    it says on starting and uvicorn's own lines (requests, start-up) are log lines
    too, so stderr is in the one format (a JSON object per line with ``json``)."""
    import uvicorn

    level = log_level or ("debug" if debug else "info")
    configure_logging(level, log_format)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # through our handler, even after an in-process uvicorn (a sandbox) set its own
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    service = Service(config_path_from(config))
    service.start()
    log.info(
        "dealsync serving %d connection(s) on http://%s:%d (admin page: /admin)",
        len(service.project.config.partners),
        host,
        port,
    )
    # each connection that cannot run was logged by the service (the others run)
    try:
        # log_config=None: uvicorn adds no handlers, its loggers go through ours
        uvicorn.run(build_app(service), host=host, port=port, log_level=level, log_config=None)
    finally:
        service.stop()


def build_app(service: Service) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        # probing (cached, bounded) blocks: off the event loop
        checks = await run_in_threadpool(service.portal_checks)
        portals = None
        healthy = True
        if checks is not None:
            healthy = all(c.ok for c in checks.values())
            vendor = checks.pop("@vendor", None)
            portals = {
                "vendor": vendor.view() if vendor else None,
                "partners": {key: c.view() for key, c in checks.items()},
            }
        return JSONResponse(
            {
                # "degraded" (still HTTP 200: the service runs; what fails is a portal)
                "status": "ok" if healthy else "degraded",
                # each portal reachable / taking its token (cached, see docs/service.md)
                "portals": portals,
                "connections": len(service.project.config.partners),
                "config_valid": service.reload.valid,
                "config_problems": service.reload.problems,
                # the online check's warnings of the version in use (not refusing it)
                "config_warnings": service.reload.warnings,
                # a refused edit tried again on its own (a portal could not be reached)
                "config_retry": service.reload.retry.view() if service.reload.retry else None,
                # connections of the version in use that cannot run (the others do)
                "connections_unusable": service.unusable_connections(),
            }
        )

    async def metrics(request: Request) -> Response:
        # the state gauges query the database and the portal gauges may probe
        # (cached, bounded): off the event loop
        body = await run_in_threadpool(generate_latest, service.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def trigger(request: Request) -> JSONResponse:
        # sync handler: Starlette runs it in a thread, so waiting for the run id is fine
        caller = _partner_of(service, request)
        if isinstance(caller, JSONResponse):
            return caller
        partner = request.path_params["partner"]
        if partner != caller or not service.has_partner(partner):
            service.metrics.inc("dealsync_triggers", caller, "forbidden")
            return _error(403, "this token may only trigger its own partner's connection")
        reason = service.not_started(partner, "partner")
        if reason is not None:
            service.metrics.inc("dealsync_triggers", partner, "unusable")
            return _error(
                503,
                f"this connection cannot run: {reason}; the vendor's admin must fix it, "
                "then trigger again",
            )
        wait = service.trigger_limiter.check(partner)
        if wait:
            service.metrics.inc("dealsync_triggers", partner, "rate_limited")
            return _error(
                429,
                "too many sync triggers; retry later",
                {"Retry-After": str(math.ceil(wait))},
            )
        job, joined = service.request_pass(partner, "partner")
        service.metrics.inc("dealsync_triggers", partner, "joined" if joined else "started")
        if job.queued:  # a worker runs it (docs/scale-out.md); its run has no id yet
            return JSONResponse(
                {"run_id": None, "queued": True, "job_id": job.job_id, "joined": joined},
                status_code=202,
            )
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

    def refuse(
        result: str, status: int, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        """A webhook request not processed, counted by why (never silent)."""
        service.metrics.inc("dealsync_webhook_deliveries", result)
        return _error(status, message, headers)

    async def read_body(request: Request) -> bytes | JSONResponse:
        """The body, read only up to ``service.webhook_max_body_bytes``: a larger
        Content-Length is refused unread, a longer stream (chunked) is cut off there."""
        limit = service.project.config.service.webhook_max_body_bytes
        too_large = (
            f"request body over {limit} bytes (service.webhook_max_body_bytes); "
            "HubSpot sends at most 100 events per request"
        )
        length = request.headers.get("content-length")
        if length is not None:
            if not length.strip().isascii() or not length.strip().isdigit():
                return refuse("malformed", 400, f"Content-Length {length[:40]!r} is not a number")
            if int(length) > limit:
                return refuse("too_large", 413, too_large, {"Connection": "close"})
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return refuse("too_large", 413, too_large, {"Connection": "close"})
        except ClientDisconnect:
            return refuse("malformed", 400, "the client went away before the body was sent")
        return bytes(body)

    async def hubspot_webhook(request: Request) -> JSONResponse:
        body = await read_body(request)
        if isinstance(body, JSONResponse):
            return body
        return await run_in_threadpool(handle_webhook, request, body)

    def handle_webhook(request: Request, body: bytes) -> JSONResponse:
        signature = request.headers.get("x-hubspot-signature-v3")
        try:
            verify_v3(
                service.webhook_secret,
                method=request.method,
                uri=_requested_uri(request, service.project.config.service.public_url),
                body=body,
                signature=signature,
                timestamp=request.headers.get("x-hubspot-request-timestamp"),
                now_ms=int(time.time() * 1000),
            )
        except SignatureRejected as exc:
            log.warning("webhook refused: %s", exc)
            return refuse("rejected", 401, "invalid webhook signature")
        assert signature is not None
        hint = "HubSpot sends a JSON array of event objects"
        try:
            payload = json.loads(body)
        except RecursionError:
            return refuse("malformed", 400, f"body is JSON nested too deeply; {hint}")
        except ValueError:
            return refuse("malformed", 400, f"body is not valid JSON (UTF-8); {hint}")
        if not isinstance(payload, list):
            kind = _JSON_TYPES.get(type(payload), "a value")
            return refuse("malformed", 400, f"body must be a JSON array of events, not {kind}")
        if len(payload) > MAX_EVENTS:
            return refuse("too_large", 413, f"at most {MAX_EVENTS} events per request")
        events = [e for e in (WebhookEvent.parse(r) for r in payload) if e is not None]
        try:
            routing = service.accept_webhook(signature, events)
        except SQLAlchemyError as exc:
            log.error(
                "webhook delivery not recorded, HubSpot will retry it: %s",
                getattr(exc, "orig", None) or type(exc).__name__,
            )
            return refuse(
                "failed",
                503,
                "the state database is unavailable; nothing of this delivery was "
                "recorded and HubSpot will retry it",
                {"Retry-After": "30"},
            )
        if routing is None:
            log.warning("webhook refused: signature already used (replay)")
            return refuse("rejected", 401, "invalid webhook signature")
        for portal in sorted(routing.unknown_portals):
            log.warning(
                "webhook events for unknown portal id %s ignored; set vendor.portal_id or "
                "partners[].portal_id if it is one of yours",
                portal,
            )
        invalid = len(payload) - len(events)
        unusable = {
            c: reason
            for c in sorted(routing.connections)
            if (reason := service.unusable(c)) is not None
        }
        service.metrics.inc("dealsync_webhook_deliveries", "accepted")
        for outcome, n in (
            ("processed", routing.processed),
            ("duplicate", routing.duplicates),
            ("ignored", routing.ignored),
            ("invalid", invalid),
        ):
            service.metrics.inc("dealsync_webhook_events", outcome, by=n)
        return JSONResponse(
            {
                "received": len(payload),
                "processed": routing.processed,
                "duplicates": routing.duplicates,
                "ignored": routing.ignored,
                "invalid": invalid,
                "ignored_portals": sorted(routing.unknown_portals),
                "scheduled": sorted(c for c in routing.connections if c not in unusable),
                # recorded, but no pass started: these connections cannot run (why);
                # their re-reads wait for the first pass once they can
                "not_started": unusable,
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
