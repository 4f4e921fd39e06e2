"""Re-created records: a record deleted and entered again meets its old counterpart.

People delete a record and enter it again (a contact, a company); the connector
recognises the new one by its identity (:data:`IDENTITY`: e-mail, domain, deal name)
and re-links instead of making a duplicate (``docs/sync.md``, "Re-created records"):

* :func:`recreated_counterparts` — a create whose source re-creates a deleted record
  adopts the live counterpart the ended link left (creates in ``engine/apply.py``);
* :func:`follow_successors` — a vendor record deleted while the vendor holds its
  successor: the link follows the successor instead of the delete policy applying;
* :func:`note_survivors` — the records links ended this pass leave live, by identity,
  so a record re-created in the same window finds them without a (stale) search.

Plain functions of the pass (:class:`~connector.engine.sync.SyncPass`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connector.config.models import ObjectMapping
from connector.engine.associations import ASSOC, reassociate
from connector.engine.hooks import ObjectRecords
from connector.engine.plan import Create, Delete
from connector.records import SIDES, Record, Side, other_side
from connector.state.store import LinkRef, RecordOutcome

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass

IDENTITY = {"contacts": "email", "companies": "domain", "deals": "dealname"}
"""Per kind of record (the adapter's :class:`~connector.adapters.naming.Naming`:
``deals``, ``contacts``, ``companies``), the property that tells people which
real-world thing a record is, in HubSpot's words. A record deleted and re-created
with the same value is recognised by it, so its old counterpart is re-linked instead
of duplicated (``docs/sync.md``, "Re-created records"). In a CRM that names things
its own way (Salesforce: ``Opportunity``, ``Email``) the identity is the field the
mapping pairs with it (:func:`identity_of`). Used only when the mapping syncs it."""

_KINDS = ("deals", "contacts", "companies")

_CASELESS = ("email", "domain", "website")
"""Identities compared ignoring case (lower-cased: HubSpot's ``email``/``domain``,
Salesforce's ``Email``/``Website``)."""


UNIQUE_IDENTITY = ("email",)
"""Identities the CRM itself keeps unique among live records (HubSpot: a contact's
e-mail). Only these let a vendor record stand in for a deleted one it was never
linked to on the identity alone: two vendor companies may share a domain, two deals a
name, so a company also needs the shared deal the deleted one was on, and a deal is
never a successor (:func:`follow_successors`)."""


_ENDED_WITH_SURVIVOR = ("unlinked", "flagged")
"""Link statuses that leave one record live after the other was deleted."""


def norm(identity: str, value: str) -> str:
    """Identity values as the CRM compares them: e-mails and domains ignore case."""
    value = value.strip()
    return value.lower() if identity.lower() in _CASELESS else value


def identity_of(sp: SyncPass, mapping: ObjectMapping, side: Side) -> str | None:
    """The property that names a record of this mapping on ``side`` to people, if
    the mapping syncs it (see :data:`IDENTITY`). The kind of record comes from the
    adapters' naming (Salesforce's ``Opportunity`` is its ``deals``), not from
    HubSpot's object types, so a partner on another CRM is covered too. A side that
    speaks HubSpot's words (its naming calls the kind by its name) must map
    the property itself; a side that names things its own way has as its identity
    the field the mapping pairs with it (``Email`` ↔ ``email``, ``Name`` ↔ ``dealname``)."""
    kinds = {
        s: next((k for k in _KINDS if getattr(sp.names(s), k) == sp.obj_type(mapping, s)), None)
        for s in SIDES
    }
    kind = kinds[side] or kinds[other_side(side)]
    name = IDENTITY.get(kind or "")
    if name is None:
        return None
    mine = [f.partner if side == "partner" else f.vendor for f in mapping.fields]
    if name in mine:
        return name
    if getattr(sp.names(side), kind or "") == kind:
        return None  # HubSpot's words on this side, and the mapping does not sync it
    theirs = [f.vendor if side == "partner" else f.partner for f in mapping.fields]
    return next((m for m, t in zip(mine, theirs, strict=True) if t == name), None)


def recreated_counterparts(
    sp: SyncPass, mapping: ObjectMapping, target: Side, creates: list[Create]
) -> dict[str, tuple[str, str]]:
    """Creates whose source re-creates a deleted record: a live ``target`` record
    with the same identity (e-mail, domain, deal name) was the counterpart of a
    record deleted on the source side, and its link ended (unlink or flag policy
    left it live, or it is the vendor's successor of a vendor record deleted too,
    which the ended link kept: :func:`follow_successors`). That record is adopted
    instead of making a second one; never a record that was not linked before
    (companies and deals are not unique at HubSpot, so the vendor's own records are
    left alone)."""
    ident = identity_of(sp, mapping, target)
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
    by_value = {norm(ident, k): r for k, r in found.items()}
    wanted = {norm(ident, v) for v in values.values()}
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
                and norm(ident, rec.get(ident) or "") == v
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
        rec = by_value.get(norm(ident, value))
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
    as a successor (:func:`follow_successors`), from the new record's side: it is
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
            value = norm(ident, recs[vid].get(ident) or "")
            fits = {
                h.id: (h, ps[p])
                for p, h in ended.items()
                if p in ps
                and h.vendor_id not in alive
                and norm(ident, str((h.base.get(field_key) or [None, None])[1] or "")) == value
            }
            if len(fits) == 1 and vid not in out:
                [(h, via)] = fits.values()
                out[vid] = (
                    h,
                    f" and is associated with vendor {parent.vendor_object} {via}, as the "
                    "deleted one was",
                )
    return out


def follow_successors(sp: SyncPass, mapping: ObjectMapping, deletes: list[Delete]) -> list[Delete]:
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
    adopts any counterpart left by an ended link (:func:`recreated_counterparts`), in this pass
    or a later one, instead of a third record. Returns the deletes still to apply."""
    ident = identity_of(sp, mapping, "vendor")
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
                or norm(ident, succ.get(ident) or "") != norm(ident, value)
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
            sp.kept[(mapping.name, norm(ident, values[d.link_id][1]))] = kept[res.key]
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
        reassociate(sp, mapping, followed)
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
        by_value = {norm(ident, k): r for k, r in found.items()}
        return {
            link_id: [(rec, "")]
            for link_id, (_, value) in values.items()
            if (rec := by_value.get(norm(ident, value))) is not None
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


def note_survivors(sp: SyncPass, mapping: ObjectMapping, deletes: list[Delete]) -> None:
    """Remember, by identity, the records these ending links leave live, for
    :func:`recreated_counterparts` in this pass (see ``survivors``)."""
    if not deletes:
        return
    for side in SIDES:
        ident = identity_of(sp, mapping, side)
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
                key = (mapping.name, side, norm(ident, str(value)))
                sp.survivors[key] = d.counterpart_id
