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
- a changed **share condition** is measured and acted on (:func:`migrate_share`):
  linked records are read by id in batches and those that no longer match are
  counted and reported — **kept in sync** (as HubSpot's Data Sync keeps records
  already shared): a new condition never ends a link; the side's records are searched
  (paged) for ones that now match and are not linked, and those are shared on this
  pass, as if detected (a record whose link was ended stays unlinked, as always).

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from connector.config.models import Condition, FieldMapping, ObjectMapping
from connector.engine import gather
from connector.engine.detect import detect
from connector.engine.reconcile import PairState, matches
from connector.records import Record, Side
from connector.state.store import RecordOutcome

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
    share: ShareCounts | None = None  # what the changed share condition measured

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
            out.append(
                f"~{self.name} share condition" + (self.share.summary() if self.share else "")
            )
        return out


@dataclass
class ShareCounts:
    """What a changed share condition means for one object's records, measured by
    the pass that migrates it (recorded with the version, shown by ``mapping history``)."""

    no_longer_matching: int = 0  # linked pairs none of whose records matches it now
    newly_matching: int = 0  # unlinked records that match now: shared on the pass
    stay_unlinked: int = 0  # match now, but their link was ended: not shared again
    via: str | None = None  # shared via a parent: no condition of its own

    def summary(self) -> str:
        """`` (1 linked no longer matching: kept in sync; 2 newly matching: shared)``."""
        if self.via:
            return f" (shared via {self.via}: follows its share condition)"
        parts = [
            f"{self.no_longer_matching} linked no longer matching: kept in sync",
            f"{self.newly_matching} newly matching: shared",
        ]
        if self.stay_unlinked:
            parts.append(f"{self.stay_unlinked} newly matching but unlinked before: not shared")
        return f" ({'; '.join(parts)})"

    def as_dict(self) -> dict[str, int]:
        return {
            "no_longer_matching": self.no_longer_matching,
            "newly_matching": self.newly_matching,
            "stay_unlinked": self.stay_unlinked,
        }


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
    share: dict[str, ShareCounts] = field(default_factory=dict)  # object -> share change
    recorded: bool = False
    # records that newly match a changed share condition, held for a pass with hooks
    # (they join its detected records: a held object's picture, or the streamed deals'
    # first chunk); a pass without hooks shares them chunk by chunk in the migration
    newly_shared: dict[str, dict[Side, dict[str, Record]]] = field(default_factory=dict)


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
        n = sp.store.count_linked_pairs(sp.conn, change.name)
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
        if change.share_changed and not change.new_object:
            change.share = migrate_share(sp, mapping)
            report.share[change.name] = change.share
            report.lines.extend(share_lines(change.name, change.share, dry))
        what = change.reevaluate
        if what:
            report.backfilled[change.name] = n
            if n:
                _backfill(sp, mapping, set(what))
    for name in plan.removed_objects:
        report.lines.append(
            f"mapping change: -{name} no longer mapped → its links are kept, not synced"
        )
    sp.migration_failed = len(sp.errors) > errors_before
    return plan


def _backfill(sp: SyncPass, mapping: ObjectMapping, keys: set[str]) -> None:
    """Read every linked pair by id, both sides, in batches of the pass's batch size
    (links paged from the store a detection chunk at a time, so memory holds one
    page), and merge them with ``keys`` forgotten from their bases (a dry run plans
    only)."""
    size = max(1, sp.batch_size)
    sp.forget[mapping.name] = keys
    try:
        for page in gather.linked_pages(sp, mapping):
            for i in range(0, len(page), size):
                batch = page[i : i + size]
                per: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
                gather.read_by_id(sp, mapping, per, gather.pair_ids(batch))
                sp._process(mapping, per["partner"], per["vendor"], set(), keep=False)
                sp.counts["migrated"] += len(batch)
    finally:
        sp.forget.pop(mapping.name, None)


# ---------------------------------------------------------------- share condition

UNSHARE_HINT = (
    "to stop sharing one, delete or archive it on either side (the object's on_delete "
    "policy applies) — dealsync never ends a link because the condition changed"
)
"""What an admin can do about a linked record that no longer matches."""


def share_lines(name: str, counts: ShareCounts, dry: bool) -> list[str]:
    """The pass's (and dry run's) lines for a changed share condition."""
    head = f"mapping change: ~{name} share condition"
    if counts.via:
        return [
            f"{head} → shared via {counts.via}: its records follow {counts.via}'s share "
            "condition; records already shared keep syncing"
        ]
    out = [
        f"{head} → {counts.no_longer_matching} linked records no longer match it — kept "
        f"in sync (records already shared stay shared; each is listed in the run log); "
        f"{UNSHARE_HINT}",
        f"{head} → {counts.newly_matching} records now match and are not linked — "
        + ("would be shared on this pass" if dry else "shared on this pass"),
    ]
    if counts.stay_unlinked:
        out.append(
            f"{head} → {counts.stay_unlinked} records now match but their link was ended "
            "before (unlinked or deleted) — not shared again"
        )
    return out


def _conditions(mapping: ObjectMapping) -> dict[Side, list[Condition]]:
    """The share conditions of each side that has any."""
    out: dict[Side, list[Condition]] = {}
    if mapping.share.partner:
        out["partner"] = list(mapping.share.partner)
    if mapping.share.vendor:
        out["vendor"] = list(mapping.share.vendor)
    return out


def migrate_share(sp: SyncPass, mapping: ObjectMapping) -> ShareCounts:
    """A changed share condition, measured and acted on.

    Linked pairs are read by id (only the sides with a condition, only the condition's
    properties, one batch read per 100 ids per side, a page of links at a time); a
    pair none of whose records matches any more is counted, listed in the run log as
    ``kept`` and left syncing. Then each side with a condition is searched (paged, as
    detection pages) for records that match now and are not linked: a streamed pass
    shares them at once, chunk by chunk; a pass with hooks hands them to its detected
    records (:attr:`MigrationReport.newly_shared`). A record whose link was ended
    stays unlinked (as any detected one would) and is counted apart."""
    conds = _conditions(mapping)
    counts = ShareCounts()
    if not conds:
        counts.via = mapping.share.via or "nothing"
        return counts
    for page in gather.linked_pages(sp, mapping):
        for pid, vid in _no_longer_matching(sp, mapping, conds, page):
            counts.no_longer_matching += 1
            sp.outcomes.append(
                RecordOutcome(
                    mapping.name,
                    "partner",
                    pid,
                    "share",
                    "kept",
                    None,
                    f"no longer matches the share condition (vendor {vid}) — kept in "
                    f"sync; {UNSHARE_HINT}",
                )
            )
    sp.counts["share_no_longer_matching"] += counts.no_longer_matching
    for side, side_conds in conds.items():
        for chunk in _matching_chunks(sp, mapping, side, side_conds):
            linked = sp.store.link_refs(sp.conn, mapping.name, side, chunk, base=False)
            unlinked = [rid for rid in chunk if rid not in linked]
            ended = sp.store.ended_ids(sp.conn, mapping.name, side, unlinked)
            new = {rid: chunk[rid] for rid in unlinked if rid not in ended}
            counts.stay_unlinked += len(ended)
            counts.newly_matching += len(new)
            if not new:
                continue
            if sp.hooks:
                held = sp.migration.newly_shared.setdefault(
                    mapping.name, {"partner": {}, "vendor": {}}
                )
                held[side].update(new)
            elif side == "partner":
                sp._process(mapping, new, {}, set())
            else:
                sp._process(mapping, {}, new, set())
    sp.counts["share_newly_matching"] += counts.newly_matching
    return counts


def _no_longer_matching(
    sp: SyncPass,
    mapping: ObjectMapping,
    conds: Mapping[Side, list[Condition]],
    page: list[tuple[str, str]],
) -> list[tuple[str, str]]:
    """The pairs of ``page`` none of whose records (read now, by id) matches its
    side's condition. A pair whose records are all gone is left to the delete policy."""
    found: dict[Side, dict[str, Record]] = {}
    for side, side_conds in conds.items():
        ids = sorted({p if side == "partner" else v for p, v in page})
        props = sorted({c.property for c in side_conds})
        found[side] = sp.crm(side).read(sp.obj_type(mapping, side), ids, props)
    out = []
    for pid, vid in page:
        recs = {s: found[s].get(pid if s == "partner" else vid) for s in conds}
        present = {s: r for s, r in recs.items() if r is not None and not r.archived}
        if present and not any(matches(conds[s], r.properties) for s, r in present.items()):
            out.append((pid, vid))
    return out


def _matching_chunks(
    sp: SyncPass, mapping: ObjectMapping, side: Side, conds: list[Condition]
) -> Iterator[dict[str, Record]]:
    """The live records of one side that match its share condition and are no
    counterpart dealsync created (no source id), a detection chunk at a time, with
    what detection reads of them. The vendor side is searched among the connection's
    records only (its partner marker), as detection searches it."""
    crm = sp.crm(side)
    names = sp.names(side)
    where = {sp.names("vendor").partner_id: sp.conn} if side == "vendor" else None
    for chunk in detect(
        crm,
        sp.obj_type(mapping, side),
        None,
        crm.now(),
        sp._props(mapping, side),
        where=where,
        associations=sp._assoc_types(mapping, side),
        chunk_size=sp.detect_chunk,
    ):
        keep = {
            rid: rec
            for rid, rec in chunk.items()
            if not rec.archived and not rec.get(names.source_id) and matches(conds, rec.properties)
        }
        if keep:
            yield keep


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
