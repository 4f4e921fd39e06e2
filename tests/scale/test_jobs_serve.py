"""``serve`` on a deployment with a queue (``service.queue: procrastinate``, state on
PostgreSQL) runs no pass itself: a partner's trigger, the schedule and a webhook's
re-reads become jobs for ``dealsync worker``, urgent ones ahead of scheduled ones; a
webhook's job is recorded with its events (the outbox pattern) so an enqueue that
fails is relayed later, never lost. ``/metrics`` and ``dealsync queue`` show the queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from connector.api import scale as queue_api
from connector.config import ConfigError, load_project
from connector.records import utcnow
from connector.service import build_app
from connector.service.webhooks import WebhookEvent
from connector.state.jobs import JobRequests
from connector.testing.queue import QUEUE, Deployment
from connector.testing.wait import wait_for
from connector.testing.world import (
    ann,
    counterpart,
    project_yaml,
    run_cli,
    seed_deal,
    write_project,
)

ACME_PORTAL = 2001


def test_serve_queues_triggers_and_the_schedule_and_a_worker_runs_them_urgent_first(
    deployment: Deployment,
) -> None:
    deployment.apply_schema()
    deal = seed_deal(
        deployment.crm("acme"),
        company="Globex",
        domain="globex.com",
        contacts=[ann("globex.com", "Globex")],
    )
    svc = deployment.service
    assert svc.queued
    # the schedule asks first, the partner's trigger later: the trigger goes first
    assert svc._run_scheduled("globex") is None  # queued; no pass finished yet
    job, joined = svc.request_pass("acme", "partner")
    assert job.queued and job.job_id is not None and not joined
    again, joined = svc.request_pass("acme", "partner")
    assert joined and again.job_id is None  # joined the waiting urgent pass
    # serve ran nothing itself
    assert deployment.program.runs("acme") == [] and deployment.program.runs("globex") == []
    jobs = {j.connection: j for j in queue_api.pass_jobs(deployment.program)}
    assert (jobs["acme"].priority, jobs["acme"].trigger) == (10, "partner")
    assert (jobs["globex"].priority, jobs["globex"].trigger) == (0, "schedule")
    shown = run_cli(deployment.config, "queue")
    assert shown.exit_code == 0, shown.output
    assert "queue passes: 2 todo" in shown.output
    assert f"oldest waiting: job {jobs['globex'].id} (dealsync:sync_connection of globex)" in (
        shown.output
    )

    deployment.work(concurrency=1)  # one at a time: the order is the priority's
    acme, globex = deployment.program.runs("acme"), deployment.program.runs("globex")
    assert [(r.trigger, r.status) for r in acme] == [("partner", "ok")]
    assert [(r.trigger, r.status) for r in globex] == [("schedule", "ok")]
    assert acme[0].started_at <= globex[0].started_at  # queued later, started first
    assert counterpart(deployment.crm("vendor"), "acme", "deals", deal.deal.id) is not None

    # /metrics: the queue's depth, latency and failures, read from the state's database
    with TestClient(build_app(svc)) as client:
        text = client.get("/metrics").text
    assert 'dealsync_queue_jobs{queue="passes",status="succeeded"} 2.0' in text
    assert "dealsync_queue_job_latency_seconds_count 2.0" in text
    assert "dealsync_queue_oldest_waiting_seconds 0.0" in text
    assert "dealsync_queue_requests_pending 0.0" in text


def test_a_partner_trigger_answers_with_its_job(deployment: Deployment) -> None:
    deployment.apply_schema()
    _info, token = deployment.service.tokens.create("acme", "test")
    with TestClient(build_app(deployment.service)) as client:
        answer = client.post("/v1/partners/acme/sync", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["queued"] is True and body["run_id"] is None and body["joined"] is False
    [job] = queue_api.pass_jobs(deployment.program)
    assert job.id == body["job_id"] and job.status == "todo"


def _event(event_id: int, object_id: str, portal: int = ACME_PORTAL) -> WebhookEvent:
    raw = {
        "eventId": event_id,
        "portalId": portal,
        "objectId": int(object_id),
        "subscriptionType": "deal.propertyChange",
    }
    event = WebhookEvent.parse(raw)
    assert event is not None
    return event


def test_a_webhook_event_stored_when_the_queue_refused_its_job_is_queued_later(
    deployment: Deployment,
) -> None:
    acme = deployment.crm("acme")
    deal = seed_deal(
        acme, company="Globex", domain="globex.com", contacts=[ann("globex.com", "Globex")]
    )
    svc = deployment.service
    # the queue's tables are not there yet: the enqueue fails, the delivery is accepted
    routing = svc.accept_webhook("sig-1", [_event(1, deal.deal.id)])
    assert routing is not None and routing.processed == 1
    requests = JobRequests(svc.store)
    [pending] = requests.pending()
    assert (pending.connection, pending.trigger) == ("acme", "webhook")
    with TestClient(build_app(svc)) as client:
        assert "dealsync_queue_requests_pending 1.0" in client.get("/metrics").text
    shown = "\n".join(queue_api.queue_lines(deployment.program))
    assert "no queue in the state's database" in shown

    # HubSpot's redelivery of the same event asks for nothing more
    assert svc.accept_webhook("sig-2", [_event(1, deal.deal.id)]) is not None
    assert len(requests.pending()) == 1
    later = utcnow() + timedelta(days=30)
    assert requests.prune(later) == 0  # a pending request is never pruned

    deployment.apply_schema()
    assert "not queued yet: 1 webhook job request" in "\n".join(
        queue_api.queue_lines(deployment.program)
    )
    relayed = svc.relay_jobs()  # what serve does every few seconds
    assert list(relayed) == ["acme"] and relayed["acme"] is not None
    assert requests.pending() == []
    assert svc.relay_jobs() == {}  # relayed once
    assert requests.prune(later) == 1  # taken by the queue: forgotten with the event ids
    deployment.work()
    runs = deployment.program.runs("acme")
    assert [(r.trigger, r.status) for r in runs] == [("webhook", "ok")]
    assert counterpart(deployment.crm("vendor"), "acme", "deals", deal.deal.id) is not None


def test_a_webhook_with_the_queue_up_is_queued_with_its_events(deployment: Deployment) -> None:
    deployment.apply_schema()
    deal = seed_deal(deployment.crm("acme"), company="Initech", domain="initech.com")
    routing = deployment.service.accept_webhook("sig-1", [_event(7, deal.deal.id)])
    assert routing is not None and routing.connections == {"acme"}
    assert JobRequests(deployment.service.store).pending() == []
    [job] = queue_api.pass_jobs(deployment.program)
    assert (job.connection, job.trigger, job.priority, job.status) == (
        "acme",
        "webhook",
        10,
        "todo",
    )


def test_a_queue_on_the_embedded_state_is_refused_naming_the_fix(tmp_path: Path) -> None:
    config = write_project(
        tmp_path, project_yaml(("acme",), state_url="sqlite:///state.db", extra=QUEUE)
    )
    with pytest.raises(ConfigError) as refused:
        load_project(config, env={})
    text = str(refused.value)
    assert "service.queue is 'procrastinate' but the state is not on PostgreSQL" in text
    assert "postgresql://USER@HOST:5432/DB" in text


def test_a_trigger_the_queue_cannot_take_answers_503_and_a_retry_is_queued(
    deployment: Deployment,
) -> None:
    _info, token = deployment.service.tokens.create("acme", "test")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(build_app(deployment.service)) as client:
        refused = client.post("/v1/partners/acme/sync", headers=auth)
        assert refused.status_code == 503, refused.text
        assert "retry later" in refused.json()["error"]
        deployment.apply_schema()  # the queue's tables, as the serve log said to
        accepted = client.post("/v1/partners/acme/sync", headers=auth)
    assert accepted.status_code == 202 and accepted.json()["queued"] is True
    [job] = queue_api.pass_jobs(deployment.program)
    assert (job.id, job.trigger) == (accepted.json()["job_id"], "partner")


def test_a_started_serve_enqueues_its_schedule_and_relays_on_its_own(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> None:
    """serve's own scheduler: acme's schedule (every second) becomes a scheduled job;
    a webhook's request the queue refused is relayed by serve's relay
    interval once the queue's tables are there, without anyone calling it."""
    world = Deployment.create(
        tmp_path,
        state_url_factory("started"),
        edit=lambda text: text.replace(
            "  - id: acme\n", "  - id: acme\n    schedule:\n      every_seconds: 1\n", 1
        ),
    )
    try:
        deal = seed_deal(world.crm("globex"), company="Initech", domain="initech.com")
        routing = world.service.accept_webhook("sig", [_event(3, deal.deal.id, portal=2002)])
        assert routing is not None and routing.connections == {"globex"}
        assert len(JobRequests(world.service.store).pending()) == 1  # no queue tables yet
        world.apply_schema()
        world.service.start()
        jobs = wait_for(
            lambda: (
                (found := queue_api.pass_jobs(world.program))
                and {j.connection for j in found} == {"acme", "globex"}
                and found
            ),
            timeout=60,
        )
        by = {j.connection: j for j in jobs}
        assert (by["acme"].trigger, by["acme"].priority) == ("schedule", 0)
        assert (by["globex"].trigger, by["globex"].priority) == ("webhook", 10)
        assert JobRequests(world.service.store).pending() == []
    finally:
        world.close()


def test_the_schedule_backs_off_after_a_workers_failed_pass(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> None:
    """serve does not see a worker's pass end: the schedule's backoff follows the run
    log instead, each finished run counted once."""
    world = Deployment.create(
        tmp_path,
        state_url_factory("backoff"),
        edit=lambda text: text.replace(
            "  - id: acme\n", "  - id: acme\n    schedule:\n      every_seconds: 600\n", 1
        ),
    )
    try:
        world.apply_schema()
        svc = world.service
        svc.start()  # acme's next scheduled pass is 600 s away: the test ticks by hand
        store = svc.store

        def worker_pass(status: str) -> None:
            """A worker's scheduled pass of acme ended ``status`` (as its run records)."""
            run = store.start_run("acme", dry_run=False, trigger="schedule")
            store.finish_run(run, status=status, counts={}, api_calls={})

        def tick() -> int:
            svc.schedules._job("acme")  # the schedule's job, as APScheduler runs it
            return svc.schedules.failures.get("acme", 0)

        assert tick() == 0  # queued; nothing finished yet
        worker_pass("failed")
        assert tick() == 1  # the worker's pass failed: backoff
        assert tick() == 1  # the same failed run is not counted twice
        worker_pass("fatal")
        assert tick() == 2
        worker_pass("ok")
        assert tick() == 0  # a pass got through: the backoff is reset
        jobs = queue_api.pass_jobs(world.program)
        assert [(j.connection, j.trigger, j.status) for j in jobs] == [("acme", "schedule", "todo")]
    finally:
        world.close()
