"""A worker killed mid-pass (``SIGKILL`` at a named point: no exception, no cleanup)
over two sandbox HubSpot portals: another worker process retries its job once the
dead one's heartbeat is stale, the connection's second request waits for it (one pass
per connection at a time), and the sync converges with no duplicate vendor record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.api import Dealsync
from connector.api import scale as queue_api
from connector.config import load_project
from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.scale.queue import QueuedJob
from connector.testing.sandbox import server_factory
from connector.testing.wait import wait_for
from connector.testing.world import HubSpotPortals, project_yaml, run_cli, write_project

TOKENS = {"HS_VENDOR_TOKEN": "scale-vendor", "HS_ACME_TOKEN": "scale-acme"}
SRC = "dealsync_source_id"
DEALS = 6


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with server_factory(limits=False) as make:
        yield make(
            PortalSpec("vendor", TOKENS["HS_VENDOR_TOKEN"]),
            PortalSpec("acme", TOKENS["HS_ACME_TOKEN"]),
        )


def seed(user: PortalUser, n: int) -> str:
    """A registered deal with its company and contact on the partner portal."""
    c = user.create("companies", {"name": f"Company {n}", "domain": f"c{n}.com"})
    p = user.create("contacts", {"firstname": "Ann", "lastname": f"L{n}", "email": f"ann@c{n}.com"})
    d = user.create(
        "deals",
        {
            "dealname": f"Deal {n}",
            "amount": f"{1000 + n}",
            "dealstage": "qualifiedtobuy",
            "pipeline": "default",
            "closedate": "2027-06-30",
            "dealsync_register": "true",
        },
    )
    user.associate("deals", d, "companies", c)
    user.associate("deals", d, "contacts", p)
    return d


def process(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A Python process with the portals' tokens, its output in ``log``."""
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, *args], env={**os.environ, **TOKENS}, stdout=out, stderr=out
    )


@dataclass
class Killed:
    """A project over the sandbox whose first queued pass died with its worker."""

    config: Path
    program: Dealsync
    deals: list[str]
    logs: Path

    def enqueue(self) -> str:
        return run_cli(self.config, "enqueue", "sync", "--all", env=TOKENS).output

    def run_second_worker(self) -> list[QueuedJob]:
        """Another worker (the CLI's, 2 passes at a time) until every job is done."""
        log = self.logs / "b.log"
        second = process(
            log,
            "-m",
            "connector.cli",
            "-c",
            str(self.config),
            "worker",
            "--stalled-after",
            "1",
            "--concurrency",
            "2",
        )
        try:
            return wait_for(
                lambda: (
                    (found := queue_api.pass_jobs(self.program))
                    and all(j.status in ("succeeded", "aborted") for j in found)
                    and found
                ),
                timeout=120,
            )
        except AssertionError:
            raise AssertionError(log.read_text()) from None
        finally:
            second.terminate()
            second.wait(timeout=60)

    def runs(self) -> list[str]:
        return [r.status for r in sorted(self.program.runs("acme"), key=lambda r: r.id)]


@pytest.fixture
def killed(
    tmp_path: Path, sandbox: SandboxServer, state_url_factory: Callable[[str], str]
) -> Iterator[Killed]:
    """Deals on the partner portal, a pass queued, and worker A killed in it after
    recording its deal intents, before writing them."""
    portals = HubSpotPortals(sandbox.url, {"vendor": "HS_VENDOR_TOKEN", "acme": "HS_ACME_TOKEN"})
    config = write_project(
        tmp_path, project_yaml(("acme",), state_url=state_url_factory("killed"), hubspot=portals)
    )
    assert run_cli(config, "setup", env=TOKENS).exit_code == 0
    partner = PortalUser(sandbox.url, TOKENS["HS_ACME_TOKEN"])
    deals = [seed(partner, n) for n in range(DEALS)]
    schema = run_cli(config, "worker", "--apply-schema", "--until-empty", env=TOKENS)
    assert schema.exit_code == 0, schema.output
    program = Dealsync(load_project(config, env=TOKENS), env=TOKENS)
    world = Killed(config, program, deals, tmp_path)
    assert "queued (job" in world.enqueue()
    first = process(
        tmp_path / "a.log",
        "-m",
        "connector.testing.scale",
        "worker",
        str(config),
        "--crash-at",
        "after_intent:deals",
        "--stalled-after",
        "1",
    )
    assert first.wait(timeout=120) == -signal.SIGKILL, (tmp_path / "a.log").read_text()
    [job] = queue_api.pass_jobs(program)
    assert job.status == "doing"  # left running by a dead worker
    yield world
    program.close()


def no_duplicates(sandbox: SandboxServer, deals: list[str]) -> None:
    """Converged: each partner record has exactly one vendor counterpart."""
    vendor = sandbox.portal("vendor")
    for obj in ("deals", "companies", "contacts"):
        sources = Counter(str(r["properties"].get(SRC)) for r in vendor.all(obj))
        sources.pop("None", None)
        assert len(sources) == DEALS and set(sources.values()) == {1}, (obj, sources)
    linked = {str(r["properties"].get(SRC)) for r in vendor.all("deals")}
    assert linked == {f"acme:{d}" for d in deals}


def test_a_killed_workers_pass_is_retried_by_another_and_converges(
    killed: Killed, sandbox: SandboxServer
) -> None:
    assert not sandbox.portal("vendor").all("deals")  # A died before writing deals
    jobs = killed.run_second_worker()
    assert [(j.status, j.attempts) for j in jobs] == [("succeeded", 2)]
    assert "retried" in (killed.logs / "b.log").read_text()
    # the dead pass is marked interrupted (its lock taken over), the retry is ok
    assert killed.runs() == ["interrupted", "ok"]
    no_duplicates(sandbox, killed.deals)


def test_a_request_while_the_dead_pass_holds_the_connection_joins_it(
    killed: Killed, sandbox: SandboxServer
) -> None:
    # the dead job is not waiting, so this request is a new job, run after it
    assert "queued (job" in killed.enqueue()
    jobs = killed.run_second_worker()
    # the dead job cannot go back to waiting beside it: it is joined to it (aborted)
    assert [(j.status, j.attempts) for j in jobs] == [("aborted", 1), ("succeeded", 1)]
    assert "joined to it" in (killed.logs / "b.log").read_text()
    assert killed.runs() == ["interrupted", "ok"]
    no_duplicates(sandbox, killed.deals)
