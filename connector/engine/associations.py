"""Associations: mirror the partner side's associations of shared records onto the
vendor side, add-only, as :class:`~connector.engine.plan.Associate` actions.

Planned, then applied, once both mappings of a pair (deals → contacts) are applied —
so a dry run lists them (``sync --dry-run``) and a real pass writes exactly what it
planned. The partner ids already mirrored live in the owner link's base under
:data:`ASSOC`, so unchanged associations cost no call. A dry run plans only between
records already linked: a record the pass would create has no counterpart id yet,
and its associations are planned (and written) in the pass that creates it.

Also here: :func:`reassociate`, which points the mirrored associations of a re-linked
record at its new counterpart.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from connector.config.models import ObjectMapping
from connector.engine.hooks import ObjectRecords
from connector.engine.plan import Associate
from connector.records import Record

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass

ASSOC = "@assoc:"
"""Key prefix, in a link's base, of the partner ids whose associations were mirrored."""


ASSOC_PAGE = 1000
"""Records whose links are read (and associations planned) at a time: the planning
holds one page of links with their bases, not every shared record's (issue 17)."""

ASSOC_FLUSH = 10_000
"""Planned pairs written at a time, a multiple of HubSpot's 2,000 a call: a flush
sends the longest run of whole actions that fills its calls, so paging costs no
call, and memory holds one flush's actions, not the pass's."""

ASSOC_CALL = 2000


def sync_associations(sp: SyncPass, finished: Collection[str] | None = None) -> None:
    """Plan (and, unless a dry run, apply) the associations of each (record,
    associated) pair of mappings once both are applied — ``finished`` names those
    applied so far (all when ``None``). Deals → companies then goes out while
    contacts are still being written, instead of everything waiting for the end of
    the pass. Each pair is planned right before it is applied: a deal's base then
    already holds what its deals → companies write mirrored when deals → contacts
    is planned from it. Planned and written a page at a time (:data:`ASSOC_PAGE`,
    :data:`ASSOC_FLUSH`), so memory does not grow with the number of records."""
    for mapping in sp.mappings:
        for name in mapping.associations:
            if name not in sp.by_name or (mapping.name, name) in sp.assoc_done:
                continue
            if finished is not None and not (mapping.name in finished and name in finished):
                continue
            sp.assoc_done.add((mapping.name, name))
            pending: list[Associate] = []
            pairs = 0
            for actions in plan_association_pages(sp, mapping, sp.by_name[name]):
                sp.plan.extend(actions)
                if sp.ctx.dry_run or not actions:
                    continue
                pending.extend(actions)
                pairs += sum(len(a.to_ids) for a in actions)
                if pairs >= ASSOC_FLUSH:
                    pending = _flush_full_calls(sp, pending, pairs)
                    pairs = sum(len(a.to_ids) for a in pending)
            if pending:
                apply_associations(sp, pending)


def _flush_full_calls(sp: SyncPass, pending: list[Associate], pairs: int) -> list[Associate]:
    """Write the longest run of whole actions whose pairs fit in full calls; return the
    rest, which goes with the next flush."""
    room = pairs - pairs % ASSOC_CALL
    taken = 0
    cut = 0
    for i, a in enumerate(pending):
        if taken + len(a.to_ids) > room:
            break
        taken += len(a.to_ids)
        cut = i + 1
    apply_associations(sp, pending[:cut])
    return pending[cut:]


def plan_association_pages(
    sp: SyncPass, mapping: ObjectMapping, target: ObjectMapping
) -> Iterator[list[Associate]]:
    """One pair of mappings, a page of :data:`ASSOC_PAGE` records at a time: an action
    per shared record with associations not yet mirrored, from this pass's partner
    records and the stored links (no CRM call)."""
    partner_recs = sp.seen.get(mapping.name, ObjectRecords({}, {})).partner
    with_assoc = [
        rid
        for rid, r in partner_recs.items()
        if r.associations.get(target.partner_object) and not r.archived
    ]
    for i in range(0, len(with_assoc), ASSOC_PAGE):
        page = {rid: partner_recs[rid] for rid in with_assoc[i : i + ASSOC_PAGE]}
        yield _plan_page(sp, mapping, target, page)


def _plan_page(
    sp: SyncPass, mapping: ObjectMapping, target: ObjectMapping, with_assoc: dict[str, Record]
) -> list[Associate]:
    links = sp.store.link_refs(sp.conn, mapping.name, "partner", with_assoc)
    all_ids = {
        i for r in with_assoc.values() for i in r.associations.get(target.partner_object, ())
    }
    t_links = sp.store.link_refs(sp.conn, target.name, "partner", all_ids, base=False)
    key = ASSOC + target.name
    out: list[Associate] = []
    for rid, rec in with_assoc.items():
        link = links.get(rid)
        if link is None or link.status != "active" or not link.vendor_id:
            continue
        want = sorted(
            i
            for i in rec.associations.get(target.partner_object, ())
            if i in t_links and t_links[i].status == "active" and t_links[i].vendor_id
        )
        have = set(link.base.get(key, []))
        missing = [i for i in want if i not in have]
        if not missing:
            continue
        ids = sorted(have | set(want))
        out.append(
            Associate(
                mapping.name,
                "vendor",
                link.id or 0,
                target.name,
                tuple(ids),
                record_id=rid,
                counterpart_id=link.vendor_id,
                to_ids=tuple(t_links[i].vendor_id or "" for i in missing),
                base={**link.base, key: ids},
            )
        )
    return out


def apply_associations(sp: SyncPass, actions: Sequence[Associate]) -> None:
    """Write planned associations, one batch per pair of mappings; a record whose
    write failed keeps its old base and is read again next pass."""
    groups: dict[tuple[str, str], list[Associate]] = {}
    for a in actions:
        groups.setdefault((a.object, a.to_object), []).append(a)
    for (name, to_name), group in groups.items():
        mapping, target = sp.by_name[name], sp.by_name[to_name]
        pairs = [(a.counterpart_id, t) for a in group for t in a.to_ids]
        if not pairs:
            continue
        results = sp.crm("vendor").associate(mapping.vendor_object, target.vendor_object, pairs)
        failed_from = {r.key for r in results if not r.ok}
        new_bases: list[tuple[int, dict[str, Any]]] = []
        for a in group:
            if a.counterpart_id in failed_from:
                sp.retries.append((name, "partner", a.record_id, "association failed"))
                continue
            new_bases.append((a.link_id, dict(a.base)))
        sp.counts[f"associated {name}→{to_name}"] += len(pairs) - len(failed_from)
        if new_bases:
            sp.store.save_bases(new_bases, keep_times=True)


def reassociate(sp: SyncPass, mapping: ObjectMapping, moved: list[tuple[str, str]]) -> None:
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
        sp.store.save_bases(list(redo.items()), keep_times=True)
        done = sum(1 for lk, _ in wanted if lk.vendor_id not in failed)
        sp.counts[f"associated {parent.name}→{mapping.name}"] += done
