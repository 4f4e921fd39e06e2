"""The sync-health page for the vendor's admins, server-rendered.

Login exchanges the admin token (compared in constant time) for a random session id
in an ``HttpOnly``, ``SameSite=Strict`` cookie; the token itself is never stored in the
cookie or shown. Every POST form carries the session's CSRF token as well. After
``LOGIN_LIMIT`` failed log-ins from one client address within ``LOGIN_WINDOW`` seconds,
log-ins from it are answered 429 (with ``Retry-After``) without checking the token, so
the token cannot be guessed at speed.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from connector.adapters.ratelimit import current_store
from connector.api import DealsyncError
from connector.service.health import grouped, run_view
from connector.service.paths import path_id

if TYPE_CHECKING:
    from connector.service.core import Service

log = logging.getLogger("dealsync.service.admin")

COOKIE = "dealsync_admin"
SESSION_SECONDS = 8 * 3600
LOGIN_LIMIT = 5
LOGIN_WINDOW = 15 * 60.0

_templates = Environment(
    loader=PackageLoader("connector", "templates"),
    autoescape=select_autoescape(["html"]),
)


@dataclass
class AdminSession:
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)


class Sessions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, AdminSession] = {}

    def new(self) -> tuple[str, AdminSession]:
        sid = secrets.token_urlsafe(32)
        session = AdminSession(secrets.token_urlsafe(32), time.time() + SESSION_SECONDS)
        with self._lock:
            now = time.time()
            self._items = {k: v for k, v in self._items.items() if v.expires > now}
            self._items[sid] = session
        return sid, session

    def get(self, sid: str | None) -> AdminSession | None:
        if not sid:
            return None
        with self._lock:
            session = self._items.get(sid)
        if session is None or session.expires < time.time():
            return None
        return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._items.pop(sid or "", None)


class LoginThrottle:
    """Failed log-ins per client address in a sliding window: at ``limit`` failures
    the address waits until the oldest is ``window`` seconds old. A good log-in clears
    its address. Across every ``serve`` process through the shared budget store when
    there is one (``store``; :mod:`connector.scale.budget`) — the store not answering
    throttles log-ins (fail closed) — else in this process."""

    def __init__(
        self,
        limit: int = LOGIN_LIMIT,
        window: float = LOGIN_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        store: str | None = None,
    ) -> None:
        self.limit, self.window, self._clock, self.store = limit, window, clock, store
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def _shared(self, address: str) -> Any:
        """The address's window in the shared store (None: no store)."""
        if not self.store:
            return None
        from connector.scale.budget import SharedWindow

        return SharedWindow.named(self.store, f"login:{address}", self.limit, self.window)

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def wait(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        shared = self._shared(address)
        if shared is not None:
            return float(shared.wait_if_full())
        now = self._clock()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return 0.0
            return max(1.0, failures[0] + self.window - now)

    def failed(self, address: str) -> None:
        shared = self._shared(address)
        if shared is not None:
            shared.take()  # counted; a full window means it was throttled already
            return
        now = self._clock()
        with self._lock:
            if len(self._failures) > 10_000:  # forget addresses that went quiet
                for key in [k for k in self._failures if not self._recent(k, now)]:
                    del self._failures[key]
            self._recent(address, now).append(now)

    def succeeded(self, address: str) -> None:
        shared = self._shared(address)
        if shared is not None:
            shared.clear()
            return
        with self._lock:
            self._failures.pop(address, None)


def _page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**ctx)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "form-action 'self'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer",
        },
    )


def admin_routes(service: Service) -> list[Route]:
    sessions = Sessions()
    throttle = LoginThrottle(store=current_store())

    def configured() -> bool:
        return bool(service.admin_token)

    def current(request: Request) -> AdminSession | None:
        return sessions.get(request.cookies.get(COOKIE))

    def to_page() -> RedirectResponse:
        return RedirectResponse("/admin", status_code=303)

    async def login(request: Request) -> Response:
        if not configured():
            return _page(
                "admin_login.html",
                503,
                error="The admin page is disabled: set the environment variable "
                f"{service.project.config.service.admin_token_env}.",
            )
        if request.method == "GET":
            return _page("admin_login.html")
        address = request.client.host if request.client else "unknown"
        wait = await run_in_threadpool(throttle.wait, address)  # may ask the shared store
        if wait:
            service.metrics.inc("dealsync_admin_logins", "throttled")
            log.warning("admin login from %s throttled after repeated failures", address)
            page = _page(
                "admin_login.html",
                429,
                error=f"Too many failed log-in attempts from your address; try again in "
                f"{math.ceil(wait / 60)} minute(s).",
            )
            page.headers["Retry-After"] = str(math.ceil(wait))
            return page
        form = await request.form()
        given = str(form.get("token") or "")
        if not hmac.compare_digest(given.encode(), service.admin_token.encode()):
            await run_in_threadpool(throttle.failed, address)
            service.metrics.inc("dealsync_admin_logins", "refused")
            log.warning("admin login refused (from %s)", address)
            return _page("admin_login.html", 401, error="That token is not valid.")
        await run_in_threadpool(throttle.succeeded, address)
        service.metrics.inc("dealsync_admin_logins", "ok")
        sid, _ = sessions.new()
        response = to_page()
        response.set_cookie(
            COOKIE,
            sid,
            max_age=SESSION_SECONDS,
            path="/admin",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request) -> Response:
        session = current(request)
        if session is not None and await _csrf_ok(request, session):
            sessions.drop(request.cookies.get(COOKIE))
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(COOKIE, path="/admin")
        return response

    async def _csrf_ok(request: Request, session: AdminSession) -> bool:
        form = await request.form()
        given = str(form.get("csrf") or "")
        return hmac.compare_digest(given.encode(), session.csrf.encode())

    async def posting(request: Request) -> AdminSession | Response:
        """The session of a logged-in admin's form POST, or the answer refusing it
        (no session: 401; a CSRF token that is not the session's: 403)."""
        session = current(request)
        if session is None:
            return Response("login required", status_code=401)
        if not await _csrf_ok(request, session):
            return Response("invalid CSRF token", status_code=403)
        return session

    def page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        flash, session.flash = session.flash, []
        service.store.interrupt_orphaned_runs()  # a dead pass's run is not "running"
        return _page(
            "admin_health.html",
            csrf=session.csrf,
            flash=flash,
            reload=service.reload,
            loaded_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(service.reload.loaded_at)),
            connections=[
                _connection_view(service, p.id, p.name) for p in service.project.config.partners
            ],
            held=service.admin_app.outbox.messages(status="held", limit=500),
            pending=service.admin_app.pending_registrations(),
            reject_codes=service.admin_app.reject_codes,
        )

    async def resync(request: Request) -> Response:
        session = await posting(request)
        if isinstance(session, Response):
            return session
        partner = request.path_params["partner"]
        if not service.has_partner(partner):
            return Response("no such connection", status_code=404)
        reason = service.not_started(partner, "resync")
        if reason is not None:
            session.flash.append(("error", f"Resync of {partner} not started: {reason}."))
            return to_page()
        _job, _joined = service.runner.request(partner, "resync", follow_up=True)
        session.flash.append(
            ("ok", f"Resync of {partner} scheduled: the pass re-reads its failing records.")
        )
        return to_page()

    async def resolve(request: Request) -> Response:
        session = await posting(request)
        if isinstance(session, Response):
            return session
        form = await request.form()
        take = str(form.get("take") or "")
        if take not in ("partner", "vendor"):
            return Response("take must be partner or vendor", status_code=400)
        conflict_id = path_id(request.path_params["conflict_id"])
        if conflict_id is None:
            return Response(
                "conflict id must be a whole number, as in /admin/conflicts/12/resolve",
                status_code=400,
            )
        try:
            row = await run_in_threadpool(
                service.admin_app.resolve_conflict,
                conflict_id,
                take=take,  # type: ignore[arg-type]
            )
            session.flash.append(("ok", f"Conflict #{row.id} resolved: {row.resolution}."))
        except DealsyncError as exc:
            session.flash.append(("error", f"Conflict #{conflict_id} not resolved: {exc}"))
        return to_page()

    async def email_action(request: Request) -> Response:
        """Release or cancel a held e-mail (the same outbox calls as the CLI's)."""
        session = await posting(request)
        if isinstance(session, Response):
            return session
        message_id = int(request.path_params["message_id"])
        action = request.path_params["action"]
        if action not in ("release", "cancel"):
            return Response("action must be release or cancel", status_code=404)
        try:
            await run_in_threadpool(
                service.admin_app.settle_email, message_id, action, by="admin page"
            )
            done = "released: sent on the next delivery" if action == "release" else "cancelled"
            session.flash.append(("ok", f"E-mail #{message_id} {done}."))
        except DealsyncError as exc:
            session.flash.append(("error", f"E-mail #{message_id} not changed: {exc}"))
        return to_page()

    async def review_action(request: Request) -> Response:
        """Approve or reject a pending registration (the same API calls as the CLI's)."""
        session = await posting(request)
        if isinstance(session, Response):
            return session
        registration_id = int(request.path_params["registration_id"])
        action = request.path_params["action"]
        if action not in ("approve", "reject"):
            return Response("action must be approve or reject", status_code=404)
        form = await request.form()
        app = service.admin_app
        try:
            if action == "approve":
                await run_in_threadpool(app.approve_registration, registration_id, by="admin page")
            else:
                code = str(form.get("code") or "")
                await run_in_threadpool(
                    app.reject_registration, registration_id, code, by="admin page"
                )
            done = "approved" if action == "approve" else "rejected"
            session.flash.append(("ok", f"Registration #{registration_id} {done}."))
        except DealsyncError as exc:
            session.flash.append(("error", f"Registration #{registration_id} not changed: {exc}"))
        return to_page()

    return [
        Route("/admin", page),
        Route(
            "/admin/registrations/{registration_id:int}/{action}", review_action, methods=["POST"]
        ),
        Route("/admin/outbox/{message_id:int}/{action}", email_action, methods=["POST"]),
        Route("/admin/login", login, methods=["GET", "POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Route("/admin/connections/{partner}/resync", resync, methods=["POST"]),
        Route("/admin/conflicts/{conflict_id}/resolve", resolve, methods=["POST"]),
    ]


def _connection_view(service: Service, partner: str, name: str) -> dict[str, Any]:
    store = service.store
    failing = store.failing_records(partner)
    runs = store.runs(partner, limit=5)
    last_failed = []
    for run in runs:
        if run.status in ("failed", "fatal", "interrupted") and run.id is not None:
            last_failed = store.run_records(run.id, "failed")[:50]
            break
    links = store.link_counts(partner)
    in_sync = sum(c.get("active", 0) for c in links.values())
    return {
        "id": partner,
        "name": name,
        "in_sync": in_sync,
        "links": links,
        "failing": len(failing),
        "groups": grouped(failing),
        "last_failed": last_failed,
        "conflicts": store.conflicts(partner),
        "runs": [run_view(r) for r in runs],
        "running": service.runner.is_running(partner),
        "schedule": service.project.config.partner(partner).schedule,
        "unusable": service.unusable(partner),
    }
