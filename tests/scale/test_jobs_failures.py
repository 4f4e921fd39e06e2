"""Failure semantics of the jobs (on the machine's PostgreSQL): a job delivered twice
(its worker killed after the work, before the queue heard it finished) gives the same
result — no duplicate record, no e-mail sent twice; a webhook's pass whose worker is
killed mid-pass is retried and converges; a pass whose database connection is dropped
mid-job is retried and converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from connector.api import Dealsync
from connector.api import scale as queue_api
from connector.config import load_project
from connector.service.webhooks import WebhookEvent
from connector.testing.queue import Deployment
from connector.testing.world import ann, counterpart, seed_deal

DEALS = 3


def killed_worker(world: Deployment, crash_at: str, env: dict[str, str] | None = None) -> None:
    """A ``dealsync worker`` process that kills itself (``SIGKILL``) at ``crash_at``
    in the job it takes, leaving the job ``doing``; then its heartbeat goes stale."""
    log = world.config.parent / "killed.log"
    with log.open("wb") as out:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "connector.testing.scale",
                "worker",
                str(world.config),
                "--crash-at",
                crash_at,
                "--stalled-after",
                "1",
            ],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=out,
            timeout=120,
        )
    assert child.returncode == -signal.SIGKILL, log.read_text()
    time.sleep(1.5)  # the dead worker's heartbeat is older than --stalled-after


def retry_until_done(world: Deployment, program: Dealsync, task: str = "sync") -> list:
    """Workers of this process (stalled jobs retried, 1 s) until every job is finished."""

    def done() -> list:
        queue_api.run_worker(program, stalled_after=1, until_empty=True, echo=lambda _: None)
        jobs = queue_api.pass_jobs(program, task)
        return jobs if all(j.status in ("succeeded", "failed") for j in jobs) else []

    from connector.testing.wait import wait_for

    return wait_for(done, timeout=120)


def seeded(world: Deployment, partner: str = "acme") -> list[str]:
    crm = world.crm(partner)
    return [
        seed_deal(
            crm, company=f"Co {n}", domain=f"c{n}.com", contacts=[ann(f"c{n}.com", f"Co {n}")]
        ).deal.id
        for n in range(DEALS)
    ]


def writes(run: Any) -> dict[str, int]:
    """What a run wrote (its counts of created, adopted, updated, … records)."""
    verbs = ("created", "adopted", "updated", "merged", "associated", "re-linked")
    return {k: v for k, v in run.counts.items() if k.startswith(verbs) and v}


def converged(world: Deployment, deals: list[str]) -> None:
    """Each partner deal, company and contact has exactly one vendor counterpart."""
    vendor = world.crm("vendor")
    for deal in deals:
        assert counterpart(vendor, "acme", "deals", deal) is not None  # and not two
    for obj in ("deals", "companies", "contacts"):
        sources = [r.get("dealsync_source_id") for r in vendor.all(obj)]
        assert len(sources) == len(set(sources)) == DEALS, (obj, sources)


def test_a_pass_job_delivered_twice_gives_the_same_result(deployment: Deployment) -> None:
    deployment.apply_schema()
    deals = seeded(deployment)
    job, _ = deployment.service.request_pass("acme", "partner")
    # the pass is done and committed; its worker dies before the queue marks the job
    killed_worker(deployment, "job_done:sync")
    [doing] = queue_api.pass_jobs(deployment.program)
    assert doing.status == "doing"
    converged(deployment, deals)

    jobs = retry_until_done(deployment, deployment.program)
    assert [(j.id, j.status, j.attempts) for j in jobs] == [(job.job_id, "succeeded", 2)]
    runs = sorted(deployment.program.runs("acme"), key=lambda r: r.id)
    assert [(r.trigger, r.status) for r in runs] == [("partner", "ok"), ("partner", "ok")]
    assert writes(runs[0]) and not writes(runs[1]), (runs[0].counts, runs[1].counts)
    converged(deployment, deals)


def test_a_webhooks_pass_killed_mid_pass_is_retried_and_converges(
    deployment: Deployment,
) -> None:
    deployment.apply_schema()
    deals = seeded(deployment)
    events = [
        WebhookEvent.parse(
            {
                "eventId": n,
                "portalId": 2001,
                "objectId": int(d),
                "subscriptionType": "deal.propertyChange",
            }
        )
        for n, d in enumerate(deals)
    ]
    routing = deployment.service.accept_webhook("sig", [e for e in events if e is not None])
    assert routing is not None and routing.connections == {"acme"}
    killed_worker(deployment, "after_intent:deals")  # intents recorded, nothing written
    assert deployment.crm("vendor").all("deals") == []

    jobs = retry_until_done(deployment, deployment.program)
    assert [(j.trigger, j.status, j.attempts) for j in jobs] == [("webhook", "succeeded", 2)]
    runs = sorted(deployment.program.runs("acme"), key=lambda r: r.id)
    assert [(r.trigger, r.status) for r in runs] == [("webhook", "interrupted"), ("webhook", "ok")]
    converged(deployment, deals)
    assert deployment.service.store.failing_records("acme") == []


@dataclass
class Mail:
    text: str = "Your deal was registered."

    @property
    def subject(self) -> str:
        return "Registered"

    @property
    def body(self) -> str:
        return self.text

    @property
    def language(self) -> str:
        return "en"


def test_an_outbox_delivery_job_delivered_twice_sends_no_email_twice(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.apply_schema()
    sink = {"DEALSYNC_MAIL_SINK": str(tmp_path / "mail")}
    program = Dealsync(load_project(deployment.config, env=sink), env=sink)
    outbox = program.store.outbox
    for n in range(2):
        assert outbox.queue(
            dedupe_key=f"test:{n}",
            kind="lead_notification",
            recipient=f"ops{n}@x.example",
            rendered=Mail(),
        )
    assert "outbox: queued (job" in queue_api.enqueue_delivery(program)
    assert "joined the delivery already waiting" in queue_api.enqueue_delivery(program)
    killed_worker(deployment, "job_done:outbox", env=sink)  # both sent, job not marked
    sent = {m.id: m for m in program.emails("sent")}
    assert len(sent) == 2 and all(m.attempts == 1 for m in sent.values())

    jobs = retry_until_done(deployment, program, task="outbox")
    assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 2)]
    again = {m.id: m for m in program.emails("sent")}
    # nothing sent twice: the same rows, one attempt each, sent when they first were
    assert {i: (m.attempts, m.sent_at) for i, m in again.items()} == {
        i: (1, m.sent_at) for i, m in sent.items()
    }
    assert len(list((tmp_path / "mail").iterdir())) == 2
    program.close()


def test_a_pass_whose_database_connection_drops_mid_job_is_retried(
    deployment: Deployment, postgres_database: str
) -> None:
    deployment.apply_schema()
    deals = seeded(deployment)
    deployment.service.request_pass("acme", "partner")
    killer = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    armed: list[bool] = []
    dropped: list[int] = []

    def drop(point: str) -> None:
        if point == "after_intent:deals" and not dropped:
            armed.append(True)  # the pass's next write finds its connection gone

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        """The server ends this connection just before the pass's next write runs on
        it (what a PostgreSQL restart or a network cut does mid-transaction)."""
        write = statement.lstrip().upper().startswith(("INSERT", "UPDATE"))
        if not armed or dropped or not write or "sync_lock" in statement:
            return  # (the lock's renewal survives a drop: it warns and tries again)
        pid = conn.connection.dbapi_connection.get_backend_pid()
        with killer.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        dropped.append(pid)

    def finished() -> list:
        queue_api.run_worker(
            deployment.program, until_empty=True, crash_at=drop, echo=lambda _: None
        )
        jobs = queue_api.pass_jobs(deployment.program)
        return jobs if all(j.status in ("succeeded", "failed") for j in jobs) else []

    from connector.testing.wait import wait_for

    event.listen(Engine, "before_cursor_execute", before)
    try:
        jobs = wait_for(finished, timeout=120)
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        killer.dispose()
    assert len(dropped) == 1  # the pass's connection was cut once, mid-pass
    assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 2)]
    runs = sorted(deployment.program.runs("acme"), key=lambda r: r.id)
    assert [(r.trigger, r.status) for r in runs] == [("partner", "interrupted"), ("partner", "ok")]
    assert "OperationalError" in (runs[0].error or "")
    converged(deployment, deals)


def test_every_connection_of_the_deployment_cut_mid_pass_the_work_goes_on(
    tmp_path: Path, state_url_factory: Callable[[str], str], postgres_database: str
) -> None:
    """What a PostgreSQL restart does to the clients: the server ends every connection
    of the deployment (the worker's queue pool and listener, the pass's state
    connections, serve's queue pool) in the middle of a pass."""
    name = f"dsjobs-{uuid.uuid4().hex[:10]}"
    world = Deployment.create(tmp_path, f"{state_url_factory('cut')}&application_name={name}")
    killer = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    cut: list[int] = []

    def cut_all(point: str) -> None:
        if point != "after_intent:deals" or cut:
            return
        with killer.connect() as admin:
            ended = admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            ).all()
        cut.append(len(ended))

    def finished() -> list:
        queue_api.run_worker(world.program, until_empty=True, crash_at=cut_all, echo=lambda _: None)
        jobs = queue_api.pass_jobs(world.program)
        return jobs if all(j.status in ("succeeded", "failed") for j in jobs) else []

    from connector.testing.wait import wait_for

    try:
        world.apply_schema()
        deals = seeded(world)
        world.service.request_pass("acme", "partner")
        jobs = wait_for(finished, timeout=120)
        assert cut and cut[0] >= 3  # the queue's pool and listener, the state's, serve's
        assert [j.status for j in jobs] == ["succeeded"]
        runs = sorted(world.program.runs("acme"), key=lambda r: r.id)
        assert runs[-1].status == "ok"
        converged(world, deals)
        # serve's queue pool replaced its ended connection: the next trigger is queued
        job, _ = world.service.request_pass("globex", "partner")
        assert job.queued and job.job_id is not None, job.error
    finally:
        killer.dispose()
        world.close()


@pytest.fixture(autouse=True)
def _no_mail_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The killed workers inherit this process's environment: no stray mail settings."""
    for key in ("DEALSYNC_MAIL_SINK", "DEALSYNC_SMTP_HOST"):
        monkeypatch.delenv(key, raising=False)
