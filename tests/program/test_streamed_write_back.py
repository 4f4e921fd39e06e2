"""Issue 17: the partner write-back of a streamed pass. Once every page of deals was
read — from the chunk decided then on (``Chunk.detected_all``), else at the stream's
end (``after_stream``); never sooner, a deal written while detection pages through
the partner's deals would shift its pages — their registrations' statuses go to the
partner CRM — from the pass's background writer when the partner's
adapter is thread-safe (HubSpot), at once otherwise — while the companies and contacts
are applied, instead of all in ``after_pass``; the marks stay in the pass's thread, a
failed write stays pending for the next pass, a dry run writes nothing.

Chunks of 2 deals and write batches of 2 here (``DETECT_CHUNK``, ``WRITE_BACK_BATCH``),
so 5 deals are 3 chunks and each chunk's two registrations one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from program_support import NOW, MakeProgram, Program

from connector.engine.detect import Detection
from connector.engine.effects import WriteProperties
from connector.engine.hooks import BaseHook, Chunk, PassContext
from connector.hooks.registration_crm import REG_STATUS
from connector.testing.wait import wait_for

STATUS = REG_STATUS


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 2)
    monkeypatch.setattr("connector.hooks.registration_crm.WRITE_BACK_BATCH", 2)


def pages_read(monkeypatch: pytest.MonkeyPatch, *, at_once: bool) -> None:
    """Whether detection has read every page of deals by the time a chunk is decided:
    ``at_once`` (their search ran far ahead of the writes, as at N = 10,000 against
    HubSpot) or only at the stream's end (pages still being read meanwhile). Which one
    a small embedded pass sees depends on its threads; pinned here."""
    monkeypatch.setattr(Detection, "detected_all", lambda self, mapping: at_once)


@pytest.fixture(autouse=True)
def pages_read_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    pages_read(monkeypatch, at_once=False)


class Probe(BaseHook):
    """Each chunk's deal ids, and at ``after_stream`` (after the shipped hooks') which
    streamed deals the partner CRM shows a status on and how many companies the vendor
    has (``wait``: the statuses waited for, a background write being under way)."""

    name = "probe"

    def __init__(self, program: Program, wait: int = 0) -> None:
        self.program = program
        self.wait = wait
        self.chunks: list[list[str]] = []
        self.shown: set[str] = set()
        self.vendor_companies = -1
        self.shown_while_streaming: list[int] = []  # statuses shown at each chunk

    def _statuses(self, ids: list[str]) -> set[str]:
        crm = self.program.crm("acme")
        return {i for i in ids if crm.get("deals", i).get(STATUS)}

    def decide_chunk(self, ctx: PassContext, chunk: Chunk, seen: Any) -> None:
        if chunk.mapping.name == "deals":
            before = [i for c in self.chunks for i in c]
            self.shown_while_streaming.append(len(self._statuses(before)))
            self.chunks.append(sorted(chunk.records.partner))

    def after_stream(self, ctx: PassContext, seen: Any) -> None:
        streamed = [i for c in self.chunks for i in c]
        if self.wait:
            wait_for(lambda: len(self._statuses(streamed)) >= self.wait, timeout=10)
        self.shown = self._statuses(streamed)
        self.vendor_companies = len(self.program.vendor.all("companies"))


class ThreadSafe:
    """A partner adapter that says it may be called from several threads (as HubSpot's
    does) and is: every call holds one lock. Records the thread of each update."""

    thread_safe = True

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.RLock()
        self.updates: list[tuple[str, str]] = []  # (object type, thread name)

    def update(self, object_type: str, items: Any) -> Any:
        with self._lock:
            self.updates.append((object_type, threading.current_thread().name))
            return self._inner.update(object_type, items)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


def probed(make_program: MakeProgram, *, wait: int = 0) -> tuple[Program, Probe]:
    p = make_program()
    probe = Probe(p, wait=wait)
    p.app.hooks = [*p.app.hooks, probe]  # the shipped hooks, then the probe
    return p, probe


def seed_five(p: Program) -> list[str]:
    return [p.seed_deal(domain=f"co{i}.com", company=f"Co{i}").id for i in range(5)]


def status_writes(effects: list[Any], rid: str | None = None) -> list[Any]:
    return [
        d
        for d in effects
        if isinstance(d.effect, WriteProperties)
        and d.effect.purpose == "registration status"
        and (rid is None or d.effect.record_id == rid)
    ]


def test_the_streamed_deals_statuses_go_at_the_streams_end_not_per_chunk(
    make_program: MakeProgram,
) -> None:
    """An embedded partner CRM (not thread-safe): written at once, in the pass's
    thread, at ``after_stream`` — no status is on a partner deal while the deals'
    pages are still being read (a write then would shift the search's pages); at the
    stream's end the four deals that fill whole batches show theirs, while the last
    chunk's company is still to be applied (the first two chunks' went as each next
    chunk came); the fifth status goes with ``after_pass``."""
    p, probe = probed(make_program)
    seeded = seed_five(p)
    result = p.sync()
    assert result.status == "ok", result.errors

    assert [len(c) for c in probe.chunks] == [2, 2, 1]
    assert probe.shown_while_streaming == [0, 0, 0]
    assert len(probe.shown) == 4 and probe.vendor_companies == 4
    for rid in seeded:
        assert p.crm("acme").get("deals", rid).get(STATUS) == "accepted"
        assert p.registry.find("acme", "deal", rid).written_back
    # each registration written once, in the pass's count as before
    assert result.effect_counts()["write-backs: registration status"] == 5
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok"
    assert again.effect_counts()["write-backs: registration status"] == 0


def test_once_every_page_of_deals_was_read_each_chunks_statuses_go_at_once(
    make_program: MakeProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page of deals read before the chunks are decided (the search ran ahead):
    each chunk's statuses go to the partner as it is decided, a whole batch at a time,
    instead of waiting for the stream's end — the partner's budget is used while the
    vendor's writes of the later chunks go on. Each registration is written once."""
    pages_read(monkeypatch, at_once=True)
    p, probe = probed(make_program)
    seeded = seed_five(p)
    result = p.sync()
    assert result.status == "ok", result.errors

    # at each chunk, the statuses on the deals of the chunks before it
    assert probe.shown_while_streaming == [0, 2, 4]
    for rid in seeded:
        assert p.crm("acme").get("deals", rid).get(STATUS) == "accepted"
        assert p.registry.find("acme", "deal", rid).written_back
    assert result.effect_counts()["write-backs: registration status"] == 5
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.effect_counts()["write-backs: registration status"] == 0


def test_with_a_thread_safe_partner_adapter_the_write_back_goes_from_the_background(
    make_program: MakeProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread-safe partner adapter (HubSpot's kind): the streamed deals' statuses go
    from the pass's background writer while the companies and contacts are applied;
    they are marked written in the pass's thread, and the pass's counts are as before.
    Their outcomes wait to be taken without the CRM's answered records (a first sync
    of 50,000 deals held 50,000 of them at once)."""
    from connector.hooks import registration_crm

    taken: list[Any] = []
    settled = registration_crm._settled

    def spy(obj: str, regs: Any, results: Any) -> Any:
        taken.extend(results)
        return settled(obj, regs, results)

    monkeypatch.setattr(registration_crm, "_settled", spy)
    p, probe = probed(make_program, wait=4)
    partner = ThreadSafe(p.app.partner_crm("acme"))
    p.app._adapters["acme"] = partner
    seeded = seed_five(p)
    result = p.sync()
    assert result.status == "ok", result.errors

    assert len(probe.shown) == 4  # the probe waited at after_stream for them
    threads = [t for obj, t in partner.updates if obj == "deals"]
    # the whole batches from the writer, the fifth deal's with after_pass
    assert [t.startswith("dealsync-write") for t in threads] == [True, False]
    # the writer's four (a whole batch) and after_pass's own fifth, answered as it went
    assert [r.ok for r in taken] == [True] * 5
    assert [r.record is None for r in taken] == [True] * 4 + [False]
    for rid in seeded:
        assert p.crm("acme").get("deals", rid).get(STATUS) == "accepted"
        assert p.registry.find("acme", "deal", rid).written_back
    assert result.effect_counts()["write-backs: registration status"] == 5
    assert not any(t.name.startswith("dealsync-write") for t in threading.enumerate())
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.effect_counts()["write-backs: registration status"] == 0


def test_the_background_write_backs_are_marked_a_page_at_a_time(
    make_program: MakeProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-backs the background writer set going are marked written a page at a
    time as their outcomes are taken, not in one statement for all of them (a first
    sync sets its N going at once: marking them together held N rows of parameters):
    batches and pages of 2, five deals — two pages from the writer, the fifth with
    ``after_pass``; every registration marked, none written again."""
    from connector.hooks import registration_crm

    marked: list[int] = []
    monkeypatch.setattr(registration_crm, "WRITE_BACK_BATCH", 2)
    monkeypatch.setattr(registration_crm, "WRITE_BACK_PAGE", 2)
    p, _probe = probed(make_program, wait=4)
    mark = p.registry.mark_written_back

    def spy(written: Any) -> None:
        marked.append(len(written))
        mark(written)

    monkeypatch.setattr(p.registry, "mark_written_back", spy)
    p.app._adapters["acme"] = ThreadSafe(p.app.partner_crm("acme"))
    seeded = seed_five(p)
    result = p.sync()
    assert result.status == "ok", result.errors

    assert marked == [2, 2, 1]
    for rid in seeded:
        assert p.registry.find("acme", "deal", rid).written_back
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.effect_counts()["write-backs: registration status"] == 0


def failing(deal: str, attempts: list[str]) -> Callable[[str, str, str], str | None]:
    def rule(op: str, obj: str, key: str) -> str | None:
        if op == "update" and obj == "deals" and key == deal:
            attempts.append(key)
            return "503 partner down"
        return None

    return rule


def test_a_failed_write_back_of_the_stream_stays_pending_for_the_next_pass(
    make_program: MakeProgram,
) -> None:
    """The partner refuses the write-back of one streamed deal (at ``after_stream``):
    it is tried once in the pass (not again by ``after_pass``), counted as a failed
    write-back, stays pending, and the next pass writes it."""
    p, probe = probed(make_program)
    seeded = seed_five(p)
    attempts: list[str] = []
    p.crm("acme").fail = failing(seeded[0], attempts)
    at_stream_end: list[int] = []
    original = probe.after_stream

    def after_stream(ctx: PassContext, seen: Any) -> None:
        original(ctx, seen)
        at_stream_end.append(len(attempts))

    probe.after_stream = after_stream  # type: ignore[method-assign]
    result = p.sync()
    assert result.status == "ok", result.errors

    assert at_stream_end == [1] and attempts == [seeded[0]]  # tried at the stream's end, once
    counts = result.effect_counts()
    assert counts["write-backs: registration status failed"] == 1
    assert counts["write-backs: registration status"] == 4
    [failed] = status_writes(result.effects, seeded[0])
    assert failed.outcome.error == "503 partner down"
    reg = p.registry.find("acme", "deal", seeded[0])
    assert reg.status == "accepted" and not reg.written_back
    assert p.crm("acme").get("deals", seeded[0]).get(STATUS) is None
    assert [r.id for r in p.registry.pending_write_back("acme")] == [reg.id]

    p.crm("acme").fail = None
    again = p.sync(now=NOW + timedelta(minutes=5))
    assert again.status == "ok", again.errors
    assert again.effect_counts()["write-backs: registration status"] == 1
    assert p.crm("acme").get("deals", seeded[0]).get(STATUS) == "accepted"
    assert p.registry.pending_write_back("acme") == []


def test_a_dry_run_writes_no_status_and_lists_a_pending_one_once(
    make_program: MakeProgram,
) -> None:
    """A dry run after a pass whose write-back of one deal failed: the pending write-back
    is listed once (whether the stream or ``after_pass`` would write it), nothing is
    written to the partner CRM and nothing is marked."""
    p, _ = probed(make_program)
    seeded = seed_five(p)
    attempts: list[str] = []
    p.crm("acme").fail = failing(seeded[0], attempts)
    assert p.sync().status == "ok"
    p.crm("acme").fail = None
    # the deal changed since (its stream chunk lists the pending write-back)
    p.crm("acme").edit("deals", seeded[0], {"amount": "13000"})

    dry = p.sync(now=NOW + timedelta(minutes=5), dry_run=True)
    assert dry.status == "ok", dry.errors
    [listed] = status_writes(dry.effects)
    assert listed.effect.record_id == seeded[0] and listed.outcome is None
    assert not any("update" in k and k.startswith("partner.") for k in dry.api_calls)
    assert p.crm("acme").get("deals", seeded[0]).get(STATUS) is None
    assert not p.registry.find("acme", "deal", seeded[0]).written_back


def test_a_registration_changed_after_its_write_back_was_read_stays_pending(
    program: Program,
) -> None:
    """The mark is conditional: a registration withdrawn while its write of "accepted"
    was under way is not marked written (its withdrawal is written next)."""
    s = program.seed_deal(domain="globex.com")
    program.crm("acme").fail = lambda op, obj, key: "503" if obj == "deals" else None
    assert program.sync().status == "ok"
    registry = program.registry
    [read] = registry.pending_write_back("acme")
    assert read.status == "accepted"
    assert read.id is not None
    registry.end([read.id], "withdrawn", NOW)
    registry.mark_written_back([read])  # the write of the row as read succeeded
    assert not registry.find("acme", "deal", s.id).written_back
    [fresh] = registry.pending_write_back("acme")
    registry.mark_written_back([fresh])
    assert registry.find("acme", "deal", s.id).written_back
