"""Apply: write a mapping's plan to both CRMs and record what it did.

Creates (intent first, then an upsert on the source id, then the link), updates
(bases move only once every write of the pair succeeded), deletes (the mapping's
policy, unless the vendor holds a successor of the deleted record), the adoption of
existing records as counterparts (a CRM's refusal of a second record, a re-created
record meeting the survivor of its ended link), and the mirroring of associations.

Plain functions of the pass (:class:`~connector.engine.sync.SyncPass`): its records,
counts, run log and retry list are the state they read and add to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connector.config.models import ObjectMapping
from connector.engine.hooks import ObjectRecords
from connector.engine.plan import (
    Action,
    Associate,
    Conflict,
    Create,
    Delete,
    RecordError,
    Update,
)
from connector.records import SIDES, Record, Side, other_side
from connector.state.store import LinkRef, RecordOutcome

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass

ASSOC = "@assoc:"
"""Key prefix, in a link's base, of the partner ids whose associations were mirrored."""

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
never a successor (:func:`_follow_successors`)."""

_ENDED_WITH_SURVIVOR = ("unlinked", "flagged")
"""Link statuses that leave one record live after the other was deleted."""


def _norm(identity: str, value: str) -> str:
    """Identity values as the CRM compares them: e-mails and domains ignore case."""
    value = value.strip()
    return value.lower() if identity in ("email", "domain") else value


def apply_actions(sp: SyncPass, mapping: ObjectMapping, actions: list[Action]) -> None:
    """Write one set of a mapping's actions, in the order that keeps a crash harmless
    (deletes, creates, updates, conflicts), and log what each did."""
    creates = [a for a in actions if isinstance(a, Create)]
    updates = [a for a in actions if isinstance(a, Update)]
    deletes = [a for a in actions if isinstance(a, Delete)]
    conflicts = [a for a in actions if isinstance(a, Conflict)]
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
        _apply_updates(sp, mapping, updates, still_open)
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
    recreated = _recreated(sp, mapping, target, creates)
    items: list[tuple[str, dict[str, str]]] = []
    for key, c in by_key.items():
        if c.source_id not in recreated:
            items.append((key, _create_props(sp, target, c)))
    refused: dict[str, tuple[str, str]] = {}
    crm = sp.crm(target)
    for i in range(0, len(items), sp.batch_size):
        batch = items[i : i + sp.batch_size]
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
        sp.progress(
            f"create {target} {mapping.name}", min(i + sp.batch_size, len(items)), len(items)
        )
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
    for c, rec, created, note in done:
        link_id = intents[c.source_id].id
        assert link_id is not None
        completed.append((link_id, rec.id, dict(c.base)))
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
        sp.store.complete_links(completed, origin=origin)
    sp.flush_outcomes()


def _identity(sp: SyncPass, mapping: ObjectMapping, side: Side) -> str | None:
    """The property that names a record of this mapping on ``side`` to people, if
    the mapping syncs it (see :data:`IDENTITY`)."""
    name = IDENTITY.get(sp.obj_type(mapping, side))
    mapped = {f.partner if side == "partner" else f.vendor for f in mapping.fields}
    return name if name in mapped else None


def _recreated(
    sp: SyncPass, mapping: ObjectMapping, target: Side, creates: list[Create]
) -> dict[str, tuple[str, str]]:
    """Creates whose source re-creates a deleted record: a live ``target`` record
    with the same identity (e-mail, domain, deal name) was the counterpart of a
    record deleted on the source side, and its link ended (unlink or flag policy
    left it live, or it is the vendor's successor of a vendor record deleted too,
    which the ended link kept: :func:`_follow_successors`). That record is adopted
    instead of making a second one; never a record that was not linked before
    (companies and deals are not unique at HubSpot, so the vendor's own records are
    left alone)."""
    ident = _identity(sp, mapping, target)
    if ident is None or not creates:
        return {}
    values = {c.source_id: v for c in creates if (v := c.properties.get(ident))}
    if not values:
        return {}
    statuses = sp.store.link_counts(sp.conn).get(mapping.name, {})
    if not any(statuses.get(s) for s in _ENDED_WITH_SURVIVOR):
        return {}
    found = sp.crm(target).find_by_property(
        sp.obj_type(mapping, target),
        ident,
        sorted(set(values.values())),
        [sp.names(target).source_id],
    )
    by_value = {_norm(ident, k): r for k, r in found.items()}
    wanted = {_norm(ident, v) for v in values.values()}
    survivors = {
        v: rid
        for (name, side, v), rid in sp.survivors.items()
        if name == mapping.name and side == target and v in wanted
    }
    if survivors:
        alive = sp.read(mapping, target, sorted(set(survivors.values())))
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
        by_value.update({v: r for (name, v), r in sp.kept.items() if name == mapping.name})
    holders = sp.store.holders(sp.conn, mapping.name, target, [r.id for r in by_value.values()])
    origin = other_side(target)
    unheld = {r.id: r for r in by_value.values() if r.id not in holders}
    heirs = _heirs(sp, mapping, ident, unheld) if target == "vendor" else {}
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
            sp.inherited[(mapping.name, sid)] = ended
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
    sp: SyncPass, mapping: ObjectMapping, ident: str, recs: Mapping[str, Record]
) -> dict[str, tuple[LinkRef, str]]:
    """Unlinked vendor records (by id) that succeed the survivor an ended link kept:
    the partner record was deleted (the link ended, its vendor counterpart left
    live), then the vendor deleted that counterpart and entered it again. Same rule
    as a successor (:func:`_follow_successors`), from the new record's side: it is
    associated with the vendor counterpart of a shared deal whose mirrored
    associations name the ended link's partner record, that link's vendor record
    is gone and had the same identity, and exactly one such link qualifies. Only
    for identities the CRM does not keep unique (a unique one is refused by the
    CRM and adopted on its 409)."""
    anchors = [m for m in sp.mappings if mapping.name in m.associations]
    field_key = next((f.key for f in mapping.fields if f.vendor == ident), None)
    if ident in UNIQUE_IDENTITY or not anchors or not recs or field_key is None:
        return {}
    out: dict[str, tuple[LinkRef, str]] = {}
    for parent in anchors:
        with_parents = sp.crm("vendor").read(
            mapping.vendor_object, sorted(recs), [], associations=[parent.vendor_object]
        )
        parent_ids = {
            i for r in with_parents.values() for i in r.associations.get(parent.vendor_object, ())
        }
        plinks = sp.store.link_refs(sp.conn, parent.name, "vendor", parent_ids)
        listed: dict[str, dict[str, str]] = {}  # vendor record -> partner id -> parent
        for vid, r in with_parents.items():
            for i in r.associations.get(parent.vendor_object, ()):
                lk = plinks.get(i)
                if lk is not None and lk.status == "active":
                    for p in lk.base.get(ASSOC + mapping.name, []):
                        listed.setdefault(vid, {}).setdefault(p, i)
        named = {p for ps in listed.values() for p in ps}
        held = sp.store.holders(sp.conn, mapping.name, "partner", named)
        ended = {
            p: h
            for p, h in held.items()
            if h.status in _ENDED_WITH_SURVIVOR and h.vendor_id and h.vendor_id not in recs
        }
        alive = sp.read(mapping, "vendor", sorted({h.vendor_id or "" for h in ended.values()}))
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
    for i in range(0, len(items), sp.batch_size):
        batch = items[i : i + sp.batch_size]
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


def _apply_updates(
    sp: SyncPass,
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
        crm = sp.crm(s)
        for i in range(0, len(items), sp.batch_size):
            batch = items[i : i + sp.batch_size]
            results = crm.update(sp.obj_type(mapping, s), [(rid, props) for rid, props, _ in batch])
            sp.crash_at(f"after_write:{mapping.name}")
            by_id = {r.key: r for r in results}
            for rid, _, u in batch:
                res = by_id.get(rid)
                if res is None or not res.ok:
                    failed[u.link_id] = f"writing {s} {rid}: {res.error if res else 'no result'}"
            sp.progress(
                f"update {s} {mapping.name}", min(i + sp.batch_size, len(items)), len(items)
            )
    bases: list[tuple[int, dict[str, Any]]] = []
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
    sp.store.save_bases(bases)


def _close_ended_conflicts(sp: SyncPass, link_ids: Sequence[int], resolution: str) -> None:
    """A pair that stopped syncing has nothing left to resolve: an open conflict
    would keep every later pass at exit 1 and could never be resolved."""
    for link_id in link_ids:
        sp.store.close_conflicts_for(sp.conn, link_id, None, resolution)


def _follow_successors(sp: SyncPass, mapping: ObjectMapping, deletes: list[Delete]) -> list[Delete]:
    """A vendor record deleted while the vendor holds its **successor** (the record
    deleted and entered again): the link follows the successor instead of the
    delete policy applying to the partner's record, which is still the same thing.
    A successor is a live vendor record with the same identity, held by no live
    link, belonging to no other partner and carrying no other record's source id;
    and, since only e-mails are unique at HubSpot (:data:`UNIQUE_IDENTITY`), a
    company must also be associated with the vendor counterpart of a shared deal
    the deleted one was mirrored onto (:func:`_successors`) — a vendor company with
    the same domain off the deal is the vendor's own. Deals are never followed:
    nothing vouches for a deal with the same name. Exactly one successor or none.

    The successor gets this connection's partner id (so its changes are seen) and
    the pair is merged again in this pass from fresh reads. When the partner record
    is gone too (both sides deleted and re-created before a pass), the link still
    moves to the successor, and ends at once (``unlinked``, in the same
    transaction): a re-created partner record then adopts the successor as it
    adopts any counterpart left by an ended link (:func:`_recreated`), in this pass
    or a later one, instead of a third record. Returns the deletes still to apply."""
    ident = _identity(sp, mapping, "vendor")
    field_key = next((f.key for f in mapping.fields if f.vendor == ident), None)
    if ident is None or field_key is None:
        return deletes
    anchors = (
        []
        if ident in UNIQUE_IDENTITY
        else [m for m in sp.mappings if mapping.name in m.associations]
    )
    if ident not in UNIQUE_IDENTITY and not anchors:
        return deletes
    vendor_seen = sp.seen.get(mapping.name, ObjectRecords({}, {})).vendor
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
        refs = sp.store.link_refs(sp.conn, mapping.name, side, [d.counterpart_id for d in group])
        for d in group:
            ref = refs.get(d.counterpart_id)
            pair = ref.base.get(field_key) if ref is not None else None
            if ref is not None and ref.id == d.link_id and pair and pair[1]:
                values[d.link_id] = (ref, str(pair[1]))
    if not values:
        return deletes
    found = _successors(sp, mapping, ident, anchors, values)
    holders = sp.store.holders(
        sp.conn, mapping.name, "vendor", {r.id for recs in found.values() for r, _ in recs}
    )
    rest: list[Delete] = []
    chosen: dict[str, tuple[Delete, LinkRef, LinkRef | None, str]] = {}
    kept: dict[str, Record] = {}
    for d in deletes:
        ref, value = values.get(d.link_id, (None, ""))
        if ref is None:
            rest.append(d)
            continue
        ours = sp.source_key("vendor", ref.partner_id or "")
        fit: list[tuple[Record, LinkRef | None, str]] = []
        for succ, why in found.get(d.link_id, []):
            held = holders.get(succ.id)
            owner = succ.get(sp.names("vendor").partner_id)
            source = succ.get(sp.names("vendor").source_id)
            if (
                succ.archived
                or succ.id == ref.vendor_id
                or succ.id in chosen
                or _norm(ident, succ.get(ident) or "") != _norm(ident, value)
                or (source and source != ours)  # another record's counterpart
                or (owner and owner != sp.conn)
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
        props = {sp.names("vendor").partner_id: sp.conn}
        if ref.origin == "partner" and ref.partner_id:
            props[sp.names("vendor").source_id] = sp.source_key("vendor", ref.partner_id)
        items.append((vid, props))
    results = sp.crm("vendor").update(mapping.vendor_object, items)
    sp.crash_at(f"after_write:{mapping.name}")
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
            sp.kept[(mapping.name, _norm(ident, values[d.link_id][1]))] = kept[res.key]
            detail = (
                f"vendor {ref.vendor_id} and partner {ref.partner_id} were both deleted; "
                f"vendor {res.key} has the same {ident}{why}: the ended link keeps it, "
                "so a re-created partner record adopts it"
            )
        else:
            followed.append((ref.partner_id, res.key))
            sp.relinked.append((mapping.name, ref.partner_id, res.key))
            sp.counts[f"re-linked {mapping.name}"] += 1
            detail = (
                f"vendor {ref.vendor_id} was deleted; partner {ref.partner_id} re-linked "
                f"to vendor {res.key}, which has the same {ident}{why}"
            )
        sp.outcomes.append(
            RecordOutcome(mapping.name, "vendor", res.key, "relink", "ok", detail=detail)
        )
    if moved:
        sp.store.relink(released, moved=moved, unlinked=ended)
        _reassociate(sp, mapping, followed)
    return rest


def _successors(
    sp: SyncPass,
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
        found = sp.crm("vendor").find_by_property(
            mapping.vendor_object,
            ident,
            sorted({v for _, v in values.values()}),
            list(sp.names("vendor").markers),
        )
        by_value = {_norm(ident, k): r for k, r in found.items()}
        return {
            link_id: [(rec, "")]
            for link_id, (_, value) in values.items()
            if (rec := by_value.get(_norm(ident, value))) is not None
        }
    by_partner = {ref.partner_id: link_id for link_id, (ref, _) in values.items() if ref.partner_id}
    on: dict[int, dict[str, str]] = defaultdict(dict)  # link -> successor id -> why
    for parent in anchors:
        mirrored = sp.store.links_mirroring(sp.conn, parent.name, ASSOC + mapping.name, by_partner)
        parent_ids = sorted(
            {lk.vendor_id for lks in mirrored.values() for lk in lks if lk.vendor_id}
        )
        if not parent_ids:
            continue
        parents = sp.crm("vendor").read(
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
    recs = sp.read(mapping, "vendor", ids) if ids else {}
    return {
        link_id: [(recs[vid], why) for vid, why in cands.items() if vid in recs]
        for link_id, cands in on.items()
    }


def _reassociate(sp: SyncPass, mapping: ObjectMapping, moved: list[tuple[str, str]]) -> None:
    """``moved``: (partner id, new vendor id) of re-linked pairs. The vendor
    counterparts of the partner records associated with them (a shared deal of a
    re-linked contact) are associated with the new vendor record too: the parent's
    base already names the partner record as mirrored, so the pass would not
    mirror it again by itself. If that fails, the partner id leaves the parent's
    base and the parent is read again next pass, which mirrors it then."""
    parents = [m for m in sp.mappings if mapping.name in m.associations]
    by_partner = dict(moved)
    if not parents or not by_partner:
        return
    records = sp.crm("partner").read(
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
        links = sp.store.link_refs(sp.conn, parent.name, "partner", owners)
        wanted = [
            (lk, pid)
            for lk in links.values()
            if lk.status == "active" and lk.vendor_id
            for pid in lk.base.get(key, [])
            if pid in by_partner
        ]
        if not wanted:
            continue
        results = sp.crm("vendor").associate(
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
                sp.retries.append(
                    (parent.name, "partner", lk.partner_id, "association after a re-link")
                )
        sp.store.save_bases(list(redo.items()))
        done = sum(1 for lk, _ in wanted if lk.vendor_id not in failed)
        sp.counts[f"associated {parent.name}→{mapping.name}"] += done


def _apply_deletes(sp: SyncPass, mapping: ObjectMapping, deletes: list[Delete]) -> None:
    deletes = _follow_successors(sp, mapping, deletes)
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
    _note_survivors(sp, mapping, [d for d in deletes if d.policy in ("unlink", "flag")])
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


def _note_survivors(sp: SyncPass, mapping: ObjectMapping, deletes: list[Delete]) -> None:
    """Remember, by identity, the records these ending links leave live, for
    :func:`_recreated` in this pass (see ``survivors``)."""
    if not deletes:
        return
    for side in SIDES:
        ident = _identity(sp, mapping, side)
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
        refs = sp.store.link_refs(sp.conn, mapping.name, side, [d.counterpart_id for d in group])
        for d in group:
            ref = refs.get(d.counterpart_id)
            pair = ref.base.get(field_key) if ref is not None else None
            value = pair[0 if side == "partner" else 1] if pair else None
            if ref is not None and ref.id == d.link_id and value:
                key = (mapping.name, side, _norm(ident, str(value)))
                sp.survivors[key] = d.counterpart_id


# ------------------------------------------------------------------ associations


def sync_associations(sp: SyncPass, finished: Collection[str] | None = None) -> None:
    """Mirror the partner side's associations of shared records onto the vendor
    side (add-only), for each (record, associated) pair of mappings once both are
    applied — ``finished`` names those applied so far (all when ``None``). Deals →
    companies then goes out while contacts are still being written, instead of
    everything waiting for the end of the pass."""
    for mapping in sp.mappings:
        for name in mapping.associations:
            if name not in sp.by_name or (mapping.name, name) in sp.assoc_done:
                continue
            if finished is not None and not (mapping.name in finished and name in finished):
                continue
            sp.assoc_done.add((mapping.name, name))
            _associate(sp, mapping, sp.by_name[name])


def _associate(sp: SyncPass, mapping: ObjectMapping, target: ObjectMapping) -> None:
    """One pair of mappings. The mirrored partner ids live in the base under
    ``@assoc:`` so unchanged associations cost no call."""
    partner_recs = sp.seen.get(mapping.name, ObjectRecords({}, {})).partner
    with_assoc = {
        rid: r
        for rid, r in partner_recs.items()
        if r.associations.get(target.partner_object) and not r.archived
    }
    if not with_assoc:
        return
    links = sp.store.link_refs(sp.conn, mapping.name, "partner", with_assoc)
    all_ids = {
        i for r in with_assoc.values() for i in r.associations.get(target.partner_object, ())
    }
    t_links = sp.store.link_refs(sp.conn, target.name, "partner", all_ids, base=False)
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
    if sp.ctx.dry_run or not pairs:
        return
    results = sp.crm("vendor").associate(mapping.vendor_object, target.vendor_object, pairs)
    failed_from = {r.key for r in results if not r.ok}
    new_bases: list[tuple[int, dict[str, Any]]] = []
    for pair, (link, ids) in owners.items():
        if pair[0] in failed_from:
            assert link.partner_id is not None
            sp.retries.append((mapping.name, "partner", link.partner_id, "association failed"))
            continue
        link.base[ASSOC + target.name] = ids
        new_bases.append((link.id, dict(link.base)))
    sp.counts[f"associated {mapping.name}→{target.name}"] += len(pairs) - len(failed_from)
    sp.plan.extend(
        Associate(mapping.name, "vendor", link.id or 0, target.name, tuple(ids))
        for link, ids in {id(v[0]): v for v in owners.values()}.values()
    )
    if new_bases:
        sp.store.save_bases(new_bases)
