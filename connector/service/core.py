"""The ``dealsync serve`` process: one :class:`Service` owns the state store, the
project in use (hot-reloaded), the pass runner, the schedules and the metrics; the
HTTP layer (:mod:`connector.service.http`) is a thin skin over it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from connector.adapters.base import CRMAdapter
from connector.adapters.ratelimit import current_store
from connector.api import AdapterFactory, Dealsync, default_hooks, lock_ttl_from
from connector.config import ConfigError, Problem, Project, load_project, shown
from connector.config.check import errors_of
from connector.engine.cycle import Rounds
from connector.engine.hooks import Hook
from connector.engine.sync import PassResult
from connector.logs import bound
from connector.service.metrics import Metrics
from connector.service.probe import PortalCheck, PortalHealth, Probe, probe
from connector.service.runner import Job, QueueRunner, Runner, backoff_delay
from connector.service.scheduler import Schedules, TickRound
from connector.service.webhooks import Routing, SeenLog, WebhookEvent, accept, plan
from connector.state import StateStore

log = logging.getLogger("dealsync.service")

RELAY_SECONDS = 5.0  # a webhook's job request the queue did not take is tried again
RELOAD_RETRY_SECONDS = 30.0  # first retry of an edit refused because a portal was down
RELOAD_RETRY_MAX_SECONDS = 600.0  # the retries' backoff doubles up to this


@dataclass
class ReloadRetry:
    """An edit refused because a portal could not be reached is tried again at
    ``next_at`` (wall clock) without waiting for the files to change: ``attempts``
    refusals so far, the backoff doubling from :data:`RELOAD_RETRY_SECONDS` up to
    :data:`RELOAD_RETRY_MAX_SECONDS`; ``portals`` says which and why."""

    attempts: int
    next_at: float
    portals: dict[str, str]

    def view(self) -> dict[str, Any]:
        """What /healthz says about it (``config_retry``)."""
        return {
            "attempts": self.attempts,
            "next_retry_at": _iso(self.next_at),
            "unreachable": dict(self.portals),
        }


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


@dataclass
class ReloadState:
    """The validation state of the files on disk versus the version in use.

    ``problems`` is what /healthz and the admin page show: at most
    :data:`~connector.config.check.MAX_SHOWN_PROBLEMS` lines plus one counting the rest.
    ``warnings``: what the online check of the version in use found that does not
    refuse it (shown too). ``retry``: set while a refused edit is retried on its own."""

    loaded_at: float
    problems: list[str]
    pending_since: float | None = None
    warnings: list[str] = field(default_factory=list)
    retry: ReloadRetry | None = None

    @property
    def valid(self) -> bool:
        return not self.problems


class TriggerLimiter:
    """At most ``limit`` triggers per partner in any ``window`` seconds: across every
    ``serve`` process through the shared budget store when there is one (``store``: the
    state's PostgreSQL or ``DEALSYNC_LIMITS_URL``; :mod:`connector.scale.budget`),
    else in this process."""

    def __init__(self, limit: int, window: float, store: str | None = None) -> None:
        self.limit, self.window, self.store = limit, window, store
        self._hits: dict[str, deque[float]] = {}
        self._shared: dict[str, Any] = {}
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> float:
        """0 if allowed (and counted), else the seconds until the next one is allowed
        (the shared store not answering: a short wait — fail closed)."""
        if self.store and now is None:
            with self._lock:
                window = self._shared.get(key)
                if window is None:
                    from connector.scale.budget import SharedWindow

                    window = SharedWindow.named(
                        self.store, f"trigger:{key}", self.limit, self.window
                    )
                    self._shared[key] = window
            return float(window.take())
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.001, hits[0] + self.window - now)
            hits.append(now)
            return 0.0


def _environment(config_path: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    dotenv = config_path.parent / ".env"
    values = (
        {k: v for k, v in dotenv_values(dotenv).items() if v is not None}
        if dotenv.is_file()
        else {}
    )
    return {**values, **(os.environ if env is None else env)}


class Service:
    """One running service over one config file."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        adapter_factory: AdapterFactory | None = None,
        hooks: Sequence[Hook] | None = None,
        start: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``env`` stands in for the process environment (tests); ``adapter_factory``
        and ``hooks`` replace the defaults (the configured portals and the program's
        rules) as in :class:`~connector.api.Dealsync`; ``clock`` (wall-clock seconds,
        default :func:`time.time`) times the retries of a refused reload."""
        self._clock = clock or time.time
        self.config_path = Path(config_path).absolute()
        self._env_arg = env
        self.env = _environment(self.config_path, env)
        # a partner's missing credentials make that connection unusable, not the service
        self.project = load_project(self.config_path, self.env, partner_env=False)
        self._factory = adapter_factory
        self._hooks = None if hooks is None else list(hooks)
        self.store = StateStore(
            Dealsync(self.project, env=self.env).state_url, lock_ttl=lock_ttl_from(self.env)
        )
        self.tokens = self.store.tokens
        self.webhook_log = SeenLog(self.store)
        self.metrics = Metrics()
        self._apps_lock = threading.Lock()
        self._apps: dict[str, Dealsync] = {}
        self.rounds = Rounds()  # the cycles of the passes (connector.engine.cycle)
        self.admin_app = self._new_app()
        settings = self.project.config.service
        self.trigger_limiter = TriggerLimiter(
            settings.trigger_limit, settings.trigger_window_seconds, store=current_store()
        )
        self.runner: Runner | QueueRunner
        if settings.queue == "procrastinate":
            # passes are jobs for `dealsync worker` processes (docs/scale-out.md)
            self.runner = QueueRunner(self.store, self._queue_url())
            from connector.state.queue import queue_stats

            if not queue_stats(self.store).present:
                log.error(
                    "service.queue is 'procrastinate' but the queue's tables are not in the "
                    "state's database: run `dealsync worker --apply-schema` once; until then "
                    "triggers answer 503 and webhooks' passes wait, recorded, for the relay"
                )
        else:
            self.runner = Runner(
                self.store, self._run_pass, workers=settings.workers, on_done=self._after_pass
            )
        self.schedules = Schedules(
            self._run_scheduled,
            workers=settings.workers,
            claim_tick=self._claim_tick if isinstance(self.runner, QueueRunner) else None,
            last_failed=self._last_pass_failed,
        )
        self._seen_runs: dict[str, int] = {}  # with a queue: the last run the backoff saw
        self.reload = ReloadState(loaded_at=time.time(), problems=[])
        self._health_project: Project | None = None  # the version portal_health checked
        self.portal_health = PortalHealth(
            settings.portal_check_seconds, settings.reload_probe_seconds or 10.0, self._clock
        )
        self._refused_files: list[Path] = []  # what a refused edit refers to
        self._mtimes = self._watched_mtimes()
        self.metrics.add_state_collector(self)
        self._unusable_logged: dict[str, str] = {}
        self._log_unusable()
        self._started = False
        if start:
            self.start()

    @property
    def queued(self) -> bool:
        """Passes go to the queue for workers (``service.queue: procrastinate``)."""
        return isinstance(self.runner, QueueRunner)

    def _queue_url(self) -> str:
        """The state's URL, which must be PostgreSQL for a queue (the file's value was
        checked by the config; ``DEALSYNC_STATE_URL`` is checked here)."""
        from connector.api.errors import DealsyncError
        from connector.config.models import QUEUE_NEEDS_POSTGRES

        if self.store.engine.dialect.name != "postgresql":
            shown_url = self.store.engine.url.render_as_string(hide_password=True)
            raise DealsyncError(QUEUE_NEEDS_POSTGRES.format(url=shown_url))
        try:
            import connector.scale.app  # noqa: F401
        except ImportError as exc:
            raise DealsyncError(
                "service.queue is 'procrastinate' but the scale-out packages are missing: "
                f"pip install 'dealsync[scale]' ({exc})"
            ) from None
        return self.store.engine.url.render_as_string(hide_password=False)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.schedules.configure(self.project.config.partners)
        self.schedules.add_interval(
            "reload", self.project.config.service.reload_seconds, self.check_reload
        )
        self.schedules.add_interval("webhook-prune", 3600, self.webhook_log.prune)
        if self.queued:
            self.schedules.add_interval("job-relay", RELAY_SECONDS, self.relay_jobs)
        self.schedules.start()
        log.info("service started with %d connection(s)", len(self.project.config.partners))

    def stop(self) -> None:
        self.schedules.shutdown()
        self.runner.shutdown(wait=True)
        self.store.close()

    # ------------------------------------------------------------------ secrets

    def secret(self, env_name: str) -> str:
        return (self.env.get(env_name) or "").strip()

    @property
    def admin_token(self) -> str:
        return self.secret(self.project.config.service.admin_token_env)

    @property
    def webhook_secret(self) -> str:
        return self.secret(self.project.config.service.webhook_secret_env)

    # ------------------------------------------------------------------ passes

    def _new_app(
        self, project: Project | None = None, env: Mapping[str, str] | None = None
    ) -> Dealsync:
        project = project or self.project
        return Dealsync(
            project,
            env=self.env if env is None else env,
            adapter_factory=self._factory,
            hooks=default_hooks(project) if self._hooks is None else list(self._hooks),
            store=self.store,  # every connection shares the service's store
        )

    def app_for(self, connection: str) -> Dealsync:
        """The connection's API object for the project in use. Each connection has its
        own adapters, so per-pass API call counts are its own; HubSpot rate limiters are
        per portal and shared regardless."""
        with self._apps_lock:
            app = self._apps.get(connection)
            if app is None or app.project is not self.project:
                app = self._new_app()
                self._apps[connection] = app
            return app

    def has_partner(self, partner: str) -> bool:
        return any(p.id == partner for p in self.project.config.partners)

    # ------------------------------------------------------------------ unusable connections

    def unusable(self, connection: str) -> str | None:
        """Why this connection cannot run with the service's environment (its token
        variable is not set, named), or None: its passes are not started, its
        triggers answer 503 with this reason, the other connections run."""
        return self.admin_app.unusable(connection)

    def unusable_connections(self) -> dict[str, str]:
        """Every connection of the version in use that cannot run, with why."""
        out = {}
        for p in self.project.config.partners:
            reason = self.unusable(p.id)
            if reason is not None:
                out[p.id] = reason
        return out

    def _log_unusable(self) -> None:
        """Log each connection that cannot run once per reason (the schedule would
        otherwise repeat it every interval); /healthz, the admin page and /metrics
        show it all the time."""
        now = self.unusable_connections()
        for pid, reason in now.items():
            if self._unusable_logged.get(pid) != reason:
                log.error("connection %s cannot run (the others do): %s", pid, reason)
        for pid in set(self._unusable_logged) - set(now):
            log.info("connection %s can run again", pid)
        self._unusable_logged = now

    def not_started(self, connection: str, trigger: str) -> str | None:
        """The reason when a pass of ``connection`` must not start (it cannot run),
        counted on /metrics by trigger; None when it may."""
        reason = self.unusable(connection)
        if reason is not None:
            self.metrics.inc("dealsync_passes_not_started", connection, trigger)
            self._log_unusable()
        return reason

    def _run_pass(self, connection: str, trigger: str) -> PassResult:
        # one round of the connections' passes shares the program-wide vendor reads
        cycle = self.rounds.for_pass(connection, [p.id for p in self.project.config.partners])
        started = time.monotonic()
        result = self.app_for(connection).sync(connection, trigger=trigger, cycle=cycle)
        self.metrics.observe_pass(connection, time.monotonic() - started)
        return result

    def _after_pass(self, job: Job) -> None:
        # a pass that got through reached both portals with their tokens; one that
        # stopped has them probed again at the next /healthz
        completed = job.result is not None and job.result.status not in ("fatal", "interrupted")
        self.portal_health.passed(["@vendor", job.connection], completed)
        if job.result is not None:
            self.metrics.record_pass(job.result, job.trigger, self.project.config.vendor.name)
            with bound(connection=job.connection, run_id=job.run_id):
                log.info(
                    "pass of %s (%s) run %s: %s",
                    job.connection,
                    job.trigger,
                    job.run_id,
                    job.result.status,
                )

    def portal_checks(self) -> dict[str, PortalCheck] | None:
        """Each portal's reachability and authentication (vendor as ``@vendor``,
        partners by id), cached by :class:`PortalHealth`; None when
        ``service.portal_check_seconds`` is 0 (not checked). Blocks while it probes
        (bounded): /healthz calls it from a worker thread."""
        project = self.project
        seconds = project.config.service.portal_check_seconds
        if seconds <= 0:
            return None
        self.portal_health.max_age = seconds
        app = self.admin_app
        vendor_objects = [m.vendor_object for m in project.mappings] or ["deals"]
        portals: dict[str, Probe] = {"@vendor": (app.vendor, vendor_objects[0])}
        for partner in project.config.partners:
            build = functools.partial(app.partner_crm, partner.id)
            # probed on an object type of its own connection's mappings (a Salesforce
            # partner's Account, not the project's companies)
            partner_objects = [m.partner_object for m in project.mappings_for(partner.id)]
            portals[partner.id] = (build, (partner_objects or ["deals"])[0])
        if self._health_project is not project:  # started, or a reload took an edit
            self.portal_health.invalidate(portals)
            self._health_project = project
        return self.portal_health.current(portals)

    def request_pass(self, connection: str, trigger: str, wait: float = 30.0) -> tuple[Job, bool]:
        """Start (or join) a pass; waits until its run id is known (``wait`` seconds at
        most). Returns the job and whether an in-flight pass was joined."""
        try:
            job, joined = self.runner.request(connection, trigger)
        except Exception as exc:  # the queue did not take it (a runner never raises)
            log.error("the %s pass of %s could not be queued: %s", trigger, connection, exc)
            job, joined = Job(connection, trigger, error=f"{type(exc).__name__}: {exc}"), False
            job.started.set()
            job.done.set()
        job.started.wait(wait)
        return job, joined or job.joined_other_process

    def _claim_tick(self, connection: str, tick: int) -> bool:
        """With a queue: this schedule tick of the connection is this process's to
        enqueue (once across every ``serve`` process; docs/scale-out.md)."""
        from connector.scale.queue import claim_tick

        assert isinstance(self.runner, QueueRunner)
        mine = claim_tick(self.runner.app, connection, tick)
        if not mine:  # never silent: the skip is logged (Schedules) and counted here
            self.metrics.inc("dealsync_schedule_ticks_skipped", connection)
        return mine

    def _run_scheduled(self, connection: str, due: TickRound | None = None) -> bool | None:
        """A scheduled pass; a connection that cannot run is skipped (counted, logged
        once per reason) without backoff, so it syncs at its next time once fixed.
        With a queue, ``due``: the connections due at the same tick — the job is
        enqueued in their round (less those that cannot run), so the tick's jobs
        read the program-wide vendor data once (docs/scale-out.md); the log says
        which round, or why the job is on its own."""
        if self.not_started(connection, "schedule") is not None:
            return False
        if isinstance(self.runner, QueueRunner):  # a worker runs it: the backoff follows
            tick_round = None  # the worker's last pass
            if due is not None:
                tick_round = due.without(
                    {c for c in due.connections if c != connection and self.unusable(c)}
                )
            try:
                _, joined = self.runner.request(
                    connection,
                    "schedule",
                    round_of=tick_round.round_of if tick_round is not None else None,
                )
            except Exception:
                log.exception("the scheduled pass of %s could not be queued", connection)
                return True  # held back by the schedule's backoff, tried again
            log.info("scheduled pass of %s %s", connection, _round_said(tick_round, joined))
            return self._last_pass_failed(connection)
        job, _ = self.runner.request(connection, "schedule")
        job.done.wait()
        return job.failed

    def _last_pass_failed(self, connection: str) -> bool | None:
        """With a queue: whether the connection's latest finished pass (a worker's)
        failed, counted once per run for the schedule's backoff; None when no pass
        finished since the last look (the backoff neither grows nor resets)."""
        finished = next(
            (
                r
                for r in self.store.runs(connection, limit=5)
                if r.status != "running" and not r.dry_run
            ),
            None,
        )
        if finished is None or self._seen_runs.get(connection) == finished.id:
            return None
        assert finished.id is not None
        self._seen_runs[connection] = finished.id
        return finished.status in ("failed", "fatal", "interrupted")

    def accept_webhook(self, signature: str, events: Sequence[WebhookEvent]) -> Routing | None:
        """Record a verified delivery and request the passes it asks for; None when
        its signature was used before (a replay). The delivery's signature, new event
        ids and re-reads commit together or not at all, and passes are requested only
        after that commit (a pass started earlier could miss the re-reads); a database
        error propagates with nothing recorded, so HubSpot's retry is processed."""
        routing = accept(
            self.store, signature, plan(self.project, self.store, events), queued=self.queued
        )
        if routing is None:
            return None
        if self.queued:  # the passes were recorded with the events: hand them over now
            self.relay_jobs()
            return routing
        for connection in sorted(routing.connections):
            # a connection that cannot run keeps its re-reads for the first pass
            # once it can; the response names it with the reason
            if self.not_started(connection, "webhook") is None:
                self.runner.request(connection, "webhook", follow_up=True)
        return routing

    def relay_jobs(self) -> dict[str, int | None]:
        """Queue the job requests the state recorded (a deployment with a queue); a
        connection that cannot run keeps its requests until it can. Never raises:
        what the queue did not take stays recorded for the next relay (logged)."""
        if not isinstance(self.runner, QueueRunner):
            return {}
        try:
            return self.runner.relay(self.unusable)
        except Exception:
            log.exception("could not relay job requests to the queue; trying again")
            return {}

    # ------------------------------------------------------------------ hot reload

    def _watched(self) -> list[Path]:
        """The files of the version in use, plus those a refused edit refers to (a new
        mapping file, say), so that fixing only that file is noticed too."""
        project = self.project
        paths = [self.config_path]
        paths += project.mapping_files()
        if project.config.rules:
            paths.append(project.resolve(project.config.rules))
        paths.append(self._dotenv)  # a token set there is picked up by the next reload
        paths += [p for p in self._refused_files if p not in paths]
        return paths

    @property
    def _dotenv(self) -> Path:
        return self.config_path.parent / ".env"

    def _watched_mtimes(self) -> dict[Path, float | None]:
        out: dict[Path, float | None] = {}
        for p in self._watched():
            try:
                st = p.stat()
                out[p] = st.st_mtime_ns + st.st_size
            except OSError:
                out[p] = None
        return out

    def check_reload(self, force: bool = False) -> bool:
        """Reload the config, mappings and rules if any changed on disk (or ``.env``
        next to the config, read again each time) and the new version can run; an
        invalid edit, or one that cannot run (:meth:`_cannot_run`), keeps the version
        in use and is reported. Returns whether a new version was switched to."""
        mtimes = self._watched_mtimes()
        retry = self.reload.retry
        due = retry is not None and self._clock() >= retry.next_at
        if not force and mtimes == self._mtimes and not due:
            return False
        if mtimes != self._mtimes:
            self.reload.retry = None  # a new edit: its own refusals count from one
        self._mtimes = mtimes
        env = _environment(self.config_path, self._env_arg)
        try:
            project = load_project(self.config_path, env, partner_env=False)
            admin_app = self._new_app(project, env)
        except ConfigError as exc:
            self._refuse(exc.problems, exc.files)
            return False
        except Exception as exc:  # a loader bug must not stop reloads or read as valid
            log.exception("loading the edited config failed")
            self._refuse(
                [
                    Problem(
                        str(self.config_path),
                        None,
                        "",
                        # the type only: /healthz is public, an exception text may
                        # carry anything (the log has it, with the traceback)
                        f"the configuration could not be loaded ({type(exc).__name__})",
                        "check the files with `dealsync check`; if they pass, report this "
                        "error with the traceback from the service log",
                    )
                ],
                self._refused_files,
            )
            return False
        unreachable: dict[str, str] = {}
        cannot_run = self._cannot_run(project, admin_app, unreachable)
        if cannot_run:
            self._refuse(cannot_run, [self.config_path, self._dotenv], unreachable)
            return False
        online = self._online_problems(project, admin_app, unreachable)
        if errors_of(online):
            self._refuse(online, self._files_of(project), unreachable)
            return False
        self.env = env
        self.project = project
        self.admin_app = admin_app
        self._refused_files = []
        self.reload = ReloadState(loaded_at=time.time(), problems=[], warnings=shown(online))
        self._mtimes = self._watched_mtimes()  # the new project may watch other files
        self.metrics.inc("dealsync_config_reloads", "ok")
        self.metrics.config_valid.set(1)
        if self._started:
            self.schedules.configure(project.config.partners)
        log.info("config reloaded from %s", self.config_path)
        self._log_unusable()
        return True

    def _files_of(self, project: Project) -> list[Path]:
        """The files an edited version consists of (watched while it is refused)."""
        paths = [self.config_path, self._dotenv]
        paths += project.mapping_files()
        if project.config.rules:
            paths.append(project.resolve(project.config.rules))
        return paths

    def _online_problems(
        self, project: Project, app: Dealsync, unreachable: dict[str, str]
    ) -> list[Problem]:
        """The edited version's online check (``dealsync check --online``): every
        portal's schemas read in parallel, bounded by ``service.reload_probe_seconds``
        (0: no online check). A portal the edit did not change, or a partner that
        already could not run, that cannot be read is a warning, not a refusal (one
        partner's outage never blocks everyone's edits); a new or changed one that
        cannot be read refuses the edit and is retried (``unreachable``)."""
        seconds = project.config.service.reload_probe_seconds
        if seconds <= 0:
            return []
        old = {p.id: p for p in self.project.config.partners}
        tolerate = {
            p.id
            for p in project.config.partners
            if p.id in old and (old[p.id].adapter, old[p.id].settings) == (p.adapter, p.settings)
        }
        tolerate |= set(self.unusable_connections())
        old_vendor, vendor = self.project.config.vendor, project.config.vendor
        if (old_vendor.adapter, old_vendor.settings) == (vendor.adapter, vendor.settings):
            tolerate.add("vendor")
        try:
            result = app.online_check(self.config_path, timeout=seconds, tolerate=tolerate)
        except Exception as exc:  # never stops reloads; /healthz is public: the type only
            log.exception("the online check of the edited config failed")
            return [
                Problem(
                    str(self.config_path),
                    None,
                    "",
                    f"the online check of the edit could not be made ({type(exc).__name__})",
                    "run `dealsync check --online`; the service log has the traceback",
                )
            ]
        for key, reason in result.unreadable.items():
            if key not in tolerate:
                unreachable[key] = reason
        return result.problems

    def _cannot_run(
        self, project: Project, app: Dealsync, unreachable: dict[str, str] | None = None
    ) -> list[Problem]:
        """Why the edited version cannot run where the version in use can: a partner
        (new, or usable now) whose credentials are missing, and a new or changed
        portal that does not answer the reload's probe (:mod:`connector.service.probe`,
        bounded by ``service.reload_probe_seconds``). A connection that cannot run in
        the version in use for the same reason does not refuse an unrelated edit."""
        file = str(self.config_path)
        where = f".env next to {self.config_path.name} (read again on every reload)"
        problems: list[Problem] = []
        before = self.unusable_connections()
        in_use = {p.id: p for p in self.project.config.partners}
        probe_seconds = project.config.service.reload_probe_seconds
        to_probe: list[tuple[str, str, Callable[[], CRMAdapter], str]] = []
        for i, partner in enumerate(project.config.partners):
            reason = app.unusable(partner.id)
            if reason is not None:
                if before.get(partner.id) != reason:
                    problems.append(
                        Problem(
                            file,
                            None,
                            f"partners[{i}]",
                            f"partner {partner.id!r} cannot run: {reason}",
                            f"set the variable in {where} or in the service's environment "
                            "and restart; until then the last valid version stays in use",
                        )
                    )
                continue
            old = in_use.get(partner.id)
            if old is None or (old.adapter, old.settings) != (partner.adapter, partner.settings):
                to_probe.append(
                    (
                        f"partners[{i}]",
                        f"partner {partner.id!r}",
                        functools.partial(app.partner_crm, partner.id),
                        "partner",
                    )
                )
        old_vendor, vendor = self.project.config.vendor, project.config.vendor
        if (old_vendor.adapter, old_vendor.settings) != (vendor.adapter, vendor.settings):
            to_probe.append(("vendor", f"vendor portal {vendor.name!r}", app.vendor, "vendor"))
        if probe_seconds <= 0:
            return problems
        for path, what, make, side in to_probe:
            objects = [
                m.vendor_object if side == "vendor" else m.partner_object for m in project.mappings
            ]
            reason = probe(make, objects[0] if objects else "deals", probe_seconds)
            if reason is not None:
                if unreachable is not None:
                    unreachable["vendor" if side == "vendor" else path_id(path, project)] = reason
                problems.append(
                    Problem(
                        file,
                        None,
                        path,
                        f"{what} {reason}",
                        "check its host and token (`dealsync check --online` shows what the "
                        "portal answers); the last valid version stays in use",
                    )
                )
        return problems

    def _refuse(
        self,
        problems: list[Problem],
        files: list[Path],
        unreachable: Mapping[str, str] | None = None,
    ) -> None:
        """Keep the version in use and show why the edit was refused (capped list).
        Refused because a portal could not be reached (``unreachable``: which, why),
        the edit is tried again on its own with backoff (:class:`ReloadRetry`), so
        it is taken once the portal answers, without touching the files; any other
        reason waits for the files (or ``.env``) to change."""
        lines = shown(problems)
        if lines != self.reload.problems:
            log.error(
                "config edit rejected, still using the last valid version: %s",
                "; ".join(lines),
            )
        self.reload.problems = lines
        self.reload.pending_since = self.reload.pending_since or time.time()
        previous = self.reload.retry
        if unreachable:
            attempts = (previous.attempts if previous else 0) + 1
            delay = backoff_delay(attempts, RELOAD_RETRY_SECONDS, RELOAD_RETRY_MAX_SECONDS)
            self.reload.retry = ReloadRetry(attempts, self._clock() + delay, dict(unreachable))
            log.warning(
                "the refused edit is retried in %.0f s (attempt %d): %s",
                delay,
                attempts,
                "; ".join(f"{k}: {v}" for k, v in unreachable.items()),
            )
        else:
            self.reload.retry = None
        self._refused_files = list(files)
        self.metrics.inc("dealsync_config_reloads", "invalid")
        self.metrics.config_valid.set(0)


def _round_said(due: TickRound | None, joined: bool) -> str:
    """What the log says of a scheduled job's round (never silent)."""
    if joined:
        return "joined the pass already waiting in the queue (it runs in that job's round)"
    if due is None:
        return "queued on its own (not on a tick of its schedule: a backoff's retry; no round)"
    held = f"; held back by their backoff, not in it: {', '.join(due.held)}" if due.held else ""
    if due.round_of is None:
        return f"queued on its own (tick {due.tick}: the only connection due; no round){held}"
    return (
        f"queued in round {due.id} with {len(due.connections)} connections due at the "
        f"tick ({', '.join(due.connections)}): their program-wide vendor reads are "
        f"made once for the round{held}"
    )


def path_id(path: str, project: Project) -> str:
    """The partner id at YAML path ``partners[i]`` of ``project``."""
    index = int(path[len("partners[") : -1])
    return project.config.partners[index].id
