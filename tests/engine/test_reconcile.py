"""Table-driven tests of the pure three-way merge: base + partner + vendor → actions.

Each case is one row: the field under test, the base, each side's current value (or
"not in this pass"), and the expected outcome. No fixtures, no I/O: reconcile is pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.config.models import Condition, FieldMapping, ObjectMapping, ShareRule
from connector.engine.plan import Conflict, Create, Delete, RecordError, Update
from connector.engine.reconcile import FieldPlan, PairState, reconcile, reconcile_pair
from connector.records import Record

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
EARLY, LATE = T0, T0 + timedelta(minutes=5)
UNSEEN = object()  # the side was not in this pass's change set: it reads as the base

P_ID, V_ID, LINK = "p1", "v1", 7


def fm(**kw: Any) -> FieldMapping:
    kw.setdefault("partner", "f")
    kw.setdefault("vendor", "g")
    return FieldMapping(**kw)


def mapping(*fields: FieldMapping, on_delete: str = "archive") -> ObjectMapping:
    return ObjectMapping(
        name="deals",
        partner_object="deals",
        vendor_object="deals",
        share=ShareRule(partner=[Condition(property="dealsync_register", equals="true")]),
        on_delete=on_delete,  # type: ignore[arg-type]
        fields=list(fields),
    )


def rec(
    rid: str, props: dict[str, str | None], at: datetime = T0, archived: bool = False
) -> Record:
    return Record("deals", rid, props, at, archived)


@dataclass(frozen=True)
class Case:
    """One merge of one field ``f`` (partner) / ``g`` (vendor)."""

    id: str
    field: FieldMapping
    base: tuple[str | None, str | None] | None  # None: the field is not in the base yet
    partner: object  # value, or UNSEEN
    vendor: object
    to_partner: dict[str, str] | None  # expected writes; None = no Update action at all
    to_vendor: dict[str, str] | None
    new_base: tuple[str | None, str | None] | None = None
    partner_at: datetime = T0
    vendor_at: datetime = T0
    conflict: bool = False


def run_case(case: Case) -> list[Any]:
    base = {} if case.base is None else {case.field.key: case.base}
    partner = None if case.partner is UNSEEN else rec(P_ID, {"f": case.partner}, case.partner_at)  # type: ignore[dict-item]
    vendor = None if case.vendor is UNSEEN else rec(V_ID, {"g": case.vendor}, case.vendor_at)  # type: ignore[dict-item]
    state = PairState(LINK, P_ID, V_ID, partner, vendor, base)
    return reconcile_pair(FieldPlan(mapping(case.field)), state)


BOTH = fm()
STAGES = {"p_new": "v_open", "p_won": "v_closedwon", "p_lost": "v_closedlost"}

# fmt: off
MERGE_CASES = [
    # ------------------------------------------------------------ the merge table
    Case("neither-changed", BOTH, ("a", "a"), "a", "a", None, None),
    Case("neither-changed-both-unseen", BOTH, ("a", "a"), UNSEEN, UNSEEN, None, None),
    Case("partner-only", BOTH, ("a", "a"), "b", "a", {}, {"g": "b"}, ("b", "b")),
    Case("partner-only-vendor-unseen", BOTH, ("a", "a"), "b", UNSEEN, {}, {"g": "b"}, ("b", "b")),
    Case("vendor-only", BOTH, ("a", "a"), "a", "c", {"f": "c"}, {}, ("c", "c")),
    Case("vendor-only-partner-unseen", BOTH, ("a", "a"), UNSEEN, "c", {"f": "c"}, {}, ("c", "c")),
    Case("partner-cleared", BOTH, ("a", "a"), None, "a", {}, {"g": ""}, (None, None)),
    Case("both-same", BOTH, ("a", "a"), "z", "z", {}, {}, ("z", "z")),
    # ------------------------------------------------------------ both differ, per policy
    Case("differ-vendor_wins", fm(conflict="vendor_wins"), ("a", "a"), "b", "c", {"f": "c"}, {}, ("c", "c")),
    Case("differ-partner_wins", fm(conflict="partner_wins"), ("a", "a"), "b", "c", {}, {"g": "b"}, ("b", "b")),
    Case("differ-newest-partner-newer", fm(conflict="newest"), ("a", "a"), "b", "c", {}, {"g": "b"}, ("b", "b"), partner_at=LATE, vendor_at=EARLY),
    Case("differ-newest-vendor-newer", fm(conflict="newest"), ("a", "a"), "b", "c", {"f": "c"}, {}, ("c", "c"), partner_at=EARLY, vendor_at=LATE),
    Case("differ-newest-tie-goes-to-vendor", fm(conflict="newest"), ("a", "a"), "b", "c", {"f": "c"}, {}, ("c", "c"), partner_at=T0, vendor_at=T0),
    Case("differ-manual", fm(conflict="manual"), ("a", "a"), "b", "c", None, None, conflict=True),
    # ------------------------------------------------------------ directions
    Case("both-dir-partner-changed", fm(direction="both"), ("a", "a"), "b", "a", {}, {"g": "b"}, ("b", "b")),
    Case("both-dir-vendor-changed", fm(direction="both"), ("a", "a"), "a", "c", {"f": "c"}, {}, ("c", "c")),
    Case("to_vendor-partner-changed", fm(direction="to_vendor"), ("a", "a"), "b", "a", {}, {"g": "b"}, ("b", "b")),
    Case("to_vendor-vendor-edited-is-reasserted", fm(direction="to_vendor"), ("a", "a"), "a", "c", {}, {"g": "a"}, ("a", "a")),
    Case("to_vendor-both-changed-partner-stands", fm(direction="to_vendor", conflict="manual"), ("a", "a"), "b", "c", {}, {"g": "b"}, ("b", "b")),
    Case("to_partner-vendor-changed", fm(direction="to_partner"), ("a", "a"), "a", "c", {"f": "c"}, {}, ("c", "c")),
    Case("to_partner-partner-edited-is-reasserted", fm(direction="to_partner"), ("a", "a"), "b", "a", {"f": "a"}, {}, ("a", "a")),
    Case("create_only-partner-changed-kept", fm(direction="create_only"), ("a", "a"), "b", "a", {}, {}, ("b", "a")),
    Case("create_only-vendor-changed-kept", fm(direction="create_only"), ("a", "a"), "a", "c", {}, {}, ("a", "c")),
    Case("create_only-both-changed-kept", fm(direction="create_only", conflict="manual"), ("a", "a"), "b", "c", {}, {}, ("b", "c")),
    # ------------------------------------------------------------ value maps
    Case("value_map-partner-to-vendor", fm(transform="enum", value_map=STAGES), ("p_new", "v_open"), "p_won", "v_open", {}, {"g": "v_closedwon"}, ("p_won", "v_closedwon")),
    Case("value_map-vendor-to-partner", fm(transform="enum", value_map=STAGES), ("p_new", "v_open"), "p_new", "v_closedlost", {"f": "p_lost"}, {}, ("p_lost", "v_closedlost")),
    Case("value_map-both-same-meaning", fm(transform="enum", value_map=STAGES), ("p_new", "v_open"), "p_won", "v_closedwon", {}, {}, ("p_won", "v_closedwon")),
    Case("value_map-unchanged", fm(transform="enum", value_map=STAGES), ("p_new", "v_open"), "p_new", "v_open", None, None),
    # ------------------------------------------------------------ canonical forms
    Case("decimal-1500.00-is-1500", fm(transform="decimal"), ("1500", "1500"), "1500.00", "1500.0", None, None),
    Case("decimal-real-change", fm(transform="decimal"), ("1500", "1500"), "1500.50", "1500", {}, {"g": "1500.5"}, ("1500.5", "1500.5")),
    Case("date-datetime-midnight-is-date", fm(transform="date"), ("2027-03-31", "2027-03-31"), "2027-03-31T00:00:00.000Z", "2027-03-31", None, None),
    Case("date-epoch-millis-is-date", fm(transform="date"), ("2027-03-31", "2027-03-31"), "2027-03-31", "1806451200000", None, None),
    Case("integer-10.0-is-10", fm(transform="integer"), ("10", "10"), "10.0", "10", None, None),
    Case("bool-yes-is-true", fm(transform="bool"), ("true", "true"), "yes", "TRUE", None, None),
    Case("empty-string-is-no-value", BOTH, (None, None), "", None, None, None),
    # ------------------------------------------------------------ a field new to the base
    Case("new-field-equal", BOTH, None, "x", "x", {}, {}, ("x", "x")),
    Case("new-field-only-partner-has-value", BOTH, None, "x", None, {}, {"g": "x"}, ("x", "x")),
    Case("new-field-only-vendor-has-value", BOTH, None, None, "y", {"f": "y"}, {}, ("y", "y")),
    Case("new-field-differ-policy-decides", fm(conflict="partner_wins"), None, "x", "y", {}, {"g": "x"}, ("x", "x")),
    Case("new-field-differ-manual", fm(conflict="manual"), None, "x", "y", None, None, conflict=True ),
]
# fmt: on


@pytest.mark.parametrize("case", MERGE_CASES, ids=lambda c: c.id)
def test_merge_one_field(case: Case) -> None:
    actions = run_case(case)
    updates = [a for a in actions if isinstance(a, Update)]
    conflicts = [a for a in actions if isinstance(a, Conflict)]
    assert not [a for a in actions if isinstance(a, (RecordError, Create, Delete))], actions
    if case.to_partner is None:
        assert updates == [], "no write and no base move expected"
    else:
        assert len(updates) == 1
        u = updates[0]
        assert (u.partner_properties, u.vendor_properties) == (case.to_partner, case.to_vendor)
        assert tuple(u.base[case.field.key]) == case.new_base
        assert (u.link_id, u.partner_id, u.vendor_id) == (LINK, P_ID, V_ID)
    if case.conflict:
        assert len(conflicts) == 1
        c = conflicts[0]
        assert (c.field, c.partner_value, c.vendor_value) == (
            case.field.key,
            "x" if case.base is None else "b",
            "y" if case.base is None else "c",
        )
        assert (c.base_partner, c.base_vendor) == (case.base or (None, None))
        assert (c.link_id, c.partner_id, c.vendor_id) == (LINK, P_ID, V_ID)
    else:
        assert conflicts == []


def test_manual_conflict_leaves_its_base_alone_while_other_fields_move() -> None:
    """A pair with a manual conflict and an ordinary change: the Update carries the
    ordinary field and keeps the conflicting field's old base."""
    amount = fm(partner="amount", vendor="amount", transform="decimal")
    desc = fm(partner="description", vendor="description", conflict="manual")
    base = {amount.key: ("10", "10"), desc.key: ("old", "old")}
    state = PairState(
        LINK,
        P_ID,
        V_ID,
        rec(P_ID, {"amount": "20", "description": "mine"}),
        rec(V_ID, {"amount": "10", "description": "theirs"}),
        base,
    )
    actions = reconcile_pair(FieldPlan(mapping(amount, desc)), state)
    update = next(a for a in actions if isinstance(a, Update))
    conflict = next(a for a in actions if isinstance(a, Conflict))
    assert update.vendor_properties == {"amount": "20"}
    assert update.partner_properties == {}
    assert tuple(update.base[desc.key]) == ("old", "old")
    assert tuple(update.base[amount.key]) == ("20", "20")
    assert (conflict.field, conflict.partner_value, conflict.vendor_value) == (
        desc.key,
        "mine",
        "theirs",
    )


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("partner_value", "vendor_value", "side", "record_id", "prop"),
    [
        pytest.param("p_bogus", "v_open", "partner", P_ID, "f", id="unmapped-partner-value"),
        pytest.param("p_new", "v_bogus", "vendor", V_ID, "g", id="unmapped-vendor-value"),
    ],
)
def test_unmapped_value_is_a_record_error(
    partner_value: str, vendor_value: str, side: str, record_id: str, prop: str
) -> None:
    field = fm(transform="enum", value_map=STAGES)
    state = PairState(
        LINK,
        P_ID,
        V_ID,
        rec(P_ID, {"f": partner_value}),
        rec(V_ID, {"g": vendor_value}),
        {field.key: ("p_new", "v_open")},
    )
    [error] = reconcile_pair(FieldPlan(mapping(field)), state)
    assert isinstance(error, RecordError)
    assert (error.side, error.record_id, error.field) == (side, record_id, prop)
    assert "value_map" in error.message
    assert side in str(error) and record_id in str(error) and prop in str(error)


@pytest.mark.parametrize(
    ("partner_value", "vendor_value", "side", "record_id", "prop"),
    [
        pytest.param("abc", "10", "partner", P_ID, "amount_p", id="partner-amount-abc"),
        pytest.param("10", "abc", "vendor", V_ID, "amount_v", id="vendor-amount-abc"),
    ],
)
def test_transform_error_is_a_record_error(
    partner_value: str, vendor_value: str, side: str, record_id: str, prop: str
) -> None:
    field = fm(partner="amount_p", vendor="amount_v", transform="decimal")
    state = PairState(
        LINK,
        P_ID,
        V_ID,
        rec(P_ID, {"amount_p": partner_value}),
        rec(V_ID, {"amount_v": vendor_value}),
        {field.key: ("10", "10")},
    )
    [error] = reconcile_pair(FieldPlan(mapping(field)), state)
    assert isinstance(error, RecordError)
    assert (error.object, error.side, error.record_id, error.field) == (
        "deals",
        side,
        record_id,
        prop,
    )
    assert "abc" in error.message


def test_transform_error_on_create_names_the_source() -> None:
    field = fm(partner="amount", vendor="amount", transform="decimal")
    state = PairState(None, P_ID, None, rec(P_ID, {"amount": "abc"}), None, eligible=True)
    [error] = reconcile_pair(FieldPlan(mapping(field)), state)
    assert isinstance(error, RecordError)
    assert (error.side, error.record_id, error.field) == ("partner", P_ID, "amount")


# ---------------------------------------------------------------------- deletes


@pytest.mark.parametrize("policy", ["archive", "unlink", "flag"])
@pytest.mark.parametrize(
    ("partner_archived", "vendor_archived", "gone", "counterpart"),
    [
        pytest.param(True, False, "partner", V_ID, id="partner-archived"),
        pytest.param(False, True, "vendor", P_ID, id="vendor-archived"),
    ],
)
def test_archived_side_plans_the_mappings_delete_policy(
    policy: str, partner_archived: bool, vendor_archived: bool, gone: str, counterpart: str
) -> None:
    state = PairState(
        LINK,
        P_ID,
        V_ID,
        rec(P_ID, {"f": "a"}, archived=partner_archived),
        rec(V_ID, {"g": "a"}, archived=vendor_archived),
        {BOTH.key: ("a", "a")},
    )
    actions = reconcile_pair(FieldPlan(mapping(BOTH, on_delete=policy)), state)
    assert actions == [Delete("deals", LINK, gone, counterpart, policy)]  # type: ignore[arg-type]


def test_archived_partner_with_unseen_vendor_still_deletes() -> None:
    state = PairState(LINK, P_ID, V_ID, rec(P_ID, {}, archived=True), None, {})
    assert reconcile_pair(FieldPlan(mapping(BOTH)), state) == [
        Delete("deals", LINK, "partner", V_ID, "archive")
    ]


def test_both_archived_just_unlinks() -> None:
    state = PairState(
        LINK, P_ID, V_ID, rec(P_ID, {}, archived=True), rec(V_ID, {}, archived=True), {}
    )
    assert reconcile_pair(FieldPlan(mapping(BOTH, on_delete="archive")), state) == [
        Delete("deals", LINK, "partner", V_ID, "unlink")
    ]


# ---------------------------------------------------------------------- creates

DEAL_FIELDS = (
    fm(partner="dealname", vendor="dealname", direction="create_only"),
    fm(partner="amount", vendor="amount", transform="decimal", conflict="newest"),
    fm(partner="stage", vendor="dealstage", transform="enum", value_map=STAGES),
    fm(
        partner="pipeline",
        vendor="pipeline",
        direction="create_only",
        transform="enum",
        value_map={"default": "default"},
        default="default",
    ),
    fm(partner="p_only", vendor="v_only", direction="to_partner"),
    fm(partner="out", vendor="out_v", direction="to_vendor"),
)


def test_unlinked_eligible_partner_record_is_created_on_the_vendor_side() -> None:
    source = rec(
        P_ID,
        {
            "dealname": "Big deal",
            "amount": "1500.00",
            "stage": "p_new",
            "p_only": "ignored",
            "out": "o",
        },
    )
    [create] = reconcile_pair(
        FieldPlan(mapping(*DEAL_FIELDS)), PairState(None, P_ID, None, source, None, eligible=True)
    )
    assert isinstance(create, Create)
    assert (create.target, create.source_id) == ("vendor", P_ID)
    assert create.properties == {
        "dealname": "Big deal",
        "amount": "1500",
        "dealstage": "v_open",
        "pipeline": "default",  # the default fills the missing source value
        "out_v": "o",
    }
    assert {k: tuple(v) for k, v in create.base.items()} == {
        "dealname>dealname": ("Big deal", "Big deal"),
        "amount>amount": ("1500", "1500"),
        "stage>dealstage": ("p_new", "v_open"),
        "pipeline>pipeline": (None, "default"),
        "p_only>v_only": ("ignored", None),
        "out>out_v": ("o", "o"),
    }


def test_unlinked_eligible_vendor_record_is_created_on_the_partner_side() -> None:
    source = Record(
        "deals",
        V_ID,
        {
            "dealname": "From vendor",
            "amount": "10",
            "dealstage": "v_closedwon",
            "v_only": "x",
            "out_v": "not copied back",
        },
        T0,
    )
    [create] = reconcile_pair(
        FieldPlan(mapping(*DEAL_FIELDS)), PairState(None, None, V_ID, None, source, eligible=True)
    )
    assert isinstance(create, Create)
    assert (create.target, create.source_id) == ("partner", V_ID)
    assert create.properties == {
        "dealname": "From vendor",
        "amount": "10",
        "stage": "p_won",
        "pipeline": "default",
        "p_only": "x",
    }
    assert tuple(create.base["stage>dealstage"]) == ("p_won", "v_closedwon")
    assert tuple(create.base["out>out_v"]) == (None, "not copied back")


def test_create_with_an_unmapped_value_is_a_record_error() -> None:
    source = rec(P_ID, {"dealname": "x", "stage": "p_bogus"})
    [error] = reconcile_pair(
        FieldPlan(mapping(*DEAL_FIELDS)), PairState(None, P_ID, None, source, None, eligible=True)
    )
    assert isinstance(error, RecordError)
    assert (error.side, error.record_id, error.field) == ("partner", P_ID, "stage")


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(PairState(None, P_ID, None, rec(P_ID, {"f": "a"}), None), id="not-eligible"),
        pytest.param(
            PairState(None, P_ID, None, rec(P_ID, {"f": "a"}, archived=True), None, eligible=True),
            id="eligible-but-archived",
        ),
        pytest.param(
            PairState(None, None, V_ID, None, rec(V_ID, {"g": "a"})), id="vendor-not-eligible"
        ),
    ],
)
def test_unlinked_records_that_are_not_shared_plan_nothing(state: PairState) -> None:
    assert reconcile_pair(FieldPlan(mapping(BOTH)), state) == []


def test_reconcile_is_pure_and_repeatable() -> None:
    """Same input, same plan; the inputs are not mutated."""
    base = {BOTH.key: ("a", "a")}
    states = [
        PairState(LINK, P_ID, V_ID, rec(P_ID, {"f": "b"}), rec(V_ID, {"g": "a"}), base),
        PairState(None, "p2", None, rec("p2", {"f": "n"}), None, eligible=True),
    ]
    first = reconcile(mapping(BOTH), states)
    assert reconcile(mapping(BOTH), states) == first
    assert base == {BOTH.key: ("a", "a")}
    assert [type(a) for a in first] == [Update, Create]
