"""One sync pass of one connection: detect → reconcile → hooks → apply → commit.

The order of durable steps is what makes a crash harmless:

1. a create's *intent* (a pending link) is committed before the counterpart is
   written, and the counterpart is written by upsert on a unique source-id property —
   so a crash between the write and the link is adopted on rerun, never duplicated;
2. a pair's base snapshot moves only after every write of the pair succeeded;
3. failed records go to the retry list (re-read by id next pass);
4. cursors move last, to the high-water mark frozen before detection.

A rerun after a crash anywhere re-detects the same window and converges. Each set
of records the pass applies goes through these steps on its own, so the pass may
apply its sets in any order that has a record's parent applied before it (a crash
between two sets leaves each whole or not begun, and the cursors unmoved).

Here: the pass's order (streamed chunk by chunk; with hooks, the deals streamed that
way once the companies and contacts they are decided on were detected and held, and
after each chunk of deals, once the next has come, the held companies and contacts
that chunk's deals share; the rest of those last) and, per set of records, the steps
in order (:meth:`SyncPass._process`).
Each step lives in its own module: detection's thread in ``engine/detect.py``; the
records reconcile needs and their pair states in ``engine/gather.py``; links that
follow CRM merges in ``engine/merges.py``; the pure merge in ``engine/reconcile.py``;
the writes in ``engine/apply.py`` (with re-created records in
``engine/recreated.py`` and associations in ``engine/associations.py``); the run
around the pass (lock, run log, result) in ``engine/run.py``.
"""

from __future__ import annotations

import logging
from collections import ChainMap, Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from connector.adapters.base import CRMAdapter, SupportsListing, SupportsSearchedReads
from connector.adapters.naming import HUBSPOT_NAMING, Naming
from connector.config.models import ObjectMapping
from connector.engine import apply, associations, gather, merges, migrate
from connector.engine.detect import Detection, DetectJob, LockedAdapter, plan_listing, window_start
from connector.engine.hooks import Chunk, Hook, ObjectRecords, PassContext, Planned
from connector.engine.markers import PARTNER_ID, SOURCE_ID
from connector.engine.plan import Action, Create, Plan, RecordError, Update
from connector.engine.reconcile import FieldPlan, reconcile
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
from connector.records import SIDES, PropertySpec, Record, Side
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
    "apply_update",
    "crash_points",
    "required_properties",
    "run_pass",
]

log = logging.getLogger("dealsync.engine")

DETECT_CHUNK = 1000
"""Partner records handed from detection to apply at a time. A multiple of 1,000
(HubSpot's association batch read) so streaming costs no extra call."""


PLAN_KEEP = 2000
"""Actions a real pass keeps in its plan (all are counted): see :class:`Plan`."""


def required_properties(
    mappings: Sequence[ObjectMapping], names: Mapping[Side, Naming] | None = None
) -> dict[Side, list[PropertySpec]]:
    """Custom properties the engine itself needs on each side (``dealsync setup``), named
    as each side's CRM spells the markers (``names``, HubSpot's by default)."""
    vendor = (names or {}).get("vendor", HUBSPOT_NAMING)
    partner = (names or {}).get("partner", HUBSPOT_NAMING)
    out: dict[Side, list[PropertySpec]] = {"partner": [], "vendor": []}
    for m in mappings:
        out["vendor"].append(
            PropertySpec(m.vendor_object, vendor.source_id, "dealsync source id", unique=True)
        )
        out["vendor"].append(PropertySpec(m.vendor_object, vendor.partner_id, "dealsync partner"))
        out["partner"].append(
            PropertySpec(m.partner_object, partner.source_id, "dealsync source id", unique=True)
        )
        for side, conds in (("partner", m.share.partner), ("vendor", m.share.vendor)):
            obj = m.partner_object if side == "partner" else m.vendor_object
            for cond in conds or []:
                out[side].append(PropertySpec(obj, cond.property, cond.property))  # type: ignore[index]
    return out


def apply_update(
    ctx: PassContext, mapping: ObjectMapping, update: Update, *, keep_open: Collection[str]
) -> list[RecordError]:
    """Write one pair's :class:`Update` outside a pass — a conflict resolved by hand
    (``dealsync conflicts resolve``) — through the pass's own update path, so both
    write the same way and move the base the same way. ``keep_open``: fields whose
    open conflicts the update leaves to the caller. Returns the pair's errors."""
    sp = SyncPass(mappings=[mapping], store=ctx.store, ctx=ctx)
    apply.apply_updates(sp, mapping, [update], {(update.link_id, k) for k in keep_open})
    return sp.errors


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
        full: bool = False,
        only: Mapping[str, Mapping[Side, Collection[str]]] | None = None,
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
        # a real pass keeps the first PLAN_KEEP actions (and counts them all): its
        # memory is one chunk's, not N's; a dry run and a resync print theirs
        self.plan = Plan(keep=None if ctx.dry_run or only is not None else PLAN_KEEP)
        self.outcomes: list[RecordOutcome] = []
        self.counts: Counter[str] = Counter()
        self.errors: list[RecordError] = []
        self.seen: dict[str, ObjectRecords] = {}
        self.detect_chunk = detect_chunk or DETECT_CHUNK
        # ``sync --full``: every linked pair is re-read by id and reconciled, so drift
        # detection did not see is merged too; ``only`` (``resync``): just these
        # records ({mapping: {side: ids}}), read by id, with no detection at all
        self.full = full
        # the mappings whose applied partner records the pass reads again: the
        # association step (the mapping has associations), via-sharing (another is
        # shared via it), ``sync --full`` (which ids were applied). Nothing reads a
        # first sync's 2N companies and contacts again, so they are not kept (their
        # ids cost memory growing with N: issue 17)
        parents = {m.share.via for m in self.mappings if m.share.via}
        self._read_again = {
            m.name for m in self.mappings if full or m.associations or m.name in parents
        }
        self.only = only
        self.fresh: set[tuple[str, Side, str]] = set()  # read by id this pass
        # the records of the set being applied, per mapping: where apply finds the
        # version of an unwritten side that a new base is taken from
        self.in_hand: dict[str, dict[Side, dict[str, Record]]] = {}
        self._locked: dict[Side, CRMAdapter] = {}
        # records read again by id next pass: failed ones (with why), counterparts
        # adopted from an interrupted attempt, and the retries this pass took up
        self.retries: list[tuple[str, Side, str, str]] = []
        self.rechecks: list[tuple[str, Side, str]] = []
        self.cleared: list[tuple[str, Side, str]] = []
        self._acc: dict[str, tuple[dict[str, Record], dict[str, Record]]] = {}
        # the kept properties of slim records, one dictionary per distinct content
        # (most deals keep the same share flag): see :func:`slim`
        self._kept_shapes: dict[tuple[tuple[str, str | None], ...], dict[str, str | None]] = {}
        self._started = False
        self._via_cache: dict[str, dict[str, set[str]]] = {}
        self.assoc_done: set[tuple[str, str]] = set()
        self._finished: set[str] = set()
        # (mapping, partner id, vendor id) of pairs re-linked to an existing record this
        # pass: merged again at once from fresh reads (see _settle_relinked)
        self.relinked: list[tuple[str, str, str]] = []
        self._settled: set[tuple[str, Side, str]] = set()
        # (mapping, identity value) -> vendor successor an ended link kept this pass
        # (both sides re-created): adopted by the new partner record without a search,
        # which may not show a record changed moments ago (see recreated.follow_successors)
        self.kept: dict[tuple[str, str], Record] = {}
        # (mapping, side, identity value) -> id of the record a link ended this pass
        # (unlink, flag) left live on that side: a record re-created in the same window
        # adopts it read by id, since HubSpot's search may not show it yet (written by
        # the pass before) or may show a look-alike instead (domains are not unique)
        self.survivors: dict[tuple[str, Side, str], str] = {}
        # (mapping, source id) -> ended link whose gone survivor the record adopted for
        # that source succeeds (see recreated._heirs): closed as relinked by the adoption
        self.inherited: dict[tuple[str, str], LinkRef] = {}
        # mapping migrations (engine/migrate.py): field keys whose base is forgotten
        # while the migration merges an object's linked pairs, and what it reported
        self.forget: dict[str, set[str]] = {}
        self.migration = migrate.MigrationReport()
        self.migration_failed = False
        # children of the streamed object read with its chunks (:meth:`read_with_stream`)
        self._read_with: dict[str, Mapping[str, str] | None] = {}

    # ------------------------------------------------------------------ helpers

    def crm(self, side: Side) -> CRMAdapter:
        return self._locked.get(side) or self.ctx.crm(side)

    def names(self, side: Side) -> Naming:
        """How that side's CRM spells the connector's markers and its merge list (its
        adapter says: ``adapter.naming``)."""
        return self.crm(side).naming

    def obj_type(self, mapping: ObjectMapping, side: Side) -> str:
        return mapping.partner_object if side == "partner" else mapping.vendor_object

    def _props(self, mapping: ObjectMapping, side: Side) -> list[str]:
        compiled = self.compiled[mapping.name]
        props = compiled.partner_properties() if side == "partner" else compiled.vendor_properties()
        conds = mapping.share.partner if side == "partner" else mapping.share.vendor
        extra = [c.property for c in conds or []]
        extra.append(self.names(side).source_id)
        if side == "vendor":
            extra.append(self.names("vendor").partner_id)
        for hook in self.hooks:
            extra.extend(hook.properties(mapping, side, self.names(side)))
        return sorted(set(props) | set(extra))

    def _assoc_types(self, mapping: ObjectMapping, side: Side) -> list[str]:
        """Association types to read with a side's records. Associations are mirrored
        partner → vendor and sharing follows the partner's (via), so the vendor side's
        are never used: not reading them saves two calls per 1,000 changed records."""
        if side == "vendor":
            return []
        names = set(mapping.associations)
        names |= {m.name for m in self.mappings if m.share.via == mapping.name}
        return sorted(self.obj_type(self.by_name[n], side) for n in names if n in self.by_name)

    def read(self, mapping: ObjectMapping, side: Side, ids: Sequence[str]) -> dict[str, Record]:
        """Records of one side by id, with what detection would have read of them."""
        return self.crm(side).read(
            self.obj_type(mapping, side),
            ids,
            self._props(mapping, side),
            associations=self._assoc_types(mapping, side),
        )

    def read_at(self, mapping: ObjectMapping, side: Side, rid: str) -> datetime | None:
        """The modification time of a record as this pass has it in hand (the set
        being applied), or ``None``: what a base taken from it records as its version."""
        rec = self.in_hand.get(mapping.name, {}).get(side, {}).get(rid)
        return None if rec is None or rec.archived else rec.updated_at

    def source_key(self, target: Side, source_id: str) -> str:
        return f"{self.conn}:{source_id}" if target == "vendor" else f"vendor:{source_id}"

    def fail(self, err: RecordError, retry_side: Side, retry_id: str) -> None:
        self.errors.append(err)
        self.counts["failed"] += 1
        self.outcomes.append(
            RecordOutcome(
                err.object, err.side, err.record_id, "sync", "failed", err.field, err.message
            )
        )
        self.retries.append((err.object, retry_side, retry_id, str(err)))

    # ------------------------------------------------------------------ the pass

    def run(self) -> None:
        if self.only is not None:
            self._run_only(self._ordered())
            return
        ctx = self.ctx
        hw = {"partner": ctx.partner_crm.now(), "vendor": ctx.vendor_crm.now()}
        order = self._ordered()
        # the mapping changed since the last pass: migrate before detecting
        migration = migrate.run_migration(self)
        streamed = self.streamed(order) if self.hooks else None
        # a first sync reads the streamed object's children with its chunks
        self._read_with = self.read_with_stream(order, streamed)
        # with hooks, the objects held whole are detected first, the streamed one last
        detect_order = [m for m in order if m is not streamed] + ([streamed] if streamed else [])
        jobs = [
            DetectJob(
                mapping.name,
                side,
                self.obj_type(mapping, side),
                window_start(self.store.cursor(self.conn, side, mapping.name), self.overlap),
                hw[side],
                self._props(mapping, side),
                self._where(mapping, side),
                self._assoc_types(mapping, side),
                skip=side == "partner"
                and mapping.name in self._read_with
                and self._read_with[mapping.name] is None,
            )
            for mapping in detect_order
            for side in ("vendor", "partner")
        ]
        if self.hooks:  # a first sync lists one held mapping beside the others' searches
            held = [
                m.name for m in detect_order if m is not streamed and m.name not in self._read_with
            ]
            jobs = plan_listing(jobs, held, ctx.partner_crm)
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
                self._run_hooked(order, detection, streamed)
            else:
                self._run_streamed(order, detection)
        finally:
            detection.stop()
            self._locked = {}

        associations.sync_associations(self)  # planned in a dry run too, not written
        if not ctx.dry_run:
            again = self.retries + [
                (obj, side, rid, "re-read after adopting an existing counterpart")
                for obj, side, rid in self.rechecks
            ]
            self.store.add_retries(self.conn, again)
            keep = {(r[0], r[1], r[2]) for r in again}
            self.store.clear_retries(self.conn, [c for c in self.cleared if c not in keep])
            self.crash_at("before_cursor")
            self.store.set_cursors(
                self.conn,
                {(side, m.name): hw[side] for m in self.mappings for side in ("partner", "vendor")},
            )
            self.crash_at("after_cursor")
        migrate.finish_migration(self, migration)

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

    def streamed(self, order: Sequence[ObjectMapping]) -> ObjectMapping | None:
        """With hooks, the mapping whose partner records stream: the first that others
        are shared *via* (deals) and that is itself shared via none. Its children
        (companies, contacts) are detected and held first (a first sync reads them
        with its chunks instead: :meth:`read_with_stream`), since the hooks decide a
        deal on its company and contacts; ``None``: nothing streams."""
        parents = {m.share.via for m in order if m.share.via}
        return next(
            (m for m in order if m.name in parents and m.share.via not in self.by_name),
            None,
        )

    def _where(self, mapping: ObjectMapping, side: Side) -> dict[str, str] | None:
        """What a side's detection keeps: the vendor's records of this partner; of a
        child read with the stream, what a hook wants detected all the same."""
        if side == "vendor":
            return {self.names("vendor").partner_id: self.conn}
        wanted = self._read_with.get(mapping.name)
        return dict(wanted) if wanted else None

    def read_with_stream(
        self, order: Sequence[ObjectMapping], streamed: ObjectMapping | None
    ) -> dict[str, Mapping[str, str] | None]:
        """The children of the streamed object (companies, contacts) whose partner
        records a first sync reads with each chunk of it, by id, instead of detecting
        them whole first; each with what of it is detected all the same (a hook's
        :meth:`~connector.engine.hooks.Hook.detect_anyway`: the contacts flagged as
        leads), ``None``: nothing.

        Held whole, the children hold the first deal's decision until every one of
        them was read (20,000 at N = 10,000 take the partner portal 10 s whichever
        way), and the vendor portal waits; and they cost memory in N. Read with the
        deals, the first chunk is decided within seconds, the vendor's writes follow
        the deals' searches, and a child no deal shares is not read at all — which is
        only right while nothing of the child is shared yet: its partner side never
        detected (no cursor), none of it linked, it shared only via the streamed
        object, no migration bringing records in, not ``sync --full``, and at most one
        hook wanting some of it whole (one ``where``)."""
        if streamed is None or self.full or self.only is not None:
            return {}
        out: dict[str, Mapping[str, str] | None] = {}
        linked: dict[str, dict[str, int]] | None = None
        naming = self.names("partner")
        for child in order:
            if child.share.via != streamed.name or child.share.partner:
                continue
            if self.store.cursor(self.conn, "partner", child.name) is not None:
                continue
            if self.migration.newly_shared.get(child.name):
                continue
            if linked is None:
                linked = self.store.link_counts(self.conn)
            if sum(linked.get(child.name, {}).values()):
                continue
            wanted = [w for hook in self.hooks if (w := hook.detect_anyway(child, naming))]
            if len(wanted) > 1:
                continue
            out[child.name] = wanted[0] if wanted else None
        return out

    def _run_hooked(
        self, order: list[ObjectMapping], detection: Detection, streamed: ObjectMapping | None
    ) -> None:
        """With hooks: the objects shared via the streamed one (companies, contacts) and
        any other are detected whole and held first; the hooks' ``after_detect`` sees
        them (with the streamed object's changed vendor records). Then the streamed
        object (deals) goes as without hooks, chunk by chunk while detection searches
        on, each chunk decided by the hooks' ``decide_chunk`` (a deal's registration,
        from its company and contacts held) before it is reconciled and applied; and
        after each chunk but the last, once the next has come, the held children that
        chunk's applied deals made shareable (:meth:`_apply_claimed`), their creates
        allowed by the hooks' decisions made so far. Then ``after_stream``, and the
        rest of the held objects is applied: the last chunk's children, children no
        chunk claimed, records changed on their own, vendor-side changes, retried and
        conflicted records, and any child a hook held back when it was claimed (a
        later deal's decision may allow it)."""
        detected: dict[str, tuple[dict[str, Record], dict[str, Record]]] = {}
        held = [m for m in order if m is not streamed]
        for step, mapping in enumerate(held, 1):
            detected[mapping.name] = self._detect_whole(mapping, detection)
            self.progress("detect", step, len(order))
        per_side: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
        if streamed is not None:
            per_side["vendor"] = detection.vendor(streamed.name)
            gather.add_retried(self, streamed, per_side)
            # records a changed share condition newly matches go first, as retried ones
            for s, recs in self.migration.newly_shared.pop(streamed.name, {}).items():
                for rid, rec in recs.items():
                    per_side[s].setdefault(rid, rec)
        self._started = True
        self.crash_at("after_detect")
        ctx = self.ctx
        seen = {name: ObjectRecords(p, v) for name, (p, v) in detected.items()}
        if streamed is not None:
            seen[streamed.name] = ObjectRecords({}, per_side["vendor"])
        for hook in self.hooks:
            hook.after_detect(ctx, seen)
        # ids of the held records applied already, per mapping and side: a chunk's
        # deals claimed them (the records stay held: the hooks' picture is whole)
        claimed: dict[str, dict[Side, set[str]]] = {}
        if streamed is not None:
            parent = streamed
            children = [m for m in held if m.share.via == parent.name]
            # ids of the children read with the chunks (not detected): let go once applied
            read: dict[str, set[str]] = {
                c.name: set() for c in children if c.name in self._read_with
            }

            def after_chunk(ids: Collection[str]) -> None:
                self._apply_claimed(parent, ids, children, detected, claimed, read)

            def read_children(deals: Mapping[str, Record]) -> None:
                self._read_children(deals, children, detected, read)

            self._stream_mapping(
                streamed, detection, per_side, seen, after_chunk, read_children if read else None
            )
            ctx.streamed()
            self.progress("detect", len(order), len(order))
        for hook in self.hooks:
            hook.after_stream(ctx, seen)
        # the hooks keep what they decided (ids, decisions), not the records: each held
        # mapping's records go once it was applied — those a chunk claimed at once
        seen.clear()
        for name, done in claimed.items():
            partner_recs, vendor_recs = detected[name]
            for rid in done["partner"]:
                partner_recs.pop(rid, None)
            for rid in done["vendor"]:
                vendor_recs.pop(rid, None)
        for mapping in order:
            if mapping is streamed:
                continue
            # a mapping's detected records are let go once it was applied: what the
            # pass keeps of them is slim (:meth:`_process`), so while the next mapping
            # is applied, and in the hooks' ``after_pass``, memory no longer holds
            # every record detected (issue 17)
            partner_recs, vendor_recs = detected.pop(mapping.name)
            # what a chunk's deals claimed was applied already (:meth:`_apply_claimed`)
            done = claimed.pop(mapping.name, {"partner": set(), "vendor": set()})
            # a child's via-candidates come from its parent's links *after* the parent
            # was applied (as when streamed): a deal whose link this pass ends (the
            # vendor deleted it) no longer shares its company (chaos seed 13, c. 152)
            via = self._via_streamed(mapping)
            gather.read_via_extras(self, mapping, partner_recs, via - done["partner"])
            self._process(mapping, partner_recs, vendor_recs, via)
            del partner_recs, vendor_recs, done
            if self.full:
                self._full_pages(mapping, via, None)
            self._mapping_done(mapping)

    def _apply_claimed(
        self,
        parent: ObjectMapping,
        ids: Collection[str],
        children: Sequence[ObjectMapping],
        detected: Mapping[str, tuple[dict[str, Record], dict[str, Record]]],
        claimed: dict[str, dict[Side, set[str]]],
        read: Mapping[str, set[str]],
    ) -> None:
        """Once a chunk of the streamed object (``ids``: its partner records) was applied
        and the next chunk has come, the held children its deals made shareable — their
        via-candidates, from the deals as applied (their links now) — are applied as a
        set of their own, with the changed vendor records linked to them, instead of
        all waiting for the last chunk: the vendor's writes of companies and contacts
        then overlap the partner's searches for the deals to come (issue 17).

        Only held (detected, retried, conflicted) records go here: an undetected child
        is read at the end, in one batch with the rest (:func:`gather.read_via_extras`).
        A child is applied once, when it first becomes shareable; a later chunk's
        deals sharing it too change nothing for it (its associations are planned from
        the deals' side, once both objects were applied). One whose create a hook held
        back (the registration hook: its deal is not accepted) is not claimed: a later
        chunk, or the end, applies it again with the decisions made by then.

        ``read``: per child, the ids of the records read with the chunks
        (:meth:`_read_children`) not applied yet; once applied they are let go (a
        later chunk's deal sharing one reads it again), so memory holds a chunk's
        children, not every one read."""
        acc = self.seen.get(parent.name)
        if acc is None or not children:
            return
        applied = {rid: acc.partner[rid] for rid in ids if rid in acc.partner}
        candidates = gather.via_candidates(self, {parent.name: applied})
        for child in children:
            partner_held, vendor_held = detected[child.name]
            done = claimed.setdefault(child.name, {"partner": set(), "vendor": set()})
            via = candidates.get(child.name, set()) - done["partner"]
            if not via:
                continue
            # in the order detected, as the end applies its records: the creates (and
            # the ids the vendor gives them) do not follow a set's hash order
            part = {rid: rec for rid, rec in partner_held.items() if rid in via}
            if not part:
                continue
            links = self.store.link_refs(self.conn, child.name, "partner", part, base=False)
            vendor = {
                vid: vendor_held[vid]
                for rid in part
                if (link := links.get(rid)) is not None
                and (vid := link.vendor_id)
                and vid in vendor_held
                and vid not in done["vendor"]
            }
            held_back = self._process(child, part, vendor, via)
            done["partner"].update(rid for rid in part if rid not in held_back)
            done["vendor"].update(vendor)
        for child in children:
            fetched = read.get(child.name)
            if fetched:
                gone = fetched & claimed.get(child.name, {}).get("partner", set())
                partner_held = detected[child.name][0]
                for rid in gone:
                    partner_held.pop(rid, None)
                fetched -= gone

    def _read_children(
        self,
        deals: Mapping[str, Record],
        children: Sequence[ObjectMapping],
        detected: Mapping[str, tuple[dict[str, Record], dict[str, Record]]],
        read: Mapping[str, set[str]],
    ) -> None:
        """A chunk's companies and contacts, when a first sync reads them with the
        chunk (:meth:`read_with_stream`): those its deals are associated with and the
        pass does not hold, read by id — by search where the partner CRM can
        (:class:`~connector.adapters.base.SupportsSearchedReads`: a page of 200 a call,
        as detecting them would cost) — and held with the rest, so the hooks decide the
        chunk on them and :meth:`_apply_claimed` applies them once the next chunk has
        come. Before the chunk is decided; in a dry run too (reads only)."""
        crm = self.ctx.partner_crm
        searched_ok = isinstance(crm, SupportsSearchedReads)
        streamed = [c for c in children if c.name in read]
        # with a search budget apart (a CRM that lists on another), the last child is
        # read by batch read on the general budget beside the others' searches: twice
        # the calls of its searches (100 a call, not 200), both budgets used at once
        by_batch = (
            streamed[-1].name if len(streamed) > 1 and isinstance(crm, SupportsListing) else None
        )
        for child in children:
            fetched = read.get(child.name)
            if fetched is None:
                continue
            held = detected[child.name][0]
            ids = sorted(
                {
                    i
                    for deal in deals.values()
                    for i in deal.associations.get(child.partner_object, ())
                    if i not in held
                }
            )
            if not ids:
                continue
            props = self._props(child, "partner")
            if searched_ok and child.name != by_batch and not self._assoc_types(child, "partner"):
                searched = cast(SupportsSearchedReads, self.crm("partner"))
                recs = searched.read_searched(child.partner_object, ids, props)
            else:
                recs = self.read(child, "partner", ids)
            for rid, rec in recs.items():
                if rid not in held:
                    held[rid] = rec
                    fetched.add(rid)
            # a first sync's record of what it read this way (the rest: no deal shares it)
            self.counts[f"read with deals {child.name}"] += len(recs)

    def _unmatched(self, mapping: ObjectMapping, name: str) -> None:
        """Said, not silent: a record filter of a hook (:meth:`Hook.detect_anyway`, the
        lead flag) names a property the partner portal does not have, so no partner
        record can carry it and none was detected by it; ``dealsync setup`` creates it."""
        log.warning(
            "partner %s: property %r does not exist in the partner portal, so no record "
            "is flagged by it; run `dealsync setup` to create it (connection %s)",
            mapping.name,
            name,
            self.conn,
        )
        self.counts[
            f"{mapping.name} flagged by {name}: none (no such property; dealsync setup)"
        ] += 1

    def _detect_whole(
        self, mapping: ObjectMapping, detection: Detection
    ) -> tuple[dict[str, Record], dict[str, Record]]:
        """A held mapping's detected records, both sides, with what the pass reads again
        by id (retries, open conflicts' other sides, ``sync --full``'s counterparts)."""
        vendor_recs = detection.vendor(mapping.name)
        partner_recs: dict[str, Record] = {}
        for chunk in detection.partner_chunks(mapping.name):
            partner_recs.update(chunk)
        if (missing := detection.unmatched.get(mapping.name)) is not None:
            self._unmatched(mapping, missing)
        per_side: dict[Side, dict[str, Record]] = {"partner": partner_recs, "vendor": vendor_recs}
        gather.add_retried(self, mapping, per_side)
        gather.add_conflicted(self, mapping, per_side)
        # records a changed share condition newly matches join the picture
        for s, recs in self.migration.newly_shared.pop(mapping.name, {}).items():
            for rid, rec in recs.items():
                per_side[s].setdefault(rid, rec)
        if self.full:  # the detected records' counterparts; the other pairs stream
            gather.add_counterparts(self, mapping, per_side)
        return partner_recs, vendor_recs

    def _run_streamed(self, order: list[ObjectMapping], detection: Detection) -> None:
        """Without hooks: each chunk of partner records is reconciled and written as soon
        as detection hands it over, while detection goes on searching. The partner
        portal's searches and the vendor portal's writes then overlap instead of
        following each other. Each chunk is a small pass of its own: its partner records
        with the changed vendor records linked to them; vendor records no chunk claimed,
        the parent's via-candidates, and the other side of open conflicts come last."""
        for step, mapping in enumerate(order, 1):
            per_side: dict[Side, dict[str, Record]] = {
                "partner": {},
                "vendor": detection.vendor(mapping.name),
            }
            gather.add_retried(self, mapping, per_side)
            self._stream_mapping(mapping, detection, per_side, None)
            self.progress("detect", step, len(order))
        if not self._started:
            self._started = True
            self.crash_at("after_detect")

    def _stream_mapping(
        self,
        mapping: ObjectMapping,
        detection: Detection,
        per_side: dict[Side, dict[str, Record]],
        seen: Mapping[str, ObjectRecords] | None,
        after_chunk: Callable[[Collection[str]], None] | None = None,
        read_children: Callable[[Mapping[str, Record]], None] | None = None,
    ) -> None:
        """One mapping applied chunk by chunk as detection hands its partner records
        over; ``per_side``: its changed vendor records, and the records read by id to
        go first (retried). ``seen``: with hooks, the picture their ``decide_chunk``
        decides each chunk with. ``after_chunk``: called with an applied chunk's partner
        ids (the retried records' with the first chunk's) once the next chunk has come,
        before it is applied (with hooks: the held children those records made
        shareable are applied then). The last chunk's are not handed over: what they
        share is applied with the rest, after the stream, in one set — so a mapping
        that fits one chunk splits no write batch, and costs not one call more.
        ``read_children``: with a chunk's partner records, before the hooks decide
        it (a first sync's companies and contacts read with it)."""
        via = self._via_streamed(mapping)
        st = _Stream(
            mapping,
            via,
            [c for c in self.store.conflicts(self.conn) if c.object == mapping.name],
            dict(per_side["vendor"]),
            detection,
            seen,
            read_children,
        )
        # partner ids applied whose ``after_chunk`` waits for the next chunk to come
        applied: list[str] = []
        # retried records (and the counterparts of retried vendor records) first
        if per_side["partner"]:
            self._sub_pass(st, per_side["partner"], {})
            applied.extend(per_side["partner"])
        for n, chunk in enumerate(detection.partner_chunks(mapping.name)):
            if after_chunk is not None and n and applied:
                after_chunk(applied)
                applied = []
            part = {rid: r for rid, r in chunk.items() if rid not in st.done or r.archived}
            if part:
                self._sub_pass(st, part, {})
                if after_chunk is not None:
                    applied.extend(part)
        del applied  # the last chunk's are the caller's, with the rest
        last: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
        gather.read_via_extras(self, mapping, last["partner"], via - st.done)
        want_p = {
            c.partner_id
            for c in st.conflicts
            if c.vendor_id in st.unclaimed and c.partner_id not in st.done and c.partner_id
        }
        if want_p:
            gather.read_by_id(self, mapping, last, {"partner": want_p, "vendor": set()})
        rest, st.unclaimed = st.unclaimed, {}
        if last["partner"] or rest:
            self._sub_pass(st, last["partner"], rest)
        if self.full:
            self._full_pages(mapping, via, st)
        self._mapping_done(mapping)

    def _full_pages(self, mapping: ObjectMapping, via: set[str], st: _Stream | None) -> None:
        """``sync --full``: the linked pairs nothing else of this pass touched, a page
        of the detection chunk at a time, read by id on both sides and applied as a
        chunk of their own (``st``: as a streamed chunk; ``None``: with the hooks'
        ``before_apply``, after the detected picture was applied). A page's records
        are dropped once it is applied — the pass keeps only their ids and associations
        for its association step (``keep=False``) — so memory holds one page of
        records however many pairs are linked."""
        for page in gather.linked_pages(self, mapping):
            self.counts["full_checked"] += len(page)
            acc = self._acc.get(mapping.name, ({}, {}))
            todo = [(p, v) for p, v in page if p not in acc[0] and v not in acc[1]]
            if not todo:
                continue
            per: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
            gather.read_fresh(self, mapping, per, gather.pair_ids(todo))
            if st is not None:
                self._sub_pass(st, per["partner"], per["vendor"], keep=False)
            else:
                self._process(mapping, per["partner"], per["vendor"], via, keep=False)

    def _run_only(self, order: list[ObjectMapping]) -> None:
        """``dealsync resync``: only the given records, read by id on both sides and
        merged by the fields' rules, with the hooks' say as in any pass. Nothing is
        detected, so neither the cursors nor the retry list move (failures are added
        to it, as in any pass)."""
        assert self.only is not None
        ctx = self.ctx
        read: dict[str, dict[Side, dict[str, Record]]] = {}
        for mapping in order:
            ids = self.only.get(mapping.name)
            per: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
            if ids:
                want = {s: set(ids.get(s, ())) for s in SIDES}
                gather.read_fresh(self, mapping, per, want)
            read[mapping.name] = per
        self._started = True
        self.crash_at("after_detect")
        # the hooks' points in a detected pass's order: the streamed object's records
        # decided as one chunk and applied first, then the others
        streamed = self.streamed(order)
        seen = {name: ObjectRecords(per["partner"], per["vendor"]) for name, per in read.items()}
        if streamed is not None:
            seen[streamed.name] = ObjectRecords({}, read[streamed.name]["vendor"])
        for hook in self.hooks:
            hook.after_detect(ctx, seen)
        if streamed is not None:
            per = read[streamed.name]
            # read by id, whole: no search is paging any more
            chunk = Chunk(streamed, ObjectRecords(per["partner"], per["vendor"]), True)
            for hook in self.hooks:
                hook.decide_chunk(ctx, chunk, seen)
            self._only_apply(streamed, per)
        for hook in self.hooks:
            hook.after_stream(ctx, seen)
        for mapping in order:
            if mapping is not streamed:
                self._only_apply(mapping, read[mapping.name])
        associations.sync_associations(self)
        if not ctx.dry_run:
            self.store.add_retries(self.conn, self.retries)

    def _only_apply(self, mapping: ObjectMapping, per: dict[Side, dict[str, Record]]) -> None:
        if per["partner"] or per["vendor"]:
            self._process(mapping, per["partner"], per["vendor"], set())
        self._mapping_done(mapping)

    def _via_streamed(self, mapping: ObjectMapping) -> set[str]:
        """Via-candidates of a mapping whose parent has been applied (computed once per
        parent: its links do not change while its children are applied)."""
        parent = mapping.share.via
        if not parent or parent not in self.by_name:
            return set()
        if parent not in self._via_cache:
            seen = self.seen.get(parent)
            self._via_cache[parent] = gather.via_candidates(
                self, {parent: seen.partner if seen else {}}
            )
        return self._via_cache[parent].get(mapping.name, set())

    def _sub_pass(
        self,
        st: _Stream,
        part: dict[str, Record],
        extra_vendor: dict[str, Record],
        *,
        keep: bool = True,
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
            gather.read_by_id(self, mapping, per, {"partner": set(), "vendor": want_v})
        if self.full:
            gather.add_counterparts(self, mapping, per)
        if not self._started:
            self._started = True
            self.crash_at("after_detect")
        if keep and st.read_children is not None:
            st.read_children(part)
        if keep and st.seen is not None:
            # the hooks decide the chunk's records (a full pass's pages of linked pairs
            # nothing detected are not part of their picture, as before)
            detected_all = st.detection.detected_all(mapping.name)
            chunk = Chunk(mapping, ObjectRecords(part, per["vendor"]), detected_all)
            for hook in self.hooks:
                hook.decide_chunk(self.ctx, chunk, st.seen)
        if keep:
            st.done.update(part)
        self._process(mapping, part, per["vendor"], st.via, keep=keep)

    def _mapping_done(self, mapping: ObjectMapping) -> None:
        # the last set applied is no longer at hand: its records go (with hooks, the
        # whole mapping's detected records)
        self.in_hand.pop(mapping.name, None)
        self._finished.add(mapping.name)
        associations.sync_associations(self, self._finished)

    def _process(
        self,
        mapping: ObjectMapping,
        partner_recs: dict[str, Record],
        vendor_recs: dict[str, Record],
        via: set[str],
        *,
        keep: bool = True,
    ) -> set[str]:
        """One set of records of one mapping, step by step: stale search copies read
        again, merges followed and interrupted creates closed, pair states gathered,
        reconcile, the hooks' say, the plan, apply (not in a dry run). Returns the
        partner ids whose vendor create reconcile planned and a hook held back (a
        child claimed early is applied again later: :meth:`_apply_claimed`).

        ``keep``: the pass keeps the records for its association step, via-sharing
        and the hooks (every detected record). ``False`` (a full pass's or a
        migration's page of linked pairs): only their partner records' ids and
        associations are kept, so such pages cost memory one page at a time."""
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
        per: dict[Side, dict[str, Record]] = {"partner": partner_recs, "vendor": vendor_recs}
        gather.fresh_linked(self, mapping, per)
        self.in_hand[mapping.name] = per
        if not ctx.dry_run:
            merges.follow_merges(self, mapping, per)
            apply.abandon_pending(self, mapping, per)
        acc = self._acc.get(mapping.name)
        if acc is None:
            acc = self._acc[mapping.name] = ({}, {})
            self.seen[mapping.name] = ObjectRecords(acc[0], acc[1])
        if keep:
            # the hooks read the records of the set at hand (``Planned.records``: the
            # consent hook reads the vendor contact an update is for, in this set);
            # after this, the association step and via-sharing read partner ids and
            # associations (and, for a record with
            # no link, its share condition's properties and source-id marker), the
            # delete step whether a vendor record is gone, ``sync --full`` which ids
            # were applied — so the pass keeps those, not the properties, and its
            # memory does not hold every record it streamed (issue 17)
            if mapping.name in self._read_again:
                kept = self._kept_props(mapping)
                shapes = self._kept_shapes
                acc[0].update(
                    (rid, slim(rec, kept, plain=True, shapes=shapes))
                    for rid, rec in partner_recs.items()
                )
            acc[1].update((rid, rec if rec.archived else PLAIN) for rid, rec in vendor_recs.items())
            records = ObjectRecords(ChainMap(partner_recs, acc[0]), ChainMap(vendor_recs, acc[1]))
        else:
            for rid, rec in partner_recs.items():
                if rid not in acc[0]:
                    acc[0][rid] = slim(rec)
            # a gone vendor record tells the delete step both sides went (recreated.py)
            acc[1].update((rid, rec) for rid, rec in vendor_recs.items() if rec.archived)
            records = ObjectRecords(ChainMap(partner_recs, acc[0]), ChainMap(vendor_recs, acc[1]))
        states = gather.pair_states(self, mapping, partner_recs, vendor_recs, via)
        states = migrate.forget_bases(self, mapping, states)
        actions = reconcile(self.compiled[mapping.name], states)
        if self.fresh:  # sync --full, resync: a cleared partner marker is put back
            actions = gather.restore_markers(self, mapping, states, actions)
        planned = _vendor_creates(actions) if self.hooks else set()
        for hook in self.hooks:
            actions = hook.before_apply(ctx, Planned(mapping, actions, records))
        held_back = planned - _vendor_creates(actions) if planned else planned
        self.plan.extend(actions)
        self.crash_at(f"after_plan:{mapping.name}")
        if not ctx.dry_run:
            apply.apply_actions(self, mapping, actions)
            self._settle_relinked(mapping, via)
        return held_back

    def _kept_props(self, mapping: ObjectMapping) -> tuple[str, ...]:
        """The partner properties :func:`gather.via_candidates` reads of a mapping's
        records after they were applied."""
        conds = [c.property for c in mapping.share.partner or []]
        return (*conds, self.names("partner").source_id)

    def _settle_relinked(self, mapping: ObjectMapping, via: set[str]) -> None:
        """Pairs just re-linked to an existing record (adopted, or a successor) are
        merged again from fresh reads of both sides, in this pass: the existing record
        has values of its own (a vendor contact's phone, a new deal amount) that the
        three-way merge carries across by the fields' rules now, so the next pass is
        quiet. A crash before this is harmless: the cursors did not move, and the next
        pass detects both records again."""
        pairs = [(p, v) for name, p, v in self.relinked if name == mapping.name]
        if not pairs:
            return
        self.relinked = [r for r in self.relinked if r[0] != mapping.name]
        per: dict[Side, dict[str, Record]] = {"partner": {}, "vendor": {}}
        gather.read_by_id(
            self, mapping, per, {"partner": {p for p, _ in pairs}, "vendor": {v for _, v in pairs}}
        )
        self._process(mapping, per["partner"], per["vendor"], via)
        self._settled.update((mapping.name, "partner", p) for p, _ in pairs)
        self._settled.update((mapping.name, "vendor", v) for _, v in pairs)

    # ------------------------------------------------------------------ the run log

    def flush_outcomes(self) -> None:
        if self.ctx.run_id is not None and self.outcomes:
            self.store.add_outcomes(self.ctx.run_id, self.outcomes)
        self.outcomes = []


def _vendor_creates(actions: Sequence[Action]) -> set[str]:
    """Partner ids of the vendor creates among ``actions``."""
    return {a.source_id for a in actions if isinstance(a, Create) and a.target == "vendor"}


KEPT_SHAPES = 64
"""Distinct kept-property dictionaries a pass shares (see :func:`slim`)."""

PLAIN = Record("", "", {}, datetime.min.replace(tzinfo=UTC))
"""What a pass without hooks keeps of an applied record with no associations, no kept
property and not gone (most companies and contacts, every live vendor record): one
shared stand-in, so each such record costs the pass a dictionary entry (its id), not
a record. Only its emptiness is read."""


def slim(
    rec: Record,
    props: Collection[str] = (),
    *,
    plain: bool = False,
    shapes: dict[tuple[tuple[str, str | None], ...], dict[str, str | None]] | None = None,
) -> Record:
    """What a pass keeps of a record it applied: its id and associations (the
    association step and via-sharing read those), and of its properties only the
    ``props`` it has a value for. ``plain``: no hook will see it, so :data:`PLAIN`
    when that leaves nothing. ``shapes`` (the pass's): records keeping the same
    properties share one dictionary of them (nothing writes a kept record's
    properties), so N deals flagged alike cost N references, not N dictionaries."""
    kept: dict[str, str | None] = {p: v for p in props if (v := rec.properties.get(p)) is not None}
    if plain and not kept and not rec.associations and not rec.archived:
        return PLAIN
    if shapes is not None and kept:
        key = tuple(kept.items())
        shared = shapes.get(key)
        if shared is not None:
            kept = shared
        elif len(shapes) < KEPT_SHAPES:  # a record's own source id is not shared
            shapes[key] = kept
    return Record(rec.object_type, rec.id, kept, rec.updated_at, rec.archived, rec.associations)


@dataclass
class _Stream:
    """A mapping being applied chunk by chunk."""

    mapping: ObjectMapping
    via: set[str]
    conflicts: list[Any]
    unclaimed: dict[str, Record]  # changed vendor records no chunk has paired yet
    # the detection handing the chunks over (whether it read every page: ``Chunk``)
    detection: Detection
    # with hooks: the picture their ``decide_chunk`` decides each chunk with
    seen: Mapping[str, ObjectRecords] | None = None
    # with a chunk's partner records, before the hooks decide it: its children read
    read_children: Callable[[Mapping[str, Record]], None] | None = None
    done: set[str] = field(default_factory=set)  # partner ids already applied
