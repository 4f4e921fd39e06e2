"""Several ``serve`` processes each run the schedule: a tick of a connection's schedule
is enqueued once across them (issue 18). Two services of one deployment fire the same
tick for both connections, a worker running the first one's jobs in between (so the
waiting job's join is not what keeps the second out): one job per connection."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest

from connector.api import scale as queue_api
from connector.config.models import Schedule
from connector.service import Service
from connector.service.scheduler import tick_of
from connector.testing.queue import Deployment

SCHEDULED = "    schedule:\n      every_seconds: 600\n"
NOW = datetime(2026, 12, 1, 12, 3, 7, tzinfo=UTC)


def with_schedules(text: str) -> str:
    for p in ("acme", "globex"):
        text = text.replace(f"  - id: {p}\n", f"  - id: {p}\n{SCHEDULED}", 1)
    return text


def test_two_schedulers_enqueue_one_job_per_connection_and_tick(
    tmp_path: Path, state_url_factory
) -> None:
    world = Deployment.create(tmp_path, state_url_factory("ticks"), edit=with_schedules)
    other = Service(world.config, env={})
    try:
        world.apply_schema()
        for service in (world.service, other):
            service.schedules.configure(service.project.config.partners)
            service.schedules.clock = lambda: NOW
        for connection in ("acme", "globex"):
            world.service.schedules._job(connection)
        world.work()  # the jobs ran: a new one would not be joined to them
        for connection in ("acme", "globex"):
            other.schedules._job(connection)
        jobs = queue_api.pass_jobs(world.program)
        assert sorted((j.connection, j.trigger) for j in jobs) == [
            ("acme", "schedule"),
            ("globex", "schedule"),
        ], jobs
        assert other.schedules.skipped_ticks == 2 and world.service.schedules.skipped_ticks == 0
        shown = generate_latest(other.metrics.registry).decode()
        assert 'dealsync_schedule_ticks_skipped_total{connection="acme"} 1.0' in shown
        # the next tick is enqueued again (by whichever process fires first)
        other.schedules.clock = lambda: NOW.replace(minute=13)
        other.schedules._job("acme")
        assert len(queue_api.pass_jobs(world.program)) == 3
    finally:
        other.stop()
        world.close()


def test_a_tick_is_the_same_in_every_process_whatever_its_jitter() -> None:
    schedule = Schedule(every_seconds=600, jitter_seconds=30)
    fired = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ticks = {tick_of(schedule, fired.replace(second=s)) for s in (0, 10, 29, 33)}
    assert ticks == {int(fired.timestamp())}
    cron = Schedule(cron="*/15 * * * *", jitter_seconds=20)
    assert tick_of(cron, fired.replace(minute=15, second=19)) == int(
        fired.replace(minute=15).timestamp()
    )
