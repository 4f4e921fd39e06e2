"""Passes through the queue: ``dealsync enqueue sync`` twice for one connection leaves
one waiting job (the second request joins it; a ``--full`` request does not), a worker
with room for two runs the connection's passes one at a time, and the state logs them; the embedded SQLite state refuses the worker, naming the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.api import scale as queue_api
from connector.config import load_project
from connector.testing.world import (
    ann,
    counterpart,
    local_factory,
    project_yaml,
    run_cli,
    seed_deal,
    write_project,
)


def test_a_second_request_joins_the_waiting_pass_and_it_runs_once(
    tmp_path: Path, state_url_factory: Callable[[str], str]
) -> None:
    url = state_url_factory("queue")
    config = write_project(tmp_path, project_yaml(("acme", "beta"), state_url=url))
    program = Dealsync(load_project(config, env={}), env={})
    crms: dict[str, LocalCRM] = {}  # on the real clock, as the worker's CRMs
    program = Dealsync(
        program.project, env={}, adapter_factory=local_factory(program.project, crms)
    )
    program.setup()
    deal = seed_deal(
        crms["acme"],
        company="Globex",
        domain="globex.com",
        contacts=[ann("globex.com", "Globex")],
    )
    schema = run_cli(config, "worker", "--apply-schema", "--until-empty")
    assert schema.exit_code == 0, schema.output
    assert "applied the queue's schema" in schema.output

    first = run_cli(config, "enqueue", "sync", "--connection", "acme")
    second = run_cli(config, "enqueue", "sync", "--connection", "acme")
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "acme: queued (job" in first.output
    assert "acme: joined the pass already waiting" in second.output

    [job] = queue_api.pass_jobs(program)
    assert (job.connection, job.status) == ("acme", "todo")
    # a full pass does more than the waiting one: it does not join it, and runs after it
    full = run_cli(config, "enqueue", "sync", "--connection", "acme", "--full")
    assert "acme: queued (job" in full.output

    # two passes of one connection and room for two at a time: the lock runs them in turn
    ran = run_cli(config, "worker", "--until-empty", "--concurrency", "2")
    assert ran.exit_code == 0, ran.output
    jobs = queue_api.pass_jobs(program)
    assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 1)] * 2
    runs = sorted(program.runs("acme"), key=lambda r: r.id)
    assert [(r.trigger, r.status) for r in runs] == [("queue", "ok")] * 2
    assert runs[1].started_at >= runs[0].finished_at  # one at a time
    assert program.runs("beta") == []  # only what was asked for
    assert counterpart(crms["vendor"], "acme", "deals", deal.id) is not None

    # the pass is done: a new request is a new job, not joined to the finished one
    again = run_cli(config, "enqueue", "sync", "--all")
    assert "acme: queued (job" in again.output and "beta: queued (job" in again.output
    program.close()


def test_the_worker_on_the_embedded_state_names_the_fix(tmp_path: Path) -> None:
    config = write_project(tmp_path, project_yaml(("acme",)))
    for args in (("worker",), ("enqueue", "sync", "--all")):
        result = run_cli(config, *args)
        assert result.exit_code == 3
        assert "dealsync worker needs a PostgreSQL state_url" in result.output
        assert "DEALSYNC_STATE_URL" in result.output
