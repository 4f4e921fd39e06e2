"""Two ``dealsync sync`` processes for one connection: one runs, the other exits 3 with
"being synced by …"; two connections sync side by side. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rel_support import FileWorld, scratch_dir

CLI = [sys.executable, "-c", "from connector.cli import main; main()"]


@pytest.fixture(params=["sqlite", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(
    tmp_path: Path, state_backend: str, state_url_factory: Callable[[str], str]
) -> Iterator[FileWorld]:
    url = None if state_backend == "sqlite" else state_url_factory("w")
    w = FileWorld(scratch_dir(tmp_path) / "w", url, real_clock=True)
    yield w
    w.close()


def start(w: FileWorld, *args: str) -> subprocess.Popen[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DEALSYNC_SMTP", "DEALSYNC_MAIL"))
    }
    return subprocess.Popen(
        [*CLI, "--config", str(w.config), "sync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(p: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = p.communicate(timeout=300)
    return p.returncode, out + err


def no_duplicates(w: FileWorld) -> None:
    for obj in ("companies", "contacts", "deals"):
        keys = Counter(r.get("dealsync_source_id") for r in w.vendor.all(obj))
        assert all(n == 1 for n in keys.values()), keys


def test_a_held_lock_makes_a_second_sync_exit_3_with_a_clear_message(world: FileWorld) -> None:
    world.seed_deal()
    owner = world.app.store.acquire_lock("acme")  # a pass of this (live) process runs
    try:
        code, text = finish(start(world, "--connection", "acme"))
    finally:
        world.app.store.release_lock("acme", owner)
    assert code == 3, text
    assert "being synced by" in text and "Traceback" not in text
    assert [line for line in text.splitlines() if line.startswith("Error:")] != []
    assert world.vendor.all("deals") == []  # it wrote nothing
    code, text = finish(start(world, "--connection", "acme"))
    assert code == 0, text
    assert len(world.vendor.all("deals")) == 1


def test_two_syncs_of_one_connection_at_once_never_both_write(world: FileWorld) -> None:
    for i in range(8):  # within the partner tier's registration capacity
        world.seed_deal(domain=f"race{i}.com", company=f"Race {i}")
    runs = [start(world, "--connection", "acme") for _ in range(2)]
    results = [finish(p) for p in runs]
    for code, text in results:
        assert "Traceback" not in text
        assert code == 0 or (code == 3 and "being synced by" in text), text
    assert any(code == 0 for code, _ in results)
    no_duplicates(world)
    assert len(world.vendor.all("deals")) == 8
    assert world.app.store.retry_count("acme") == 0


def test_two_connections_sync_side_by_side(world: FileWorld) -> None:
    for i in range(5):
        world.seed_deal("acme", domain=f"acme{i}.com", company=f"A {i}")
        world.seed_deal("beta", domain=f"beta{i}.com", company=f"B {i}")
    runs = [start(world, "--connection", p) for p in ("acme", "beta")]
    results = [finish(p) for p in runs]
    assert [code for code, _ in results] == [0, 0], results
    no_duplicates(world)
    keys = sorted(
        (r.get("dealsync_source_id") or "").split(":")[0] for r in world.vendor.all("deals")
    )
    assert keys == ["acme"] * 5 + ["beta"] * 5
