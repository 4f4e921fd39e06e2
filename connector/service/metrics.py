"""Prometheus metrics of the service.

Counters move when a pass of this process finishes (from its :class:`PassResult`),
and so does the pass duration histogram; gauges that describe the shared state (open
conflicts, failing records, last successful pass, outbox backlog and messages by
status, registrations) are read from the state store at scrape time, so every process
sharing a database reports the same values for them. The rate-limit budget in use is
this process's (its limiters, :mod:`connector.adapters.ratelimit`); portal
reachability is the /healthz checks' (cached, :mod:`connector.service.probe`).

No ``*_created`` series: :func:`prometheus_client.disable_created_metrics` (they double
the series count and nothing here reads them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.adapters.ratelimit import budget_use
from connector.engine.sync import PassResult
from connector.service.health import categorize
from connector.state.outbox import KINDS, STATUSES

if TYPE_CHECKING:
    from connector.service.core import Service

disable_created_metrics()

# seconds: a pass with nothing to do takes well under one, a full resync many minutes
PASS_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
UNSENT = ("queued", "failed", "held")  # the outbox statuses that still want something

_COUNTS_NOT_RECORDS = {"failed", "conflicts opened", "conflicts still open"}


# Counters by the labels they take, then metric name → help. Passes and API calls are
# counted from a finished pass's result; the others where the service answers a request.
_COUNTERS: dict[tuple[str, ...], dict[str, str]] = {
    ("connection", "status", "trigger"): {
        "dealsync_passes": "Sync passes finished, by connection, status and trigger."
    },
    ("connection", "action"): {
        "dealsync_records_synced": "Records written by passes, by connection and action."
    },
    ("connection", "category"): {
        "dealsync_record_failures": "Record errors in passes, by connection and category."
    },
    ("portal", "kind"): {"dealsync_api_calls": "CRM API calls, by portal and kind of call."},
    ("portal",): {
        "dealsync_api_429": "HTTP 429 responses received, by portal.",
        "dealsync_api_retries": "Retried CRM API calls (429, 5xx, dropped), by portal.",
        "dealsync_rate_limit_wait_seconds": "Time spent waiting on rate limits "
        "(client limiter and Retry-After), by portal.",
    },
    ("partner", "result"): {"dealsync_triggers": "Partner sync triggers, by partner and result."},
    ("connection",): {
        "dealsync_schedule_ticks_skipped": "Scheduled ticks this serve process did not "
        "enqueue because another serve process had already queued them, by connection."
    },
    ("connection", "trigger"): {
        "dealsync_passes_not_started": "Passes not started because the connection cannot "
        "run (its credentials are missing), by connection and trigger."
    },
    ("result",): {
        "dealsync_webhook_events": "HubSpot webhook events of accepted deliveries, by result "
        "(processed, duplicate, ignored, invalid).",
        "dealsync_webhook_deliveries": "HubSpot webhook requests, by result "
        "(accepted, rejected, too_large, malformed, failed).",
        "dealsync_admin_logins": "Admin log-in attempts, by result (ok, refused, throttled).",
        "dealsync_config_reloads": "Config/mapping/rules reloads, by result.",
    },
}

# a pass's ``api_calls`` keys (``<side>.<kind>``) that are not calls: their counter
_NOT_CALLS = {
    "429": "dealsync_api_429",
    "retries": "dealsync_api_retries",
    "wait_ms": "dealsync_rate_limit_wait_seconds",
}


class Metrics:
    """The service's Prometheus registry: the counters of :data:`_COUNTERS` (moved with
    :meth:`inc`), whether the config on disk is in use, and the state gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = {
            name: Counter(name, doc, list(labels), registry=self.registry)
            for labels, family in _COUNTERS.items()
            for name, doc in family.items()
        }
        self.config_valid = Gauge(
            "dealsync_config_valid",
            "1 if the files on disk are the version in use, 0 if an invalid edit is pending.",
            registry=self.registry,
        )
        self.config_valid.set(1)
        self.pass_duration = Histogram(
            "dealsync_pass_duration_seconds",
            "How long passes of this process took, by connection.",
            ["connection"],
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )

    def observe_pass(self, connection: str, seconds: float) -> None:
        """A pass of ``connection`` took ``seconds`` (however it ended)."""
        self.pass_duration.labels(connection).observe(seconds)

    def inc(self, counter: str, *labels: str, by: float = 1) -> None:
        """Count ``by`` on ``counter`` (a name of :data:`_COUNTERS`) with these labels."""
        self._counters[counter].labels(*labels).inc(by)

    def record_pass(self, result: PassResult, trigger: str, vendor_portal: str) -> None:
        conn = result.connection
        self.inc("dealsync_passes", conn, result.status, trigger)
        for key, n in result.counts.items():
            if key not in _COUNTS_NOT_RECORDS and isinstance(n, int) and n > 0:
                self.inc("dealsync_records_synced", conn, key, by=n)
        for err in result.errors:
            category = categorize(err.message, err.field is not None)
            self.inc("dealsync_record_failures", conn, category)
        for key, n in (result.api_calls or {}).items():
            side, _, kind = key.partition(".")
            portal = vendor_portal if side == "vendor" else conn
            if not isinstance(n, int | float) or n <= 0:
                continue
            if kind == "wait_ms":
                self.inc(_NOT_CALLS[kind], portal, by=n / 1000)
            elif kind in _NOT_CALLS:
                self.inc(_NOT_CALLS[kind], portal, by=n)
            else:
                self.inc("dealsync_api_calls", portal, kind, by=n)

    def add_state_collector(self, service: Service) -> None:
        self.registry.register(_StateCollector(lambda: service))


class _StateCollector(Collector):
    def __init__(self, service: Callable[[], Service]) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        svc = self._service()
        store = svc.store
        project = svc.project
        conflicts = GaugeMetricFamily(
            "dealsync_open_conflicts",
            "Conflicts awaiting a human, by connection.",
            labels=["connection"],
        )
        failing = GaugeMetricFamily(
            "dealsync_failing_records",
            "Records whose last sync attempt failed, by connection.",
            labels=["connection"],
        )
        running = GaugeMetricFamily(
            "dealsync_pass_running",
            "1 while this process runs a pass of the connection.",
            labels=["connection"],
        )
        usable = GaugeMetricFamily(
            "dealsync_connection_usable",
            "0 when the connection cannot run (its credentials are missing; /healthz "
            "says why), 1 when it can.",
            labels=["connection"],
        )
        unusable = svc.unusable_connections()
        for p in project.config.partners:
            usable.add_metric([p.id], 0 if p.id in unusable else 1)
            conflicts.add_metric([p.id], len(store.conflicts(p.id)))
            failing.add_metric([p.id], len(store.failing_records(p.id)))
            running.add_metric([p.id], 1 if svc.runner.is_running(p.id) else 0)
        yield conflicts
        yield failing
        yield running
        yield usable
        yield _last_success(store.last_successes(), [p.id for p in project.config.partners])
        backlog = GaugeMetricFamily("dealsync_outbox_backlog", "E-mails queued, not yet sent.")
        backlog.add_metric([], svc.admin_app.outbox.backlog())
        yield backlog
        counts = svc.admin_app.outbox.counts()
        yield _outbox_unsent(counts)
        yield _outbox_messages(counts)
        yield from _budgets()
        yield from _salesforce_allocations()
        yield from _portals(svc)
        yield from _queue(svc)
        regs = GaugeMetricFamily(
            "dealsync_registrations",
            "Registrations by partner and status.",
            labels=["partner", "status"],
        )
        for (partner, status), n in store.registry.status_counts().items():
            regs.add_metric([partner, status], n)
        yield regs


def _outbox_messages(counts: dict[tuple[str | None, str, str], int]) -> GaugeMetricFamily:
    """Every kind and status, zeros included, so ``status="held"`` > 0 can be alerted on."""
    totals: dict[tuple[str, str], int] = {}
    for (_partner, kind, status), n in counts.items():
        totals[(kind, status)] = totals.get((kind, status), 0) + n
    family = GaugeMetricFamily(
        "dealsync_outbox_messages",
        "E-mails in the outbox by kind and status (held: a privacy check objected; "
        "`dealsync outbox release ID` or `cancel ID`).",
        labels=["kind", "status"],
    )
    for kind, status in sorted({(k, s) for k in KINDS for s in STATUSES} | set(totals)):
        family.add_metric([kind, status], totals.get((kind, status), 0))
    return family


def _last_success(finished: dict[str, datetime], connections: list[str]) -> GaugeMetricFamily:
    """Per connection with one: alert on ``time() - dealsync_last_success_timestamp_seconds``."""
    family = GaugeMetricFamily(
        "dealsync_last_success_timestamp_seconds",
        "When the connection's last pass that got through (ok, or conflicts left for a "
        "human) finished, as Unix time; no sample until it has one.",
        labels=["connection"],
    )
    for connection in connections:
        if connection in finished:
            family.add_metric([connection], finished[connection].timestamp())
    return family


def _outbox_unsent(counts: dict[tuple[str | None, str, str], int]) -> GaugeMetricFamily:
    """The backlog by status: what waits to be sent (queued), for a human (held) or
    gave up (failed; ``dealsync outbox retry``), zeros included."""
    family = GaugeMetricFamily(
        "dealsync_outbox_backlog_by_status",
        "E-mails not sent, by status (queued: due or backing off; held: a privacy check "
        "objected; failed: attempts exhausted, `dealsync outbox retry`).",
        labels=["status"],
    )
    for status in UNSENT:
        family.add_metric([status], sum(n for (_, _, st), n in counts.items() if st == status))
    return family


def _budgets() -> Iterator[GaugeMetricFamily]:
    """Each HubSpot portal's request budget per rolling window and how much of it was
    used in the last window: every process's use, from the shared store when there is
    one (``dealsync_budget_store_up``), else this process's (the client limiter's
    view, corrected from HubSpot's ``X-HubSpot-RateLimit-*`` headers)."""
    from connector.scale.budget import stores

    budget = GaugeMetricFamily(
        "dealsync_rate_limit_budget",
        "Requests a portal allows per rolling window (as the client limiter knows it).",
        labels=["portal", "limit"],
    )
    used = GaugeMetricFamily(
        "dealsync_rate_limit_budget_used",
        "Requests sent to the portal within the last window: by every process sharing "
        "the budget store, else by this process.",
        labels=["portal", "limit"],
    )
    for use in budget_use():
        budget.add_metric([use.portal, use.window], use.budget)
        if use.used is not None:
            used.add_metric([use.portal, use.window], use.used)
    yield budget
    yield used
    up = GaugeMetricFamily(
        "dealsync_budget_store_up",
        "1 when the shared rate budgets' store answered at its last use, 0 when it did "
        "not (requests are held back until it does); no sample: not used yet.",
        labels=["store"],
    )
    for store in stores():
        if store.up is not None:
            up.add_metric([store.shown], 1.0 if store.up else 0.0)
    yield up


def _portals(svc: Service) -> Iterator[GaugeMetricFamily]:
    """Reachability and authentication per portal, as /healthz reports them (the same
    cache: a scrape probes only a portal whose answer is older than
    ``service.portal_check_seconds``; nothing when that is 0)."""
    checks = svc.portal_checks()
    if checks is None:
        return
    vendor = svc.project.config.vendor.name
    families = {
        "up": GaugeMetricFamily(
            "dealsync_portal_up",
            "1 when the portal answered and took its token at the last check, else 0.",
            labels=["portal"],
        ),
        "reachable": GaugeMetricFamily(
            "dealsync_portal_reachable",
            "1/0: the portal could be reached at the last check (no sample: not known).",
            labels=["portal"],
        ),
        "authenticated": GaugeMetricFamily(
            "dealsync_portal_authenticated",
            "1/0: the portal took its token at the last check (no sample: not known).",
            labels=["portal"],
        ),
    }
    for key, check in checks.items():
        portal = vendor if key == "@vendor" else key
        families["up"].add_metric([portal], 1 if check.ok else 0)
        for name, value in (("reachable", check.reachable), ("authenticated", check.authenticated)):
            if value is not None:
                families[name].add_metric([portal], 1 if value else 0)
    yield from families.values()


def _queue(svc: Service) -> Iterator[Metric]:
    """The scale-out queue (read from its tables in the state's database, so every
    ``serve`` reports the same): jobs per queue and status, the oldest waiting job's
    age, failed jobs per task, the connections whose last pass job failed for good,
    the enqueue→start latency of the jobs the queue keeps,
    and webhook job requests not relayed yet. Nothing when there is no queue."""
    from connector.records import utcnow
    from connector.state.queue import LATENCY_BUCKETS, queue_stats

    stats = queue_stats(svc.store)
    pending = GaugeMetricFamily(
        "dealsync_queue_requests_pending",
        "Webhook job requests recorded in the state, not yet taken by the queue "
        "(serve relays them every few seconds).",
    )
    pending.add_metric([], stats.relay_pending)
    if not stats.present:
        if svc.queued or stats.relay_pending:
            yield pending
        return
    yield pending
    depth = GaugeMetricFamily(
        "dealsync_queue_jobs", "Jobs in the queue, by queue and status.", labels=["queue", "status"]
    )
    for (queue, status), n in sorted(stats.depth.items()):
        depth.add_metric([queue, status], n)
    yield depth
    failed = GaugeMetricFamily(
        "dealsync_queue_jobs_failed", "Jobs that failed for good, by task.", labels=["task"]
    )
    for task, n in sorted(stats.failed.items()):
        failed.add_metric([task], n)
    yield failed
    stuck = GaugeMetricFamily(
        "dealsync_queue_pass_failed",
        "1 for a connection whose latest pass job failed for good (its retries ran out) "
        "with no pass succeeded since; `dealsync enqueue sync --connection P` asks again.",
        labels=["connection"],
    )
    for connection in sorted(stats.failed_passes):
        stuck.add_metric([connection], 1)
    yield stuck
    oldest = GaugeMetricFamily(
        "dealsync_queue_oldest_waiting_seconds",
        "How long the oldest job due now has waited (0: none waiting).",
    )
    oldest.add_metric([], stats.oldest.age(utcnow()) if stats.oldest else 0.0)
    yield oldest
    latency = HistogramMetricFamily(
        "dealsync_queue_job_latency_seconds",
        "Seconds from a job being queued to a worker starting it (the jobs the queue keeps).",
    )
    if stats.latency_buckets:
        bounds = [str(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]
        latency.add_metric(
            [], list(zip(bounds, stats.latency_buckets, strict=True)), stats.latency_sum
        )
    yield latency


def _salesforce_allocations() -> Iterator[GaugeMetricFamily]:
    """Each Salesforce org's rolling 24-hour API allocation as its last answer told it
    (``Sforce-Limit-Info``), the usage, the ceiling dealsync stops at (the allocation
    less the reserve for the partner's other integrations) and the calls the governor
    refused (``connector/adapters/salesforce_limits.py``)."""
    from connector.adapters.salesforce_limits import named_governors

    names = ("allocation", "used", "ceiling", "refused")
    families = {
        n: GaugeMetricFamily(
            f"dealsync_salesforce_api_{n}",
            {
                "allocation": "API calls the Salesforce org allows per rolling 24 hours.",
                "used": "API calls the org used in the last 24 hours (all its integrations).",
                "ceiling": "Usage at which dealsync stops, keeping api_reserve_percent free.",
                "refused": "Calls dealsync did not start because they would eat into the reserve.",
            }[n],
            labels=["portal"],
        )
        for n in names
    }
    for portal, gov in sorted(named_governors().items()):
        families["refused"].add_metric([portal], gov.refused)
        if gov.org is not None:
            families["allocation"].add_metric([portal], gov.org.total)
            families["used"].add_metric([portal], gov.org.used)
            families["ceiling"].add_metric([portal], gov.ceiling(gov.org))
    yield from families.values()
