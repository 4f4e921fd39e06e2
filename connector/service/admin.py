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
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from connector.adapters.ratelimit import current_store
from connector.api import DealsyncError
from connector.api import admin as views
from connector.service.health import grouped, run_view
from connector.service.paths import path_id

if TYPE_CHECKING:
    from connector.service.core import Service

log = logging.getLogger("dealsync.service.admin")

COOKIE = "dealsync_admin"
SESSION_SECONDS = 8 * 3600
LOGIN_LIMIT = 5
LOGIN_WINDOW = 15 * 60.0

REFRESH_SECONDS = 30
"""How often a view reloads itself (``<meta http-equiv="refresh">``; ``?refresh=0``
pauses it: no script, so the strict Content-Security-Policy stays as it is)."""
PAGE_SIZE = 50
FOLD_AT = 120
"""Errors longer than this (or of several lines) are folded in ``<details>``."""


@dataclass(frozen=True)
class View:
    """One view of the admin page: its nav entry and URL. A new view is one more entry
    here, one route and one template extending ``admin_base.html``."""

    name: str
    path: str
    title: str


VIEWS: tuple[View, ...] = (
    View("overview", "/admin", "Overview"),
    View("runs", "/admin/runs", "Runs"),
    View("registrations", "/admin/registrations", "Registrations"),
    View("commissions", "/admin/commissions", "Commissions"),
    View("outbox", "/admin/outbox", "Outbox"),
    View("capacity", "/admin/capacity", "Queue & budgets"),
)


def _utc(moment: datetime | str | None) -> datetime | None:
    if moment is None or moment == "":
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ago(moment: datetime, now: datetime) -> str:
    """How long ago (or from now) ``moment`` is, in the largest unit that fits."""
    seconds = (now - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "in a few seconds" if future else "just now"
    if seconds >= 0.95 * 86400:
        n = round(seconds / 86400)
        label = f"{n} day{'s' if n > 1 else ''}"
    elif seconds >= 0.95 * 3600:
        label = f"{round(seconds / 3600)} h"
    else:
        label = f"{max(1, round(seconds / 60))} min"
    return f"in {label}" if future else f"{label} ago"


def when(moment: datetime | str | None) -> Markup:
    """A timestamp as people read it: relative, with the absolute UTC time in the title
    (hover, or long-press on a phone) and in ``datetime``."""
    at = _utc(moment)
    if at is None:
        return Markup("")
    exact = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        at.astimezone(UTC).isoformat(), exact, ago(at, datetime.now(UTC))
    )


def fold(text: str | None, at: int = FOLD_AT) -> Markup:
    """A long error folded: its first line (cut) shown, the whole text in ``<details>``."""
    if not text:
        return Markup("")
    first = text.splitlines()[0]
    if len(text) <= at and "\n" not in text:
        return escape(text)
    head = first if len(first) <= at else first[: at - 1] + "…"
    return Markup(
        '<details class="error-text"><summary>{}</summary><pre>{}</pre></details>'
    ).format(head, text)


_ADDRESS = re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]{2,}")


def masked(text: str | None) -> str:
    """An outbox detail (a held reason, a mail server's answer) without the e-mail
    addresses it may quote: the page lists no recipient (``dealsync outbox show ID``
    does)."""
    return _ADDRESS.sub("<e-mail>", text or "")


def number(n: int) -> str:
    return f"{n:,}"


def duration(finished: datetime | None, started: datetime) -> str:
    """How long a run took, as ``4.2 s`` / ``3 min 5 s`` (blank while it runs)."""
    if finished is None:
        return ""
    seconds = (finished - started).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def counts(values: dict[str, Any] | None) -> str:
    """A run's counts as a line people read: ``created vendor deals: 3, …``, a nested
    group (the program's) flattened into its items, never a Python dict."""
    parts: list[str] = []
    for key, value in (values or {}).items():
        if key == "plan":
            continue
        if isinstance(value, dict):
            parts.extend(f"{k}: {v}" for k, v in value.items())
        else:
            parts.append(f"{key}: {value}")
    return ", ".join(parts)


def without(query: dict[str, Any], *names: str) -> dict[str, Any]:
    """A view's query parameters less some (a filter link drops its own and the offset)."""
    return {k: v for k, v in query.items() if k not in names}


def query_string(params: dict[str, Any], paused: bool = False) -> str:
    """``?a=1&b=2`` of the parameters that have a value ("" when none has), with
    ``refresh=0`` when the view's auto-refresh is paused (a link keeps the pause)."""
    given = {k: v for k, v in params.items() if v not in (None, "")}
    if paused:
        given["refresh"] = "0"
    return f"?{urlencode(given)}" if given else ""


_templates = Environment(
    loader=PackageLoader("connector", "templates"),
    autoescape=select_autoescape(["html", "svg"]),
)
_templates.filters.update(
    when=when,
    fold=fold,
    number=number,
    duration=duration,
    query_string=query_string,
    without=without,
    counts=counts,
    masked=masked,
)


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    parts: list[tuple[str, float, float]]  # (class, y, height)
    label: str


def chart(
    slots: Sequence[views.Slot], hours: int = 24, width: int = 720, height: int = 150
) -> Markup:
    """Passes and failures per time slot as an inline SVG bar chart (stacked: got
    through, left conflicts, failed), drawn here so the page needs no script, no chart
    library and nothing from the network. It scales to the screen (``viewBox``); each
    bar's ``<title>`` tells its slot and counts."""
    top, bottom, left = 14, 22, 30
    plot = height - top - bottom
    peak = max([s.total for s in slots] + [1])
    step = (width - left) / max(1, len(slots))
    bars = []
    for i, s in enumerate(slots):
        y = float(top + plot)
        parts = []
        for cls, n in (("ok", s.ok), ("conflicts", s.conflicts), ("failed", s.failed)):
            if n:
                h = plot * n / peak
                y -= h
                parts.append((cls, round(y, 1), round(h, 1)))
        label = (
            f"{s.start:%H:%M}–{s.end:%H:%M} UTC: {s.ok} ok, {s.conflicts} with conflicts, "
            f"{s.failed} failed"
        )
        bars.append(Bar(round(left + i * step + 1, 1), round(max(1.0, step - 2), 1), parts, label))
    ticks = [
        (round(left + i * step, 1), f"{s.start:%H:%M}")
        for i, s in enumerate(slots)
        if i % max(1, len(slots) // 6) == 0
    ]
    return Markup(
        _templates.get_template("admin_chart.svg").render(
            width=width,
            height=height,
            top=top,
            base=top + plot,
            left=left,
            peak=peak,
            bars=bars,
            ticks=ticks,
            hours=hours,
            slot_minutes=round(hours * 60 / max(1, len(slots))),
            total=sum(s.total for s in slots),
            failed=sum(s.failed for s in slots),
        )
    )


def safe_next(target: str | None, default: str = "/admin") -> str:
    """Where a form's POST goes back to: only a path of the admin page (never another
    site, so the field cannot be used to redirect an admin elsewhere)."""
    parts = urlsplit(target or "")
    if (
        parts.scheme
        or parts.netloc
        or "\\" in (target or "")
        or not parts.path.startswith("/admin")
    ):
        return default
    return target or default


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


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


def _page(name: str, status: int = 200, /, **ctx: Any) -> HTMLResponse:
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

    def to_page(target: str = "/admin") -> RedirectResponse:
        return RedirectResponse(target, status_code=303)

    async def back(request: Request) -> RedirectResponse:
        """Back to the view the form was on (its ``next`` field), else the overview."""
        form = await request.form()
        return to_page(safe_next(str(form.get("next") or "")))

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

    def render(
        request: Request, session: AdminSession, view: str, template: str, **ctx: Any
    ) -> Response:
        """A view in the common frame: nav, flash, auto-refresh (or paused), CSRF."""
        flash, session.flash = session.flash, []
        paused = request.query_params.get("refresh") == "0"
        path = request.url.path
        params = {k: v for k, v in request.query_params.items() if k != "refresh"}
        return _page(
            template,
            views=VIEWS,
            view=view,
            csrf=session.csrf,
            flash=flash,
            here=path + query_string(params, paused),  # where a form's POST comes back to
            refresh=None if paused else REFRESH_SECONDS,
            pause_url=path + query_string(params, paused=True),
            resume_url=path + query_string(params),
            suffix="?refresh=0" if paused else "",
            rendered_at=datetime.now(UTC),
            **ctx,
        )

    def page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        service.store.interrupt_orphaned_runs()  # a dead pass's run is not "running"
        app = service.admin_app
        run_counts = views.run_counts(app)
        held, pending = views.needs_a_decision(app)
        return render(
            request,
            session,
            "overview",
            "admin_health.html",
            reload=service.reload,
            loaded_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(service.reload.loaded_at)),
            connections=[
                _connection_view(service, p.id, p.name, run_counts)
                for p in service.project.config.partners
            ],
            chart=chart(views.pass_chart(app)),
            held=held,
            pending=pending,
            reject_codes=app.reject_codes,
        )

    def _paging(request: Request) -> tuple[int, int]:
        q = request.query_params
        return _int(q.get("offset"), 0), _int(q.get("limit"), PAGE_SIZE)

    def _filter(request: Request, name: str, allowed: Sequence[str]) -> str | None:
        value = request.query_params.get(name) or None
        return value if value in allowed else None

    def runs_page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        partners = {p.id: p.name for p in service.project.config.partners}
        connection = _filter(request, "connection", list(partners))
        asked = request.query_params.get("connection")
        status = _filter(request, "status", views.RUN_STATUSES)
        offset, limit = _paging(request)
        data = views.runs_view(service.admin_app, connection, status, offset, limit)
        return render(
            request,
            session,
            "runs",
            "admin_runs.html",
            data=data,
            partners=partners,
            connection=connection,
            unknown=asked if asked and connection is None else None,
            status=status,
            statuses=views.RUN_STATUSES,
            chart=chart(views.pass_chart(service.admin_app, connection=connection)),
            query={k: v for k, v in (("connection", connection), ("status", status)) if v},
        )

    def run_page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        run_id = int(request.path_params["run_id"])
        outcome = _filter(request, "outcome", views.RECORD_OUTCOMES)
        offset, limit = _paging(request)
        try:
            data = views.run_detail(service.admin_app, run_id, outcome, offset, limit)
        except DealsyncError as exc:
            session.flash.append(("error", f"{exc}: it may have been pruned, or never was."))
            return to_page(
                "/admin/runs" + query_string({}, request.query_params.get("refresh") == "0")
            )
        return render(
            request,
            session,
            "runs",
            "admin_run.html",
            data=data,
            outcome=outcome,
            outcomes=views.RECORD_OUTCOMES,
            query={"outcome": outcome} if outcome else {},
        )

    def registrations_page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        partners = {p.id: p.name for p in service.project.config.partners}
        partner = _filter(request, "partner", list(partners))
        status = _filter(request, "status", views.REGISTRATION_STATUSES)
        offset, limit = _paging(request)
        app = service.admin_app
        first = _int(request.query_params.get("pending_offset"), 0)
        data = views.registrations_view(app, partner, status, offset, limit, first)
        return render(
            request,
            session,
            "registrations",
            "admin_registrations.html",
            data=data,
            partners=partners,
            partner=partner,
            status=status,
            statuses=views.REGISTRATION_STATUSES,
            reject_codes=app.reject_codes,
            query={k: v for k, v in (("partner", partner), ("status", status)) if v},
        )

    def commissions_page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        partners = {p.id: p.name for p in service.project.config.partners}
        partner = _filter(request, "partner", list(partners))
        offset, limit = _paging(request)
        later = _int(request.query_params.get("uncredited_offset"), 0)
        data = views.commissions_view(service.admin_app, partner, offset, later, limit)
        return render(
            request,
            session,
            "commissions",
            "admin_commissions.html",
            data=data,
            partners=partners,
            partner=partner,
            query={"partner": partner} if partner else {},
        )

    def capacity_page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        data = views.capacity_view(service.admin_app)
        return render(request, session, "capacity", "admin_capacity.html", data=data)

    def outbox_page(request: Request) -> Response:
        session = current(request)
        if session is None:
            return RedirectResponse("/admin/login", status_code=303)
        status = _filter(request, "status", views.OUTBOX_STATUSES)
        offset, limit = _paging(request)
        first = _int(request.query_params.get("held_offset"), 0)
        data = views.outbox_view(service.admin_app, status, offset, limit, first)
        return render(
            request,
            session,
            "outbox",
            "admin_outbox.html",
            data=data,
            status=status,
            statuses=views.OUTBOX_STATUSES,
            query={"status": status} if status else {},
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
            return await back(request)
        _job, _joined = service.runner.request(partner, "resync", follow_up=True)
        session.flash.append(
            ("ok", f"Resync of {partner} scheduled: the pass re-reads its failing records.")
        )
        return await back(request)

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
        return await back(request)

    async def email_action(request: Request) -> Response:
        """Release or cancel a held e-mail (the same outbox calls as the CLI's)."""
        session = await posting(request)
        if isinstance(session, Response):
            return session
        message_id = int(request.path_params["message_id"])
        action = request.path_params["action"]
        if action not in ("release", "cancel", "retry"):
            return Response("action must be release, cancel or retry", status_code=404)
        try:
            if action == "retry":
                if not await run_in_threadpool(service.admin_app.retry_emails, [message_id]):
                    raise DealsyncError(f"e-mail #{message_id} is not failed (only those retry)")
                done = "queued again: sent on the next delivery"
            else:
                await run_in_threadpool(
                    service.admin_app.settle_email, message_id, action, by="admin page"
                )
                done = "released: sent on the next delivery" if action == "release" else "cancelled"
            session.flash.append(("ok", f"E-mail #{message_id} {done}."))
        except DealsyncError as exc:
            session.flash.append(("error", f"E-mail #{message_id} not changed: {exc}"))
        return await back(request)

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
        return await back(request)

    return [
        Route("/admin", page),
        Route("/admin/runs", runs_page),
        Route("/admin/runs/{run_id:int}", run_page),
        Route("/admin/registrations", registrations_page),
        Route("/admin/commissions", commissions_page),
        Route("/admin/outbox", outbox_page),
        Route("/admin/capacity", capacity_page),
        Route(
            "/admin/registrations/{registration_id:int}/{action}", review_action, methods=["POST"]
        ),
        Route("/admin/outbox/{message_id:int}/{action}", email_action, methods=["POST"]),
        Route("/admin/login", login, methods=["GET", "POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Route("/admin/connections/{partner}/resync", resync, methods=["POST"]),
        Route("/admin/conflicts/{conflict_id}/resolve", resolve, methods=["POST"]),
    ]


def _connection_view(
    service: Service, partner: str, name: str, run_counts: dict[str, int]
) -> dict[str, Any]:
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
        "run_count": run_counts.get(partner, 0),
        "running": service.runner.is_running(partner),
        "schedule": service.project.config.partner(partner).schedule,
        "unusable": service.unusable(partner),
    }
