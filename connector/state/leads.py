"""Lead notifications' rows: partners' subscriptions and the deduplicated activity.

What to notify and how the digest reads is :mod:`connector.hooks.notifications`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from connector.records import utcnow
from connector.state.tables import LeadActivity, PartnerSubscription, insert_once

if TYPE_CHECKING:
    from connector.state.store import StateStore


def subscription(store: StateStore, partner: str, default: str | None) -> str | None:
    """The partner's notification address, or None when it is not subscribed."""
    with Session(store.engine) as s:
        row = s.get(PartnerSubscription, partner)
    if row is not None:
        return row.email if row.enabled else None
    return default


def set_subscription(
    store: StateStore, partner: str, email: str | None, enabled: bool, default: str | None = None
) -> PartnerSubscription:
    """Subscribe or unsubscribe; ``default`` (the config's ``notify_email``) is the
    address when none is given and the partner has no subscription row yet."""
    with Session(store.engine, expire_on_commit=False) as s:
        row = s.get(PartnerSubscription, partner)
        if row is None:
            email = email or default
            if not email:
                raise ValueError("give --email to subscribe a partner for the first time")
            row = PartnerSubscription(partner=partner, email=email, enabled=enabled)
        else:
            row.email = email or row.email
            row.enabled = enabled
            row.updated_at = utcnow()
        s.add(row)
        s.commit()
        return row


def add_activity(store: StateStore, row: LeadActivity) -> bool:
    """Insert unless that action at that company on that day is known (the dedupe)."""
    with Session(store.engine, expire_on_commit=False) as s:
        return insert_once(s, row)


def pending_activity(store: StateStore, partner: str) -> list[LeadActivity]:
    """The partner's activity not in a digest yet."""
    with Session(store.engine, expire_on_commit=False) as s:
        return list(
            s.exec(
                select(LeadActivity).where(
                    LeadActivity.partner == partner, col(LeadActivity.outbox_id).is_(None)
                )
            ).all()
        )


def mark_notified(store: StateStore, activity_ids: Sequence[int], outbox_id: int | None) -> None:
    """Tie the activity to the digest that tells of it (so it is not told again)."""
    with Session(store.engine) as s:
        for activity_id in activity_ids:
            row = s.get(LeadActivity, activity_id)
            if row is not None:
                row.outbox_id = outbox_id
                s.add(row)
        s.commit()
