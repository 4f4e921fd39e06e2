"""One sync pass of one connection: detect → reconcile → hooks → apply → commit.

The order of durable steps is what makes a crash harmless:

1. a create's *intent* (a pending link) is committed before the counterpart is
   written, and the counterpart is written by upsert on a unique source-id property —
   so a crash between the write and the link is adopted on rerun, never duplicated;
2. a pair's base snapshot moves only after every write of the pair succeeded;
3. failed records go to the retry list (re-read by id next pass);
4. cursors move last, to the high-water mark frozen before detection.

A rerun after a crash anywhere re-detects the same window and converges.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from connector.adapters.base import CRMAdapter
from connector.config.models import ObjectMapping
from connector.engine.detect import Detection, DetectJob, LockedAdapter, window_start
from connector.engine.hooks import Hook, ObjectRecords, PassContext
from connector.engine.markers import PARTNER_ID, SOURCE_ID
from connector.engine.plan import (
    Action,
    Associate,
    Conflict,
    Create,
    Delete,
    Plan,
    RecordError,
    Update,
)
from connector.engine.reconcile import FieldPlan, PairState, matches, reconcile
from connector.engine.run import (
    EXIT_CONFLICTS,
    EXIT_FAILED,
    EXIT_FATAL,
    EXIT_OK,
    PassAborted,
    PassResult,
    Progress,
    crash_points,
    run_pass,
)
from connector.records import SIDES, PropertySpec, Record, Side, other_side
from connector.state.store import LinkRef, RecordOutcome, StateStore

__all__ = [  # what callers import from here; the run's side lives in engine/run.py
    "EXIT_CONFLICTS",
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_OK",
    "PARTNER_ID",
    "SOURCE_ID",
    "PassAborted",
    "PassResult",
    "Progress",
    "SyncPass",
    "crash_points",
    "required_properties",
    "run_pass",
]

log = logging.getLogger("dealsync.engine")

ASSOC = "@assoc:"

MERGED_IDS = "hs_merged_object_ids"
"""Ids a CRM merged into a record, semicolon-separated (HubSpot's merge: the merged id
disappears, reads of it answer with the survivor). Adapters that read it hand it over
with the record; links of merged ids follow the survivor (:meth:`SyncPass._follow_merges`)."""

IDENTITY = {"contacts": "email", "companies": "domain", "deals": "dealname"}
"""Per object type, the property that tells people which real-world thing a record
is. A record deleted and re-created with the same value is recognised by it, so its
old counterpart is re-linked instead of duplicated (``docs/sync.md``, "Re-created
records"). Used only when the mapping syncs that property."""

UNIQUE_IDENTITY = ("email",)
"""Identities the CRM itself keeps unique among live records (HubSpot: a contact's
e-mail). Only these let a vendor record stand in for a deleted one it was never
linked to on the identity alone: two vendor companies may share a domain, two deals a
name, so a company also needs the shared deal the deleted one was on, and a deal is
never a successor (``SyncPass._follow_successors``)."""

_LIVE_LINK = ("pending", "active", "flagged")
"""Link statuses that hold both records (shared, or about to be)."""

_ENDED_WITH_SURVIVOR = ("unlinked", "flagged")
"""Link statuses that leave one record live after the other was deleted."""


def _norm(identity: str, value: str) -> str:
    """Identity values as the CRM compares them: e-mails and domains ignore case."""
    value = value.strip()
    return value.lower() if identity in ("email", "domain") else value


DETECT_CHUNK = 1000
"""Partner records handed from detection to apply at a time. A multiple of 1,000
(HubSpot's association batch read) so streaming costs no extra call."""


def required_properties(mappings: Sequence[ObjectMapping]) -> dict[Side, list[PropertySpec]]:
    """Custom properties the engine itself needs on each side (``dealsync setup``)."""
    out: dict[Side, list[PropertySpec]] = {"partner": [], "vendor": []}
    for m in mappings:
        out["vendor"].append(
            PropertySpec(m.vendor_object, SOURCE_ID, "dealsync source id", unique=True)
        )
        out["vendor"].append(PropertySpec(m.vendor_object, PARTNER_ID, "dealsync partner"))
        out["partner"].append(
            PropertySpec(m.partner_object, SOURCE_ID, "dealsync source id", unique=True)
        )
        for side, conds in (("partner", m.share.partner), ("vendor", m.share.vendor)):
            obj = m.partner_object if side == "partner" else m.vendor_object
            for cond in conds or []:
                out[side].append(PropertySpec(obj, cond.property, cond.property))  # type: ignore[index]
    return out


class SyncPass:
    """One pass of one connection. Build it, call :meth:`run`, read the result."""

    def __init__(
        self,
        *,
        mappings: Sequence[ObjectMapping],
        store: StateStore,
        ctx: PassContext,
        hooks: Sequence[Hook] = (),
        overlap: timedelta = timedelta(minutes=5),
        batch_size: int = 100,
        progress: Progress | None = None,
        crash_at: Callable[[str], None] | None = None,
        detect_chunk: int | None = None,
    ) -> None:
        self.mappings = list(mappings)
        self.by_name = {m.name: m for m in self.mappings}
        self.compiled = {m.name: FieldPlan(m) for m in self.mappings}
        self.store = store
        self.ctx = ctx
        self.hooks = list(hooks)
        self.overlap = overlap
        self.batch_size = batch_size
        self.progress = progress or (lambda stage, done, total: None)
        self.crash_at = crash_at or (lambda point: None)
        self.conn = ctx.connection
        self.plan = Plan()
        self.outcomes: list[RecordOutcome] = []
        self.counts: Counter[str] = Counter()
        self.errors: list[RecordError] = []
        self.seen: dict[str, ObjectRecords] = {}
        self.detect_chunk = detect_chunk or DETECT_CHUNK
        self._locked: dict[Side, CRMAdapter] = {}
        # records read again by id next pass: failed ones (with why), counterparts
        # adopted from an interrupted attempt, and the retries this pass took up
        self._retries: list[tuple[str, Side, str, str]] = []
        self._rechecks: list[tuple[str, Side, str]] = []
        self._cleared: list[tuple[str, Side, str]] = []
        self._acc: dict[str, tuple[dict[str, Record], dict[str, Record]]] = {}
        self._started = False
        self._via_cache: dict[str, dict[str, set[str]]] = {}
        self._assoc_done: set[tuple[str, str]] = set()
        self._finished: set[str] = set()
        # (mapping, partner id, vendor id) of pairs re-linked to an existing record this
        # pass: merged again at once from fresh reads (see _settle_relinked)
        self._relinked: list[tuple[str, str, str]] = []
        self._settled: set[tuple[str, Side, str]] = set()
        # (mapping, identity value) -> vendor successor an ended link kept this pass
        # (both sides re-created): adopted by the new partner record without a search,
        # which may not show a record changed moments ago (see _follow_successors)
        self._kept: dict[tuple[str, str], Record] = {}
        # (mapping, side, identity value) -> id of the record a link ended this pass
        # (unlink, flag) left live on that side: a record re-created in the same window
        # adopts it read by id, since HubSpot's search may not show it yet (written by
        # the pass before) or may show a look-alike instead (domains are not unique)
        self._survivors: dict[tuple[str, Side, str], str] = {}
        # (mapping, source id) -> ended link whose gone survivor the record adopted for
        # that source succeeds (see _heirs): closed as relinked by the adoption
        self._inherited: dict[tuple[str, str], LinkRef] = {}

    # ------------------------------------------------------------------ helpers

    def _crm(self, side: Side) -> CRMAdapter:
        return self._locked.get(side) or self.ctx.crm(side)

    def _obj_type(self, mapping: ObjectMapping, side: Side) -> str:
        return mapping.partner_object if side == "partner" else mapping.vendor_object

    def _props(self, mapping: ObjectMapping, side: Side) -> list[str]:
        compiled = self.compiled[mapping.name]
        props = compiled.partner_properties() if side == "partner" else compiled.vendor_properties()
        conds = mapping.share.partner if side == "partner" else mapping.share.vendor
        extra = [c.property for c in conds or []]
        extra.append(SOURCE_ID)
        if side == "vendor":
            extra.append(PARTNER_ID)
        for hook in self.hooks:
            extra.extend(hook.properties(mapping, side))
        return sorted(set(props) | set(extra))

    def _assoc_types(self, mapping: ObjectMapping, side: Side) -> list[str]:
        """Association types to read with a side's records. Associations are mirrored
        partner → vendor and sharing follows the partner's (via), so the vendor side's
        are never used: not reading them saves two calls per 1,000 changed records."""
        if side == "vendor":
            return []
        names = set(mapping.associations)
        names |= {m.name for m in self.mappings if m.share.via == mapping.name}
        return sorted(self._obj_type(self.by_name[n], side) for n in names if n in self.by_name)

    def _read(self, mapping: ObjectMapping, side: Side, ids: Sequence[str]) -> dict[str, Record]:
        """Records of one side by id, with what detection would have read of them."""
        return self._crm(side).read(
            self._obj_type(mapping, side),
            ids,
            self._props(mapping, side),
            associations=self._assoc_types(mapping, side),
        )

    def _source_key(self, target: Side, source_id: str) -> str:
        return f"{self.conn}:{source_id}" if target == "vendor" else f"vendor:{source_id}"

    def _fail(self, err: RecordError, retry_side: Side, retry_id: str) -> None:
        self.errors.append(err)
        self.counts["failed"] += 1
        self.outcomes.append(
            RecordOutcome(
                err.object, err.side, err.record_id, "sync", "failed", err.field, err.message
            )
        )
        self._retries.append((err.object, retry_side, retry_id, str(err)))

    # ------------------------------------------------------------------ the pass

    def run(self) -> None:
        ctx = self.ctx
        hw = {"partner": ctx.partner_crm.now(), "vendor": ctx.vendor_crm.now()}
        order = self._ordered()
        jobs = [
            DetectJob(
                mapping.name,
                side,
                self._obj_type(mapping, side),
                window_start(self.store.cursor(self.conn, side, mapping.name), self.overlap),
                hw[side],
                self._props(mapping, side),
                {PARTNER_ID: self.conn} if side == "vendor" else None,
                self._assoc_types(mapping, side),
            )
            for mapping in order
            for side in ("vendor", "partner")
        ]
        detection = Detection(
            {"partner": ctx.partner_crm, "vendor": ctx.vendor_crm}, jobs, self.detect_chunk
        )
        # while detection runs in its thread, this thread's calls take the same
        # per-CRM lock, so no adapter is ever used by two threads at once
        self._locked = {
            side: cast(CRMAdapter, LockedAdapter(detection.locks[side], ctx.crm(side)))
            for side in SIDES
        }
        detection.start()
        try:
            if self.hooks:
                self._run_whole(order, detection)
            else:
                self._run_streamed(order, detection)
        finally:
            detection.stop()
            self._locked = {}

        if not ctx.dry_run:
            self._sync_associations()
            again = self._retries + [
                (obj, side, rid, "re-read after adopting an existing counterpart")
                for obj, side, rid in self._rechecks
            ]
            self.store.add_retries(self.conn, again)
            keep = {(r[0], r[1], r[2]) for r in again}
            self.store.clear_retries(self.conn, [c for c in self._cleared if c not in keep])
            self.crash_at("before_cursor")
            self.store.set_cursors(
                self.conn,
                {(side, m.name): hw[side] for m in self.mappings for side in ("partner", "vendor")},
            )
            self.crash_at("after_cursor")

    def _ordered(self) -> list[ObjectMapping]:
        """Config order, except that a mapping shared *via* another comes after it: its
        candidates are the parent's shared records' associations."""
        out: list[ObjectMapping] = []

        def visit(m: ObjectMapping, trail: tuple[str, ...]) -> None:
            if m in out or m.name in trail:
                return
            parent = self.by_name.get(m.share.via or "")
            if parent is not None:
                visit(parent, (*trail, m.name))
            out.append(m)

        for m in self.mappings:
            visit(m, ())
        return out

    def _run_whole(self, order: list[ObjectMapping], detection: Detection) -> None:
        """With hooks: everything is detected before anything is applied, because the
        hooks decide on the whole picture (a deal with its company and contacts)."""
        detected: dict[str, tuple[dict[str, Record], dict[str, Record]]] = {}
        for step, mapping in enumerate(order, 1):
            vendor_recs = detection.vendor(mapping.name)
            partner_recs: dict[str, Record] = {}
            for chunk in detection.partner_chunks(mapping.name):
                partner_recs.update(chunk)
            per_side: dict[Side, dict[str, Record]] = {
                "partner": partner_recs,
                "vendor": vendor_recs,
            }
            self._add_retried(mapping, per_side)
            self._add_conflicted(mapping, per_side)
            detected[mapping.name] = (partner_recs, vendor_recs)
            self.progress("detect", step, len(order))
        self.crash_at("after_detect")
        ctx = self.ctx
        seen = {name: ObjectRecords(p, v) for name, (p, v) in detected.items()}
        for hook in self.hooks:
            hook.after_detect(ctx, seen)
        for mapping in order:
            partner_recs, vendor_recs = detected[mapping.name]
            # a child's via-candidates come from its parent's links *after* the parent
            # was applied (as when streamed): a deal whose link this pass ends (the
            # vendor deleted it) no longer shares its company (chaos seed 13, c. 152)
            via = self._via_streamed(mapping)
            self._read_via_extras(mapping, partner_recs, via)
            self._process(mapping, partner_recs, vendor_recs, via)
            self._mapping_done(mapping)

    def _run_streamed(self, order: list[ObjectMapping], detection: Detection) -> None:
        """Without hooks: each chunk of partner records is reconciled and written as soon
        as detection hands it over, while detection goes on searching. The partner
        portal's searches and the vendor portal's writes then overlap instead of
        following each other. Each chunk is a small pass of its own: its partner records
        with the changed vendor records linked to them; vendor records no chunk claimed,
        the parent's via-candidates, and the other side of open conflicts come last."""
        for step, mapping in enumerate(order, 1):
            vendor_recs = detection.vendor(mapping.name)
            per_side: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": vendor_recs}
            self._add_retried(mapping, per_side)
            via = self._via_streamed(mapping)
            st = _Stream(
                mapping,
                via,
                [c for c in self.store.conflicts(self.conn) if c.object == mapping.name],
                dict(per_side["vendor"]),
            )
            # retried records (and the counterparts of retried vendor records) first
            if per_side["partner"]:
                self._sub_pass(st, per_side["partner"], {})
            for chunk in detection.partner_chunks(mapping.name):
                part = {rid: r for rid, r in chunk.items() if rid not in st.done or r.archived}
                if part:
                    self._sub_pass(st, part, {})
            self.progress("detect", step, len(order))
            last: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
            self._read_via_extras(mapping, last["partner"], via - st.done)
            want_p = {
                c.partner_id
                for c in st.conflicts
                if c.vendor_id in st.unclaimed and c.partner_id not in st.done and c.partner_id
            }
            if want_p:
                self._read_by_id(mapping, last, {"partner": want_p, "vendor": set()})
            rest, st.unclaimed = st.unclaimed, {}
            if last["partner"] or rest:
                self._sub_pass(st, last["partner"], rest)
            self._mapping_done(mapping)
        if not self._started:
            self._started = True
            self.crash_at("after_detect")

    def _via_streamed(self, mapping: ObjectMapping) -> set[str]:
        """Via-candidates of a mapping whose parent has been applied (computed once per
        parent: its links do not change while its children are applied)."""
        parent = mapping.share.via
        if not parent or parent not in self.by_name:
            return set()
        if parent not in self._via_cache:
            seen = self.seen.get(parent)
            self._via_cache[parent] = self._via_candidates({parent: seen.partner if seen else {}})
        return self._via_cache[parent].get(mapping.name, set())

    def _sub_pass(
        self, st: _Stream, part: dict[str, Record], extra_vendor: dict[str, Record]
    ) -> None:
        """One chunk of a streamed mapping: pair the partner records with the changed
        vendor records linked to them, read the other side of open conflicts, apply."""
        mapping = st.mapping
        links = self.store.link_refs(self.conn, mapping.name, "partner", part, base=False)
        per: dict[Side, dict[str, Record]] = {"partner": part, "vendor": dict(extra_vendor)}
        for link in links.values():
            if link.vendor_id and link.vendor_id in st.unclaimed:
                per["vendor"][link.vendor_id] = st.unclaimed.pop(link.vendor_id)
        want_v = {
            c.vendor_id
            for c in st.conflicts
            if c.partner_id in part and c.vendor_id and c.vendor_id not in per["vendor"]
        }
        if want_v:
            self._read_by_id(mapping, per, {"partner": set(), "vendor": want_v})
        if not self._started:
            self._started = True
            self.crash_at("after_detect")
        st.done.update(part)
        self._process(mapping, part, per["vendor"], st.via)

    def _mapping_done(self, mapping: ObjectMapping) -> None:
        self._finished.add(mapping.name)
        if not self.ctx.dry_run:
            self._sync_associations(self._finished)

    def _read_via_extras(
        self, mapping: ObjectMapping, partner_recs: dict[str, Record], via: set[str]
    ) -> None:
        """Records shared via a shared parent that were not detected themselves (an
        existing company of a newly shared deal) are read, unless already linked."""
        extra = via - set(partner_recs)
        if not extra:
            return
        links_p = self.store.link_refs(self.conn, mapping.name, "partner", extra, base=False)
        unlinked = [i for i in extra if i not in links_p]
        if unlinked:
            partner_recs.update(self._read(mapping, "partner", sorted(unlinked)))

    def _process(
        self,
        mapping: ObjectMapping,
        partner_recs: dict[str, Record],
        vendor_recs: dict[str, Record],
        via: set[str],
    ) -> None:
        """Reconcile, let hooks adjust and apply one set of records of one mapping."""
        ctx = self.ctx
        if self._settled:
            # a record merged from a fresh read after its re-link must not be merged
            # again from the older copy detection handed over (a later chunk)
            name = mapping.name
            partner_recs = {
                r: rec
                for r, rec in partner_recs.items()
                if (name, "partner", r) not in self._settled
            }
            vendor_recs = {
                r: rec for r, rec in vendor_recs.items() if (name, "vendor", r) not in self._settled
            }
        self._fresh_linked(mapping, partner_recs, vendor_recs)
        if not ctx.dry_run:
            self._follow_merges(mapping, partner_recs, vendor_recs)
            self._abandon_pending(mapping, partner_recs, vendor_recs)
        acc = self._acc.get(mapping.name)
        if acc is None:
            self._acc[mapping.name] = (partner_recs, vendor_recs)
            self.seen[mapping.name] = ObjectRecords(partner_recs, vendor_recs)
        else:
            acc[0].update(partner_recs)
            acc[1].update(vendor_recs)
        states = self._pair_states(mapping, partner_recs, vendor_recs, via)
        actions = reconcile(self.compiled[mapping.name], states)
        for hook in self.hooks:
            actions = hook.before_apply(ctx, mapping, actions, self.seen[mapping.name])
        self.plan.extend(actions)
        self.crash_at(f"after_plan:{mapping.name}")
        if not ctx.dry_run:
            self._apply(mapping, actions)
            self._settle_relinked(mapping, via)

    def _fresh_linked(
        self,
        mapping: ObjectMapping,
        partner_recs: dict[str, Record],
        vendor_recs: dict[str, Record],
    ) -> None:
        """A CRM whose search may be stale (HubSpot's lags behind writes by seconds) can
        hand back a record the last pass wrote with its *previous* values; compared
        with the link's newer base they look like a change, and would be written back
        over the new values on the other side. Linked records found that way are read
        again by id (immediate; one call per 100), in place. Unlinked ones are left as
        found: a stale copy of a new record only delays its newest values to a later
        pass, it cannot undo one. A record gone since the search (archived, merged
        away) is dropped here; the recycle bin or the merged record reports it."""
        for side, recs in (("partner", partner_recs), ("vendor", vendor_recs)):
            s: Side = side  # type: ignore[assignment]
            if not getattr(self.ctx.crm(s), "search_may_be_stale", False):
                continue
            live = [rid for rid, rec in recs.items() if not rec.archived]
            linked = sorted(self.store.link_refs(self.conn, mapping.name, s, live, base=False))
            if not linked:
                continue
            fresh = self._read(mapping, s, linked)
            for rid in linked:
                if rid in fresh:
                    recs[rid] = fresh[rid]
                else:
                    recs.pop(rid, None)
            for rid, rec in fresh.items():  # a merged id answered with its survivor
                recs.setdefault(rid, rec)

    def _follow_merges(
        self,
        mapping: ObjectMapping,
        partner_recs: Mapping[str, Record],
        vendor_recs: Mapping[str, Record],
    ) -> None:
        """Records merged in a CRM (a person merges two contacts in HubSpot): the
        survivor lists the merged ids (:data:`MERGED_IDS`) and the merged ids are gone
        without being archived, so no delete is ever seen for them. A live link of a
        merged id follows the survivor when no live link holds it (the pair goes on,
        merged from its base: the survivor's values flow across as changes). When the
        survivor has a link of its own, it keeps it and the merged id's link is closed
        (``relinked``, pointing at the survivor's link): its counterpart on the other
        side is no longer shared, never re-created (that would be the duplicate the
        merge removed) and the run log says what to do. Called before reconcile, so
        this pass already reconciles the survivor with the link it ends up with."""
        for side, recs in (("partner", partner_recs), ("vendor", vendor_recs)):
            s: Side = side  # type: ignore[assignment]
            into: dict[str, str] = {}
            for rid, rec in recs.items():
                if rec.archived:
                    continue
                for old in str(rec.get(MERGED_IDS) or "").split(";"):
                    old = old.strip()
                    if old and old != rid:
                        into.setdefault(old, rid)
            if not into:
                continue
            gone = {
                old: ref
                for old, ref in self.store.link_refs(self.conn, mapping.name, s, into).items()
                if ref.status in ("active", "flagged")
            }
            if not gone:
                continue
            holders = self.store.holders(self.conn, mapping.name, s, {into[old] for old in gone})
            other = other_side(s)
            released: list[tuple[int, Side, str, int]] = []
            moved: list[tuple[int, Side, str, dict[str, Any]]] = []
            taken: dict[str, int] = {}  # survivor -> the link now holding it
            # in the order the survivor lists them: HubSpot lists the primary first, so
            # when both were linked the primary's link is the one that goes on
            for old, ref in sorted(gone.items(), key=lambda kv: list(into).index(kv[0])):
                survivor = into[old]
                counterpart = ref.vendor_id if s == "partner" else ref.partner_id
                holder = holders.get(survivor)
                keeper = taken.get(survivor)
                if keeper is None and holder is not None and holder.status in _LIVE_LINK:
                    keeper = holder.id
                if keeper is not None:
                    kept = self.store.link(keeper)
                    kept_other = (
                        (kept.vendor_id if s == "partner" else kept.partner_id) if kept else None
                    )
                    released.append((ref.id, s, old, keeper))
                    self.counts[f"merged {mapping.name}"] += 1
                    self.outcomes.append(
                        RecordOutcome(
                            mapping.name,
                            s,
                            old,
                            "merge",
                            "ok",
                            detail=f"{s} {old} was merged into {s} {survivor}, which stays "
                            f"linked to {other} {kept_other}; {other} {counterpart} is no "
                            f"longer synced (merge it into {other} {kept_other} in the "
                            f"{other}'s CRM if they are the same)",
                        )
                    )
                    continue
                if holder is not None:  # an ended row holds the survivor: free it
                    released.append((holder.id, s, survivor, ref.id))
                moved.append((ref.id, s, survivor, dict(ref.base)))
                taken[survivor] = ref.id
                self.counts[f"merged {mapping.name}"] += 1
                self.outcomes.append(
                    RecordOutcome(
                        mapping.name,
                        s,
                        survivor,
                        "merge",
                        "ok",
                        detail=f"{s} {old} was merged into {s} {survivor}; the link of "
                        f"{other} {counterpart} follows {s} {survivor}",
                    )
                )
            self.store.relink(released, moved=moved)

    def _settle_relinked(self, mapping: ObjectMapping, via: set[str]) -> None:
        """Pairs just re-linked to an existing record (adopted, or a successor) are
        merged again from fresh reads of both sides, in this pass: the existing record
        has values of its own (a vendor contact's phone, a new deal amount) that the
        three-way merge carries across by the fields' rules now, so the next pass is
        quiet. A crash before this is harmless: the cursors did not move, and the next
        pass detects both records again."""
        pairs = [(p, v) for name, p, v in self._relinked if name == mapping.name]
        if not pairs:
            return
        self._relinked = [r for r in self._relinked if r[0] != mapping.name]
        per: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
        self._read_by_id(
            mapping, per, {"partner": {p for p, _ in pairs}, "vendor": {v for _, v in pairs}}
        )
        self._process(mapping, per["partner"], per["vendor"], via)
        self._settled.update((mapping.name, "partner", p) for p, _ in pairs)
        self._settled.update((mapping.name, "vendor", v) for _, v in pairs)

    def _add_conflicted(
        self, mapping: ObjectMapping, per_side: dict[Side, dict[str, Record]]
    ) -> None:
        """A pair with an open conflict whose one side changed: read the other side too.

        Reconcile takes an unseen side to be unchanged since the base, which does not
        hold while a conflict is open (its base deliberately did not move): the unseen
        side's conflicting value would be taken for the base and overwritten."""
        want: dict[Side, set[str]] = {"partner": set(), "vendor": set()}
        for c in self.store.conflicts(self.conn):
            if c.object != mapping.name:
                continue
            has_p, has_v = c.partner_id in per_side["partner"], c.vendor_id in per_side["vendor"]
            if has_p and not has_v:
                want["vendor"].add(c.vendor_id)
            elif has_v and not has_p:
                want["partner"].add(c.partner_id)
        self._read_by_id(mapping, per_side, want)

    def _add_retried(self, mapping: ObjectMapping, per_side: dict[Side, dict[str, Record]]) -> None:
        """Records that failed before, and creates left pending by a crash, are read
        again by id, with their counterparts."""
        want: dict[Side, set[str]] = {"partner": set(), "vendor": set()}
        for item in self.store.retries(self.conn, mapping.name):
            side: Side = item.side  # type: ignore[assignment]
            want[side].add(item.record_id)
            self._cleared.append((mapping.name, side, item.record_id))
        # an interrupted create whose source was not seen again must still be finished
        for link in self.store.links(self.conn, mapping.name, ("pending",)):
            origin: Side = "vendor" if link.origin == "vendor" else "partner"
            source = link.partner_id if origin == "partner" else link.vendor_id
            if source:
                want[origin].add(source)
        if not want["partner"] and not want["vendor"]:
            return
        for s in SIDES:
            refs = self.store.link_refs(self.conn, mapping.name, s, want[s], base=False)
            for ref in refs.values():
                cid = ref.vendor_id if s == "partner" else ref.partner_id
                if cid:
                    want[other_side(s)].add(cid)
        self._read_by_id(mapping, per_side, want)

    def _read_by_id(
        self,
        mapping: ObjectMapping,
        per_side: dict[Side, dict[str, Record]],
        want: dict[Side, set[str]],
    ) -> None:
        """Read records by id into this pass's records. A linked record that no longer
        exists (archived or deleted outside the detection window) comes back as an
        archived marker, so reconcile applies the delete policy instead of writing to
        a record that is gone on every pass."""
        for s in SIDES:
            ids = sorted(want[s] - set(per_side[s]))
            if not ids:
                continue
            found = self._read(mapping, s, ids)
            per_side[s].update(found)
            # a merged-away id answers with its survivor, which lists it: not gone, the
            # survivor's link is settled by _follow_merges
            merged = {
                old.strip()
                for rec in found.values()
                for old in str(rec.get(MERGED_IDS) or "").split(";")
            }
            missing = [i for i in ids if i not in found and i not in merged]
            if not missing:
                continue
            links = self.store.link_refs(self.conn, mapping.name, s, missing, base=False)
            now = self._crm(s).now()
            for rid in missing:
                link = links.get(rid)
                if link is not None and link.status in ("active", "pending"):
                    per_side[s][rid] = Record(
                        self._obj_type(mapping, s), rid, {}, now, archived=True
                    )

    def _abandon_pending(
        self,
        mapping: ObjectMapping,
        partner_recs: dict[str, Record],
        vendor_recs: dict[str, Record],
    ) -> None:
        """A create interrupted by a crash whose source record was deleted since: the
        create is not finished. If the interrupted attempt did make the counterpart,
        the mapping's delete policy applies to it, as for any shared record deleted on
        one side; either way the intent is closed, never left pending."""
        for origin, recs in (("partner", partner_recs), ("vendor", vendor_recs)):
            o: Side = origin  # type: ignore[assignment]
            gone = [rid for rid, rec in recs.items() if rec.archived]
            if not gone:
                continue
            links = self.store.link_refs(self.conn, mapping.name, o, gone, base=False)
            pending = {rid: link for rid, link in links.items() if link.status == "pending"}
            if not pending:
                continue
            target = other_side(o)
            keys = {self._source_key(target, rid): rid for rid in pending}
            found = self._crm(target).find_by_property(
                self._obj_type(mapping, target), SOURCE_ID, sorted(keys), [SOURCE_ID]
            )
            for key, rid in keys.items():
                link = pending[rid]
                assert link.id is not None
                counterpart = found.get(key)
                status = "unlinked"
                if counterpart is not None:
                    status = {"archive": "deleted", "flag": "flagged"}.get(
                        mapping.on_delete, "unlinked"
                    )
                    if mapping.on_delete == "archive":
                        res = self._crm(target).archive(
                            self._obj_type(mapping, target), [counterpart.id]
                        )
                        if not res[0].ok:
                            self._retries.append(
                                (mapping.name, o, rid, f"archiving failed: {res[0].error}")
                            )
                            continue
                    self.store.complete_links([(link.id, counterpart.id, {})], origin=o)
                self.store.set_link_status([link.id], status)
                self.counts[f"abandoned create {mapping.name}"] += 1
                recs.pop(rid, None)

    def _via_candidates(self, detected: Mapping[str, Mapping[str, Record]]) -> dict[str, set[str]]:
        """Partner ids of records shared *via* a shared parent (a deal's company), from
        the parent's detected partner records."""
        out: dict[str, set[str]] = defaultdict(set)
        looked_up: dict[str, tuple[dict[str, LinkRef], set[str]]] = {}
        for child in self.mappings:
            parent_name = child.share.via
            if not parent_name or parent_name not in self.by_name:
                continue
            parent = self.by_name[parent_name]
            partner_recs = detected.get(parent_name, {})
            if parent_name not in looked_up:
                links = self.store.link_refs(
                    self.conn, parent_name, "partner", partner_recs, base=False
                )
                ended = self.store.ended_ids(
                    self.conn, parent_name, "partner", [r for r in partner_recs if r not in links]
                )
                looked_up[parent_name] = (links, ended)
            links, ended = looked_up[parent_name]
            for rid, rec in partner_recs.items():
                link = links.get(rid)
                shared = (link is not None and link.status in ("active", "pending")) or (
                    link is None
                    and rid not in ended
                    and matches(parent.share.partner, rec.properties)
                    and not rec.get(SOURCE_ID)
                )
                if shared and not rec.archived:
                    out[child.name].update(rec.associations.get(child.partner_object, ()))
        return out

    def _pair_states(
        self,
        mapping: ObjectMapping,
        partner_recs: dict[str, Record],
        vendor_recs: dict[str, Record],
        via: set[str],
    ) -> list[PairState]:
        links_p = self.store.link_refs(self.conn, mapping.name, "partner", partner_recs)
        links_v = self.store.link_refs(self.conn, mapping.name, "vendor", vendor_recs)
        # records whose link ended (unlinked, deleted) are no longer shared: never
        # re-created on the other side (and their old link blocks a new one)
        ended_p = self.store.ended_ids(
            self.conn, mapping.name, "partner", [r for r in partner_recs if r not in links_p]
        )
        ended_v = self.store.ended_ids(
            self.conn, mapping.name, "vendor", [r for r in vendor_recs if r not in links_v]
        )
        states: list[PairState] = []
        done_links: set[int] = set()
        for rid, rec in partner_recs.items():
            link = links_p.get(rid)
            if link is None or link.status == "pending":
                eligible = (
                    not rec.get(SOURCE_ID)
                    and rid not in ended_p
                    and (rid in via or matches(mapping.share.partner, rec.properties))
                )
                if link is not None:
                    eligible = True  # an interrupted create: finish (adopt) it
                states.append(PairState(None, rid, None, rec, None, None, eligible))
                continue
            if link.status != "active":
                continue
            assert link.id is not None
            done_links.add(link.id)
            states.append(
                PairState(
                    link.id,
                    rid,
                    link.vendor_id,
                    rec,
                    vendor_recs.get(link.vendor_id or ""),
                    link.base,
                )
            )
        for rid, rec in vendor_recs.items():
            link = links_v.get(rid)
            if link is None or link.status == "pending":
                eligible = (
                    not rec.get(SOURCE_ID)
                    and rid not in ended_v
                    and matches(mapping.share.vendor, rec.properties)
                )
                if link is not None:
                    eligible = True
                states.append(PairState(None, None, rid, None, rec, None, eligible))
                continue
            if link.status != "active" or link.id in done_links:
                continue
            assert link.id is not None
            states.append(PairState(link.id, link.partner_id, rid, None, rec, link.base))
        return states

    # ------------------------------------------------------------------ apply

    def _apply(self, mapping: ObjectMapping, actions: list[Action]) -> None:
        creates = [a for a in actions if isinstance(a, Create)]
        updates = [a for a in actions if isinstance(a, Update)]
        deletes = [a for a in actions if isinstance(a, Delete)]
        conflicts = [a for a in actions if isinstance(a, Conflict)]
        for err in (a for a in actions if isinstance(a, RecordError)):
            self._fail(err, err.side, err.record_id)
        # deletes first: a record deleted and re-created with the same identity in one
        # window then meets its old counterpart already archived or released, exactly
        # as when the two happen in different passes (see _adopt)
        if deletes:
            self._apply_deletes(mapping, deletes)
        for target in ("vendor", "partner"):
            group = [c for c in creates if c.target == target]
            if group:
                self._apply_creates(mapping, target, group)
        if updates:
            still_open = {(c.link_id, c.field) for c in conflicts}
            self._apply_updates(mapping, updates, still_open)
        for c in conflicts:
            _, new = self.store.open_conflict(self.conn, c)
            self.counts["conflicts opened" if new else "conflicts still open"] += 1
            if new:
                self.outcomes.append(
                    RecordOutcome(
                        c.object,
                        "partner",
                        c.partner_id,
                        "conflict",
                        "conflict",
                        c.field,
                        f"partner={c.partner_value!r} vendor={c.vendor_value!r}",
                    )
                )
        self.flush_outcomes()

    def flush_outcomes(self) -> None:
        if self.ctx.run_id is not None and self.outcomes:
            self.store.add_outcomes(self.ctx.run_id, self.outcomes)
        self.outcomes = []

    def _apply_creates(self, mapping: ObjectMapping, target: Side, creates: list[Create]) -> None:
        origin = other_side(target)
        intents = self.store.record_intents(
            self.conn, mapping.name, origin, [c.source_id for c in creates]
        )
        self.crash_at(f"after_intent:{mapping.name}")
        # a source re-linked to a successor earlier in this pass has its counterpart
        creates = [c for c in creates if intents[c.source_id].status == "pending"]
        by_key = {self._source_key(target, c.source_id): c for c in creates}
        recreated = self._recreated(mapping, target, creates)
        items: list[tuple[str, dict[str, str]]] = []
        for key, c in by_key.items():
            if c.source_id not in recreated:
                items.append((key, self._create_props(target, c)))
        refused: dict[str, tuple[str, str]] = {}
        crm = self._crm(target)
        for i in range(0, len(items), self.batch_size):
            batch = items[i : i + self.batch_size]
            results = crm.upsert(self._obj_type(mapping, target), SOURCE_ID, batch)
            self.crash_at(f"after_write:{mapping.name}")
            done: list[tuple[Create, Record, bool, str]] = []
            for res in results:
                c = by_key[res.key]
                if res.ok and res.record is not None:
                    done.append((c, res.record, res.created, ""))
                elif res.existing_id:
                    # the CRM allows one live record with this value (a contact's
                    # e-mail): that record is the counterpart, adopt it below
                    refused[c.source_id] = (
                        res.existing_id,
                        f"the {target} CRM refused a second record: {res.error}",
                    )
                else:
                    self._create_failed(mapping, target, c.source_id, str(res.error))
            self._finish_creates(mapping, target, intents, done)
            self.progress(
                f"create {target} {mapping.name}", min(i + self.batch_size, len(items)), len(items)
            )
        wanted = {**recreated, **refused}
        if wanted:
            self._adopt(
                mapping, target, intents, [c for c in creates if c.source_id in wanted], wanted
            )

    def _create_props(self, target: Side, c: Create) -> dict[str, str]:
        props = dict(c.properties)
        if target == "vendor":
            props[PARTNER_ID] = self.conn
        return props

    def _create_failed(
        self, mapping: ObjectMapping, target: Side, source_id: str, why: str
    ) -> None:
        origin = other_side(target)
        self._fail(
            RecordError(
                mapping.name,
                origin,
                source_id,
                None,
                f"creating the {target} counterpart failed: {why}",
            ),
            origin,
            source_id,
        )

    def _finish_creates(
        self,
        mapping: ObjectMapping,
        target: Side,
        intents: Mapping[str, LinkRef],
        done: list[tuple[Create, Record, bool, str]],
        release: Mapping[str, LinkRef | None] | None = None,
    ) -> None:
        """Complete the links of written counterparts. A counterpart that already
        existed may still be held by an older, ended link (an upsert that found the
        record an interrupted adoption wrote): that link gives it up in the same
        transaction, or the link is refused if a live record still holds it."""
        origin = other_side(target)
        release = dict(release or {})
        reused = {c.source_id: rec.id for c, rec, created, _ in done if not created}
        unchecked = {sid: rid for sid, rid in reused.items() if sid not in release}
        if unchecked:
            ok, refused = self._claimable(mapping, target, intents, unchecked)
            release.update(ok)
            for sid, why in refused.items():
                self._create_failed(mapping, target, sid, why)
            done = [d for d in done if d[0].source_id not in refused]
        completed: list[tuple[int, str, dict[str, Any]]] = []
        released: list[tuple[int, Side, str, int]] = []
        for c, rec, created, note in done:
            link_id = intents[c.source_id].id
            assert link_id is not None
            completed.append((link_id, rec.id, dict(c.base)))
            old = release.get(c.source_id)
            if old is not None and old.id != link_id:
                released.append((old.id, target, rec.id, link_id))
            # an upsert that found an interrupted attempt's record counts as created
            self.counts[f"{'adopted' if note else 'created'} {target} {mapping.name}"] += 1
            if note:
                pair = (c.source_id, rec.id) if origin == "partner" else (rec.id, c.source_id)
                self._relinked.append((mapping.name, *pair))
            elif not created:
                # an earlier, interrupted attempt made it: the record may have been
                # edited since, so its base is only an assumption — read both sides
                # again next pass and let the merge settle them
                self._rechecks.append((mapping.name, origin, c.source_id))
            detail = f"from {origin} {c.source_id}"
            if note:
                detail += f" (adopted existing: {note})"
            elif not created:
                detail += " (adopted existing)"
            if old is not None:
                detail += f"; link {old.id} ({old.status}) closed as relinked"
            self.outcomes.append(
                RecordOutcome(
                    mapping.name, target, rec.id, "adopt" if note else "create", "ok", detail=detail
                )
            )
        if released:
            self.store.relink(released, completed=completed, origin=origin)
            self.counts[f"re-linked {mapping.name}"] += len(released)
        else:
            self.store.complete_links(completed, origin=origin)
        self.flush_outcomes()

    def _identity(self, mapping: ObjectMapping, side: Side) -> str | None:
        """The property that names a record of this mapping on ``side`` to people, if
        the mapping syncs it (see :data:`IDENTITY`)."""
        name = IDENTITY.get(self._obj_type(mapping, side))
        mapped = {f.partner if side == "partner" else f.vendor for f in mapping.fields}
        return name if name in mapped else None

    def _recreated(
        self, mapping: ObjectMapping, target: Side, creates: list[Create]
    ) -> dict[str, tuple[str, str]]:
        """Creates whose source re-creates a deleted record: a live ``target`` record
        with the same identity (e-mail, domain, deal name) was the counterpart of a
        record deleted on the source side, and its link ended (unlink or flag policy
        left it live, or it is the vendor's successor of a vendor record deleted too,
        which the ended link kept: :meth:`_follow_successors`). That record is adopted
        instead of making a second one; never a record that was not linked before
        (companies and deals are not unique at HubSpot, so the vendor's own records are
        left alone)."""
        ident = self._identity(mapping, target)
        if ident is None or not creates:
            return {}
        values = {c.source_id: v for c in creates if (v := c.properties.get(ident))}
        if not values:
            return {}
        statuses = self.store.link_counts(self.conn).get(mapping.name, {})
        if not any(statuses.get(s) for s in _ENDED_WITH_SURVIVOR):
            return {}
        found = self._crm(target).find_by_property(
            self._obj_type(mapping, target), ident, sorted(set(values.values())), [SOURCE_ID]
        )
        by_value = {_norm(ident, k): r for k, r in found.items()}
        wanted = {_norm(ident, v) for v in values.values()}
        survivors = {
            v: rid
            for (name, side, v), rid in self._survivors.items()
            if name == mapping.name and side == target and v in wanted
        }
        if survivors:
            alive = self._read(mapping, target, sorted(set(survivors.values())))
            by_value.update(
                {
                    v: rec
                    for v, rid in survivors.items()
                    if (rec := alive.get(rid)) is not None
                    and not rec.archived
                    and _norm(ident, rec.get(ident) or "") == v
                }
            )
        if target == "vendor":
            by_value.update({v: r for (name, v), r in self._kept.items() if name == mapping.name})
        holders = self.store.holders(
            self.conn, mapping.name, target, [r.id for r in by_value.values()]
        )
        origin = other_side(target)
        unheld = {r.id: r for r in by_value.values() if r.id not in holders}
        heirs = self._heirs(mapping, ident, unheld) if target == "vendor" else {}
        out: dict[str, tuple[str, str]] = {}
        taken: set[str] = set()
        for sid, value in values.items():
            rec = by_value.get(_norm(ident, value))
            if rec is None or rec.id in taken:
                continue
            held = holders.get(rec.id)
            if held is None and rec.id in heirs:
                ended, why = heirs[rec.id]
                taken.add(rec.id)
                self._inherited[(mapping.name, sid)] = ended
                out[sid] = (
                    rec.id,
                    f"re-created {origin} record: {target} {rec.id} has the same {ident}"
                    f"{why}; it succeeds vendor {ended.vendor_id}, the counterpart of "
                    f"{origin} {ended.partner_id}, both deleted",
                )
                continue
            if held is None or held.status not in _ENDED_WITH_SURVIVOR:
                continue
            gone = held.partner_id if origin == "partner" else held.vendor_id
            taken.add(rec.id)
            out[sid] = (
                rec.id,
                f"re-created {origin} record: {target} {rec.id} has the same {ident} and was "
                f"the counterpart of {origin} {gone}, which was deleted",
            )
        return out

    def _heirs(
        self, mapping: ObjectMapping, ident: str, recs: Mapping[str, Record]
    ) -> dict[str, tuple[LinkRef, str]]:
        """Unlinked vendor records (by id) that succeed the survivor an ended link kept:
        the partner record was deleted (the link ended, its vendor counterpart left
        live), then the vendor deleted that counterpart and entered it again. Same rule
        as a successor (:meth:`_follow_successors`), from the new record's side: it is
        associated with the vendor counterpart of a shared deal whose mirrored
        associations name the ended link's partner record, that link's vendor record
        is gone and had the same identity, and exactly one such link qualifies. Only
        for identities the CRM does not keep unique (a unique one is refused by the
        CRM and adopted on its 409)."""
        anchors = [m for m in self.mappings if mapping.name in m.associations]
        field_key = next((f.key for f in mapping.fields if f.vendor == ident), None)
        if ident in UNIQUE_IDENTITY or not anchors or not recs or field_key is None:
            return {}
        out: dict[str, tuple[LinkRef, str]] = {}
        for parent in anchors:
            with_parents = self._crm("vendor").read(
                mapping.vendor_object, sorted(recs), [], associations=[parent.vendor_object]
            )
            parent_ids = {
                i
                for r in with_parents.values()
                for i in r.associations.get(parent.vendor_object, ())
            }
            plinks = self.store.link_refs(self.conn, parent.name, "vendor", parent_ids)
            listed: dict[str, dict[str, str]] = {}  # vendor record -> partner id -> parent
            for vid, r in with_parents.items():
                for i in r.associations.get(parent.vendor_object, ()):
                    lk = plinks.get(i)
                    if lk is not None and lk.status == "active":
                        for p in lk.base.get(ASSOC + mapping.name, []):
                            listed.setdefault(vid, {}).setdefault(p, i)
            named = {p for ps in listed.values() for p in ps}
            held = self.store.holders(self.conn, mapping.name, "partner", named)
            ended = {
                p: h
                for p, h in held.items()
                if h.status in _ENDED_WITH_SURVIVOR and h.vendor_id and h.vendor_id not in recs
            }
            alive = self._read(
                mapping, "vendor", sorted({h.vendor_id or "" for h in ended.values()})
            )
            for vid, ps in listed.items():
                value = _norm(ident, recs[vid].get(ident) or "")
                fits = {
                    h.id: (h, ps[p])
                    for p, h in ended.items()
                    if p in ps
                    and h.vendor_id not in alive
                    and _norm(ident, str((h.base.get(field_key) or [None, None])[1] or "")) == value
                }
                if len(fits) == 1 and vid not in out:
                    [(h, via)] = fits.values()
                    out[vid] = (
                        h,
                        f" and is associated with vendor {parent.vendor_object} {via}, as the "
                        "deleted one was",
                    )
        return out

    def _claimable(
        self,
        mapping: ObjectMapping,
        target: Side,
        intents: Mapping[str, LinkRef],
        wanted: Mapping[str, str],
    ) -> tuple[dict[str, LinkRef | None], dict[str, str]]:
        """Which sources may take these existing ``target`` records as counterparts:
        a record held by no link, or by an ended one (given back to release), or by a
        live link whose source-side record is gone. A record a live source record still
        holds is refused: two source records share one identity (a person entered
        twice) and a human has to merge them — linking both would sync them into one."""
        origin = other_side(target)
        holders = self.store.holders(self.conn, mapping.name, target, set(wanted.values()))
        live = {
            sid: h
            for sid, tid in wanted.items()
            if (h := holders.get(tid)) is not None
            and h.id != intents[sid].id
            and h.status in ("pending", "active", "flagged")
        }
        holder_ids = {
            (h.partner_id if origin == "partner" else h.vendor_id) or "" for h in live.values()
        } - {""}
        alive = self._read(mapping, origin, sorted(holder_ids)) if holder_ids else {}
        ok: dict[str, LinkRef | None] = {}
        refused: dict[str, str] = {}
        claimed: dict[str, str] = {}
        for sid, tid in wanted.items():
            if tid in claimed:
                refused[sid] = (
                    f"{target} record {tid} is also the counterpart chosen for {origin} "
                    f"{claimed[tid]} in this pass; two {origin} records have the same identity "
                    "— merge them or change one"
                )
                continue
            held = holders.get(tid)
            if held is not None and held.id == intents[sid].id:
                held = None
            if sid in live and held is not None:
                other = held.partner_id if origin == "partner" else held.vendor_id
                if other is None:
                    refused[sid] = (
                        f"{target} record {tid} is itself being created on the {origin} side "
                        "(a pending create); retried next pass"
                    )
                    continue
                if other in alive:
                    refused[sid] = (
                        f"{target} record {tid} (same identity) is already linked to {origin} "
                        f"record {other}; two {origin} records have the same identity — merge "
                        "them or change one"
                    )
                    continue
            claimed[tid] = sid
            ok[sid] = held
        return ok, refused

    def _adopt(
        self,
        mapping: ObjectMapping,
        target: Side,
        intents: Mapping[str, LinkRef],
        creates: list[Create],
        wanted: Mapping[str, tuple[str, str]],
    ) -> None:
        """Make existing ``target`` records the counterparts of these creates: write the
        create's values and the source id to the record (so an interrupted adoption is
        found again by the upsert on rerun), then link it, closing any old link that
        held it. Each adoption is in the run log with its reason; a record that cannot
        be adopted is a record error naming what to do."""
        ok, refused = self._claimable(
            mapping, target, intents, {sid: tid for sid, (tid, _) in wanted.items()}
        )
        for sid in ok:
            if ok[sid] is None and (mapping.name, sid) in self._inherited:
                ok[sid] = self._inherited.pop((mapping.name, sid))
        ids = sorted({wanted[sid][0] for sid in ok})
        existing = self._read(mapping, target, ids) if ids else {}
        items: list[tuple[str, dict[str, str]]] = []
        chosen: dict[str, Create] = {}
        for c in creates:
            sid = c.source_id
            tid, why = wanted[sid]
            if sid in refused:
                self._create_failed(mapping, target, sid, f"{why}; {refused[sid]}")
                continue
            rec = existing.get(tid)
            if rec is None:
                self._create_failed(
                    mapping, target, sid, f"{why}; but {target} record {tid} cannot be read"
                )
                continue
            owner = rec.get(PARTNER_ID) if target == "vendor" else None
            source = rec.get(SOURCE_ID)
            if (owner and owner != self.conn) or (
                target == "vendor" and source and not source.startswith(f"{self.conn}:")
            ):
                who = owner or (source or "").split(":")[0]
                self._create_failed(
                    mapping,
                    target,
                    sid,
                    f"{why}; {target} record {tid} is shared with partner {who}, so it is "
                    f"not taken over — clear its {PARTNER_ID} and {SOURCE_ID} if it should "
                    f"move to {self.conn}",
                )
                continue
            key = self._source_key(target, sid)
            items.append((tid, {**self._create_props(target, c), SOURCE_ID: key}))
            chosen[tid] = c
        crm = self._crm(target)
        for i in range(0, len(items), self.batch_size):
            batch = items[i : i + self.batch_size]
            results = crm.update(self._obj_type(mapping, target), batch)
            self.crash_at(f"after_write:{mapping.name}")
            done: list[tuple[Create, Record, bool, str]] = []
            for res in results:
                c = chosen[res.key]
                if res.ok and res.record is not None:
                    done.append((c, res.record, False, wanted[c.source_id][1]))
                else:
                    self._create_failed(
                        mapping,
                        target,
                        c.source_id,
                        f"{wanted[c.source_id][1]}; adopting {target} record {res.key} "
                        f"failed: {res.error}",
                    )
            self._finish_creates(
                mapping,
                target,
                intents,
                done,
                {c.source_id: ok.get(c.source_id) for c, *_ in done},
            )

    def _apply_updates(
        self,
        mapping: ObjectMapping,
        updates: list[Update],
        still_open: Collection[tuple[int, str]] = (),
    ) -> None:
        """``still_open``: (link, field) pairs this plan found still in conflict; their
        open conflict rows stay open whatever else the pair's update settles."""
        failed: dict[int, str] = {}
        for side in ("partner", "vendor"):
            s: Side = side
            items = [
                (
                    (u.partner_id if s == "partner" else u.vendor_id),
                    (u.partner_properties if s == "partner" else u.vendor_properties),
                    u,
                )
                for u in updates
                if (u.partner_properties if s == "partner" else u.vendor_properties)
            ]
            crm = self._crm(s)
            for i in range(0, len(items), self.batch_size):
                batch = items[i : i + self.batch_size]
                results = crm.update(
                    self._obj_type(mapping, s), [(rid, props) for rid, props, _ in batch]
                )
                self.crash_at(f"after_write:{mapping.name}")
                by_id = {r.key: r for r in results}
                for rid, _, u in batch:
                    res = by_id.get(rid)
                    if res is None or not res.ok:
                        failed[u.link_id] = (
                            f"writing {s} {rid}: {res.error if res else 'no result'}"
                        )
                self.progress(
                    f"update {s} {mapping.name}", min(i + self.batch_size, len(items)), len(items)
                )
        bases: list[tuple[int, dict[str, Any]]] = []
        open_links = {c.link_id for c in self.store.conflicts(self.conn)}
        for u in updates:
            if u.link_id in failed:
                self._fail(
                    RecordError(mapping.name, "partner", u.partner_id, None, failed[u.link_id]),
                    "partner",
                    u.partner_id,
                )
                continue
            bases.append((u.link_id, dict(u.base)))
            if u.writes:
                self.counts[f"updated {mapping.name}"] += 1
                self.outcomes.append(
                    RecordOutcome(
                        mapping.name,
                        "partner",
                        u.partner_id,
                        "update",
                        "ok",
                        detail="; ".join(u.reasons),
                    )
                )
            if u.link_id in open_links:
                self.store.close_conflicts_for(
                    self.conn,
                    u.link_id,
                    [
                        k
                        for k in u.base
                        if not k.startswith(ASSOC) and (u.link_id, k) not in still_open
                    ],
                    "settled: both sides now agree",
                )
        self.store.save_bases(bases)

    def _close_ended_conflicts(self, link_ids: Sequence[int], resolution: str) -> None:
        """A pair that stopped syncing has nothing left to resolve: an open conflict
        would keep every later pass at exit 1 and could never be resolved."""
        for link_id in link_ids:
            self.store.close_conflicts_for(self.conn, link_id, None, resolution)

    def _follow_successors(self, mapping: ObjectMapping, deletes: list[Delete]) -> list[Delete]:
        """A vendor record deleted while the vendor holds its **successor** (the record
        deleted and entered again): the link follows the successor instead of the
        delete policy applying to the partner's record, which is still the same thing.
        A successor is a live vendor record with the same identity, held by no live
        link, belonging to no other partner and carrying no other record's source id;
        and, since only e-mails are unique at HubSpot (:data:`UNIQUE_IDENTITY`), a
        company must also be associated with the vendor counterpart of a shared deal
        the deleted one was mirrored onto (:meth:`_successors`) — a vendor company with
        the same domain off the deal is the vendor's own. Deals are never followed:
        nothing vouches for a deal with the same name. Exactly one successor or none.

        The successor gets this connection's partner id (so its changes are seen) and
        the pair is merged again in this pass from fresh reads. When the partner record
        is gone too (both sides deleted and re-created before a pass), the link still
        moves to the successor, and ends at once (``unlinked``, in the same
        transaction): a re-created partner record then adopts the successor as it
        adopts any counterpart left by an ended link (:meth:`_recreated`), in this pass
        or a later one, instead of a third record. Returns the deletes still to apply."""
        ident = self._identity(mapping, "vendor")
        field_key = next((f.key for f in mapping.fields if f.vendor == ident), None)
        if ident is None or field_key is None:
            return deletes
        anchors = (
            []
            if ident in UNIQUE_IDENTITY
            else [m for m in self.mappings if mapping.name in m.associations]
        )
        if ident not in UNIQUE_IDENTITY and not anchors:
            return deletes
        vendor_seen = self.seen.get(mapping.name, ObjectRecords({}, {})).vendor
        both_gone = {
            d.link_id
            for d in deletes
            if d.gone_side == "partner"
            and (r := vendor_seen.get(d.counterpart_id)) is not None
            and r.archived
        }
        values: dict[int, tuple[LinkRef, str]] = {}
        for side in SIDES:
            # a vendor-only delete names the partner record; a both-sides one the vendor's
            group = [
                d
                for d in deletes
                if (d.gone_side == "vendor" and side == "partner")
                or (d.link_id in both_gone and side == "vendor")
            ]
            if not group:
                continue
            refs = self.store.link_refs(
                self.conn, mapping.name, side, [d.counterpart_id for d in group]
            )
            for d in group:
                ref = refs.get(d.counterpart_id)
                pair = ref.base.get(field_key) if ref is not None else None
                if ref is not None and ref.id == d.link_id and pair and pair[1]:
                    values[d.link_id] = (ref, str(pair[1]))
        if not values:
            return deletes
        found = self._successors(mapping, ident, anchors, values)
        holders = self.store.holders(
            self.conn, mapping.name, "vendor", {r.id for recs in found.values() for r, _ in recs}
        )
        rest: list[Delete] = []
        chosen: dict[str, tuple[Delete, LinkRef, LinkRef | None, str]] = {}
        kept: dict[str, Record] = {}
        for d in deletes:
            ref, value = values.get(d.link_id, (None, ""))
            if ref is None:
                rest.append(d)
                continue
            ours = self._source_key("vendor", ref.partner_id or "")
            fit: list[tuple[Record, LinkRef | None, str]] = []
            for succ, why in found.get(d.link_id, []):
                held = holders.get(succ.id)
                owner = succ.get(PARTNER_ID)
                source = succ.get(SOURCE_ID)
                if (
                    succ.archived
                    or succ.id == ref.vendor_id
                    or succ.id in chosen
                    or _norm(ident, succ.get(ident) or "") != _norm(ident, value)
                    or (source and source != ours)  # another record's counterpart
                    or (owner and owner != self.conn)
                    or (held is not None and held.status not in ("unlinked", "deleted"))
                ):
                    continue
                fit.append((succ, held, why))
            if len({s.id for s, _, _ in fit}) != 1:
                rest.append(d)  # none, or two look-alikes: nothing says which it is
                continue
            succ, held, why = fit[0]
            chosen[succ.id] = (d, ref, held, why)
            kept[succ.id] = succ
        if not chosen:
            return deletes
        items = []
        for vid, (_, ref, _, _) in chosen.items():
            props = {PARTNER_ID: self.conn}
            if ref.origin == "partner" and ref.partner_id:
                props[SOURCE_ID] = self._source_key("vendor", ref.partner_id)
            items.append((vid, props))
        results = self._crm("vendor").update(mapping.vendor_object, items)
        self.crash_at(f"after_write:{mapping.name}")
        released: list[tuple[int, Side, str, int]] = []
        moved: list[tuple[int, Side, str, dict[str, Any]]] = []
        ended: list[int] = []
        followed: list[tuple[str, str]] = []
        for res in results:
            d, ref, held, why = chosen[res.key]
            if not res.ok:
                rest.append(d)  # the delete policy applies as if there were no successor
                continue
            # associations are mirrored again onto the new record
            base = {k: v for k, v in ref.base.items() if not k.startswith(ASSOC)}
            moved.append((ref.id, "vendor", res.key, base))
            if held is not None:
                released.append((held.id, "vendor", res.key, ref.id))
            assert ref.partner_id is not None
            if d.link_id in both_gone:
                # the partner record is gone too: the link ends holding the successor
                ended.append(ref.id)
                rest.append(Delete(d.object, d.link_id, "partner", res.key, "unlink"))
                self._kept[(mapping.name, _norm(ident, values[d.link_id][1]))] = kept[res.key]
                detail = (
                    f"vendor {ref.vendor_id} and partner {ref.partner_id} were both deleted; "
                    f"vendor {res.key} has the same {ident}{why}: the ended link keeps it, "
                    "so a re-created partner record adopts it"
                )
            else:
                followed.append((ref.partner_id, res.key))
                self._relinked.append((mapping.name, ref.partner_id, res.key))
                self.counts[f"re-linked {mapping.name}"] += 1
                detail = (
                    f"vendor {ref.vendor_id} was deleted; partner {ref.partner_id} re-linked "
                    f"to vendor {res.key}, which has the same {ident}{why}"
                )
            self.outcomes.append(
                RecordOutcome(mapping.name, "vendor", res.key, "relink", "ok", detail=detail)
            )
        if moved:
            self.store.relink(released, moved=moved, unlinked=ended)
            self._reassociate(mapping, followed)
        return rest

    def _successors(
        self,
        mapping: ObjectMapping,
        ident: str,
        anchors: Sequence[ObjectMapping],
        values: Mapping[int, tuple[LinkRef, str]],
    ) -> dict[int, list[tuple[Record, str]]]:
        """Candidate successors of the vendor records of these links, by link id, each
        with what vouches for it (said in the run log). Without ``anchors`` (a unique
        identity): the live vendor record with the identity. With them: the vendor
        records associated with the vendor counterparts of the ``anchors``' shared
        records (deals) whose mirrored associations named the link's partner record —
        read from the deals' bases, which keep them after both records are gone."""
        if not anchors:
            found = self._crm("vendor").find_by_property(
                mapping.vendor_object,
                ident,
                sorted({v for _, v in values.values()}),
                [SOURCE_ID, PARTNER_ID],
            )
            by_value = {_norm(ident, k): r for k, r in found.items()}
            return {
                link_id: [(rec, "")]
                for link_id, (_, value) in values.items()
                if (rec := by_value.get(_norm(ident, value))) is not None
            }
        by_partner = {
            ref.partner_id: link_id for link_id, (ref, _) in values.items() if ref.partner_id
        }
        on: dict[int, dict[str, str]] = defaultdict(dict)  # link -> successor id -> why
        for parent in anchors:
            mirrored = self.store.links_mirroring(
                self.conn, parent.name, ASSOC + mapping.name, by_partner
            )
            parent_ids = sorted(
                {lk.vendor_id for lks in mirrored.values() for lk in lks if lk.vendor_id}
            )
            if not parent_ids:
                continue
            parents = self._crm("vendor").read(
                parent.vendor_object, parent_ids, [], associations=[mapping.vendor_object]
            )
            for pid, lks in mirrored.items():
                for lk in lks:
                    rec = parents.get(lk.vendor_id or "")
                    for vid in rec.associations.get(mapping.vendor_object, ()) if rec else ():
                        on[by_partner[pid]].setdefault(
                            vid,
                            f" and is associated with vendor {parent.vendor_object} "
                            f"{lk.vendor_id}, as the deleted one was",
                        )
        ids = sorted({vid for cands in on.values() for vid in cands})
        recs = self._read(mapping, "vendor", ids) if ids else {}
        return {
            link_id: [(recs[vid], why) for vid, why in cands.items() if vid in recs]
            for link_id, cands in on.items()
        }

    def _reassociate(self, mapping: ObjectMapping, moved: list[tuple[str, str]]) -> None:
        """``moved``: (partner id, new vendor id) of re-linked pairs. The vendor
        counterparts of the partner records associated with them (a shared deal of a
        re-linked contact) are associated with the new vendor record too: the parent's
        base already names the partner record as mirrored, so the pass would not
        mirror it again by itself. If that fails, the partner id leaves the parent's
        base and the parent is read again next pass, which mirrors it then."""
        parents = [m for m in self.mappings if mapping.name in m.associations]
        by_partner = dict(moved)
        if not parents or not by_partner:
            return
        records = self._crm("partner").read(
            mapping.partner_object,
            sorted(by_partner),
            [],
            associations=[p.partner_object for p in parents],
        )
        for parent in parents:
            key = ASSOC + mapping.name
            owners = {
                owner
                for rec in records.values()
                for owner in rec.associations.get(parent.partner_object, ())
            }
            links = self.store.link_refs(self.conn, parent.name, "partner", owners)
            wanted = [
                (lk, pid)
                for lk in links.values()
                if lk.status == "active" and lk.vendor_id
                for pid in lk.base.get(key, [])
                if pid in by_partner
            ]
            if not wanted:
                continue
            results = self._crm("vendor").associate(
                parent.vendor_object,
                mapping.vendor_object,
                [(lk.vendor_id or "", by_partner[pid]) for lk, pid in wanted],
            )
            failed = {r.key for r in results if not r.ok}
            redo: dict[int, dict[str, Any]] = {}
            for lk, pid in wanted:
                if lk.vendor_id in failed and lk.partner_id:
                    base = redo.setdefault(lk.id, dict(lk.base))
                    base[key] = [i for i in base.get(key, []) if i != pid]
                    self._retries.append(
                        (parent.name, "partner", lk.partner_id, "association after a re-link")
                    )
            self.store.save_bases(list(redo.items()))
            done = sum(1 for lk, _ in wanted if lk.vendor_id not in failed)
            self.counts[f"associated {parent.name}→{mapping.name}"] += done

    def _apply_deletes(self, mapping: ObjectMapping, deletes: list[Delete]) -> None:
        deletes = self._follow_successors(mapping, deletes)
        archive = [d for d in deletes if d.policy == "archive"]
        for side in ("partner", "vendor"):
            s: Side = side
            group = [d for d in archive if d.gone_side == other_side(s)]
            if not group:
                continue
            results = self._crm(s).archive(
                self._obj_type(mapping, s), [d.counterpart_id for d in group]
            )
            by_id = {r.key: r for r in results}
            ok_links = []
            for d in group:
                res = by_id.get(d.counterpart_id)
                if res is not None and res.ok:
                    ok_links.append(d.link_id)
                    self.outcomes.append(
                        RecordOutcome(
                            mapping.name,
                            s,
                            d.counterpart_id,
                            "archive",
                            "ok",
                            detail=f"{d.gone_side} record was deleted",
                        )
                    )
                else:
                    self._fail(
                        RecordError(
                            mapping.name,
                            s,
                            d.counterpart_id,
                            None,
                            f"archiving failed: {res.error if res else 'no result'}",
                        ),
                        s,
                        d.counterpart_id,
                    )
            self.store.set_link_status(ok_links, "deleted")
            self._close_ended_conflicts(ok_links, "record deleted")
            self.counts[f"archived {s} {mapping.name}"] += len(ok_links)
        self._note_survivors(mapping, [d for d in deletes if d.policy in ("unlink", "flag")])
        for policy, status in (("unlink", "unlinked"), ("flag", "flagged")):
            group = [d for d in deletes if d.policy == policy]
            if group:
                self.store.set_link_status([d.link_id for d in group], status)
                self._close_ended_conflicts(
                    [d.link_id for d in group], f"record deleted ({status})"
                )
                self.counts[f"{status} {mapping.name}"] += len(group)
                for d in group:
                    self.outcomes.append(
                        RecordOutcome(
                            mapping.name,
                            other_side(d.gone_side),
                            d.counterpart_id,
                            policy,
                            "ok",
                            detail=f"{d.gone_side} record was deleted",
                        )
                    )

    def _note_survivors(self, mapping: ObjectMapping, deletes: list[Delete]) -> None:
        """Remember, by identity, the records these ending links leave live, for
        :meth:`_recreated` in this pass (see ``_survivors``)."""
        if not deletes:
            return
        for side in SIDES:
            ident = self._identity(mapping, side)
            field_key = next(
                (
                    f.key
                    for f in mapping.fields
                    if (f.partner if side == "partner" else f.vendor) == ident
                ),
                None,
            )
            group = [d for d in deletes if other_side(d.gone_side) == side]
            if ident is None or field_key is None or not group:
                continue
            refs = self.store.link_refs(
                self.conn, mapping.name, side, [d.counterpart_id for d in group]
            )
            for d in group:
                ref = refs.get(d.counterpart_id)
                pair = ref.base.get(field_key) if ref is not None else None
                value = pair[0 if side == "partner" else 1] if pair else None
                if ref is not None and ref.id == d.link_id and value:
                    key = (mapping.name, side, _norm(ident, str(value)))
                    self._survivors[key] = d.counterpart_id

    # ------------------------------------------------------------------ associations

    def _sync_associations(self, finished: Collection[str] | None = None) -> None:
        """Mirror the partner side's associations of shared records onto the vendor
        side (add-only), for each (record, associated) pair of mappings once both are
        applied — ``finished`` names those applied so far (all when ``None``). Deals →
        companies then goes out while contacts are still being written, instead of
        everything waiting for the end of the pass."""
        for mapping in self.mappings:
            for name in mapping.associations:
                if name not in self.by_name or (mapping.name, name) in self._assoc_done:
                    continue
                if finished is not None and not (mapping.name in finished and name in finished):
                    continue
                self._assoc_done.add((mapping.name, name))
                self._associate(mapping, self.by_name[name])

    def _associate(self, mapping: ObjectMapping, target: ObjectMapping) -> None:
        """One pair of mappings. The mirrored partner ids live in the base under
        ``@assoc:`` so unchanged associations cost no call."""
        partner_recs = self.seen.get(mapping.name, ObjectRecords({}, {})).partner
        with_assoc = {
            rid: r
            for rid, r in partner_recs.items()
            if r.associations.get(target.partner_object) and not r.archived
        }
        if not with_assoc:
            return
        links = self.store.link_refs(self.conn, mapping.name, "partner", with_assoc)
        all_ids = {
            i for r in with_assoc.values() for i in r.associations.get(target.partner_object, ())
        }
        t_links = self.store.link_refs(self.conn, target.name, "partner", all_ids, base=False)
        pairs: list[tuple[str, str]] = []
        owners: dict[tuple[str, str], tuple[LinkRef, list[str]]] = {}
        for rid, rec in with_assoc.items():
            link = links.get(rid)
            if link is None or link.status != "active" or not link.vendor_id:
                continue
            want = sorted(
                i
                for i in rec.associations.get(target.partner_object, ())
                if i in t_links and t_links[i].status == "active" and t_links[i].vendor_id
            )
            have = set(link.base.get(ASSOC + target.name, []))
            missing = [i for i in want if i not in have]
            for i in missing:
                pair = (link.vendor_id, t_links[i].vendor_id or "")
                pairs.append(pair)
                owners[pair] = (link, sorted(have | set(want)))
        if self.ctx.dry_run or not pairs:
            return
        results = self._crm("vendor").associate(mapping.vendor_object, target.vendor_object, pairs)
        failed_from = {r.key for r in results if not r.ok}
        new_bases: list[tuple[int, dict[str, Any]]] = []
        for pair, (link, ids) in owners.items():
            if pair[0] in failed_from:
                assert link.partner_id is not None
                self._retries.append(
                    (mapping.name, "partner", link.partner_id, "association failed")
                )
                continue
            link.base[ASSOC + target.name] = ids
            new_bases.append((link.id, dict(link.base)))
        self.counts[f"associated {mapping.name}→{target.name}"] += len(pairs) - len(failed_from)
        self.plan.extend(
            Associate(mapping.name, "vendor", link.id or 0, target.name, tuple(ids))
            for link, ids in {id(v[0]): v for v in owners.values()}.values()
        )
        if new_bases:
            self.store.save_bases(new_bases)


@dataclass
class _Stream:
    """A mapping being applied chunk by chunk."""

    mapping: ObjectMapping
    via: set[str]
    conflicts: list[Any]
    unclaimed: dict[str, Record]  # changed vendor records no chunk has paired yet
    done: set[str] = field(default_factory=set)  # partner ids already applied
