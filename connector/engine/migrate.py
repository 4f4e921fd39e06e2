"""Mapping migrations: what a pass does when the mapping changed since the last one.

dealsync records, per connection, the mapping it last synced with as a fingerprint:
per object the hash of its share condition, and per field (by its base key) the
hashes of the field's effective definition — both property names, direction,
transform, value map and conflict policy (a field's ``default`` only fills a record
being created, so changing it migrates nothing). A pass compares the recorded
fingerprint with its mapping and plans (:func:`plan_migration`):

- a field **added** → backfilled on every linked record of the object: both sides
  are read by id in batches and the field is merged with no base — one side empty
  takes the other's value, both set and different go to the field's policy
  (reconcile's rule for a field new to the base);
- a field **removed** → its base is dropped from every link, its open conflicts
  resolved ("field removed from mapping"), nothing written to the CRMs;
- a field whose **value map, transform or direction** changed (or whose property
  names did, under the same key) → re-evaluated like an added field: the old base
  was taken under the old definition, so it is forgotten for that field;
- a changed **conflict policy** only decides future conflicts: recorded, nothing read;
- a changed **share condition** is reported, and records already shared keep syncing
  (as HubSpot's Data Sync does): links are never ended by a new condition; records
  that now match become shared when they next change (or are re-read by a full sync).

The first pass of a connection (nothing recorded) records the fingerprint and
migrates nothing. A dry run plans and reports the migration but records nothing; a
real pass records the new fingerprint only after the migration's writes committed
without a record error, so a crash (or a failed record) mid-migration runs it again
next pass — harmless, as pairs already migrated now agree.

Reconcile stays pure: the migration only chooses which linked records are read and
which fields' bases are forgotten for them (:func:`forget_bases`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from connector.config.models import FieldMapping, ObjectMapping
from connector.engine import gather
from connector.engine.reconcile import PairState
from connector.records import Record, Side

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass

FIELD_PARTS = ("partner", "vendor", "direction", "transform", "value_map", "conflict")
"""The parts of a field's definition the fingerprint covers, in the order reported."""

REEVALUATE = frozenset({"partner", "vendor", "direction", "transform", "value_map"})
"""Parts whose change makes the field's base meaningless: the field is merged again
with no base on every linked record."""


def _hash(value: object) -> str:
    """A short stable hash of a JSON-able value (sorted keys: a YAML reorder is no change)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def field_fingerprint(f: FieldMapping) -> dict[str, str]:
    """One hash per part of the field's definition (so history can say which changed)."""
    dumped = f.model_dump(mode="json")
    return {part: _hash(dumped.get(part)) for part in FIELD_PARTS}


def fingerprint(mappings: Sequence[ObjectMapping]) -> dict[str, Any]:
    """The mapping's canonical fingerprint: object name → its objects, share condition
    and fields (base key → :func:`field_fingerprint`)."""
    out: dict[str, Any] = {}
    for m in mappings:
        out[m.name] = {
            "objects": _hash([m.partner_object, m.vendor_object]),
            "share": _hash(m.share.model_dump(mode="json", by_alias=True)),
            "fields": {f.key: field_fingerprint(f) for f in m.fields},
        }
    return out


def field_label(obj: str, key: str) -> str:
    """``contacts.jobtitle`` for a field with one name on both sides, else
    ``contacts.title>jobtitle`` (its base key)."""
    partner, _, vendor = key.partition(">")
    return f"{obj}.{partner if partner == vendor else key}"


@dataclass
class ObjectChange:
    """How one object's mapping changed since the recorded version."""

    name: str
    added: list[str] = field(default_factory=list)  # field keys
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # key -> parts changed
    share_changed: bool = False
    new_object: bool = False  # the whole object is new to the mapping (or re-pointed)

    @property
    def reevaluate(self) -> list[str]:
        """Field keys merged with no base on every linked record."""
        again = [k for k, parts in self.changed.items() if REEVALUATE & set(parts)]
        return sorted(set(self.added) | set(again))

    def lines(self) -> list[str]:
        """What changed, one line each, in the words of ``mapping history``."""
        out = [f"+{field_label(self.name, k)}" for k in self.added]
        out += [f"-{field_label(self.name, k)}" for k in self.removed]
        out += [
            f"~{field_label(self.name, k)} ({', '.join(parts)})"
            for k, parts in sorted(self.changed.items())
        ]
        if self.share_changed:
            out.append(f"~{self.name} share condition")
        return out


@dataclass
class MigrationPlan:
    """The difference between the recorded fingerprint and the pass's mapping."""

    first: bool  # nothing recorded yet: record, migrate nothing
    fingerprint: dict[str, Any]
    objects: list[ObjectChange] = field(default_factory=list)
    removed_objects: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.first or bool(self.objects or self.removed_objects)

    def changes(self) -> list[str]:
        """The version's change lines (recorded with it, listed by ``mapping history``)."""
        if self.first:
            return ["first version recorded (nothing to migrate)"]
        out = [line for o in self.objects for line in o.lines()]
        out += [f"-{name} (object no longer mapped)" for name in self.removed_objects]
        return out


def plan_migration(
    recorded: Mapping[str, Any] | None, mappings: Sequence[ObjectMapping]
) -> MigrationPlan:
    """Compare the recorded fingerprint (``None``: first pass) with ``mappings``. Pure."""
    new = fingerprint(mappings)
    if recorded is None:
        return MigrationPlan(True, new)
    plan = MigrationPlan(False, new)
    for name, now in new.items():
        old = recorded.get(name)
        if old is None or old.get("objects") != now["objects"]:
            # a new (or re-pointed) object: its links, if any, predate nothing to migrate
            # from; every field is new to them
            change = ObjectChange(name, added=sorted(now["fields"]), new_object=True)
            plan.objects.append(change)
            continue
        change = ObjectChange(name)
        old_fields: dict[str, dict[str, str]] = old.get("fields", {})
        for key, parts in now["fields"].items():
            if key not in old_fields:
                change.added.append(key)
            else:
                diff = [p for p in FIELD_PARTS if old_fields[key].get(p) != parts.get(p)]
                if diff:
                    change.changed[key] = diff
        change.removed = sorted(k for k in old_fields if k not in now["fields"])
        change.added.sort()
        change.share_changed = old.get("share") != now["share"]
        if change.lines():
            plan.objects.append(change)
    plan.removed_objects = sorted(n for n in recorded if n not in new)
    return plan


def forget_bases(sp: SyncPass, mapping: ObjectMapping, states: list[PairState]) -> list[PairState]:
    """Linked pairs whose fields are being migrated, without those fields' base, so
    reconcile merges them as fields new to the base. Only pairs the migration read
    on both sides are given to reconcile this way (an unseen side would otherwise be
    taken for its — forgotten — base)."""
    keys = sp.forget.get(mapping.name)
    if not keys:
        return states
    return [
        replace(s, base={k: v for k, v in s.base.items() if k not in keys})
        if s.link_id is not None and s.base
        else s
        for s in states
    ]


@dataclass
class MigrationReport:
    """What a pass said about the migration (CLI output, the run's counts)."""

    lines: list[str] = field(default_factory=list)
    backfilled: dict[str, int] = field(default_factory=dict)  # object -> linked records read
    recorded: bool = False


def linked_pairs(sp: SyncPass, name: str) -> list[tuple[str, str]]:
    """(partner id, vendor id) of every active link of the object on this connection."""
    return [
        (link.partner_id, link.vendor_id)
        for link in sp.store.links(sp.conn, name, ("active",))
        if link.partner_id and link.vendor_id
    ]


def run_migration(sp: SyncPass) -> MigrationPlan:
    """Plan the migration and, in a real pass, carry out its store-only part and its
    backfill (before detection: the pass's own detection then sees the migrated bases).
    The fingerprint is recorded by :func:`finish_migration` once the pass committed."""
    recorded = sp.store.mapping_version(sp.conn)
    plan = plan_migration(recorded.fingerprint if recorded else None, sp.mappings)
    report = sp.migration
    if plan.first or not plan.changed:
        return plan
    errors_before = len(sp.errors)
    dry = sp.ctx.dry_run
    for change in plan.objects:
        mapping = sp.by_name[change.name]
        pairs = linked_pairs(sp, change.name)
        n = len(pairs)
        for key in change.added:
            report.lines.append(
                f"mapping change: +{field_label(change.name, key)} → {n} linked records to backfill"
            )
        for key, parts in sorted(change.changed.items()):
            head = f"mapping change: ~{field_label(change.name, key)} ({', '.join(parts)})"
            if REEVALUATE & set(parts):
                report.lines.append(f"{head} → {n} linked records to re-evaluate")
            else:
                report.lines.append(f"{head} → decides future conflicts only")
        for key in change.removed:
            report.lines.append(
                f"mapping change: -{field_label(change.name, key)} → its base "
                + ("would be dropped" if dry else "dropped")
                + f" from {n} links (nothing written to the CRMs)"
            )
        if change.removed and not dry:
            sp.store.drop_field_bases(sp.conn, change.name, change.removed)
        if change.share_changed:
            report.lines.append(
                f"mapping change: ~{change.name} share condition → records already shared "
                "keep syncing (no link is ended by it); records that now match are shared "
                "when they next change"
            )
        what = change.reevaluate
        if what:
            report.backfilled[change.name] = n
            if pairs:
                _backfill(sp, mapping, pairs, set(what))
    for name in plan.removed_objects:
        report.lines.append(
            f"mapping change: -{name} no longer mapped → its links are kept, not synced"
        )
    sp.migration_failed = len(sp.errors) > errors_before
    return plan


def _backfill(
    sp: SyncPass, mapping: ObjectMapping, pairs: list[tuple[str, str]], keys: set[str]
) -> None:
    """Read every linked pair by id, both sides, in batches of the pass's batch size,
    and merge them with ``keys`` forgotten from their bases (a dry run plans only)."""
    size = max(1, sp.batch_size)
    sp.forget[mapping.name] = keys
    try:
        for i in range(0, len(pairs), size):
            batch = pairs[i : i + size]
            per: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
            gather.read_by_id(sp, mapping, per, gather.pair_ids(batch))
            sp._process(mapping, per["partner"], per["vendor"], set())
            sp.counts["migrated"] += len(batch)
    finally:
        sp.forget.pop(mapping.name, None)


def finish_migration(sp: SyncPass, plan: MigrationPlan) -> None:
    """Record the new fingerprint: after the pass committed (called after its cursors
    moved), never in a dry run, and not while a migrated record failed (the next pass
    runs the migration again)."""
    if sp.ctx.dry_run or not plan.changed:
        return
    if sp.migration_failed:
        sp.migration.lines.append(
            "mapping change: not recorded — a migrated record failed; the next pass "
            "runs the migration again"
        )
        return
    sp.store.record_mapping_version(sp.conn, plan.fingerprint, plan.changes(), sp.ctx.run_id)
    sp.migration.recorded = True
