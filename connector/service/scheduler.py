"""Scheduled passes: one APScheduler job per connection with a ``schedule`` (interval
or cron, with jitter), and backoff after failing passes.

The job only *requests* a pass from the :class:`~connector.service.runner.Runner`, so
a scheduled run while a triggered pass is in flight joins it, and the database lock
still keeps other processes out. With a queue (``service.queue: procrastinate``) the
request is a job for the workers (the :class:`~connector.service.runner.QueueRunner`);
the backoff then follows the workers' passes as the run log records them.

With a queue the connections due at one tick form a **round** (:class:`TickRound`):
their jobs share the program-wide vendor reads (won deals, web events) through the
state store, as the jobs of one ``dealsync enqueue sync --all`` do
(:class:`~connector.engine.cycle.RoundCycle`). The round's id is the tick's
(``tick-<epoch seconds>``), so it is the same in every ``serve`` process; its
connections are those whose schedule fires at that tick and whose backoff does not
hold them back past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor as APThreadPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from connector.config.models import PartnerConfig, Schedule
from connector.records import utcnow
from connector.service.runner import backoff_delay

log = logging.getLogger("dealsync.service.scheduler")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATE_SLACK = 5.0  # seconds a tick may fire late (beyond its jitter) and keep its id


def trigger_for(schedule: Schedule) -> BaseTrigger:
    jitter = schedule.jitter_seconds or None
    if schedule.cron is not None:
        trigger = CronTrigger.from_crontab(schedule.cron, timezone="UTC")
        trigger.jitter = jitter
        return trigger
    assert schedule.every_seconds is not None
    # aligned on the epoch: every ``serve`` process fires the same ticks
    return IntervalTrigger(
        seconds=schedule.every_seconds, jitter=jitter, timezone="UTC", start_date=EPOCH
    )


def _plain(schedule: Schedule) -> BaseTrigger:
    """The schedule's trigger without its jitter (its ticks)."""
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone="UTC")
    assert schedule.every_seconds is not None
    return IntervalTrigger(seconds=schedule.every_seconds, timezone="UTC", start_date=EPOCH)


def tick_of(schedule: Schedule, now: datetime) -> int:
    """The id (epoch seconds) of the schedule's tick a run at ``now`` belongs to: the
    un-jittered fire time it was drawn from. The same in every ``serve`` process, so
    with a queue the tick is enqueued once (:func:`connector.scale.queue.claim_tick`)."""
    slack = float(schedule.jitter_seconds) + LATE_SLACK
    if schedule.cron is None:
        assert schedule.every_seconds is not None
        slack = float(schedule.jitter_seconds) + min(LATE_SLACK, schedule.every_seconds / 2)
    fire = _plain(schedule).get_next_fire_time(None, now - timedelta(seconds=slack))
    return int((fire or now).timestamp())


def fires_at(schedule: Schedule, tick: int) -> bool:
    """Whether ``tick`` (epoch seconds) is one of the schedule's un-jittered fire times."""
    at = datetime.fromtimestamp(tick, UTC)
    fire = _plain(schedule).get_next_fire_time(None, at)
    return fire is not None and int(fire.timestamp()) == tick


def tick_round_id(tick: int) -> str:
    """The round id of a schedule tick: the same in every ``serve`` process."""
    return f"tick-{tick}"


@dataclass(frozen=True)
class TickRound:
    """The connections a schedule tick enqueues together (with a queue): those whose
    schedule fires at ``tick`` and that no backoff holds back past it (``held``:
    those that would be due but are held back — not in the round). Fewer than two
    connections make no round (:attr:`round_of` None): a lone job reads on its own."""

    tick: int
    connections: tuple[str, ...]
    held: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return tick_round_id(self.tick)

    def without(self, out: set[str]) -> TickRound:
        """The round less the connections in ``out`` (those that cannot run)."""
        return TickRound(self.tick, tuple(c for c in self.connections if c not in out), self.held)

    @property
    def round_of(self) -> tuple[str, tuple[str, ...]] | None:
        """(round id, its connections) for the enqueue; None for a round of one."""
        return (self.id, self.connections) if len(self.connections) > 1 else None


class Schedules:
    def __init__(
        self,
        run_scheduled: Callable[[str, TickRound | None], bool | None],
        workers: int = 4,
        claim_tick: Callable[[str, int], bool] | None = None,
        last_failed: Callable[[str], bool | None] | None = None,
    ) -> None:
        """``run_scheduled(connection, due)`` runs (or joins) a pass and returns whether
        it failed; with a queue it enqueues one — in the round of the connections
        ``due`` at the same tick (:class:`TickRound`; None without a queue, or for a
        run off its tick: a backoff's retry) — and returns whether the connection's
        latest finished pass failed (None: no pass finished since it last asked).
        ``claim_tick(connection, tick)``: False when another ``serve`` process already
        took this tick of the connection (it enqueued the pass): this one skips the
        enqueue; ``last_failed(connection)`` then still drives the backoff."""
        self._run_scheduled = run_scheduled
        self.claim_tick = claim_tick
        self._last_failed = last_failed
        self.clock: Callable[[], datetime] = utcnow
        self.skipped_ticks = 0
        self.scheduler = BackgroundScheduler(
            executors={"default": APThreadPool(max(2, workers))}, timezone="UTC"
        )
        self.failures: dict[str, int] = {}
        # a failing connection's next run is held back to this time (its backoff)
        self.held_until: dict[str, datetime] = {}
        self._schedules: dict[str, Schedule] = {}

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def add_interval(self, job_id: str, seconds: float, fn: Callable[[], object]) -> None:
        self.scheduler.add_job(
            fn,
            IntervalTrigger(seconds=seconds),
            id=job_id,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
        )

    def configure(self, partners: list[PartnerConfig]) -> None:
        """Make the jobs match the partners' schedules (called again after a reload)."""
        wanted = {p.id: p.schedule for p in partners if p.schedule is not None}
        for pid in list(self._schedules):
            if pid not in wanted:
                self.scheduler.remove_job(f"pass:{pid}")
                del self._schedules[pid]
                self.held_until.pop(pid, None)
        for pid, schedule in wanted.items():
            if self._schedules.get(pid) == schedule:
                continue
            self._schedules[pid] = schedule
            self.scheduler.add_job(
                self._job,
                trigger_for(schedule),
                args=[pid],
                id=f"pass:{pid}",
                name=f"scheduled pass of {pid}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                replace_existing=True,
            )

    def due_at(self, connection: str, tick: int, now: datetime) -> TickRound | None:
        """The round of ``tick`` that ``connection``'s run at ``now`` is in: every
        connection whose schedule fires at the tick, less those whose backoff holds
        them back past it (their next run comes later, on its own). None when this
        run is off its tick (a backoff's retry fires between ticks: it is on its own;
        its jitter only delays a run, so a run on its tick is never before it)."""
        if tick > now.timestamp() + 1:
            return None
        due, held = [], []
        for pid, schedule in self._schedules.items():
            if pid != connection and not fires_at(schedule, tick):
                continue
            until = self.held_until.get(pid)
            latest = tick + schedule.jitter_seconds + LATE_SLACK
            if pid != connection and until is not None and until.timestamp() > latest:
                held.append(pid)
            else:
                due.append(pid)
        return TickRound(tick, tuple(sorted(due)), tuple(sorted(held)))

    def _job(self, connection: str) -> None:
        schedule = self._schedules.get(connection)
        due: TickRound | None = None
        if self.claim_tick is not None and schedule is not None:
            now = self.clock()
            tick = tick_of(schedule, now)
            try:
                mine = self.claim_tick(connection, tick)
            except Exception as exc:  # the queue's database: the enqueue says it too
                log.warning(
                    "could not claim tick %d of %s (%s); enqueuing anyway", tick, connection, exc
                )
                mine = True
            if not mine:
                self.skipped_ticks += 1
                log.info(
                    "scheduled pass of %s (tick %d) already queued by another serve process",
                    connection,
                    tick,
                )
                failed = self._last_failed(connection) if self._last_failed else None
                if failed is not None:
                    self.after_pass(connection, failed)
                return
            due = self.due_at(connection, tick, now)
        failed = self._run_scheduled(connection, due)
        if failed is not None:
            self.after_pass(connection, failed)

    def after_pass(self, connection: str, failed: bool) -> float:
        """Count consecutive failures; after one, hold the next run back by the backoff
        (if the regular schedule would come sooner). Returns the backoff applied."""
        schedule = self._schedules.get(connection)
        if not failed:
            self.failures[connection] = 0
            self.held_until.pop(connection, None)
            return 0.0
        self.failures[connection] = self.failures.get(connection, 0) + 1
        if schedule is None:
            return 0.0
        delay = backoff_delay(
            self.failures[connection], schedule.backoff_seconds, schedule.max_backoff_seconds
        )
        job = self.scheduler.get_job(f"pass:{connection}")
        not_before = utcnow() + timedelta(seconds=delay)
        # not in the round of a tick before this (TickRound): it does not run then
        self.held_until[connection] = self.clock() + timedelta(seconds=delay)
        next_run = getattr(job, "next_run_time", None)  # None: not scheduled yet (not started)
        if job is not None and next_run is not None and next_run < not_before:
            job.modify(next_run_time=not_before)
            log.warning(
                "pass of %s failed %d time(s) in a row; next scheduled pass in %.0f s",
                connection,
                self.failures[connection],
                delay,
            )
        return delay
