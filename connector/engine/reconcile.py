"""Reconcile: base + partner + vendor → plan. Pure: no I/O, no clock, no randomness.

Per field, a three-way merge in the manner of Unison's ``recon.ml``: compare each
side's canonical value with the base (the last value both sides agreed on).

==============  ==============  ==============================================
partner         vendor          outcome
==============  ==============  ==============================================
unchanged       unchanged       nothing
changed         unchanged       copy to vendor if the direction allows it
unchanged       changed         copy to partner if the direction allows it
changed         changed, equal  no write; the base moves
changed         changed, differ conflict → the field's policy decides
==============  ==============  ==============================================

A one-way field edited on its target side is set back to the source's value (the
target is a mirror). ``create_only`` fields are written once, when the counterpart is
created, and never again; later edits on either side are accepted as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from connector.config.models import FieldMapping, ObjectMapping, Transform
from connector.engine.plan import (
    Action,
    Base,
    Conflict,
    Create,
    Delete,
    RecordError,
    Update,
)
from connector.engine.values import ValueError_, ValueMapper, canonical
from connector.records import Record, Side

Pair = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class PairState:
    """What reconcile knows about one shared record in this pass.

    For a linked pair, a side whose record is ``None`` did not change since the base
    (it was not in this pass's change set), so its values are the base's. For an
    unlinked record exactly one side is given and ``eligible`` says whether it should be
    shared (it matches the mapping's filter, or hangs on a shared record).
    """

    link_id: int | None
    partner_id: str | None
    vendor_id: str | None
    partner: Record | None
    vendor: Record | None
    base: Base | None = None
    eligible: bool = False


class FieldPlan:
    """The compiled form of one object mapping, built once per pass."""

    def __init__(self, mapping: ObjectMapping) -> None:
        self.mapping = mapping
        self.fields: list[tuple[FieldMapping, ValueMapper]] = [
            (f, ValueMapper(f)) for f in mapping.fields
        ]
        # The hot loop's view of the fields, resolved once (reconcile_pair runs per
        # record × field): the base key, both property names, and whether the
        # transform is the identity (string/enum: canonical is "no value" or the text).
        self.hot: list[tuple[FieldMapping, ValueMapper, str, str, str, bool]] = [
            (f, m, f.key, f.partner, f.vendor, f.transform in ("string", "enum"))
            for f, m in self.fields
        ]
        self._canon: dict[tuple[str, str | None], str | None] = {}

    def canonical(self, transform: Transform, raw: str | None) -> str | None:
        """:func:`canonical`, memoised (it is pure; errors are not cached): the same
        amounts and dates recur on both sides and across records."""
        k = (transform, raw)
        try:
            return self._canon[k]
        except KeyError:
            pass
        value = canonical(transform, raw)
        if len(self._canon) >= 200_000:
            self._canon.clear()
        self._canon[k] = value
        return value

    def partner_properties(self) -> list[str]:
        return sorted({f.partner for f in self.mapping.fields})

    def vendor_properties(self) -> list[str]:
        return sorted({f.vendor for f in self.mapping.fields})


def _wire(value: str | None) -> str:
    """How a canonical value is written: HubSpot clears a property with ``""``."""
    return "" if value is None else value


def _now(compiled: FieldPlan, field: FieldMapping, raw: str | None, plain: bool) -> str | None:
    """A side's current canonical value of ``field`` (the hot loop's :func:`_read`):
    canonical() of a string or enum is the text itself, with "" as None."""
    return (raw or None) if plain else compiled.canonical(field.transform, raw)


def _read(field: FieldMapping, side: Side, record: Record) -> str | None:
    name = field.partner if side == "partner" else field.vendor
    return canonical(field.transform, record.properties.get(name))


def plan_create(compiled: FieldPlan, source_side: Side, record: Record) -> Create | RecordError:
    """The counterpart of an unlinked, eligible record, with the base it will have."""
    target: Side = "vendor" if source_side == "partner" else "partner"
    props: dict[str, str] = {}
    base: dict[str, Pair] = {}
    for field, mapper in compiled.fields:
        try:
            value = _read(field, source_side, record)
            writable = field.direction in ("both", "create_only") or (
                field.direction == ("to_vendor" if target == "vendor" else "to_partner")
            )
            if source_side == "partner":
                mapped = mapper.to_vendor(value) if writable else None
            else:
                mapped = mapper.to_partner(value) if writable else None
            if mapped is None and writable and field.default is not None:
                mapped = canonical(field.transform, field.default)
        except ValueError_ as exc:
            return RecordError(
                compiled.mapping.name, source_side, record.id, _name(field, source_side), str(exc)
            )
        if writable and mapped is not None:
            props[field.vendor if target == "vendor" else field.partner] = mapped
        base[field.key] = (value, mapped) if source_side == "partner" else (mapped, value)
    return Create(compiled.mapping.name, target, record.id, props, base)


def _name(field: FieldMapping, side: Side) -> str:
    return field.partner if side == "partner" else field.vendor


def reconcile_pair(compiled: FieldPlan, state: PairState) -> list[Action]:
    """Plan one shared record. See the module docstring for the merge table."""
    name = compiled.mapping.name
    if state.link_id is None:
        if not state.eligible:
            return []
        if state.partner is not None and state.vendor is None:
            if state.partner.archived:
                return []
            return [plan_create(compiled, "partner", state.partner)]
        if state.vendor is not None and state.partner is None:
            if state.vendor.archived:
                return []
            return [plan_create(compiled, "vendor", state.vendor)]
        return []

    assert state.partner_id is not None and state.vendor_id is not None
    partner_gone = state.partner is not None and state.partner.archived
    vendor_gone = state.vendor is not None and state.vendor.archived
    if partner_gone and vendor_gone:
        return [Delete(name, state.link_id, "partner", state.vendor_id, "unlink")]
    if partner_gone:
        return [Delete(name, state.link_id, "partner", state.vendor_id, compiled.mapping.on_delete)]
    if vendor_gone:
        return [Delete(name, state.link_id, "vendor", state.partner_id, compiled.mapping.on_delete)]

    base = state.base or {}
    new_base: dict[str, Pair] = {}  # the fields whose base moves; merged into base below
    to_partner: dict[str, str] = {}
    to_vendor: dict[str, str] = {}
    reasons: list[str] = []
    actions: list[Action] = []
    base_moved = False
    p_props = state.partner.properties if state.partner else None
    v_props = state.vendor.properties if state.vendor else None
    for field, mapper, key, p_name, v_name, plain in compiled.hot:
        known = key in base
        base_p, base_v = base.get(key) or (None, None)
        # a side not seen this pass still has its base values
        try:
            p = base_p if p_props is None else _now(compiled, field, p_props.get(p_name), plain)
        except ValueError_ as exc:
            return [RecordError(name, "partner", state.partner_id, field.partner, str(exc))]
        try:
            v = base_v if v_props is None else _now(compiled, field, v_props.get(v_name), plain)
        except ValueError_ as exc:
            return [RecordError(name, "vendor", state.vendor_id, field.vendor, str(exc))]
        # A field new to the base (added to the mapping after the link): a side with
        # no value has nothing to lose, so it counts as unchanged and receives the
        # other side's value instead of erasing it.
        p_changed = p != base_p if known else p is not None
        v_changed = v != base_v if known else v is not None
        if not p_changed and not v_changed:
            continue
        try:
            p_as_v = mapper.to_vendor(p)
            v_as_p = mapper.to_partner(v)
        except ValueError_ as exc:
            bad_side: Side = "partner" if "partner value" in str(exc) else "vendor"
            rid = state.partner_id if bad_side == "partner" else state.vendor_id
            return [RecordError(name, bad_side, rid, _name(field, bad_side), str(exc))]

        base_moved = base_moved or winner_is_not_manual(field, p_changed, v_changed, p_as_v, v)
        if p_as_v == v:  # already agree (includes both changed to the same value)
            new_base[key] = (p, v)
            continue
        winner = _winner(field, p_changed, v_changed, state.partner, state.vendor)
        if winner == "partner":
            to_vendor[field.vendor] = _wire(p_as_v)
            new_base[key] = (p, p_as_v)
            reasons.append(f"{field.vendor}: partner → vendor")
        elif winner == "vendor":
            to_partner[field.partner] = _wire(v_as_p)
            new_base[key] = (v_as_p, v)
            reasons.append(f"{field.partner}: vendor → partner")
        elif winner == "keep":
            new_base[key] = (p, v)
        else:  # manual conflict: leave both sides and the base alone
            actions.append(
                Conflict(
                    name,
                    state.link_id,
                    state.partner_id,
                    state.vendor_id,
                    field.key,
                    p,
                    v,
                    base_p,
                    base_v,
                )
            )
    if to_partner or to_vendor or base_moved:
        actions.insert(
            0,
            Update(
                name,
                state.link_id,
                state.partner_id,
                state.vendor_id,
                to_partner,
                to_vendor,
                {**base, **new_base},
                tuple(reasons),
            ),
        )
    return actions


def winner_is_not_manual(
    field: FieldMapping, p_changed: bool, v_changed: bool, p_as_v: str | None, v: str | None
) -> bool:
    """Whether settling this field moves the base (everything but an open conflict)."""
    if p_as_v == v or field.direction != "both" or not (p_changed and v_changed):
        return True
    return field.conflict != "manual"


def _winner(
    field: FieldMapping,
    p_changed: bool,
    v_changed: bool,
    partner: Record | None,
    vendor: Record | None,
) -> str:
    """Which side's value stands: ``partner``, ``vendor``, ``keep`` (both as they are)
    or ``manual``."""
    d = field.direction
    if d == "create_only":
        return "keep"
    if d == "to_vendor":
        return "partner"  # the partner is the source; a vendor-side edit is undone
    if d == "to_partner":
        return "vendor"
    if p_changed and not v_changed:
        return "partner"
    if v_changed and not p_changed:
        return "vendor"
    policy = field.conflict
    if policy == "partner_wins":
        return "partner"
    if policy == "vendor_wins":
        return "vendor"
    if policy == "newest":
        p_time = partner.updated_at if partner else None
        v_time = vendor.updated_at if vendor else None
        if p_time is None:
            return "vendor"
        if v_time is None:
            return "partner"
        return "partner" if _later(p_time, v_time) else "vendor"
    return "manual"


def _later(a: datetime, b: datetime) -> bool:
    """Strictly later; a tie goes to the vendor, the program's system of record."""
    return a > b


def reconcile(mapping: ObjectMapping | FieldPlan, states: Iterable[PairState]) -> list[Action]:
    """Plan every pair of one object mapping."""
    compiled = mapping if isinstance(mapping, FieldPlan) else FieldPlan(mapping)
    out: list[Action] = []
    for state in states:
        out.extend(reconcile_pair(compiled, state))
    return out


def matches(conditions: Sequence[object] | None, properties: Mapping[str, str | None]) -> bool:
    """Whether a record's properties satisfy every share condition (none = no match)."""
    if not conditions:
        return False
    for cond in conditions:
        value = properties.get(cond.property)  # type: ignore[attr-defined]
        value = None if value == "" else value
        if cond.equals is not None and (value is None or value.lower() != cond.equals.lower()):  # type: ignore[attr-defined]
            return False
        if cond.is_in is not None and value not in cond.is_in:  # type: ignore[attr-defined]
            return False
        if cond.present is not None and (value is not None) != cond.present:  # type: ignore[attr-defined]
            return False
    return True
