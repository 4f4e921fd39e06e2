"""One set of scenario checks every CRM adapter must pass.

The engine only knows :class:`~connector.adapters.base.CRMAdapter`; what it relies on
(cursor windows that overlap rather than miss, archived records in the window,
idempotent upserts on the source-id property, per-record write results, refusals of
a unique value carrying ``existing_id``) is written down here once, so LocalCRM, the
HubSpot adapter over the sandbox, and any adapter added later are held to the same
promises. A check gets a :class:`Subject`: a fresh adapter and a :class:`Backdoor`
that seeds and inspects the CRM without going through the adapter (a user's edits,
and the truth to compare the adapter's answers with).

Use it from a test module::

    @pytest.mark.parametrize("check", ADAPTER_CHECKS, ids=check_id)
    def test_local(check):
        check(Subject(adapter, backdoor))

Reads that go through a search index (HubSpot's is eventually consistent) are polled
with :func:`eventually` up to a generous deadline, so a check never depends on speed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from connector.adapters.base import CRMAdapter, SupportsChunkedDetection, SupportsListing
from connector.records import PropertySpec, Record

if TYPE_CHECKING:
    from connector.adapters.local import LocalCRM
    from connector.sandbox.store import Portal

T = TypeVar("T")

SOURCE_ID = "dealsync_source_id"
SOURCE_SPEC = PropertySpec("deals", SOURCE_ID, "dealsync source id", unique=True)
CONTACT_SOURCE_SPEC = PropertySpec("contacts", SOURCE_ID, "dealsync source id", unique=True)
DEAL = {
    "dealname": "Conformance deal",
    "amount": "100",
    "pipeline": "default",
    "dealstage": "appointmentscheduled",
}
DEADLINE_S = 30.0
_MS = timedelta(milliseconds=1)


class Backdoor(Protocol):
    """Direct access to the CRM behind an adapter: what a user (or the truth) does."""

    def seed(self, object_type: str, properties: Mapping[str, str]) -> str:
        """Create a record as a user would; its id."""
        ...

    def edit(self, object_type: str, rid: str, properties: Mapping[str, str]) -> None:
        """Change a record as a user would."""
        ...

    def remove(self, object_type: str, rid: str) -> None:
        """Archive a record as a user would."""
        ...

    def properties(self, object_type: str, rid: str) -> dict[str, str | None] | None:
        """A live record's properties, or None when it is archived or unknown."""
        ...

    def live_ids(self, object_type: str) -> set[str]:
        """Ids of every live record of a type."""
        ...

    def associated(self, from_type: str, rid: str, to_type: str) -> set[str]:
        """Ids of the live records of ``to_type`` associated with one record."""
        ...

    def property_names(self, object_type: str) -> set[str]:
        """Names of the properties the CRM knows for a type."""
        ...


def _plus_million(rid: str) -> str:
    return str(int(rid) + 999_999)


def _same(name: str) -> str:
    return name


@dataclass(frozen=True)
class Vocabulary:
    """The CRM's own words for what the checks write: its field names, a valid deal,
    an id no record has. HubSpot's (and the local CRM's) by default; a CRM with other
    built-in names (Salesforce: ``Name``, ``StageName``, ``Amount``) gives its own,
    so every adapter is held to the same promises in its own vocabulary."""

    deal: Mapping[str, str] = field(default_factory=lambda: dict(DEAL))
    deal_name: str = "dealname"
    deal_stage: str = "dealstage"
    other_stage: str = "qualifiedtobuy"  # a second valid stage
    amount: str = "amount"
    company: tuple[str, str] = ("name", "domain")
    """A company's name and domain fields."""
    email: str = "email"
    first_name: str = "firstname"
    contact: Mapping[str, str] = field(default_factory=dict)
    """What else a contact needs to be valid (Salesforce: ``LastName``)."""
    unique_email: bool = True
    """The CRM refuses a second contact with an e-mail address another one has."""
    many: tuple[str, str] = ("deals", "companies")
    """An association a record may have several of."""
    custom: Callable[[str], str] = _same
    """The name in the CRM of a custom property ``ensure_properties`` created."""
    missing: Callable[[str], str] = _plus_million
    """An id of the same type as the one given that no record has."""

    def company_props(self, name: str, domain: str) -> dict[str, str]:
        return {self.company[0]: name, self.company[1]: domain}

    def contact_props(self, email: str, first: str) -> dict[str, str]:
        return {**self.contact, self.email: email, self.first_name: first}


HUBSPOT_VOCABULARY = Vocabulary()


@dataclass
class Subject:
    """A fresh adapter and the backdoor to its (otherwise empty) CRM, with the CRM's
    vocabulary."""

    adapter: CRMAdapter
    crm: Backdoor
    vocab: Vocabulary = HUBSPOT_VOCABULARY


Check = Callable[[Subject], None]
ADAPTER_CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    """Register a check (in definition order)."""
    ADAPTER_CHECKS.append(fn)
    return fn


def check_id(fn: Check) -> str:
    """A readable pytest id for a check."""
    return fn.__name__.removeprefix("check_")


def run_all(make: Callable[[], Subject]) -> None:
    """Every check, each on a fresh subject (for callers outside pytest)."""
    for fn in ADAPTER_CHECKS:
        fn(make())


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], what: str) -> T:
    """``probe()`` until ``ok`` says yes, up to :data:`DEADLINE_S` (indexes may lag)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {DEADLINE_S:.0f}s")
        time.sleep(0.05)


def _later_than(adapter: CRMAdapter, moment: datetime) -> None:
    """Wait until the CRM's clock is a whole millisecond past ``moment`` (CRMs keep
    modification times to the millisecond): the next write, and a cursor taken now,
    are then strictly after it (a wait of a millisecond or two, never an assertion)."""
    eventually(adapter.now, lambda now: now >= moment + _MS, "CRM clock moving on")


def _changed(subject: Subject, since: datetime | None, **kwargs: object) -> dict[str, Record]:
    v = subject.vocab
    records = list(
        subject.adapter.changed_since("deals", since, [v.deal_name, v.deal_stage], **kwargs)  # type: ignore[arg-type]
    )
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)), f"a record came twice in one window: {ids}"
    return {r.id: r for r in records}


def _key() -> str:
    return f"conf:{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------- clock, reads


@check
def check_now_is_timezone_aware(s: Subject) -> None:
    now = s.adapter.now()
    assert now.tzinfo is not None and now.utcoffset() is not None
    assert isinstance(s.adapter.name, str) and s.adapter.name


@check
def check_changed_since_none_returns_every_live_record(s: Subject) -> None:
    v = s.vocab
    ids = {s.crm.seed("deals", {**v.deal, v.deal_name: f"All {i}"}) for i in range(3)}
    found = eventually(lambda: _changed(s, None), lambda f: ids <= set(f), "full read")
    assert all(not found[i].archived for i in ids)
    assert {found[i].get(v.deal_name) for i in ids} == {"All 0", "All 1", "All 2"}


@check
def check_changed_since_cursor_excludes_older_and_includes_newer(s: Subject) -> None:
    v = s.vocab
    old = s.crm.seed("deals", {**v.deal, v.deal_name: "Old"})
    old_at = eventually(lambda: _changed(s, None), lambda f: old in f, "seeded")[old].updated_at
    _later_than(s.adapter, old_at)
    cursor = s.adapter.now()
    _later_than(s.adapter, cursor)
    new = s.crm.seed("deals", {**v.deal, v.deal_name: "New"})
    found = eventually(lambda: _changed(s, cursor), lambda f: new in f, "new record in window")
    assert old not in found, "a record modified before the cursor came back"


@check
def check_window_bounds_are_inclusive(s: Subject) -> None:
    """The engine's overlap window re-reads the record at the cursor's instant: a
    record modified exactly at ``since`` or ``until`` is in the window."""
    v = s.vocab
    rid = s.crm.seed("deals", v.deal)
    at = eventually(lambda: _changed(s, None), lambda f: rid in f, "seeded")[rid].updated_at
    assert rid in _changed(s, at), "record at exactly `since` missing"
    assert rid in _changed(s, at - timedelta(seconds=5), until=at), "record at `until` missing"
    assert rid not in _changed(s, at + _MS), "record before `since` returned"
    assert rid not in _changed(s, at - timedelta(seconds=5), until=at - _MS), (
        "record after `until` returned"
    )


@check
def check_edit_moves_record_into_a_later_window(s: Subject) -> None:
    v = s.vocab
    rid = s.crm.seed("deals", v.deal)
    at = eventually(lambda: _changed(s, None), lambda f: rid in f, "seeded")[rid].updated_at
    _later_than(s.adapter, at)
    cursor = s.adapter.now()
    _later_than(s.adapter, cursor)
    s.crm.edit("deals", rid, {v.deal_name: "Edited"})
    found = eventually(
        lambda: _changed(s, cursor),
        lambda f: rid in f and f[rid].get(v.deal_name) == "Edited",
        "edited record in the later window",
    )
    assert found[rid].updated_at > at


@check
def check_archived_records_come_in_their_window(s: Subject) -> None:
    v = s.vocab
    keep = s.crm.seed("deals", {**v.deal, v.deal_name: "Keep"})
    gone = s.crm.seed("deals", {**v.deal, v.deal_name: "Gone"})
    eventually(lambda: _changed(s, None), lambda f: {keep, gone} <= set(f), "seeded")
    cursor = s.adapter.now()
    _later_than(s.adapter, cursor)
    s.crm.remove("deals", gone)
    found = eventually(lambda: _changed(s, cursor), lambda f: gone in f, "archived in window")
    assert found[gone].archived is True
    live = _changed(s, None)
    assert gone not in live or live[gone].archived, "an archived record came back as live"
    # a window that starts after the archive leaves it out (polled with a cursor taken
    # anew each time: CRMs keep the archive time to the millisecond, maybe ahead)
    eventually(
        lambda: _changed(s, s.adapter.now()),
        lambda f: gone not in f,
        "a window after the archive, still holding the archived record",
    )


@check
def check_where_keeps_only_matching_records(s: Subject) -> None:
    v = s.vocab
    a = s.crm.seed("deals", {**v.deal, v.deal_stage: v.deal[v.deal_stage]})
    b = s.crm.seed("deals", {**v.deal, v.deal_stage: v.other_stage})
    found = eventually(
        lambda: _changed(s, None, where={v.deal_stage: v.other_stage}),
        lambda f: b in f,
        "filtered read",
    )
    assert a not in found
    assert all(r.get(v.deal_stage) == v.other_stage for r in found.values())


@check
def check_chunked_detection_returns_the_same_records_once(s: Subject) -> None:
    v = s.vocab
    if not isinstance(s.adapter, SupportsChunkedDetection):
        return  # optional capability
    ids = {s.crm.seed("deals", {**v.deal, v.deal_name: f"Chunk {i}"}) for i in range(5)}
    whole = eventually(lambda: _changed(s, None), lambda f: ids <= set(f), "seeded")
    chunks = list(s.adapter.changed_since_chunks("deals", None, [v.deal_name], chunk_size=2))
    flat = [r.id for chunk in chunks for r in chunk]
    assert len(flat) == len(set(flat)), f"a record in two chunks: {flat}"
    assert set(flat) == set(whole)


@check
def check_listing_returns_what_a_search_with_no_cursor_returns(s: Subject) -> None:
    """A first sync may list an object instead of searching it (engine/detect.py,
    plan_listing): the same records, ``where``, ``until`` and ``live`` honoured alike."""
    v = s.vocab
    adapter = s.adapter
    if not isinstance(adapter, SupportsListing):
        return  # optional capability (the engine searches)
    asked = [v.deal_name, v.deal_stage]

    def listed(**scope: Any) -> dict[str, Record]:
        chunks = list(adapter.listed_chunks("deals", asked, chunk_size=2, **scope))
        flat = [r for chunk in chunks for r in chunk]
        assert all(len(chunk) <= 2 for chunk in chunks[:-1]) or len(chunks) == 1
        assert len(flat) == len({r.id for r in flat}), f"a record listed twice: {flat}"
        return {r.id: r for r in flat}

    def same(a: dict[str, Record], b: dict[str, Record]) -> bool:
        return {i: (r.archived, r.get(v.deal_name), r.get(v.deal_stage)) for i, r in a.items()} == {
            i: (r.archived, r.get(v.deal_name), r.get(v.deal_stage)) for i, r in b.items()
        }

    ids = {s.crm.seed("deals", {**v.deal, v.deal_name: f"Listed {i}"}) for i in range(3)}
    other = s.crm.seed("deals", {**v.deal, v.deal_stage: v.other_stage})
    gone = s.crm.seed("deals", {**v.deal, v.deal_name: "Gone"})
    s.crm.remove("deals", gone)
    every = ids | {other, gone}
    whole = eventually(lambda: _changed(s, None), lambda f: every <= set(f), "seeded")
    assert same(listed(), whole)
    assert whole[gone].archived
    where = {v.deal_stage: v.other_stage}
    assert same(listed(where=where), _changed(s, None, where=where))
    # ``live``: an adapter may skip the archived records or hand them over as archived
    live = listed(live=True)
    assert ids | {other} <= set(live)
    assert all(r.archived for i, r in live.items() if i not in ids | {other})
    # a record modified after ``until`` is left out, as the search leaves it out
    cut = max(r.updated_at for r in whole.values())
    _later_than(s.adapter, cut)
    late = s.crm.seed("deals", {**v.deal, v.deal_name: "Late"})
    eventually(lambda: _changed(s, None), lambda f: late in f, "late record")
    before = listed(until=cut)
    assert late not in before and ids <= set(before)
    assert same(before, _changed(s, None, until=cut))


@check
def check_read_by_ids_leaves_out_missing_and_archived(s: Subject) -> None:
    v = s.vocab
    a = s.crm.seed("deals", {**v.deal, v.deal_name: "A"})
    b = s.crm.seed("deals", {**v.deal, v.deal_name: "B"})
    s.crm.remove("deals", b)
    missing = v.missing(a)
    got = s.adapter.read("deals", [a, b, missing], [v.deal_name, v.amount])
    assert set(got) == {a}
    assert got[a].id == a and got[a].object_type == "deals"
    assert got[a].get(v.deal_name) == "A" and got[a].get(v.amount) == "100"
    assert s.adapter.read("deals", [], [v.deal_name]) == {}


@check
def check_find_by_property_keys_by_value_and_skips_archived(s: Subject) -> None:
    v = s.vocab
    s.adapter.ensure_properties([SOURCE_SPEC])
    k1, k2, k3 = _key(), _key(), _key()
    a = s.crm.seed("deals", {**v.deal, SOURCE_ID: k1})
    b = s.crm.seed("deals", {**v.deal, SOURCE_ID: k2})
    s.crm.remove("deals", b)
    found = eventually(
        lambda: s.adapter.find_by_property("deals", SOURCE_ID, [k1, k2, k3], [v.deal_name]),
        lambda f: k1 in f,
        "lookup by value",
    )
    assert set(found) == {k1}
    assert found[k1].id == a and found[k1].get(v.deal_name) == v.deal[v.deal_name]


# ---------------------------------------------------------------------- writes


@check
def check_upsert_creates_then_updates_the_same_record(s: Subject) -> None:
    v = s.vocab
    s.adapter.ensure_properties([SOURCE_SPEC])
    key = _key()
    first = s.adapter.upsert("deals", SOURCE_ID, [(key, {**v.deal, v.deal_name: "Up 1"})])
    assert len(first) == 1 and first[0].ok, first
    assert first[0].key == key and first[0].created is True
    assert first[0].record is not None
    rid = first[0].record.id
    again = s.adapter.upsert("deals", SOURCE_ID, [(key, {**v.deal, v.deal_name: "Up 2"})])
    assert again[0].ok and again[0].created is False, again
    assert again[0].record is not None and again[0].record.id == rid
    same = s.adapter.upsert("deals", SOURCE_ID, [(key, {**v.deal, v.deal_name: "Up 2"})])
    assert same[0].ok and same[0].record is not None and same[0].record.id == rid
    holders = [
        i
        for i in s.crm.live_ids("deals")
        if (s.crm.properties("deals", i) or {}).get(SOURCE_ID) == key
    ]
    assert holders == [rid], f"upsert of one key made {holders}"
    assert (s.crm.properties("deals", rid) or {}).get(v.deal_name) == "Up 2"


@check
def check_upsert_batch_gives_one_result_per_item_in_order(s: Subject) -> None:
    v = s.vocab
    s.adapter.ensure_properties([SOURCE_SPEC])
    keys = [_key() for _ in range(3)]
    results = s.adapter.upsert("deals", SOURCE_ID, [(k, {**v.deal, v.deal_name: k}) for k in keys])
    assert [r.key for r in results] == keys
    assert all(r.ok and r.created and r.record is not None for r in results), results
    assert len({r.record.id for r in results if r.record}) == 3


@check
def check_upsert_on_a_non_unique_property_fails_per_record(s: Subject) -> None:
    v = s.vocab
    results = s.adapter.upsert("deals", v.deal_name, [("Nope", v.deal)])
    assert len(results) == 1 and not results[0].ok and results[0].error
    assert s.crm.live_ids("deals") == set()


@check
def check_update_results_per_record_and_a_bad_one_fails_alone(s: Subject) -> None:
    v = s.vocab
    a = s.crm.seed("deals", {**v.deal, v.deal_name: "A"})
    b = s.crm.seed("deals", {**v.deal, v.deal_name: "B"})
    missing = v.missing(b)
    results = s.adapter.update(
        "deals", [(a, {v.deal_name: "A2"}), (missing, {v.deal_name: "X"}), (b, {v.amount: "7"})]
    )
    assert [r.key for r in results] == [a, missing, b]
    assert results[0].ok and results[2].ok, results
    assert not results[1].ok and results[1].error
    assert results[0].record is not None and results[0].record.get(v.deal_name) == "A2"
    assert (s.crm.properties("deals", a) or {}).get(v.deal_name) == "A2"
    assert (s.crm.properties("deals", b) or {}).get(v.amount) == "7"
    assert (s.crm.properties("deals", b) or {}).get(v.deal_name) == "B", "update touched others"


@check
def check_update_of_an_archived_record_fails(s: Subject) -> None:
    v = s.vocab
    rid = s.crm.seed("deals", v.deal)
    s.crm.remove("deals", rid)
    results = s.adapter.update("deals", [(rid, {v.deal_name: "Ghost"})])
    assert not results[0].ok and results[0].error
    assert s.crm.properties("deals", rid) is None


@check
def check_archive_soft_deletes(s: Subject) -> None:
    v = s.vocab
    a = s.crm.seed("deals", {**v.deal, v.deal_name: "A"})
    b = s.crm.seed("deals", {**v.deal, v.deal_name: "B"})
    results = s.adapter.archive("deals", [a])
    assert [r.key for r in results] == [a] and results[0].ok, results
    assert s.crm.properties("deals", a) is None
    assert s.crm.live_ids("deals") == {b}
    assert s.adapter.read("deals", [a, b], [v.deal_name]).keys() == {b}


@check
def check_archive_frees_the_unique_value_for_upsert(s: Subject) -> None:
    v = s.vocab
    s.adapter.ensure_properties([SOURCE_SPEC])
    key = _key()
    first = s.adapter.upsert("deals", SOURCE_ID, [(key, v.deal)])[0]
    assert first.record is not None
    s.adapter.archive("deals", [first.record.id])
    second = s.adapter.upsert("deals", SOURCE_ID, [(key, v.deal)])[0]
    assert second.ok and second.created, second
    assert second.record is not None and second.record.id != first.record.id


@check
def check_unique_email_refused_with_existing_id_on_update(s: Subject) -> None:
    v = s.vocab
    if not v.unique_email:
        return  # e-mail is not unique in this CRM (Salesforce)
    a = s.crm.seed("contacts", v.contact_props("taken@example.com", "A"))
    b = s.crm.seed("contacts", v.contact_props("other@example.com", "B"))
    results = s.adapter.update("contacts", [(b, {v.email: "taken@example.com"})])
    assert not results[0].ok and results[0].error, results
    assert results[0].existing_id == a
    assert (s.crm.properties("contacts", b) or {}).get(v.email) == "other@example.com"


@check
def check_unique_email_refused_with_existing_id_on_upsert(s: Subject) -> None:
    v = s.vocab
    if not v.unique_email:
        return  # e-mail is not unique in this CRM (Salesforce)
    s.adapter.ensure_properties([CONTACT_SOURCE_SPEC])
    a = s.crm.seed("contacts", v.contact_props("Taken@Example.com", "A"))
    key, ok_key = _key(), _key()
    results = s.adapter.upsert(
        "contacts",
        SOURCE_ID,
        [(key, {v.email: "taken@example.com"}), (ok_key, v.contact_props("free@example.com", "F"))],
    )
    assert [r.key for r in results] == [key, ok_key]
    assert not results[0].ok and results[0].existing_id == a, results
    assert results[1].ok and results[1].created, "the good record failed with the bad one"
    assert len(s.crm.live_ids("contacts")) == 2


# ---------------------------------------------------------------------- associations


@check
def check_associate_is_idempotent_and_readable(s: Subject) -> None:
    """Associating twice changes nothing; the associations are read back by id and in
    a change window (an association of which a record may have several: HubSpot's
    deal → companies, Salesforce's deal → contacts)."""
    v = s.vocab
    from_type, to_type = v.many
    one = _seed_of(s, from_type, "one")
    t1, t2 = _seed_of(s, to_type, "one"), _seed_of(s, to_type, "two")
    for _ in range(2):
        results = s.adapter.associate(from_type, to_type, [(one, t1), (one, t2)])
        assert [r.key for r in results] == [one, one] and all(r.ok for r in results), results
    assert s.crm.associated(from_type, one, to_type) == {t1, t2}
    others = [t for t in ("companies", "contacts", "deals") if t not in (from_type, to_type)]
    got = s.adapter.read(from_type, [one], [], associations=[to_type, *others[:1]])
    assert set(got[one].associations.get(to_type, ())) == {t1, t2}
    assert len(got[one].associations[to_type]) == 2
    assert got[one].associations.get(others[0], ()) == ()
    changed = eventually(
        lambda: {
            r.id: r for r in s.adapter.changed_since(from_type, None, [], associations=[to_type])
        },
        lambda f: one in f,
        "record in full read",
    )
    assert set(changed[one].associations.get(to_type, ())) == {t1, t2}


def _seed_of(s: Subject, object_type: str, tag: str) -> str:
    """A valid record of one of the three object types, seeded through the backdoor."""
    v = s.vocab
    if object_type == "deals":
        return s.crm.seed("deals", {**v.deal, v.deal_name: f"Deal {tag}"})
    if object_type == "companies":
        return s.crm.seed("companies", v.company_props(tag.title(), f"{tag}.example"))
    return s.crm.seed("contacts", v.contact_props(f"{tag}@example.com", tag.title()))


@check
def check_associate_with_a_missing_record_fails_alone(s: Subject) -> None:
    v = s.vocab
    deal = s.crm.seed("deals", v.deal)
    company = s.crm.seed("companies", v.company_props("One", "one.example"))
    missing = v.missing(company)
    results = s.adapter.associate("deals", "companies", [(deal, missing), (deal, company)])
    assert len(results) == 2
    assert not results[0].ok and results[1].ok, results
    assert s.crm.associated("deals", deal, "companies") == {company}


# ---------------------------------------------------------------------- schema, counts


@check
def check_ensure_properties_creates_missing_only(s: Subject) -> None:
    v = s.vocab
    specs = [SOURCE_SPEC, PropertySpec("deals", "dealsync_conf_note", "Note")]
    created = s.adapter.ensure_properties(specs)
    assert sorted(created) == ["deals.dealsync_conf_note", f"deals.{SOURCE_ID}"]
    assert {v.custom(SOURCE_ID), v.custom("dealsync_conf_note")} <= s.crm.property_names("deals")
    assert s.adapter.ensure_properties(specs) == []


@check
def check_object_schema_is_none_or_the_crms_real_properties(s: Subject) -> None:
    """``dealsync check --online`` compares mappings with this: either no schema (the
    CRM takes any property) or the properties the backdoor sees, with deal stages."""
    v = s.vocab
    schema = s.adapter.object_schema("deals")
    if schema is None:
        return
    assert set(schema.properties) == s.crm.property_names("deals")
    assert schema.properties[v.amount].type == "number"
    stages = {sid for pipeline in schema.pipelines for sid, _label in pipeline.stages}
    assert v.deal[v.deal_stage] in stages


@check
def check_api_calls_is_a_count_by_kind(s: Subject) -> None:
    v = s.vocab
    s.adapter.read("deals", [s.crm.seed("deals", v.deal)], [v.deal_name])
    calls = s.adapter.api_calls()
    assert isinstance(calls, dict)
    assert all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in calls.items())


# ---------------------------------------------------------------------- backdoors


class LocalBackdoor:
    """The backdoor to a :class:`~connector.adapters.local.LocalCRM`: its direct methods."""

    def __init__(self, crm: LocalCRM) -> None:
        self.crm = crm

    def seed(self, object_type: str, properties: Mapping[str, str]) -> str:
        return self.crm.create(object_type, properties).id

    def edit(self, object_type: str, rid: str, properties: Mapping[str, str]) -> None:
        self.crm.edit(object_type, rid, properties)

    def remove(self, object_type: str, rid: str) -> None:
        self.crm.remove(object_type, rid)

    def properties(self, object_type: str, rid: str) -> dict[str, str | None] | None:
        try:
            return dict(self.crm.get(object_type, rid, include_archived=False).properties)
        except KeyError:
            return None

    def live_ids(self, object_type: str) -> set[str]:
        return {r.id for r in self.crm.all(object_type)}

    def associated(self, from_type: str, rid: str, to_type: str) -> set[str]:
        ids = self.crm.get(from_type, rid).associations.get(to_type, ())
        live = self.live_ids(to_type)
        return {i for i in ids if i in live}

    def property_names(self, object_type: str) -> set[str]:
        rows = self.crm._db.execute(
            "SELECT name FROM property WHERE object_type=?", (object_type,)
        ).fetchall()
        return {r[0] for r in rows}


class SandboxBackdoor:
    """The backdoor to one sandbox portal (``SandboxServer.portal(name)``)."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def seed(self, object_type: str, properties: Mapping[str, str]) -> str:
        return str(self.portal.create(object_type, properties)["id"])

    def edit(self, object_type: str, rid: str, properties: Mapping[str, str]) -> None:
        self.portal.update(object_type, rid, properties)

    def remove(self, object_type: str, rid: str) -> None:
        self.portal.archive(object_type, rid)

    def properties(self, object_type: str, rid: str) -> dict[str, str | None] | None:
        found = self.portal.get(object_type, rid, archived=False)
        return None if found is None else dict(found["properties"])

    def live_ids(self, object_type: str) -> set[str]:
        return {str(r["id"]) for r in self.portal.all(object_type)}

    def associated(self, from_type: str, rid: str, to_type: str) -> set[str]:
        return {str(a["toObjectId"]) for a in self.portal.associations_of(from_type, rid, to_type)}

    def property_names(self, object_type: str) -> set[str]:
        return {str(p["name"]) for p in self.portal.list_properties(object_type)}


@check
def check_naming_is_complete_and_its_markers_work(s: Subject) -> None:
    """The adapter names the connector's markers and the program's objects
    (``adapter.naming``): every name usable, and its source-id marker works as the
    unique-value property that creates are idempotent on, found again by value with
    its partner marker (what the engine does with them)."""
    v = s.vocab
    naming = s.adapter.naming
    assert naming.problems() == []
    s.adapter.ensure_properties(
        [
            PropertySpec(naming.deals, naming.source_id, "dealsync source id", unique=True),
            PropertySpec(naming.deals, naming.partner_id, "dealsync partner"),
        ]
    )
    assert set(naming.markers) <= s.crm.property_names(naming.deals)
    key = _key()
    for _ in range(2):
        (res,) = s.adapter.upsert(
            naming.deals, naming.source_id, [(key, {**v.deal, naming.partner_id: "acme"})]
        )
        assert res.error is None and res.record is not None
    found = eventually(
        lambda: s.adapter.find_by_property(
            naming.deals, naming.source_id, [key], [naming.partner_id]
        ),
        lambda f: key in f,
        "the record upserted on the naming's source-id marker",
    )
    assert found[key].get(naming.partner_id) == "acme"
    holders = [
        i
        for i in s.crm.live_ids(naming.deals)
        if (s.crm.properties(naming.deals, i) or {}).get(naming.source_id) == key
    ]
    assert holders == [found[key].id]  # upserted twice, one record
