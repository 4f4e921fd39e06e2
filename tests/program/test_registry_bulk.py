"""The registry's bulk paths against its per-row ones, on SQLite and (when a server
answers) PostgreSQL: ``record_many`` leaves exactly the state ``record`` leaves row by
row, the claim row stays the arbiter when another process claims a domain under a
batch (the batch falls back to the per-row path and records the loser), and the
bulk reads and writes (``find_many``, ``holders``, ``mark_each``,
``set_contact_vendor_ids``, ``end``) equal their per-row forms. Then the hook: one
pass searches the vendor's companies of a domain once, not again in ``after_pass``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from program_support import NOW, Program
from sqlalchemy import create_engine, insert

from connector.program.decide import Decision, Holder, Person, Submission
from connector.records import Record
from connector.state import StateStore
from connector.state.registry import Registry
from connector.state.tables import DomainClaim

LATER = NOW + timedelta(days=182)
PAST = NOW - timedelta(days=30)
ANN = Person("Ann@New.com", "Ann", "Lee", "DE", "de")
ANN_AGAIN = Person("ann@new.com", "Ann", "Lee", "DE", "de")
BOB = Person("bob@new.com", "Bob", "Ray", None, None)


@pytest.fixture(params=["sqlite", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_registry(state_url_factory: Callable[[str], str]) -> Iterator[Callable[[], Registry]]:
    stores: list[StateStore] = []
    count = iter(range(1000))

    def build() -> Registry:
        store = StateStore(state_url_factory(f"store{next(count)}"))
        stores.append(store)
        return Registry(store)

    yield build
    for store in stores:
        store.close()


def sub(partner: str, rid: str, domain: str, *people: Person, kind: str = "deal") -> Submission:
    return Submission(partner, kind, kind + "s", rid, domain, domain.title(), people)  # type: ignore[arg-type]


def accept(domain: str, *people: Person, until: Any = LATER) -> Decision:
    return Decision("accepted", domain, None, f"Accepted {domain}", until, people)


def reject(domain: str, code: str) -> Decision:
    return Decision("rejected", domain, code, f"Rejected {domain}: {code}")


def seed(registry: Registry) -> None:
    """The same earlier state in every store, recorded row by row."""
    registry.record(sub("beta", "b1", "held.com", kind="lead"), accept("held.com"), now=NOW)
    # beta's claim of old.com ended a month ago (not expired by a pass yet)
    registry.record(
        sub("beta", "b2", "old.com", kind="lead"),
        accept("old.com", until=PAST),
        now=PAST - timedelta(days=150),
    )
    registry.record(sub("acme", "r1", "fixed.com"), reject("", "invalid_data"), now=PAST)
    registry.record(sub("acme", "m0", "mine.com", ANN), accept("mine.com", ANN), now=PAST)


BATCH: list[tuple[Submission, Decision]] = [
    # new domain, two contacts of which one twice (in another case)
    (sub("acme", "d1", "new.com", ANN, BOB, ANN_AGAIN), accept("new.com", ANN, BOB, ANN_AGAIN)),
    # the same partner again on that domain: owned already, nothing more to claim
    (sub("acme", "d2", "www.new.com", BOB), accept("new.com", BOB)),
    # held by another partner: lost
    (sub("acme", "d3", "held.com", BOB), accept("held.com", BOB)),
    # another partner's claim has ended: taken over
    (sub("acme", "d4", "old.com", BOB), accept("old.com", BOB)),
    # rejected earlier, fixed by the partner, accepted now
    (sub("acme", "r1", "fixed.com", BOB), accept("fixed.com", BOB)),
    (sub("acme", "d5", "gmail.com", BOB), reject("gmail.com", "personal_domain")),
    # own active claim: accepted, the claim stays the first registration's
    (sub("acme", "d6", "mine.com", BOB), accept("mine.com", BOB)),
    # another partner accepted from stale facts: acme claimed new.com earlier in the batch
    (sub("beta", "x1", "new.com", BOB, kind="lead"), accept("new.com", BOB)),
]


def snapshot(registry: Registry) -> dict[str, Any]:
    regs = registry.registrations()
    key = {r.id: (r.partner, r.kind, r.partner_record_id) for r in regs}
    with registry.session() as s:
        from sqlmodel import select

        claims = {
            c.domain: (c.partner, key[c.registration_id], c.owned_until)
            for c in s.exec(select(DomainClaim)).all()
        }
    contacts = registry.contacts_of(key)
    return {
        "registrations": {
            key[r.id]: r.model_dump(exclude={"id"}) for r in regs if r.id is not None
        },
        "claims": claims,
        "contacts": {
            key[rid]: sorted(
                (c.email, c.first_name, c.last_name, c.country, c.language, c.vendor_contact_id)
                for c in rows
            )
            for rid, rows in contacts.items()
        },
    }


def test_record_many_leaves_what_record_leaves_row_by_row(
    make_registry: Callable[[], Registry],
) -> None:
    one, many = make_registry(), make_registry()
    seed(one)
    seed(many)
    expected = [one.record(s, d, now=NOW).status for s, d in BATCH]
    assert many.record_many(BATCH, now=NOW) == expected
    assert expected == [
        "accepted",
        "accepted",
        "rejected",
        "accepted",
        "accepted",
        "rejected",
        "accepted",
        "rejected",
    ]
    assert snapshot(many) == snapshot(one)
    after = snapshot(many)
    assert after["claims"]["new.com"][:2] == ("acme", ("acme", "deal", "d1"))
    assert after["claims"]["old.com"][:2] == ("acme", ("acme", "deal", "d4"))
    assert after["claims"]["mine.com"][:2] == ("acme", ("acme", "deal", "m0"))
    assert after["claims"]["held.com"][0] == "beta"
    lost = after["registrations"][("acme", "deal", "d3")]
    assert lost["code"] == "owned_by_partner" and lost["owned_until"] is None
    assert after["contacts"][("acme", "deal", "d3")] == []
    assert [c[0] for c in after["contacts"][("acme", "deal", "d1")]] == [
        "ann@new.com",
        "bob@new.com",
    ]


def test_record_many_in_several_transactions(
    make_registry: Callable[[], Registry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches smaller than the decisions: each batch sees what the earlier committed."""
    one, many = make_registry(), make_registry()
    seed(one)
    seed(many)
    expected = [one.record(s, d, now=NOW).status for s, d in BATCH]
    monkeypatch.setattr("connector.state.registry._CHUNK", 3)
    assert many.record_many(BATCH, now=NOW) == expected
    assert snapshot(many) == snapshot(one)


def _stale_claims(monkeypatch: pytest.MonkeyPatch, stale: dict[str, Holder]) -> None:
    """The batch's first read of the claims returns ``stale`` (what a concurrent process
    changed after it read them); later reads are true."""
    real = Registry._claims
    calls = {"n": 0}

    def claims(s: Any, domains: Any) -> dict[str, Holder]:
        calls["n"] += 1
        return dict(stale) if calls["n"] == 1 else real(s, domains)

    monkeypatch.setattr(Registry, "_claims", staticmethod(claims))


def test_a_claim_taken_under_a_batch_falls_back_row_by_row(
    make_registry: Callable[[], Registry], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = make_registry()
    rival = registry.record(sub("beta", "b9", "race.com", kind="lead"), accept("race.com"), now=NOW)
    _stale_claims(monkeypatch, {})  # the batch does not see beta's claim
    statuses = registry.record_many(
        [
            (sub("acme", "a1", "calm.com", ANN), accept("calm.com", ANN)),
            (sub("acme", "a2", "race.com", BOB), accept("race.com", BOB)),
        ],
        now=NOW,
    )
    assert statuses == ["accepted", "rejected"]
    lost = registry.find("acme", "deal", "a2")
    assert lost is not None and lost.code == "owned_by_partner"
    assert "2027-07-05" in (lost.reason or "")  # beta's window, read after the conflict
    assert registry.contacts(lost.id or 0) == []
    holders = registry.holders(["race.com", "calm.com", "nobody.com"])
    assert holders["race.com"].partner == "beta" and holders["calm.com"].partner == "acme"
    assert "nobody.com" not in holders
    assert rival.status == "accepted"
    won = registry.find("acme", "deal", "a1")
    assert won is not None and [c.email for c in registry.contacts(won.id or 0)] == ["ann@new.com"]


def test_a_claim_freed_under_a_takeover_falls_back_row_by_row(
    make_registry: Callable[[], Registry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch read an ended claim that another process deleted meanwhile (it ended
    the registration): the update finds no row, the batch is redone row by row."""
    registry = make_registry()
    _stale_claims(monkeypatch, {"old.com": Holder("beta", PAST)})
    assert registry.record_many(
        [(sub("acme", "a1", "old.com", BOB), accept("old.com", BOB))], now=NOW
    ) == ["accepted"]
    assert registry.holder("old.com") == Holder("acme", LATER)


def test_a_concurrent_claim_insert_is_the_arbiter(
    make_registry: Callable[[], Registry],
    monkeypatch: pytest.MonkeyPatch,
    state_backend: str,
) -> None:
    """Another process (its own connection) inserts the claim while the batch runs: the
    insert wins, the batch is redone row by row and records the loser. (SQLite takes
    the write lock when the batch begins, so the other process could only wait.)"""
    if state_backend != "postgres":
        pytest.skip("SQLite serialises the two transactions")
    registry = make_registry()
    other = create_engine(registry.store.url)
    real = Registry._reg_ids
    calls = {"n": 0}

    def reg_ids(s: Any, keys: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the batch has read the claims: beta claims race.com now
            done = threading.Event()

            def claim() -> None:
                with other.begin() as conn:
                    conn.execute(
                        insert(DomainClaim.__table__),  # type: ignore[attr-defined]
                        [
                            {
                                "domain": "race.com",
                                "partner": "beta",
                                "registration_id": 999,
                                "owned_until": LATER + timedelta(days=1),
                            }
                        ],
                    )
                done.set()

            threading.Thread(target=claim).start()
            assert done.wait(10)
        return real(s, keys)

    monkeypatch.setattr(Registry, "_reg_ids", staticmethod(reg_ids))
    try:
        statuses = registry.record_many(
            [
                (sub("acme", "a1", "race.com", BOB), accept("race.com", BOB)),
                (sub("acme", "a2", "calm.com", ANN), accept("calm.com", ANN)),
            ],
            now=NOW,
        )
    finally:
        other.dispose()
    assert statuses == ["rejected", "accepted"]
    lost = registry.find("acme", "deal", "a1")
    assert lost is not None and lost.code == "owned_by_partner"
    assert registry.contacts(lost.id or 0) == []
    assert registry.holder("race.com") == Holder("beta", LATER + timedelta(days=1))
    assert registry.holder("calm.com") == Holder("acme", LATER)


def test_bulk_reads_and_writes_equal_the_per_row_ones(
    make_registry: Callable[[], Registry],
) -> None:
    registry = make_registry()
    seed(registry)
    registry.record_many(BATCH, now=NOW)
    ids = ["d1", "d3", "nope", "r1"]
    found = registry.find_many("acme", "deal", ids)
    assert set(found) == {"d1", "d3", "r1"}
    for rid, reg in found.items():
        assert reg == registry.find("acme", "deal", rid)
    assert registry.find_many("acme", "lead", ids) == {}
    assert registry.holders(["new.com", "held.com", "", "none.com"]) == {
        d: h for d in ("new.com", "held.com") if (h := registry.holder(d)) is not None
    }

    d1, d3, r1 = (found[k].id or 0 for k in ("d1", "d3", "r1"))
    registry.mark_each(
        {d1: {"vendor_company_id": "c1", "vendor_written": True}, d3: {"vendor_company_id": "c3"}}
    )
    registry.mark_each({})
    registry.mark([r1, d3], written_back=True)
    after = {k: registry.get(v) for k, v in (("d1", d1), ("d3", d3), ("r1", r1))}
    assert (after["d1"].vendor_company_id, after["d1"].vendor_written) == ("c1", True)  # type: ignore[union-attr]
    assert (after["d3"].vendor_company_id, after["d3"].vendor_written) == ("c3", False)  # type: ignore[union-attr]
    assert after["r1"].written_back and after["d3"].written_back  # type: ignore[union-attr]
    assert not after["d1"].written_back  # type: ignore[union-attr]

    registry.set_contact_vendor_ids([(d1, "ANN@new.com", "v-ann"), (d1, "bob@new.com", "v-bob")])
    registry.set_contact_vendor_ids([])
    registry.set_contact_vendor_id(r1, "Bob@New.com", "v-bob2")
    assert {c.email: c.vendor_contact_id for c in registry.contacts(d1)} == {
        "ann@new.com": "v-ann",
        "bob@new.com": "v-bob",
    }
    assert [c.vendor_contact_id for c in registry.contacts(r1)] == ["v-bob2"]

    # ending many at once: each frees its own claim only
    d2 = registry.find("acme", "deal", "d2")
    assert d2 is not None and d2.id is not None
    registry.end([d2.id, d3], "withdrawn", NOW)
    assert registry.holder("new.com") == Holder("acme", LATER)  # d2 never held it
    assert registry.get(d2.id).status == "withdrawn"  # type: ignore[union-attr]
    assert registry.get(d3).status == "rejected"  # type: ignore[union-attr]  # not accepted
    m0 = registry.find("acme", "deal", "m0")
    assert m0 is not None and m0.id is not None
    registry.end([d1, m0.id, d1], "expired", NOW)
    assert registry.holders(["new.com", "mine.com", "held.com"]) == {
        "held.com": Holder("beta", LATER)
    }
    ended = registry.get(d1)
    assert ended is not None and ended.status == "expired" and ended.ended_at == NOW


# ---------------------------------------------------------------------- the hook


def test_a_pass_searches_a_domains_vendor_companies_once(
    program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``after_detect`` looked the domains up; ``after_pass`` writes the ownership to
    what it found (an existing vendor company) or to the company the sync created for
    the deal (its link), without searching those domains again."""
    existing = program.vendor_customer("initech.de")  # not a customer: no signal set
    first = program.seed_deal(domain="globex.com")
    second = program.seed_deal(domain="initech.de", company="Initech")
    searched: list[tuple[str, tuple[str, ...]]] = []
    real = program.vendor.find_by_property

    def spy(obj: str, name: str, values: Any, props: Any) -> dict[str, Record]:
        searched.append((obj, tuple(values)))
        return real(obj, name, values, props)

    monkeypatch.setattr(program.vendor, "find_by_property", spy)
    assert program.sync().status == "ok"
    company_values = [v for obj, values in searched if obj == "companies" for v in values]
    assert sorted(company_values) == [
        "globex.com",
        "initech.de",
        "www.globex.com",
        "www.initech.de",
    ]
    a = program.registry.find("acme", "deal", first.id)
    b = program.registry.find("acme", "deal", second.id)
    assert a.status == b.status == "accepted"
    created = program.counterpart("acme", "companies", first.company.id)
    assert created is not None and created.get("dealsync_owner_partner") == "acme"
    assert a.vendor_company_id == created.id and a.vendor_written
    assert b.vendor_company_id == existing.id and b.vendor_written
    assert program.vendor.get("companies", existing.id).get("dealsync_owner_partner") == "acme"


def test_an_ended_registration_reads_its_company_again(
    program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a partner still holds a company is read when the ownership is cleared,
    not taken from what the pass saw before."""
    s = program.seed_deal(domain="globex.com")
    program.sync()
    program.crm("acme").update("deals", [(s.id, {"dealsync_register": ""})])
    searched: list[str] = []
    real = program.vendor.find_by_property

    def spy(obj: str, name: str, values: Any, props: Any) -> dict[str, Record]:
        if obj == "companies":
            searched.extend(values)
        return real(obj, name, values, props)

    monkeypatch.setattr(program.vendor, "find_by_property", spy)
    program.sync(now=NOW + timedelta(hours=1))
    reg = program.registry.find("acme", "deal", s.id)
    assert reg.status == "withdrawn" and reg.vendor_written
    assert "globex.com" in searched
    vcomp = program.counterpart("acme", "companies", s.company.id)
    assert vcomp is not None and not vcomp.get("dealsync_owner_partner")


def test_contact_vendor_ids_of_more_registrations_than_one_executemany_holds(
    make_registry: Callable[[], Registry],
) -> None:
    """A first sync remembers thousands of vendor contacts at once: they go 1,000
    parameter sets at a time, and every one of them is set — the last set's too."""
    from connector.testing.registrations import seed_registrations

    registry = make_registry()
    ids = seed_registrations(registry, "acme", 2_345, decided_at=NOW)
    emails = {rid: [c.email for c in cs] for rid, cs in registry.contacts_of(ids).items()}
    registry.set_contact_vendor_ids(
        (rid, emails[rid][0].upper(), f"v-{rid}") for rid in ids
    )  # a generator, as long as the pass's
    after = registry.contacts_of(ids)
    assert sorted(c.vendor_contact_id or "" for cs in after.values() for c in cs) == sorted(
        f"v-{rid}" for rid in ids
    )
