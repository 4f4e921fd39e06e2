"""What the admin page's views read, as API functions over :class:`connector.api.Dealsync`.

The service renders; these functions decide what a view holds: one page of each long
list (:class:`~connector.state.admin_views.Page`, so a view says "showing 50 of 1,234"),
the counts its filters show, the failures of the runs on the page, the commission
totals per partner and currency, and the passes per time slot of the chart. The
queries are :mod:`connector.state.admin_views`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from connector.api.errors import DealsyncError
from connector.records import utcnow
from connector.state.admin_views import AdminViews, Page
from connector.state.outbox import STATUSES
from connector.state.tables import (
    Commission,
    OutboxMessage,
    Registration,
    Run,
    RunRecord,
    UncreditedWin,
)

if TYPE_CHECKING:
    from connector.adapters.ratelimit import BudgetUse
    from connector.api import Dealsync
    from connector.state.queue import QueueStats

GOT_THROUGH = ("ok",)
LEFT_CONFLICTS = ("conflicts",)
FAILED = ("failed", "fatal", "interrupted")
"""How the chart counts a run's status: it got through, it left conflicts for a human,
or it stopped (``running`` runs are not counted until they end)."""
RUN_STATUSES = ("running", "ok", "conflicts", "failed", "fatal", "interrupted")
REGISTRATION_STATUSES = ("pending", "accepted", "rejected", "expired", "withdrawn")
OUTBOX_STATUSES = STATUSES


def views(app: Dealsync) -> AdminViews:
    return AdminViews(app.store)


# ---------------------------------------------------------------------- runs


@dataclass
class RunsView:
    page: Page[Run]
    problems: dict[int, tuple[int, list[RunRecord]]]
    statuses: dict[str, int]


def runs_view(
    app: Dealsync,
    connection: str | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> RunsView:
    """A page of runs (of one connection, one status), with each run's failed and
    conflicting records (how many, and the first 20)."""
    app.store.interrupt_orphaned_runs(connection)  # a dead pass's run is not "running"
    v = views(app)
    page = v.runs_page(connection, status, offset, limit)
    ids = [r.id for r in page.rows if r.id is not None]
    return RunsView(page, v.run_problems(ids), v.run_statuses(connection))


def run_counts(app: Dealsync) -> dict[str, int]:
    """How many runs each connection has had (one grouped query): the overview's links
    to each connection's runs say how many there are."""
    return views(app).runs_by_connection()


@dataclass
class RunDetail:
    run: Run
    records: Page[RunRecord]
    outcomes: dict[str, int]


RECORD_OUTCOMES = ("ok", "failed", "conflict")


def run_detail(
    app: Dealsync,
    run_id: int,
    outcome: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> RunDetail:
    """One run and a page of its records (of one outcome when given); a run that is
    not there is a :class:`DealsyncError` naming it."""
    run = app.store.run(run_id)
    if run is None:
        raise DealsyncError(f"no run #{run_id}")
    app.store.interrupt_orphaned_runs(run.connection)
    run = app.store.run(run_id) or run
    v = views(app)
    return RunDetail(
        run, v.run_records_page(run_id, outcome, offset, limit), v.run_record_outcomes(run_id)
    )


@dataclass
class Slot:
    """The runs that started in one time slot of the chart."""

    start: datetime
    end: datetime
    ok: int = 0
    conflicts: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.ok + self.conflicts + self.failed


def slot_outcomes(
    outcomes: Iterable[tuple[datetime, str]], now: datetime, hours: int, slots: int
) -> list[Slot]:
    """The runs of the last ``hours`` in ``slots`` equal slots, oldest first (a run
    belongs to the slot its start falls in); pure, so the chart is table-tested."""
    width = timedelta(hours=hours) / slots
    since = now - timedelta(hours=hours)
    out = [Slot(since + i * width, since + (i + 1) * width) for i in range(slots)]
    for at, status in outcomes:
        if at < since or at > now:
            continue
        slot = out[min(slots - 1, int((at - since) / width))]
        if status in GOT_THROUGH:
            slot.ok += 1
        elif status in LEFT_CONFLICTS:
            slot.conflicts += 1
        elif status in FAILED:
            slot.failed += 1
    return out


def pass_chart(
    app: Dealsync,
    now: datetime | None = None,
    hours: int = 24,
    slots: int = 24,
    connection: str | None = None,
) -> list[Slot]:
    """Passes and failures of the last ``hours`` (one connection's when given)."""
    moment = now or utcnow()
    rows = views(app).run_outcomes(moment - timedelta(hours=hours), connection)
    return slot_outcomes(rows, moment, hours, slots)


# ---------------------------------------------------------------------- registrations


@dataclass
class RegistrationsView:
    page: Page[Registration]
    pending: Page[Registration]
    statuses: dict[str, int]


def registrations_view(
    app: Dealsync,
    partner: str | None = None,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
    pending_offset: int = 0,
) -> RegistrationsView:
    """A page of registrations, and a page of the pending ones, the longest waiting
    first (each needs a person's decision)."""
    v = views(app)
    return RegistrationsView(
        v.registrations_page(partner, status, offset, limit),
        v.registrations_page(partner, "pending", pending_offset, limit, oldest_first=True),
        v.registration_statuses(partner),
    )


# ---------------------------------------------------------------------- commissions


@dataclass
class Total:
    partner: str
    currency: str
    commission: Decimal
    count: int


@dataclass
class CommissionsView:
    earned: Page[Commission]
    uncredited: Page[UncreditedWin]
    totals: list[Total] = field(default_factory=list)


def sum_commissions(rows: Iterable[tuple[str, str | None, str]]) -> list[Total]:
    """Commission per partner and currency, summed exactly (an amount that is not a
    number is left out of the sum, not a crash: the ledger row still shows it)."""
    sums: dict[tuple[str, str], Total] = {}
    for partner, currency, value in rows:
        key = (partner, currency or "")
        total = sums.setdefault(key, Total(partner, currency or "", Decimal(0), 0))
        total.count += 1
        try:
            total.commission += Decimal(value)
        except (InvalidOperation, TypeError):
            continue
    return [sums[k] for k in sorted(sums)]


def commissions_view(
    app: Dealsync,
    partner: str | None = None,
    offset: int = 0,
    uncredited_offset: int = 0,
    limit: int = 50,
) -> CommissionsView:
    v = views(app)
    return CommissionsView(
        v.commissions_page(partner, offset, limit),
        v.uncredited_page(partner, uncredited_offset, limit),
        sum_commissions(v.commission_totals(partner)),
    )


# ---------------------------------------------------------------------- outbox


@dataclass
class OutboxView:
    page: Page[OutboxMessage]
    held: Page[OutboxMessage]
    statuses: dict[str, int]


def outbox_view(
    app: Dealsync,
    status: str | None = None,
    offset: int = 0,
    limit: int = 50,
    held_offset: int = 0,
) -> OutboxView:
    """A page of e-mails, and a page of the held ones, the longest waiting first (each
    needs a person's decision)."""
    v = views(app)
    return OutboxView(
        v.outbox_page(status, offset, limit),
        v.outbox_page("held", held_offset, limit, oldest_first=True),
        v.outbox_statuses(),
    )


def needs_a_decision(
    app: Dealsync, limit: int = 50
) -> tuple[Page[OutboxMessage], Page[Registration]]:
    """The first held e-mails and pending registrations, for the overview (their own
    views page through the rest)."""
    v = views(app)
    return (
        v.outbox_page("held", 0, limit, oldest_first=True),
        v.registrations_page(None, "pending", 0, limit, oldest_first=True),
    )


# --------------------------------------------------------------------------- capacity


@dataclass(frozen=True)
class CapacityView:
    """The capacity view (issue 18): the queue's depth, its oldest waiting job, failed
    jobs and the enqueue→start latency (``queue.present`` False: no queue, the passes run
    in this process), and each portal's budget windows with their use (every process's
    when the budgets are shared through a store, whose reachability ``stores`` lists)."""

    queue: QueueStats
    budgets: list[BudgetUse]
    shared_store: str | None
    stores: list[tuple[str, bool | None]]

    @property
    def latency_count(self) -> int:
        return self.queue.latency_buckets[-1] if self.queue.latency_buckets else 0

    @property
    def latency_mean(self) -> float | None:
        n = self.latency_count
        return self.queue.latency_sum / n if n else None


def capacity_view(program: Dealsync) -> CapacityView:
    from connector.adapters.ratelimit import budget_use, current_store
    from connector.api.scale import queue_stats
    from connector.scale.budget import stores

    return CapacityView(
        queue=queue_stats(program),
        budgets=budget_use(),
        shared_store=current_store(),
        stores=[(s.shown, s.up) for s in stores()],
    )
