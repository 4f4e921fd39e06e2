"""The commission ledger and partner tiers: their queries in the state store.

What a deal earns is :mod:`connector.program.commission`; this module keeps what was
earned (one commission per vendor deal, ever), what the partner's CRM does not show
yet, and the credited MRR a partner's tier is judged by. Mixed into
:class:`~connector.state.registry.Registry`, so callers keep calling
``store.registry.commissions(…)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from sqlalchemy import delete, func, update
from sqlmodel import col, select

from connector.config.models import RulesFile
from connector.program.commission import Window
from connector.state.tables import (
    Commission,
    Registration,
    Transactions,
    UncreditedWin,
    chunks,
    given,
    insert_once,
)

# registrations that owned their domain for a while (a rejected or pending one never did)
_OWNED = ("accepted", "expired", "withdrawn")


class CommissionLedger(Transactions):
    """Commissions earned and the tiers they credit."""

    def add_commission(self, row: Commission) -> Commission | None:
        """Insert a commission unless that vendor deal already earned one (→ None)."""
        with self.session() as s:
            if s.exec(
                select(Commission).where(Commission.vendor_deal_id == row.vendor_deal_id)
            ).first():
                return None
            return row if insert_once(s, row) else None

    def commissions(self, partner: str | None = None, kind: str | None = None) -> list[Commission]:
        q = given(select(Commission), (Commission.partner, partner), (Commission.kind, kind))
        return self.rows(q.order_by(col(Commission.id)))

    def commission_for(self, vendor_deal_id: str) -> Commission | None:
        with self.session() as s:
            return s.exec(
                select(Commission).where(Commission.vendor_deal_id == vendor_deal_id)
            ).first()

    def commissioned(self, vendor_deal_ids: Iterable[str]) -> set[str]:
        """Which of these vendor deals already earned a commission (one query per 500)."""
        out: set[str] = set()
        with self.session() as s:
            for chunk in chunks(sorted(set(vendor_deal_ids))):
                out.update(
                    s.exec(
                        select(Commission.vendor_deal_id).where(
                            col(Commission.vendor_deal_id).in_(chunk)
                        )
                    ).all()
                )
        return out

    def commission_counts(self) -> dict[tuple[str, str], int]:
        """Commissions by (partner, kind): for ``dealsync status``."""
        with self.session() as s:
            rows = s.exec(
                select(Commission.partner, Commission.kind, func.count()).group_by(
                    Commission.partner, Commission.kind
                )
            ).all()
        return {(partner, kind): int(n) for partner, kind, n in rows}

    # ------------------------------------------------------------------ ownership in time

    def ownership_windows(self, domains: Iterable[str]) -> dict[str, list[Window]]:
        """Every time each domain was owned: one window per registration that was ever
        accepted (from its decision to its ``owned_until``, or to its end when it was
        withdrawn or expired before that), oldest first; one query per 500 domains."""
        out: dict[str, list[Window]] = {}
        with self.session() as s:
            for chunk in chunks(sorted({d for d in domains if d})):
                rows = s.exec(
                    select(Registration)
                    .where(
                        col(Registration.domain).in_(chunk),
                        col(Registration.status).in_(_OWNED),
                        col(Registration.decided_at).is_not(None),
                        col(Registration.owned_until).is_not(None),
                    )
                    .order_by(col(Registration.decided_at))
                ).all()
                for reg in rows:
                    assert reg.decided_at is not None and reg.owned_until is not None
                    assert reg.id is not None
                    end = reg.owned_until
                    if reg.ended_at is not None and reg.ended_at < end:
                        end = reg.ended_at
                    out.setdefault(reg.domain, []).append(
                        Window(reg.partner, reg.id, reg.decided_at, end)
                    )
        return out

    # ------------------------------------------------------------------ not credited

    def record_uncredited(self, row: UncreditedWin) -> UncreditedWin | None:
        """Keep why a won deal credits no one; None when that very reason is kept
        already (a rerun, another partner's pass) — so it is reported once."""
        with self.session() as s:
            have = s.get(UncreditedWin, row.vendor_deal_id)
            if have is not None and (have.code, have.reason, have.partner) == (
                row.code,
                row.reason,
                row.partner,
            ):
                return None
            if have is not None:
                s.delete(have)
                s.flush()
            s.add(row)
            s.commit()
            s.refresh(row)
            return row

    def clear_uncredited(self, vendor_deal_ids: Iterable[str]) -> None:
        """Forget the refusals of deals that have now been credited."""
        ids = sorted(set(vendor_deal_ids))
        if not ids:
            return
        with self.session() as s:
            for chunk in chunks(ids):
                s.execute(delete(UncreditedWin).where(col(UncreditedWin.vendor_deal_id).in_(chunk)))
            s.commit()

    def uncredited_counts(self) -> dict[str | None, int]:
        """Won deals not credited, by the partner whose window they missed."""
        with self.session() as s:
            rows = s.exec(
                select(UncreditedWin.partner, func.count()).group_by(UncreditedWin.partner)
            ).all()
        return {partner: int(n) for partner, n in rows}

    def uncredited(self, partner: str | None = None) -> list[UncreditedWin]:
        """Won deals that credit no one (``partner``: those that missed its ownership)."""
        q = given(select(UncreditedWin), (UncreditedWin.partner, partner))
        return self.rows(q.order_by(col(UncreditedWin.closed_at)))

    def commissions_to_write_back(self, partner: str) -> list[Commission]:
        """Commissions of shared deals the partner's CRM does not show yet."""
        return self.rows(
            select(Commission).where(
                Commission.partner == partner,
                col(Commission.written_back).is_(False),
                col(Commission.partner_deal_id).is_not(None),
            )
        )

    def mark_commissions(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.session() as s:
            s.execute(
                update(Commission)
                .where(col(Commission.id).in_(list(ids)))
                .values(written_back=True)
            )
            s.commit()

    def credited_mrr(self, partner: str, now: datetime, window_months: int) -> Decimal:
        since = now - relativedelta(months=window_months)
        total = Decimal(0)
        for c in self.commissions(partner):
            if since <= c.earned_at <= now:
                total += Decimal(c.mrr)
        return total

    def tier(
        self, partner: str, rules: RulesFile, now: datetime, floor: str | None = None
    ) -> tuple[str, int, Decimal]:
        """(tier name, capacity, credited MRR) of a partner as of ``now``."""
        credited = self.credited_mrr(partner, now, rules.credit_window_months)
        tier = rules.tier_for(float(credited), floor)
        return tier.name, tier.capacity, credited
