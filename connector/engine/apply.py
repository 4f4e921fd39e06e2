"""Apply: write a mapping's plan to both CRMs and record what it did.

Creates (intent first, then an upsert on the source id, then the link), updates
(bases move only once every write of the pair succeeded), deletes (the mapping's
policy, unless the vendor holds a successor of the deleted record), conflicts, and
the adoption of existing records as counterparts (a CRM's refusal of a second
record, a re-created record meeting the survivor of its ended link). Recognising
re-created records and successors is ``engine/recreated.py``; associations are
``engine/associations.py``.

Plain functions of the pass (:class:`~connector.engine.sync.SyncPass`): its records,
counts, run log and retry list are the state they read and add to.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connector.config.models import ObjectMapping
from connector.engine.associations import ASSOC, apply_associations
from connector.engine.plan import (
    Action,
    Associate,
    Conflict,
    Create,
    Delete,
    RecordError,
    Update,
)
from connector.engine.recreated import follow_successors, note_survivors, recreated_counterparts
from connector.records import Record, Side, other_side
from connector.state.store import BaseTimes, LinkRef, RecordOutcome

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass


def wave(sp: SyncPass, crm: Any) -> int:
    """Records written per call to an adapter: a batch per request the adapter may
    have in flight (``max_in_flight``; 1 for an adapter without it), so its batches
    go out side by side. Results, crash points and the run log stay per wave, in
    input order; with one request in flight a wave is one batch, as before."""
    return sp.batch_size * max(1, int(getattr(crm, "max_in_flight", 1) or 1))


def apply_actions(sp: SyncPass, mapping: ObjectMapping, actions: list[Action]) -> None:
    """Write one set of a mapping's actions, in the order that keeps a crash harmless
    (deletes, creates, updates, conflicts), and log what each did."""
    creates = [a for a in actions if isinstance(a, Create)]
    updates = [a for a in actions if isinstance(a, Update)]
    deletes = [a for a in actions if isinstance(a, Delete)]
    conflicts = [a for a in actions if isinstance(a, Conflict)]
    associate = [a for a in actions if isinstance(a, Associate)]
    for err in (a for a in actions if isinstance(a, RecordError)):
        sp.fail(err, err.side, err.record_id)
    # deletes first: a record deleted and re-created with the same identity in one
    # window then meets its old counterpart already archived or released, exactly
    # as when the two happen in different passes (see _adopt)
    if deletes:
        _apply_deletes(sp, mapping, deletes)
    for target in ("vendor", "partner"):
        group = [c for c in creates if c.target == target]
        if group:
            _apply_creates(sp, mapping, target, group)
    if updates:
        still_open = {(c.link_id, c.field) for c in conflicts}
        apply_updates(sp, mapping, updates, still_open)
    for c in conflicts:
        _, new = sp.store.open_conflict(sp.conn, c)
        sp.counts["conflicts opened" if new else "conflicts still open"] += 1
        if new:
            sp.outcomes.append(
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
    if associate:  # planned by a hook; the pass's own come once both mappings are applied
        apply_associations(sp, associate)
    sp.flush_outcomes()


def _apply_creates(
    sp: SyncPass, mapping: ObjectMapping, target: Side, creates: list[Create]
) -> None:
    origin = other_side(target)
    intents = sp.store.record_intents(sp.conn, mapping.name, origin, [c.source_id for c in creates])
    sp.crash_at(f"after_intent:{mapping.name}")
    # a source re-linked to a successor earlier in this pass has its counterpart
    creates = [c for c in creates if intents[c.source_id].status == "pending"]
    by_key = {sp.source_key(target, c.source_id): c for c in creates}
    recreated = recreated_counterparts(sp, mapping, target, creates)
    items: list[tuple[str, dict[str, str]]] = []
    for key, c in by_key.items():
        if c.source_id not in recreated:
            items.append((key, _create_props(sp, target, c)))
    refused: dict[str, tuple[str, str]] = {}
    crm = sp.crm(target)
    size = wave(sp, crm)
    for i in range(0, len(items), size):
        batch = items[i : i + size]
        results = crm.upsert(sp.obj_type(mapping, target), crm.naming.source_id, batch)
        sp.crash_at(f"after_write:{mapping.name}")
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
                _create_failed(sp, mapping, target, c.source_id, str(res.error))
        _finish_creates(sp, mapping, target, intents, done)
        sp.progress(f"create {target} {mapping.name}", min(i + size, len(items)), len(items))
    wanted = {**recreated, **refused}
    if wanted:
        _adopt(sp, mapping, target, intents, [c for c in creates if c.source_id in wanted], wanted)


def _create_props(sp: SyncPass, target: Side, c: Create) -> dict[str, str]:
    props = dict(c.properties)
    if target == "vendor":
        props[sp.names("vendor").partner_id] = sp.conn
    return props


def _create_failed(
    sp: SyncPass, mapping: ObjectMapping, target: Side, source_id: str, why: str
) -> None:
    origin = other_side(target)
    sp.fail(
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
    sp: SyncPass,
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
        ok, refused = _claimable(sp, mapping, target, intents, unchecked)
        release.update(ok)
        for sid, why in refused.items():
            _create_failed(sp, mapping, target, sid, why)
        done = [d for d in done if d[0].source_id not in refused]
    completed: list[tuple[int, str, dict[str, Any]]] = []
    released: list[tuple[int, Side, str, int]] = []
    times: dict[int, BaseTimes] = {}
    for c, rec, created, note in done:
        link_id = intents[c.source_id].id
        assert link_id is not None
        completed.append((link_id, rec.id, dict(c.base)))
        if created:  # an adopted record's base is an assumption: its times stay unknown
            at = {target: rec.updated_at, origin: sp.read_at(mapping, origin, c.source_id)}
            times[link_id] = (at["partner"], at["vendor"])
        old = release.get(c.source_id)
        if old is not None and old.id != link_id:
            released.append((old.id, target, rec.id, link_id))
        # an upsert that found an interrupted attempt's record counts as created
        sp.counts[f"{'adopted' if note else 'created'} {target} {mapping.name}"] += 1
        if note:
            pair = (c.source_id, rec.id) if origin == "partner" else (rec.id, c.source_id)
            sp.relinked.append((mapping.name, *pair))
        elif not created:
            # an earlier, interrupted attempt made it: the record may have been
            # edited since, so its base is only an assumption — read both sides
            # again next pass and let the merge settle them
            sp.rechecks.append((mapping.name, origin, c.source_id))
        detail = f"from {origin} {c.source_id}"
        if note:
            detail += f" (adopted existing: {note})"
        elif not created:
            detail += " (adopted existing)"
        if old is not None:
            detail += f"; link {old.id} ({old.status}) closed as relinked"
        sp.outcomes.append(
            RecordOutcome(
                mapping.name, target, rec.id, "adopt" if note else "create", "ok", detail=detail
            )
        )
    if released:
        sp.store.relink(released, completed=completed, origin=origin)
        sp.counts[f"re-linked {mapping.name}"] += len(released)
    else:
        sp.store.complete_links(completed, origin=origin, times=times)
    sp.flush_outcomes()


def _claimable(
    sp: SyncPass,
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
    holders = sp.store.holders(sp.conn, mapping.name, target, set(wanted.values()))
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
    alive = sp.read(mapping, origin, sorted(holder_ids)) if holder_ids else {}
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
    sp: SyncPass,
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
    ok, refused = _claimable(
        sp, mapping, target, intents, {sid: tid for sid, (tid, _) in wanted.items()}
    )
    for sid in ok:
        if ok[sid] is None and (mapping.name, sid) in sp.inherited:
            ok[sid] = sp.inherited.pop((mapping.name, sid))
    ids = sorted({wanted[sid][0] for sid in ok})
    existing = sp.read(mapping, target, ids) if ids else {}
    items: list[tuple[str, dict[str, str]]] = []
    chosen: dict[str, Create] = {}
    for c in creates:
        sid = c.source_id
        tid, why = wanted[sid]
        if sid in refused:
            _create_failed(sp, mapping, target, sid, f"{why}; {refused[sid]}")
            continue
        rec = existing.get(tid)
        if rec is None:
            _create_failed(
                sp, mapping, target, sid, f"{why}; but {target} record {tid} cannot be read"
            )
            continue
        owner = rec.get(sp.names(target).partner_id) if target == "vendor" else None
        source = rec.get(sp.names(target).source_id)
        if (owner and owner != sp.conn) or (
            target == "vendor" and source and not source.startswith(f"{sp.conn}:")
        ):
            who = owner or (source or "").split(":")[0]
            _create_failed(
                sp,
                mapping,
                target,
                sid,
                f"{why}; {target} record {tid} is shared with partner {who}, so it is "
                f"not taken over — clear its {sp.names(target).partner_id} and "
                f"{sp.names(target).source_id} if it should move to {sp.conn}",
            )
            continue
        key = sp.source_key(target, sid)
        items.append((tid, {**_create_props(sp, target, c), sp.names(target).source_id: key}))
        chosen[tid] = c
    crm = sp.crm(target)
    size = wave(sp, crm)
    for i in range(0, len(items), size):
        batch = items[i : i + size]
        results = crm.update(sp.obj_type(mapping, target), batch)
        sp.crash_at(f"after_write:{mapping.name}")
        done: list[tuple[Create, Record, bool, str]] = []
        for res in results:
            c = chosen[res.key]
            if res.ok and res.record is not None:
                done.append((c, res.record, False, wanted[c.source_id][1]))
            else:
                _create_failed(
                    sp,
                    mapping,
                    target,
                    c.source_id,
                    f"{wanted[c.source_id][1]}; adopting {target} record {res.key} "
                    f"failed: {res.error}",
                )
        _finish_creates(
            sp,
            mapping,
            target,
            intents,
            done,
            {c.source_id: ok.get(c.source_id) for c, *_ in done},
        )


def apply_updates(
    sp: SyncPass,
    mapping: ObjectMapping,
    updates: list[Update],
    still_open: Collection[tuple[int, str]] = (),
) -> None:
    """Write the pairs' changes, then move the bases of those written in full.
    ``still_open``: (link, field) pairs this plan found still in conflict; their
    open conflict rows stay open whatever else the pair's update settles. Also the
    one write path of a conflict resolved by hand (:func:`~connector.engine.sync.apply_update`)."""
    failed: dict[int, str] = {}
    written: dict[tuple[Side, str], Record] = {}  # the writes' answers
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
        crm = sp.crm(s)
        size = wave(sp, crm)
        for i in range(0, len(items), size):
            batch = items[i : i + size]
            results = crm.update(sp.obj_type(mapping, s), [(rid, props) for rid, props, _ in batch])
            sp.crash_at(f"after_write:{mapping.name}")
            by_id = {r.key: r for r in results}
            for rid, _, u in batch:
                res = by_id.get(rid)
                if res is None or not res.ok:
                    failed[u.link_id] = f"writing {s} {rid}: {res.error if res else 'no result'}"
                elif res.record is not None:
                    written[(s, rid)] = res.record
            sp.progress(f"update {s} {mapping.name}", min(i + size, len(items)), len(items))
    bases: list[tuple[int, dict[str, Any]]] = []
    times: dict[int, BaseTimes] = {}
    open_links = {c.link_id for c in sp.store.conflicts(sp.conn)}
    for u in updates:
        if u.link_id in failed:
            sp.fail(
                RecordError(mapping.name, "partner", u.partner_id, None, failed[u.link_id]),
                "partner",
                u.partner_id,
            )
            continue
        bases.append((u.link_id, dict(u.base)))
        times[u.link_id] = _base_times(sp, mapping, u, written)
        if u.writes:
            sp.counts[f"updated {mapping.name}"] += 1
            sp.outcomes.append(
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
            sp.store.close_conflicts_for(
                sp.conn,
                u.link_id,
                [k for k in u.base if not k.startswith(ASSOC) and (u.link_id, k) not in still_open],
                "settled: both sides now agree",
            )
    sp.store.save_bases(bases, times=times)


def _base_times(
    sp: SyncPass, mapping: ObjectMapping, u: Update, written: Mapping[tuple[Side, str], Record]
) -> BaseTimes:
    """The versions an update's new base is taken from: a written side's from the
    write's answer, an unwritten side's from the record as this pass read it (unknown
    if neither: a conflict resolved by hand, an answer without a record)."""
    at: dict[Side, Any] = {}
    for s, rid, props in (
        ("partner", u.partner_id, u.partner_properties),
        ("vendor", u.vendor_id, u.vendor_properties),
    ):
        side: Side = s  # type: ignore[assignment]
        rec = written.get((side, rid)) if props else None
        at[side] = rec.updated_at if rec is not None else None
        if not props:
            at[side] = sp.read_at(mapping, side, rid)
    return at["partner"], at["vendor"]


def _close_ended_conflicts(sp: SyncPass, link_ids: Sequence[int], resolution: str) -> None:
    """A pair that stopped syncing has nothing left to resolve: an open conflict
    would keep every later pass at exit 1 and could never be resolved."""
    for link_id in link_ids:
        sp.store.close_conflicts_for(sp.conn, link_id, None, resolution)


def _apply_deletes(sp: SyncPass, mapping: ObjectMapping, deletes: list[Delete]) -> None:
    deletes = follow_successors(sp, mapping, deletes)
    archive = [d for d in deletes if d.policy == "archive"]
    for side in ("partner", "vendor"):
        s: Side = side
        group = [d for d in archive if d.gone_side == other_side(s)]
        if not group:
            continue
        results = sp.crm(s).archive(sp.obj_type(mapping, s), [d.counterpart_id for d in group])
        by_id = {r.key: r for r in results}
        ok_links = []
        for d in group:
            res = by_id.get(d.counterpart_id)
            if res is not None and res.ok:
                ok_links.append(d.link_id)
                sp.outcomes.append(
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
                sp.fail(
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
        sp.store.set_link_status(ok_links, "deleted")
        _close_ended_conflicts(sp, ok_links, "record deleted")
        sp.counts[f"archived {s} {mapping.name}"] += len(ok_links)
    note_survivors(sp, mapping, [d for d in deletes if d.policy in ("unlink", "flag")])
    for policy, status in (("unlink", "unlinked"), ("flag", "flagged")):
        group = [d for d in deletes if d.policy == policy]
        if group:
            sp.store.set_link_status([d.link_id for d in group], status)
            _close_ended_conflicts(sp, [d.link_id for d in group], f"record deleted ({status})")
            sp.counts[f"{status} {mapping.name}"] += len(group)
            for d in group:
                sp.outcomes.append(
                    RecordOutcome(
                        mapping.name,
                        other_side(d.gone_side),
                        d.counterpart_id,
                        policy,
                        "ok",
                        detail=f"{d.gone_side} record was deleted",
                    )
                )


def abandon_pending(
    sp: SyncPass,
    mapping: ObjectMapping,
    per: dict[Side, dict[str, Record]],
) -> None:
    """A create interrupted by a crash whose source record was deleted since: the
    create is not finished. If the interrupted attempt did make the counterpart,
    the mapping's delete policy applies to it, as for any shared record deleted on
    one side; either way the intent is closed, never left pending."""
    for o, recs in per.items():
        gone = [rid for rid, rec in recs.items() if rec.archived]
        if not gone:
            continue
        links = sp.store.link_refs(sp.conn, mapping.name, o, gone, base=False)
        pending = {rid: link for rid, link in links.items() if link.status == "pending"}
        if not pending:
            continue
        target = other_side(o)
        keys = {sp.source_key(target, rid): rid for rid in pending}
        found = sp.crm(target).find_by_property(
            sp.obj_type(mapping, target),
            sp.names(target).source_id,
            sorted(keys),
            [sp.names(target).source_id],
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
                    res = sp.crm(target).archive(sp.obj_type(mapping, target), [counterpart.id])
                    if not res[0].ok:
                        sp.retries.append(
                            (mapping.name, o, rid, f"archiving failed: {res[0].error}")
                        )
                        continue
                sp.store.complete_links([(link.id, counterpart.id, {})], origin=o)
            sp.store.set_link_status([link.id], status)
            sp.counts[f"abandoned create {mapping.name}"] += 1
            recs.pop(rid, None)
