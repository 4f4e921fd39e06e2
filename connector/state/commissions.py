"""The commission ledger and partner tiers: their queries in the state store.

What a deal earns is :mod:`connector.program.commission`; this module keeps what was
earned (one commission per vendor deal, ever), what the partner's CRM does not show
yet, and the credited MRR a partner's tier is judged by. Mixed into
:class:`~connector.state.registry.Registry`, so callers keep calling
``store.registry.commissions(…)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from sqlalchemy import update
from sqlmodel import col, select

from connector.config.models import RulesFile
from connector.state.tables import Commission, Transactions, given, insert_once


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
