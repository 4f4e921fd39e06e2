"""The admin page's reads: one page of a long list and how many there are in all.

Every list the admin page shows can grow without bound (a run every five minutes per
connection, a registration per deal, an e-mail per contact), so each is read a page
at a time — newest first, ``LIMIT``/``OFFSET`` — with its total, so the page can say
"showing 50 of 1,234" instead of silently cutting the list. Counts by status let the
page's filters say how many each status holds. Built over the store's engine like
:class:`~connector.state.outbox.OutboxRows`, so it needs nothing but a
:class:`~connector.state.tables.Database`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import func
from sqlmodel import SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from connector.state.tables import (
    Commission,
    Database,
    OutboxMessage,
    Registration,
    Run,
    RunRecord,
    Transactions,
    UncreditedWin,
    chunks,
    given,
)

T = TypeVar("T", bound=SQLModel)

MAX_LIMIT = 200
"""The most rows one page of a list shows (a larger ``limit`` asked for is cut to it)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its rows, where it starts and how many rows match in all."""

    rows: list[T]
    total: int
    offset: int
    limit: int

    @property
    def first(self) -> int:
        """The 1-based position of the first row shown (0 when none is)."""
        return self.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.rows)

    @property
    def older(self) -> int | None:
        """The offset of the next page, None on the last one."""
        return self.last if self.last < self.total else None

    @property
    def newer(self) -> int | None:
        """The offset of the previous page, None on the first one."""
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def clamp(offset: int, limit: int) -> tuple[int, int]:
    """An ``offset`` and ``limit`` a query may use: not negative, at most ``MAX_LIMIT``."""
    return max(0, offset), min(max(1, limit), MAX_LIMIT)


class AdminViews(Transactions):
    """The paged lists and status counts of the admin page's views."""

    def __init__(self, store: Database) -> None:
        self.engine = store.engine

    def _page(self, query: SelectOfScalar[T], order: Any, offset: int, limit: int) -> Page[T]:
        offset, limit = clamp(offset, limit)
        with self.session() as s:
            total = int(s.exec(select(func.count()).select_from(query.subquery())).one())
            rows = list(s.exec(query.order_by(order).offset(offset).limit(limit)).all())
        return Page(rows, total, offset, limit)

    def _status_counts(self, column: Any, *where: Any) -> dict[str, int]:
        """How many rows there are per value of ``column`` (a status, a connection)."""
        with self.session() as s:
            q = select(column, func.count()).where(*where).group_by(column)
            return {str(k): int(n) for k, n in s.exec(q).all()}

    # ------------------------------------------------------------------ runs

    def runs_page(
        self,
        connection: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[Run]:
        """Runs newest first, of one connection and one status when given."""
        q = given(select(Run), (Run.connection, connection), (Run.status, status))
        return self._page(q, col(Run.id).desc(), offset, limit)

    def run_statuses(self, connection: str | None = None) -> dict[str, int]:
        """Runs by status (of one connection when given): the runs view's filters."""
        where = [Run.connection == connection] if connection else []
        return self._status_counts(Run.status, *where)

    def runs_by_connection(self) -> dict[str, int]:
        return self._status_counts(Run.connection)

    def run_problems(
        self, run_ids: Sequence[int], per_run: int = 20
    ) -> dict[int, tuple[int, list[RunRecord]]]:
        """For each of these runs that had any: how many records failed or conflicted,
        and the first ``per_run`` of them — two queries per 500 runs (the first rows of
        each run picked by ``ROW_NUMBER()``), however many records a run failed."""
        out: dict[int, tuple[int, list[RunRecord]]] = {}
        bad = col(RunRecord.outcome).in_(("failed", "conflict"))
        with self.session() as s:
            for chunk in chunks(sorted(set(run_ids))):
                mine = col(RunRecord.run_id).in_(chunk)
                counts = s.exec(
                    select(RunRecord.run_id, func.count())
                    .where(mine, bad)
                    .group_by(col(RunRecord.run_id))
                ).all()
                ranked = (
                    select(
                        col(RunRecord.id).label("id"),
                        func.row_number()
                        .over(partition_by=col(RunRecord.run_id), order_by=col(RunRecord.id))
                        .label("n"),
                    )
                    .where(mine, bad)
                    .subquery()
                )
                first = s.exec(
                    select(RunRecord)
                    .join(ranked, col(RunRecord.id) == ranked.c.id)
                    .where(ranked.c.n <= per_run)
                    .order_by(col(RunRecord.run_id), col(RunRecord.id))
                ).all()
                records: dict[int, list[RunRecord]] = {}
                for rec in first:
                    records.setdefault(rec.run_id, []).append(rec)
                for run_id, n in counts:
                    out[int(run_id)] = (int(n), records.get(int(run_id), []))
        return out

    def run_records_page(
        self, run_id: int, outcome: str | None = None, offset: int = 0, limit: int = 50
    ) -> Page[RunRecord]:
        """One run's per-record outcomes in the order the pass recorded them."""
        q = given(select(RunRecord).where(RunRecord.run_id == run_id), (RunRecord.outcome, outcome))
        return self._page(q, col(RunRecord.id), offset, limit)

    def run_record_outcomes(self, run_id: int) -> dict[str, int]:
        return self._status_counts(RunRecord.outcome, RunRecord.run_id == run_id)

    def run_outcomes(
        self, since: datetime, connection: str | None = None
    ) -> list[tuple[datetime, str]]:
        """(started at, status) of every run that started since ``since`` (dry runs
        left out: they change nothing), oldest first: the chart of passes and failures."""
        q = select(Run.started_at, Run.status).where(
            col(Run.started_at) >= since, col(Run.dry_run).is_(False)
        )
        if connection:
            q = q.where(Run.connection == connection)
        with self.session() as s:
            return [(at, status) for at, status in s.exec(q.order_by(col(Run.started_at))).all()]

    # ------------------------------------------------------------------ registrations

    def registrations_page(
        self,
        partner: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> Page[Registration]:
        """Registrations newest first (``oldest_first``: the longest waiting first), of
        one partner and one status when given."""
        q = given(
            select(Registration), (Registration.partner, partner), (Registration.status, status)
        )
        order = col(Registration.id) if oldest_first else col(Registration.id).desc()
        return self._page(q, order, offset, limit)

    def registration_statuses(self, partner: str | None = None) -> dict[str, int]:
        where = [Registration.partner == partner] if partner else []
        return self._status_counts(Registration.status, *where)

    # ------------------------------------------------------------------ commissions

    def commissions_page(
        self, partner: str | None = None, offset: int = 0, limit: int = 50
    ) -> Page[Commission]:
        """Commissions earned, the latest first."""
        q = given(select(Commission), (Commission.partner, partner))
        return self._page(q, col(Commission.earned_at).desc(), offset, limit)

    def commission_totals(self, partner: str | None = None) -> list[tuple[str, str | None, str]]:
        """(partner, currency, commission) of every commission: the view sums them per
        partner and currency (the amounts are decimal strings, summed exactly in Python)."""
        q = select(Commission.partner, Commission.currency, Commission.commission)
        if partner:
            q = q.where(Commission.partner == partner)
        with self.session() as s:
            return [(p, c, v) for p, c, v in s.exec(q).all()]

    def uncredited_page(
        self, partner: str | None = None, offset: int = 0, limit: int = 50
    ) -> Page[UncreditedWin]:
        """Won vendor deals that credit no one, with why; the latest closed first."""
        q = given(select(UncreditedWin), (UncreditedWin.partner, partner))
        return self._page(q, col(UncreditedWin.closed_at).desc(), offset, limit)

    # ------------------------------------------------------------------ outbox

    def outbox_page(
        self,
        status: str | None = None,
        offset: int = 0,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> Page[OutboxMessage]:
        """E-mails newest first (``oldest_first``: the longest waiting first), of one
        status when given."""
        q = given(select(OutboxMessage), (OutboxMessage.status, status))
        order = col(OutboxMessage.id) if oldest_first else col(OutboxMessage.id).desc()
        return self._page(q, order, offset, limit)

    def outbox_statuses(self) -> dict[str, int]:
        return self._status_counts(OutboxMessage.status)
