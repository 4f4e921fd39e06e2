"""Merges: links follow records a CRM merged.

A person merges two contacts in HubSpot: the survivor lists the merged ids
(``naming.merged_ids``), and the merged ids are gone without being archived, so no
delete is ever seen for them. :func:`follow_merges` moves or closes their links
before reconcile, so the pass already reconciles the survivor with the link it ends
up with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping
from connector.records import Record, Side, other_side
from connector.state.store import RecordOutcome

if TYPE_CHECKING:
    from connector.engine.sync import SyncPass

# Ids a CRM merged into a record, semicolon-separated (HubSpot's merge: the merged id
# disappears, reads of it answer with the survivor), in the property the adapter's
# naming calls ``merged_ids``. Adapters that read it hand it over with the record;
# links of merged ids follow the survivor (:func:`follow_merges`).

_LIVE_LINK = ("pending", "active", "flagged")
"""Link statuses that hold both records (shared, or about to be)."""


def merged_ids(rec: Record, names: Naming) -> list[str]:
    """The ids ``rec`` lists as merged into it (none for most records)."""
    listed = str(rec.get(names.merged_ids) or "")
    return [old.strip() for old in listed.split(";") if old.strip()]


def follow_merges(
    sp: SyncPass,
    mapping: ObjectMapping,
    per: dict[Side, dict[str, Record]],
) -> None:
    """Records merged in a CRM (a person merges two contacts in HubSpot): the
    survivor lists the merged ids (``naming.merged_ids``) and the merged ids are gone
    without being archived, so no delete is ever seen for them. A live link of a
    merged id follows the survivor when no live link holds it (the pair goes on,
    merged from its base: the survivor's values flow across as changes). When the
    survivor has a link of its own, it keeps it and the merged id's link is closed
    (``relinked``, pointing at the survivor's link): its counterpart on the other
    side is no longer shared, never re-created (that would be the duplicate the
    merge removed) and the run log says what to do. Called before reconcile, so
    this pass already reconciles the survivor with the link it ends up with."""
    for s, recs in per.items():
        into: dict[str, str] = {}
        for rid, rec in recs.items():
            if rec.archived:
                continue
            for old in merged_ids(rec, sp.names(s)):
                if old != rid:
                    into.setdefault(old, rid)
        if not into:
            continue
        gone = {
            old: ref
            for old, ref in sp.store.link_refs(sp.conn, mapping.name, s, into).items()
            if ref.status in ("active", "flagged")
        }
        if not gone:
            continue
        holders = sp.store.holders(sp.conn, mapping.name, s, {into[old] for old in gone})
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
                kept = sp.store.link(keeper)
                kept_other = (
                    (kept.vendor_id if s == "partner" else kept.partner_id) if kept else None
                )
                released.append((ref.id, s, old, keeper))
                sp.counts[f"merged {mapping.name}"] += 1
                sp.outcomes.append(
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
            sp.counts[f"merged {mapping.name}"] += 1
            sp.outcomes.append(
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
        sp.store.relink(released, moved=moved)
