"""The state store: versioned schema, aware UTC datetimes, the pass lock, cursors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, text

from connector.state import StateStore, migrations
from connector.state.store import LockHeld, RecordOutcome

CONN = "acme"


@pytest.fixture
def db_url(state_url_factory: Callable[[str], str]) -> str:
    """SQLite, then PostgreSQL (``tests/engine/conftest.py`` parametrises the backend)."""
    return state_url_factory("state")


@pytest.fixture
def store(db_url: str) -> StateStore:
    s = StateStore(db_url)
    yield s  # type: ignore[misc]
    s.close()


def _versions(store: StateStore) -> list[tuple[int, str]]:
    with store.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(  # type: ignore[misc]
                text("SELECT version, description FROM schema_version ORDER BY version")
            )
        ]


def test_migrations_are_recorded_with_a_version(store: StateStore) -> None:
    assert store.schema_version() == migrations.LATEST
    assert [v for v, _ in _versions(store)] == [s.version for s in migrations.STEPS]
    assert all(description for _, description in _versions(store))


def test_reopening_an_existing_db_does_not_reapply(store: StateStore, db_url: str) -> None:
    store.set_cursors(CONN, {("partner", "deals"): datetime(2027, 1, 1, tzinfo=UTC)})
    before = _versions(store)
    store.close()
    again = StateStore(db_url)
    try:
        assert migrations.migrate(again.engine) == []
        assert _versions(again) == before
        assert again.cursor(CONN, "partner", "deals") == datetime(2027, 1, 1, tzinfo=UTC)
    finally:
        again.close()


def test_a_fresh_db_applies_every_step(tmp_path: Path) -> None:
    from connector.state.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert migrations.migrate(engine) == [s.version for s in migrations.STEPS]
        assert migrations.migrate(engine) == []
    finally:
        engine.dispose()


def test_datetimes_round_trip_as_aware_utc(store: StateStore) -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2027, 3, 31, 13, 45, 7, 123456, tzinfo=paris)
    store.set_cursors(CONN, {("vendor", "deals"): moment})
    back = store.cursor(CONN, "vendor", "deals")
    assert back == moment
    assert back is not None and back.utcoffset() == timedelta(0)
    run_id = store.start_run(CONN, dry_run=False)
    run = store.run(run_id)
    assert run is not None and run.started_at.tzinfo is not None
    assert run.started_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.set_cursors(CONN, {("vendor", "deals"): datetime(2027, 1, 1)})


def test_cursors_never_move_backwards(store: StateStore) -> None:
    t1 = datetime(2027, 1, 1, tzinfo=UTC)
    store.set_cursors(CONN, {("partner", "deals"): t1, ("vendor", "deals"): t1})
    store.set_cursors(CONN, {("partner", "deals"): t1 - timedelta(hours=1)})
    assert store.cursor(CONN, "partner", "deals") == t1
    store.set_cursors(CONN, {("partner", "deals"): t1 + timedelta(seconds=1)})
    assert store.cursor(CONN, "partner", "deals") == t1 + timedelta(seconds=1)
    assert store.cursor(CONN, "vendor", "deals") == t1
    assert store.cursor("other", "partner", "deals") is None


def test_lock_acquired_twice_is_held(store: StateStore) -> None:
    owner = store.acquire_lock(CONN, owner="host-a:1")
    with pytest.raises(LockHeld, match="host-a:1"):
        store.acquire_lock(CONN, owner="host-b:2")
    store.acquire_lock("another-connection", owner="host-b:2")  # per connection
    store.release_lock(CONN, owner)
    assert store.acquire_lock(CONN, owner="host-b:2") == "host-b:2"


def test_lock_release_by_someone_else_does_nothing(store: StateStore) -> None:
    store.acquire_lock(CONN, owner="host-a:1")
    store.release_lock(CONN, "host-b:2")
    with pytest.raises(LockHeld):
        store.acquire_lock(CONN, owner="host-b:2")


def test_expired_lock_is_taken_over(store: StateStore) -> None:
    store.acquire_lock(CONN, owner="dead-host:1", ttl=timedelta(seconds=-1))
    assert store.acquire_lock(CONN, owner="host-b:2") == "host-b:2"
    with pytest.raises(LockHeld, match="host-b:2"):
        store.acquire_lock(CONN, owner="host-c:3")


def test_lock_holds_across_two_store_instances(store: StateStore, db_url: str) -> None:
    store.acquire_lock(CONN, owner="first")
    second = StateStore(db_url)
    try:
        with pytest.raises(LockHeld):
            second.acquire_lock(CONN, owner="second")
    finally:
        second.close()


def test_intents_are_idempotent_and_complete_into_active_links(store: StateStore) -> None:
    first = store.record_intents(CONN, "deals", "partner", ["1", "2"])
    again = store.record_intents(CONN, "deals", "partner", ["1", "2"])
    assert {k: v.id for k, v in first.items()} == {k: v.id for k, v in again.items()}
    assert {lk.status for lk in again.values()} == {"pending"}
    store.complete_links([(first["1"].id or 0, "v1", {"f>g": ["a", "a"]})], origin="partner")
    live = store.links_by_ids(CONN, "deals", "vendor", ["v1"])
    assert live["v1"].status == "active" and live["v1"].partner_id == "1"
    assert live["v1"].base == {"f>g": ["a", "a"]}
    store.set_link_status([first["1"].id or 0], "unlinked")
    assert store.links_by_ids(CONN, "deals", "partner", ["1"]) == {}
    assert store.ended_ids(CONN, "deals", "partner", ["1", "2"]) == {"1"}


def _count_statements(store: StateStore) -> list[str]:
    """Every statement the store's engine sends from now on (an executemany is one)."""
    seen: list[str] = []

    def on_execute(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(store.engine, "before_cursor_execute", on_execute)
    return seen


def test_bulk_intents_mix_existing_and_new_in_one_go(store: StateStore) -> None:
    before = store.record_intents(CONN, "deals", "vendor", ["a", "b"])
    t0 = datetime.now(UTC)
    ids = [f"v{i}" for i in range(1200)] + ["a", "v7"]  # existing and repeated ids too
    statements = _count_statements(store)
    got = store.record_intents(CONN, "deals", "vendor", ids)
    assert set(got) == set(ids)
    assert got["a"].id == before["a"].id and "b" not in got
    assert len({lk.id for lk in got.values()}) == len(got) and None not in {
        lk.id for lk in got.values()
    }
    new = got["v5"]
    assert (new.status, new.origin, new.vendor_id, new.partner_id, new.base) == (
        "pending",
        "vendor",
        "v5",
        None,
        {},
    )
    assert new.created_at == new.updated_at and new.created_at >= t0 - timedelta(seconds=1)
    assert new.created_at.tzinfo is not None
    # one lookup, one insert, one read-back: chunked by 500 ids, not one per row
    assert len(statements) <= 12, statements
    assert store.record_intents(CONN, "deals", "vendor", ids)["v5"].id == new.id


def test_bulk_completes_and_bases_keep_json_and_timestamps(store: StateStore) -> None:
    intents = store.record_intents(CONN, "deals", "partner", [str(i) for i in range(800)])
    created = intents["3"].updated_at
    base: dict[str, object] = {"name>dealname": ["Ünïcode “deal”", None], "n": [1, 2.5]}
    statements = _count_statements(store)
    store.complete_links(
        [(lk.id or 0, f"v{sid}", {**base, "sid": [sid, sid]}) for sid, lk in intents.items()],
        origin="partner",
    )
    store.save_bases([(intents["3"].id or 0, {"only": ["x", "y"]})])
    store.complete_links([], origin="partner")
    store.save_bases([])
    assert len(statements) <= 4, statements
    live = store.links_by_ids(CONN, "deals", "vendor", [f"v{i}" for i in range(800)])
    assert len(live) == 800 and {lk.status for lk in live.values()} == {"active"}
    assert live["v4"].base == {**base, "sid": ["4", "4"]} and live["v4"].partner_id == "4"
    assert live["v3"].base == {"only": ["x", "y"]}
    assert live["v3"].updated_at >= created and live["v3"].created_at == created
    # a vendor-origin completion fills in the partner side
    [(vid, lk)] = store.record_intents(CONN, "deals", "vendor", ["w1"]).items()
    store.complete_links([(lk.id or 0, "p-w1", {})], origin="vendor")
    assert store.links_by_ids(CONN, "deals", "partner", ["p-w1"])["p-w1"].vendor_id == vid


def test_bulk_outcomes_truncate_detail(store: StateStore) -> None:
    run_id = store.start_run(CONN, dry_run=False)
    outcomes = [
        RecordOutcome("deals", "vendor", str(i), "create", "ok", detail="x" * 5000)
        for i in range(600)
    ]
    outcomes.append(RecordOutcome("deals", "partner", "e", "update", "failed", "f", ""))
    statements = _count_statements(store)
    store.add_outcomes(run_id, outcomes)
    store.add_outcomes(run_id, [])
    assert len(statements) <= 3, statements
    records = store.run_records(run_id)
    assert len(records) == 601 and {len(r.detail or "") for r in records[:600]} == {4000}
    last = records[-1]
    assert (last.side, last.action, last.outcome, last.field, last.detail) == (
        "partner",
        "update",
        "failed",
        "f",
        None,
    )
    assert [r.record_id for r in store.run_records(run_id, "failed")] == ["e"]


def test_retries_count_attempts_and_clear(store: StateStore) -> None:
    store.add_retries(CONN, [("deals", "partner", "1", "boom")])
    store.add_retries(CONN, [("deals", "partner", "1", "boom again")])
    [item] = store.retries(CONN, "deals")
    assert (item.attempts, item.last_error) == (2, "boom again")
    store.clear_retries(CONN, [("deals", "partner", "1")])
    assert store.retry_count(CONN) == 0


def test_base_times_are_set_kept_for_associations_and_cleared_otherwise(store: StateStore) -> None:
    """Issue 17: a link keeps, per side, the modification time of the version its base
    came from (search hits as new as it are not read again). A base saved with times
    sets them; an association-only save keeps them; a save without times forgets them
    (unknown: read again), never leaving an old time beside a newer base."""
    t_p = datetime(2027, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    t_v = datetime(2027, 5, 1, 10, 0, 1, 456000, tzinfo=UTC)
    intents = store.record_intents(CONN, "deals", "partner", ["1", "2"])
    one, two = intents["1"].id or 0, intents["2"].id or 0
    store.complete_links(
        [(one, "v1", {"a": ["x", "x"]}), (two, "v2", {})], origin="partner", times={one: (t_p, t_v)}
    )
    refs = store.link_refs(CONN, "deals", "partner", ["1", "2"], base=False)
    assert (refs["1"].base_at("partner"), refs["1"].base_at("vendor")) == (t_p, t_v)
    assert (refs["2"].base_partner_at, refs["2"].base_vendor_at) == (None, None)

    store.save_bases([(one, {"a": ["x", "x"], "@assoc:contacts": ["9"]})], keep_times=True)
    assert store.link_refs(CONN, "deals", "vendor", ["v1"])["v1"].base_at("vendor") == t_v
    later = t_v + timedelta(seconds=5)
    store.save_bases([(one, {"a": ["y", "y"]})], times={one: (None, later)})
    ref = store.link_refs(CONN, "deals", "vendor", ["v1"])["v1"]
    assert (ref.base_partner_at, ref.base_vendor_at) == (None, later)
    store.save_bases([(one, {"a": ["z", "z"]})])
    ref = store.link_refs(CONN, "deals", "vendor", ["v1"])["v1"]
    assert (ref.base_partner_at, ref.base_vendor_at) == (None, None)


def test_upgrading_a_store_from_before_base_times_keeps_its_links(tmp_path: Path) -> None:
    """A store made before migration 13 gets the two base-time columns; its links are
    kept, their base times unknown (their search hits are read again, as before)."""
    from connector.state.store import make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    StateStore(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:  # as the store was before step 13
        conn.execute(text("DELETE FROM schema_version WHERE version = 13"))
        conn.execute(text("ALTER TABLE link DROP COLUMN base_partner_at"))
        conn.execute(text("ALTER TABLE link DROP COLUMN base_vendor_at"))
        conn.execute(
            text(
                "INSERT INTO link (connection, object, partner_id, vendor_id, origin, status,"
                " base, created_at, updated_at) VALUES ('acme', 'deals', 'p1', 'v1', 'partner',"
                " 'active', '{}', '2027-01-01 00:00:00', '2027-01-01 00:00:00')"
            )
        )
    engine.dispose()
    store = StateStore(url)
    try:
        assert store.schema_version() == migrations.LATEST
        assert 13 in [v for v, _ in _versions(store)]
        ref = store.link_refs(CONN, "deals", "partner", ["p1"])["p1"]
        assert ref.vendor_id == "v1" and ref.base_at("partner") is None
    finally:
        store.close()


def test_link_lookups_pick_by_status_among_many_records(store: StateStore) -> None:
    """Live and ended lookups over more than one chunk of ids, links of every status
    mixed: the status is checked on the rows read (issue 17), so each lookup must still
    return exactly the records whose one link has the wanted status."""
    ids = [str(i) for i in range(1100)]
    intents = store.record_intents(CONN, "deals", "partner", ids)
    store.complete_links(
        [(intents[i].id, f"v{i}", {"n": [i, i]}) for i in ids if int(i) % 5 != 0],
        origin="partner",
    )
    ended = {"unlinked": ids[1::7], "deleted": ids[2::7], "flagged": ids[3::7]}
    for status, which in ended.items():
        store.set_link_status([intents[i].id for i in which], status)
    status_of = {i: "pending" if int(i) % 5 == 0 else "active" for i in ids}
    for status, which in ended.items():
        status_of.update(dict.fromkeys(which, status))
    asked = [*ids, "nobody"]
    live = {i for i, st in status_of.items() if st in ("pending", "active", "flagged")}
    refs = store.link_refs(CONN, "deals", "partner", asked)
    assert set(refs) == live and all(refs[i].status == status_of[i] for i in live)
    assert refs["10"].base == {} and refs["11"].base == {"n": ["11", "11"]}
    assert set(store.link_refs(CONN, "deals", "partner", asked, base=False)) == live
    assert set(store.links_by_ids(CONN, "deals", "partner", asked)) == live
    assert store.ended_ids(CONN, "deals", "partner", asked) == {
        i for i, st in status_of.items() if st in ("unlinked", "deleted")
    }
    # the vendor side too (the pending links hold no vendor id)
    vendor_live = {f"v{i}" for i in live if int(i) % 5 != 0}
    assert set(store.link_refs(CONN, "deals", "vendor", [f"v{i}" for i in ids])) == vendor_live


def test_link_lookups_by_record_use_the_records_unique_index(
    state_backend: str, tmp_path: Path
) -> None:
    """On SQLite a lookup of links by record ids must search the (connection, object,
    side id) unique index: with a status condition it used the status index instead,
    reading every link of the object once per 500 ids (issue 17)."""
    if state_backend != "sqlite":
        pytest.skip("SQLite's query plans")
    store = StateStore(f"sqlite:///{tmp_path}/plan.db")
    try:
        store.record_intents(CONN, "deals", "partner", ["1", "2"])
        statements = _count_statements(store)
        store.link_refs(CONN, "deals", "partner", ["1", "2", "3"])
        store.link_refs(CONN, "deals", "vendor", ["v1"], base=False)
        store.links_by_ids(CONN, "deals", "partner", ["1"])
        store.ended_ids(CONN, "deals", "partner", ["1", "3"])
        store.record_intents(CONN, "deals", "partner", ["2", "4"])
        lookups = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
        assert len(lookups) >= 6
        with store.engine.connect() as conn:
            for q in lookups:
                n = q.count("?")
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q, tuple("x" * n)).all()
                detail = " | ".join(str(row[-1]) for row in plan)
                assert "ix_link_conn_obj_status" not in detail, (q, detail)
                assert "_id=?" in detail, (q, detail)
    finally:
        store.close()


def test_upgrading_a_store_adds_the_write_back_index_and_keeps_registrations(
    db_url: str,
) -> None:
    """Migration 21 adds the registrations' (partner, object, id) index to a store made
    before it; its registrations stay, and the write-back's pages still read every
    pending one once, in id order."""
    from sqlalchemy import inspect

    from connector.state.store import make_engine
    from connector.state.tables import Registration

    StateStore(db_url).close()
    engine = make_engine(db_url)
    with engine.begin() as conn:  # as the store was before step 21
        conn.execute(text("DELETE FROM schema_version WHERE version = 21"))
        conn.execute(text("DROP INDEX ix_registration_object"))
        for i in range(7):
            conn.execute(
                Registration.__table__.insert().values(  # type: ignore[attr-defined]
                    partner=CONN,
                    kind="deal",
                    partner_object="deals" if i % 2 else "companies",
                    partner_record_id=str(i),
                    status="accepted",
                    submitted_at=datetime(2027, 1, 1, tzinfo=UTC),
                    fingerprint="",
                    written_back=i == 3,
                    vendor_written=False,
                )
            )
    engine.dispose()
    store = StateStore(db_url)
    try:
        assert store.schema_version() == migrations.LATEST
        assert 21 in [v for v, _ in _versions(store)]
        with store.engine.connect() as conn:
            names = {ix["name"] for ix in inspect(conn).get_indexes("registration")}
        assert "ix_registration_object" in names
        pages = list(store.registry.pending_write_back_pages(CONN, size=2))
        got = [[r.partner_record_id for r in page] for page in pages]
        assert got == [["0", "2"], ["4", "6"], ["1", "5"]]
    finally:
        store.close()


def test_write_back_pages_search_the_object_index(state_backend: str, tmp_path: Path) -> None:
    """On SQLite a write-back page is read through the (partner, object, id) index, in
    its order: not every registration of the partner sorted once per page (issue 17)."""
    if state_backend != "sqlite":
        pytest.skip("SQLite's query plans")
    from connector.state.tables import Registration

    store = StateStore(f"sqlite:///{tmp_path}/plan.db")
    try:
        with store.engine.begin() as conn:
            conn.execute(
                Registration.__table__.insert().values(  # type: ignore[attr-defined]
                    partner=CONN,
                    kind="deal",
                    partner_object="deals",
                    partner_record_id="1",
                    status="accepted",
                    submitted_at=datetime(2027, 1, 1, tzinfo=UTC),
                    fingerprint="",
                    written_back=False,
                    vendor_written=False,
                )
            )
        statements = _count_statements(store)
        assert len(list(store.registry.pending_write_back_pages(CONN))) == 1
        with store.engine.connect() as conn:
            q = next(q for q in statements if "LIMIT" in q.upper())
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q, tuple("x" * q.count("?")))
            detail = " | ".join(str(row[-1]) for row in plan)
        assert "ix_registration_object" in detail and "TEMP B-TREE" not in detail, detail
    finally:
        store.close()
