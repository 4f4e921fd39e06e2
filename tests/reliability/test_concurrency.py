"""Two ``dealsync sync`` processes for one connection: one runs, the other exits 3 with
"being synced by …"; two connections sync side by side. SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from rel_support import NOW, FileWorld, MakeFileWorld

from connector.engine.sync import PassResult
from connector.state.store import LockHeld, StateStore
from connector.state.tables import SyncLock
from connector.testing.wait import wait_for

CLI = [sys.executable, "-c", "from connector.cli import main; main()"]


@pytest.fixture(params=["sqlite", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(make_file_world: MakeFileWorld) -> FileWorld:
    return make_file_world("w", real_clock=True)


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


# ---------------------------------------------------------------------- the lock is renewed

TTL = timedelta(seconds=2)


class StoppedClock:
    """The state store's clock, moved only by the test: whether a lock has expired
    then depends on what the test did, never on how fast the machine is."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


def on_clock(store: StateStore, clock: StoppedClock) -> StateStore:
    store.clock = clock
    store.lock_ttl = TTL
    return store


@dataclass
class HeldPass:
    """A pass of acme in a thread, held after detection until released."""

    world: FileWorld
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    result: list[PassResult] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> HeldPass:
        def hold(point: str) -> None:
            if point == "after_detect":
                self.entered.set()
                assert self.release.wait(60), "the test never released the pass"

        def run() -> None:
            self.result.append(self.world.app.sync("acme", now=NOW, crash_at=hold))

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.entered.wait(60), "the pass never got past detection"
        return self

    def finish(self) -> PassResult:
        self.release.set()
        assert self.thread is not None
        self.thread.join(120)
        assert not self.thread.is_alive() and self.result
        return self.result[0]


def lock_row(store: StateStore) -> SyncLock | None:
    with store.session() as s:
        return s.get(SyncLock, "acme")


def test_a_pass_longer_than_the_lock_ttl_keeps_its_lock(world: FileWorld) -> None:
    clock = StoppedClock()
    on_clock(world.app.store, clock)
    world.seed_deal()
    held = HeldPass(world).start()
    try:
        first = lock_row(world.app.store)
        assert first is not None and first.expires_at == clock() + TTL
        # time passes, three TTLs in steps shorter than one; the holder renews each time
        for _ in range(6):
            clock.advance(TTL / 2)
            wait_for(lambda: (row := lock_row(world.app.store)) and row.expires_at == clock() + TTL)
        assert clock() > first.expires_at
        other = world.open()
        try:
            on_clock(other.app.store, clock)
            with pytest.raises(LockHeld, match="being synced by"):
                other.app.sync("acme", now=NOW)
        finally:
            other.close()
    finally:
        result = held.finish()
    assert result.status == "ok", (result.error, [str(e) for e in result.errors])
    assert len(world.vendor.all("deals")) == 1
    assert lock_row(world.app.store) is None  # released, and nobody renews it any more
    assert not [t for t in threading.enumerate() if t.name.startswith("dealsync-lock")]


def test_a_pass_whose_lock_expired_and_was_taken_over_stops_before_writing(
    world: FileWorld,
) -> None:
    """The holder stopped renewing (a frozen VM): once its lock expired, another
    process takes it over and marks the run interrupted; the old pass notices at its
    next step and stops without writing, its run still interrupted."""
    clock = StoppedClock()
    on_clock(world.app.store, clock)
    world.seed_deal()
    held = HeldPass(world).start()
    [run] = world.app.store.runs("acme", limit=1)
    if run.status != "running":
        held.finish()
    assert run.status == "running"
    clock.advance(TTL * 5)  # far past the expiry, in one jump: no renewal in between
    other = world.open()
    try:
        on_clock(other.app.store, clock)
        taker = other.app.store.acquire_lock("acme")
        try:
            taken = other.app.store.run(run.id or 0)
            if taken is None or taken.status != "interrupted":
                held.finish()
            assert taken is not None and taken.status == "interrupted"
            assert taken.error and "stopped renewing its lock" in taken.error, taken.error
            assert "taken over" in taken.error
            result = held.finish()
            assert result.status == "interrupted" and result.exit_code == 3
            assert result.error and "lost its lock" in result.error, result.error
            assert world.vendor.all("deals") == [] and world.vendor.all("companies") == []
            assert world.app.store.cursor("acme", "partner", "deals") is None
            after = world.app.store.run(run.id or 0)
            assert after is not None and after.status == "interrupted"
            row = lock_row(world.app.store)
            assert row is not None and row.owner == taker  # the loser did not release it
        finally:
            other.app.store.release_lock("acme", taker)
    finally:
        other.close()
    assert world.sync().status == "ok"
    assert len(world.vendor.all("deals")) == 1


def test_the_lock_ttl_is_set_by_environment_and_a_bad_value_is_refused(
    world: FileWorld,
) -> None:
    from connector.api import Dealsync, DealsyncError
    from connector.config import load_project

    project = load_project(world.config, env={})
    app = Dealsync(project, env={"DEALSYNC_LOCK_TTL_SECONDS": "7"})
    try:
        assert app.store.lock_ttl == timedelta(seconds=7)
    finally:
        app.close()
    default = Dealsync(project, env={})
    try:
        assert default.store.lock_ttl == timedelta(minutes=30)
    finally:
        default.close()
    for bad in ("soon", "0", "-5", "1.5", "99999999999"):
        with pytest.raises(DealsyncError, match="DEALSYNC_LOCK_TTL_SECONDS"):
            _ = Dealsync(project, env={"DEALSYNC_LOCK_TTL_SECONDS": bad}).store


def test_a_second_process_is_refused_while_a_pass_outlives_its_first_ttl(
    world: FileWorld,
) -> None:
    """The same on the real clock, against a real second `dealsync sync`: a TTL of 6 s
    renewed every 2 s, and the second process starts only after the first expiry."""
    store = world.app.store
    store.lock_ttl = timedelta(seconds=6)
    world.seed_deal()
    held = HeldPass(world).start()
    try:
        first = lock_row(store)
        assert first is not None and first.expires_at - first.acquired_at == store.lock_ttl
        wait_for(lambda: datetime.now(UTC) > first.expires_at + timedelta(seconds=1))
        code, text = finish(start(world, "--connection", "acme"))
    finally:
        result = held.finish()
    assert code == 3, text
    assert "being synced by" in text and "Traceback" not in text
    assert result.status == "ok", (result.error, [str(e) for e in result.errors])
    assert len(world.vendor.all("deals")) == 1
