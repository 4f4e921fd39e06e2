"""Two services on one state database (separate engines, as two processes would have)
never run the same connection at once; different connections run in parallel."""

from __future__ import annotations

import itertools
import threading

from service_support import Harness, finished, wait_for


def test_second_service_joins_instead_of_running_concurrently(harness: Harness) -> None:
    a, b = harness.service(), harness.service()
    assert a.store.engine is not b.store.engine
    harness.probe.only = "acme"
    harness.probe.hold.clear()
    job_a, joined_a = a.request_pass("acme", "schedule")
    assert not joined_a
    harness.probe.entered.wait(10)
    job_b, joined_b = b.request_pass("acme", "partner")
    assert joined_b and job_b.joined_other_process
    assert job_b.run_id == job_a.run_id  # b reports the run a is doing

    # another connection is not blocked by acme's pass (held open the whole time)
    job_g, _ = b.request_pass("globex", "schedule")
    wait_for(lambda: finished(b, job_g.run_id))
    assert a.runner.is_running("acme")

    harness.probe.hold.set()
    job_a.done.wait(20)
    assert [r.connection for r in a.store.runs()].count("acme") == 1


def test_no_overlapping_passes_of_one_connection(harness: Harness) -> None:
    services = [harness.service(), harness.service()]
    harness.seed_deal("acme")
    harness.seed_deal("globex")

    def hammer(i: int) -> None:
        svc = services[i % 2]
        for n in range(4):
            job, _ = svc.runner.request("acme" if (i + n) % 3 else "globex", "schedule")
            job.done.wait(30)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    spans = sorted(harness.probe.spans, key=lambda s: s[2])
    assert len({s[1] for s in spans}) == len(spans) >= 2
    for conn in ("acme", "globex"):
        mine = [s for s in spans if s[0] == conn]
        assert mine, conn
        for earlier, later in itertools.pairwise(mine):
            assert earlier[3] <= later[2], f"{conn}: runs {earlier[1]} and {later[1]} overlap"
    # every run that started also finished (no run left "running" by a refused pass)
    assert all(r.status != "running" for r in services[0].store.runs(limit=100))
