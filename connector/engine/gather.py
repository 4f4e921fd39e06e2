"""Gather: the records reconcile needs, paired against the stored base.

Detection hands over what changed in the window; reconcile needs more than that to
decide right. Here: records read again by id (failed before, an interrupted create,
the other side of an open conflict, a linked record a stale search handed back), the
records shared *via* a shared parent (a deal's company), and the pair states —
each record with its counterpart and the link's base (:class:`PairState`).

Plain functions of the pass (:class:`~connector.engine.sync.SyncPass`): they read
the store and the CRMs (reads only) and fill the pass's dictionaries of records.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from connector.config.models import ObjectMapping
from connector.engine.merges import merged_ids
from connector.engine.plan import Action, Delete, Update
from connector.engine.reconcile import PairState, matches
from connector.records import SIDES, Record, Side, other_side
from connector.state.store import LinkRef, RecordOutcome

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass


def add_retried(
    sp: SyncPass, mapping: ObjectMapping, per_side: dict[Side, dict[str, Record]]
) -> None:
    """Records that failed before, and creates left pending by a crash, are read
    again by id, with their counterparts."""
    want: dict[Side, set[str]] = {"partner": set(), "vendor": set()}
    for item in sp.store.retries(sp.conn, mapping.name):
        side: Side = item.side  # type: ignore[assignment]
        want[side].add(item.record_id)
        sp.cleared.append((mapping.name, side, item.record_id))
    # an interrupted create whose source was not seen again must still be finished
    for link in sp.store.links(sp.conn, mapping.name, ("pending",)):
        origin: Side = "vendor" if link.origin == "vendor" else "partner"
        source = link.partner_id if origin == "partner" else link.vendor_id
        if source:
            want[origin].add(source)
    if not want["partner"] and not want["vendor"]:
        return
    for s in SIDES:
        refs = sp.store.link_refs(sp.conn, mapping.name, s, want[s], base=False)
        for ref in refs.values():
            cid = ref.vendor_id if s == "partner" else ref.partner_id
            if cid:
                want[other_side(s)].add(cid)
    read_by_id(sp, mapping, per_side, want)


def add_conflicted(
    sp: SyncPass, mapping: ObjectMapping, per_side: dict[Side, dict[str, Record]]
) -> None:
    """A pair with an open conflict whose one side changed: read the other side too.

    Reconcile takes an unseen side to be unchanged since the base, which does not
    hold while a conflict is open (its base deliberately did not move): the unseen
    side's conflicting value would be taken for the base and overwritten."""
    want: dict[Side, set[str]] = {"partner": set(), "vendor": set()}
    for c in sp.store.conflicts(sp.conn):
        if c.object != mapping.name:
            continue
        has_p, has_v = c.partner_id in per_side["partner"], c.vendor_id in per_side["vendor"]
        if has_p and not has_v:
            want["vendor"].add(c.vendor_id)
        elif has_v and not has_p:
            want["partner"].add(c.partner_id)
    read_by_id(sp, mapping, per_side, want)


PerSide = dict[Side, dict[str, Record]]
"""A pass's records of one object: side → id → record."""
Wanted = dict[Side, set[str]]
"""Ids to read, per side."""


def pair_ids(pairs: Iterable[tuple[str, str]]) -> Wanted:
    """Both ids of each linked (partner id, vendor id) pair, per side."""
    pairs = list(pairs)
    return {"partner": {p for p, _ in pairs}, "vendor": {v for _, v in pairs}}


def read_by_id(sp: SyncPass, mapping: ObjectMapping, per_side: PerSide, want: Wanted) -> None:
    """Read records by id into this pass's records. A linked record that no longer
    exists (archived or deleted outside the detection window) comes back as an
    archived marker, so reconcile applies the delete policy instead of writing to
    a record that is gone on every pass."""
    for s in SIDES:
        ids = sorted(want[s] - set(per_side[s]))
        if not ids:
            continue
        found = sp.read(mapping, s, ids)
        per_side[s].update(found)
        # a merged-away id answers with its survivor, which lists it: not gone, the
        # survivor's link is settled by merges.follow_merges
        merged = {old for rec in found.values() for old in merged_ids(rec, sp.names(s))}
        missing = [i for i in ids if i not in found and i not in merged]
        if not missing:
            continue
        links = sp.store.link_refs(sp.conn, mapping.name, s, missing, base=False)
        now = sp.crm(s).now()
        for rid in missing:
            link = links.get(rid)
            if link is not None and link.status in ("active", "pending"):
                per_side[s][rid] = Record(sp.obj_type(mapping, s), rid, {}, now, archived=True)


def read_via_extras(
    sp: SyncPass, mapping: ObjectMapping, partner_recs: dict[str, Record], via: set[str]
) -> None:
    """Records shared via a shared parent that were not detected themselves (an
    existing company of a newly shared deal) are read, unless already linked."""
    extra = via - set(partner_recs)
    if not extra:
        return
    links_p = sp.store.link_refs(sp.conn, mapping.name, "partner", extra, base=False)
    unlinked = [i for i in extra if i not in links_p]
    if unlinked:
        partner_recs.update(sp.read(mapping, "partner", sorted(unlinked)))


def fresh_linked(
    sp: SyncPass,
    mapping: ObjectMapping,
    per: dict[Side, dict[str, Record]],
) -> None:
    """A CRM whose search may be stale (HubSpot's lags behind writes by seconds) can
    hand back a record the last pass wrote with its *previous* values; compared
    with the link's newer base they look like a change, and would be written back
    over the new values on the other side. Linked records found that way are read
    again by id (immediate; one call per 100), in place. Unlinked ones are left as
    found: a stale copy of a new record only delays its newest values to a later
    pass, it cannot undo one. A record gone since the search (archived, merged
    away) is dropped here; the recycle bin or the merged record reports it.

    A hit whose modification time is not older than the version the link's base
    was taken from (the link's base time for that side: the write's answer, or the
    record as read) is no such copy: it is that version (a pass's own write found
    again through the overlap window) or an edit made since. It is kept as found, so
    an edit made outside costs no second read. Only hits older than it (stale
    copies) and links whose base time is unknown are read again."""
    for s, recs in per.items():
        if not getattr(sp.ctx.crm(s), "search_may_be_stale", False):
            continue
        live = [
            rid
            for rid, rec in recs.items()
            if not rec.archived and (mapping.name, s, rid) not in sp.fresh
        ]
        refs = sp.store.link_refs(sp.conn, mapping.name, s, live, base=False)
        linked = sorted(rid for rid, ref in refs.items() if not _as_new_as_base(recs[rid], ref, s))
        if not linked:
            continue
        fresh = sp.read(mapping, s, linked)
        for rid in linked:
            if rid in fresh:
                recs[rid] = fresh[rid]
            else:
                recs.pop(rid, None)
        for rid, rec in fresh.items():  # a merged id answered with its survivor
            recs.setdefault(rid, rec)


def _as_new_as_base(rec: Record, ref: LinkRef, side: Side) -> bool:
    """Whether a search hit is the version its link's base was taken from on that
    side, or a later one (``False`` when that version is not known). A record's
    versions are told apart by their modification times (HubSpot's, to the
    millisecond): a copy from before the base is older than the base time."""
    at = ref.base_at(side)
    return at is not None and rec.updated_at >= at


VIA_PAGE = 5000
"""Parent records whose links :func:`via_candidates` reads at a time: the last
children of a first sync are shared via every deal the pass streamed, and their N
links read at once were the pass's peak of memory at N = 100,000 (issue 17)."""


def via_candidates(
    sp: SyncPass, detected: Mapping[str, Mapping[str, Record]]
) -> dict[str, set[str]]:
    """Partner ids of records shared *via* a shared parent (a deal's company), from
    the parent's detected partner records, a page of :data:`VIA_PAGE` at a time."""
    out: dict[str, set[str]] = defaultdict(set)
    children_of: dict[str, list[ObjectMapping]] = {}
    for child in sp.mappings:
        if child.share.via and child.share.via in sp.by_name:
            children_of.setdefault(child.share.via, []).append(child)
    source_id = sp.names("partner").source_id
    for parent_name, children in children_of.items():
        parent = sp.by_name[parent_name]
        partner_recs = detected.get(parent_name, {})
        ids = list(partner_recs)
        for start in range(0, len(ids), VIA_PAGE):
            page = ids[start : start + VIA_PAGE]
            links = sp.store.link_refs(sp.conn, parent_name, "partner", page, base=False)
            ended = sp.store.ended_ids(
                sp.conn, parent_name, "partner", [r for r in page if r not in links]
            )
            for rid in page:
                rec = partner_recs[rid]
                link = links.get(rid)
                shared = (link is not None and link.status in ("active", "pending")) or (
                    link is None
                    and rid not in ended
                    and matches(parent.share.partner, rec.properties)
                    and not rec.get(source_id)
                )
                if shared and not rec.archived:
                    for child in children:
                        out[child.name].update(rec.associations.get(child.partner_object, ()))
    return out


def pair_states(
    sp: SyncPass,
    mapping: ObjectMapping,
    partner_recs: dict[str, Record],
    vendor_recs: dict[str, Record],
    via: set[str],
) -> list[PairState]:
    """Each record with its counterpart and its link's base: a linked pair once
    (whichever side changed), an unlinked record alone, with whether it is shared."""
    states: list[PairState] = []
    done_links: set[int] = set()
    for s, recs in (("partner", partner_recs), ("vendor", vendor_recs)):
        side: Side = s  # type: ignore[assignment]
        links = sp.store.link_refs(sp.conn, mapping.name, side, recs)
        # records whose link ended (unlinked, deleted) are no longer shared: never
        # re-created on the other side (and their old link blocks a new one)
        ended = sp.store.ended_ids(sp.conn, mapping.name, side, [r for r in recs if r not in links])
        share = mapping.share.partner if side == "partner" else mapping.share.vendor
        for rid, rec in recs.items():
            link = links.get(rid)
            if link is None or link.status == "pending":
                # a pending link is an interrupted create: finish (adopt) it
                eligible = link is not None or (
                    not rec.get(sp.names(side).source_id)
                    and rid not in ended
                    and ((side == "partner" and rid in via) or matches(share, rec.properties))
                )
                if (
                    rid in ended
                    and link is None
                    and not rec.archived
                    and matches(share, rec.properties)
                ):
                    _tell_ended(sp, mapping.name, side, rid)
                if side == "partner":
                    states.append(PairState(None, rid, None, rec, None, None, eligible))
                else:
                    states.append(PairState(None, None, rid, None, rec, None, eligible))
                continue
            if link.status != "active" or link.id in done_links:
                continue
            assert link.id is not None
            done_links.add(link.id)
            if side == "partner":
                other = vendor_recs.get(link.vendor_id or "")
                states.append(PairState(link.id, rid, link.vendor_id, rec, other, link.base))
            else:
                states.append(PairState(link.id, link.partner_id, rid, None, rec, link.base))
    return states


def _tell_ended(sp: SyncPass, obj: str, side: Side, rid: str) -> None:
    """A changed record that would be shared but whose link ended in an earlier pass (its
    counterpart deleted or unlinked, or it was restored from a recycle bin): it stays
    unshared, and the run's log and counts say so rather than leaving it silent."""
    other = "vendor" if side == "partner" else "partner"
    sp.counts["not shared again (link ended)"] += 1
    sp.outcomes.append(
        RecordOutcome(
            obj,
            side,
            rid,
            "sync",
            "skipped",
            None,
            f"not shared again: its link to the {other}'s record ended in an earlier pass "
            "(deleted, unlinked or relinked), and dealsync never re-shares such a record "
            f"by itself; enter it as a new record on the {side}'s side to share it, or "
            "leave it private",
        )
    )


# ---------------------------------------------------------------------- full pass


def linked_pages(sp: SyncPass, mapping: ObjectMapping) -> Iterator[list[tuple[str, str]]]:
    """Every active linked pair of a mapping, ``(partner id, vendor id)``, one page of
    the pass's detection chunk at a time (``sync --full``): memory stays one page."""
    after = 0
    while True:
        page = sp.store.linked_pairs(sp.conn, mapping.name, after=after, limit=sp.detect_chunk)
        if not page:
            return
        after = page[-1][0]
        yield [(p, v) for _, p, v in page]


def read_fresh(sp: SyncPass, mapping: ObjectMapping, per_side: PerSide, want: Wanted) -> None:
    """:func:`read_by_id`, the records marked as read by id in this pass, so
    :func:`fresh_linked` does not read them a second time (a full pass on HubSpot
    would otherwise read every linked record twice)."""
    before = {s: set(per_side[s]) for s in SIDES}
    read_by_id(sp, mapping, per_side, want)
    for s in SIDES:
        sp.fresh.update((mapping.name, s, rid) for rid in set(per_side[s]) - before[s])


def add_counterparts(
    sp: SyncPass, mapping: ObjectMapping, per: dict[Side, dict[str, Record]]
) -> None:
    """``sync --full``, streamed: the linked counterparts of the records in hand that
    are not in hand are read by id, so a pair one side of which changed is merged
    from both sides' current values (its unseen side may have drifted too)."""
    want: dict[Side, set[str]] = {"partner": set(), "vendor": set()}
    for s in SIDES:
        other = other_side(s)
        refs = sp.store.link_refs(sp.conn, mapping.name, s, list(per[s]), base=False)
        for ref in refs.values():
            cid = ref.vendor_id if s == "partner" else ref.partner_id
            if ref.status == "active" and cid and cid not in per[other]:
                want[other].add(cid)
    read_fresh(sp, mapping, per, want)


def restore_markers(
    sp: SyncPass, mapping: ObjectMapping, states: list[PairState], actions: list[Action]
) -> list[Action]:
    """A linked vendor record read by id (``sync --full``, ``resync``) whose partner
    marker was cleared gets it back, with the pair's update or as one of its own:
    detection finds a connection's vendor records by that marker, so without it the
    record's later edits would never be seen again. A marker naming another partner
    is left as it is and reported in the run's log and counts (which partner owns the
    record is a person's call)."""
    marker = sp.names("vendor").partner_id
    by_link = {a.link_id: i for i, a in enumerate(actions) if isinstance(a, Update | Delete)}
    out = list(actions)
    for st in states:
        rec = st.vendor
        if st.link_id is None or rec is None or rec.archived or st.partner_id is None:
            continue
        if (mapping.name, "vendor", rec.id) not in sp.fresh:
            continue
        owner = rec.get(marker)
        if owner == sp.conn:
            continue
        if owner:
            sp.counts["marker_foreign"] += 1
            sp.outcomes.append(
                RecordOutcome(
                    mapping.name,
                    "vendor",
                    rec.id,
                    "sync",
                    "skipped",
                    marker,
                    f"linked to {sp.conn} but marked for partner {owner}: marker left as "
                    f"is; set {marker} to {sp.conn} (or unlink the pair) to settle it",
                )
            )
            continue
        i = by_link.get(st.link_id)
        if i is not None and isinstance(out[i], Delete):
            continue
        if i is not None:
            u = out[i]
            assert isinstance(u, Update)
            out[i] = dataclasses.replace(
                u,
                vendor_properties={**u.vendor_properties, marker: sp.conn},
                reasons=(*u.reasons, f"{marker}: restored"),
            )
        else:
            out.append(
                Update(
                    mapping.name,
                    st.link_id,
                    st.partner_id,
                    rec.id,
                    {},
                    {marker: sp.conn},
                    dict(st.base or {}),
                    (f"{marker}: restored",),
                )
            )
    return out
