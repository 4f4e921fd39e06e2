"""Registration review: its queries in the state store (issue 16 item 5).

What waits and what an approval or rejection says is :mod:`connector.program.review`
(pure); this module finds the pending registrations, the domains they reserve and the
other partners' active registrations the fuzzy check compares with, and makes an
admin's approval or rejection durable — an approval takes the domain claim in the same
transaction, so it cannot win a domain another partner holds. Mixed into
:class:`~connector.state.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlmodel import Session, col, select

from connector.program.decide import day_text
from connector.program.review import ReviewError, Rival
from connector.state.tables import DomainClaim, Registration, Transactions, chunks


class ReviewQueue(Transactions):
    """Pending registrations: what they reserve, their approval and rejection."""

    def reservations(self, domains: Iterable[str]) -> dict[str, str]:
        """Domain → the partner whose pending registration (the earliest) reserves it."""
        out: dict[str, str] = {}
        with self.session() as s:
            for chunk in chunks(sorted({d for d in domains if d})):
                rows = s.exec(
                    select(Registration.domain, Registration.partner)
                    .where(
                        Registration.status == "pending",
                        col(Registration.domain).in_(chunk),
                    )
                    .order_by(col(Registration.id).desc())
                ).all()
                out.update({domain: partner for domain, partner in rows})  # earliest last
        return out

    def rivals(self, partner: str, now: datetime) -> list[Rival]:
        """Other partners' active registrations (accepted and still owned, or pending)
        with a company name: what a new registration's name is compared with."""
        rows = self.rows(
            select(Registration).where(
                Registration.partner != partner,
                col(Registration.status).in_(("accepted", "pending")),
                Registration.company_name != "",
            )
        )
        return [
            Rival(r.id, r.partner, r.company_name, r.domain)
            for r in rows
            if r.id is not None
            and (r.status == "pending" or (r.owned_until is not None and r.owned_until > now))
        ]

    def overdue_pending(self, partner: str, decided_before: datetime) -> list[Registration]:
        """A partner's registrations pending since before ``decided_before``."""
        return self.rows(
            select(Registration)
            .where(
                Registration.partner == partner,
                Registration.status == "pending",
                col(Registration.decided_at) <= decided_before,
            )
            .order_by(col(Registration.id))
        )

    def approve(
        self,
        registration_id: int,
        *,
        owned_until: datetime,
        reason: Callable[[datetime], str],
        audit: str,
        who: str,
        now: datetime,
    ) -> Registration:
        """Accept a pending registration: the domain claim and the acceptance in one
        transaction. Another partner holding the domain now refuses the approval
        (:class:`ReviewError`); this partner holding it already keeps its window."""
        with self.session() as s:
            reg = self._pending(s, registration_id)
            assert reg.id is not None
            claim = s.get(DomainClaim, reg.domain)
            if claim is not None and claim.owned_until > now and claim.partner != reg.partner:
                raise ReviewError(
                    f"registration #{registration_id}: {reg.domain} is registered by partner "
                    f"{claim.partner!r} until {day_text(claim.owned_until)} (registration "
                    f"#{claim.registration_id}); reject this one with owned_by_partner"
                )
            if claim is None:
                s.add(
                    DomainClaim(
                        domain=reg.domain,
                        partner=reg.partner,
                        registration_id=reg.id,
                        owned_until=owned_until,
                    )
                )
            elif claim.partner != reg.partner or claim.owned_until <= now:
                claim.partner, claim.registration_id = reg.partner, reg.id
                claim.owned_until = owned_until
                s.add(claim)
            else:  # this partner owns the domain already: its window stands
                owned_until = claim.owned_until
            reg.status, reg.code, reg.reason = "accepted", None, reason(owned_until)
            reg.owned_until, reg.decided_at = owned_until, now
            return self._reviewed(s, reg, audit, who, now)

    def reject_pending(
        self, registration_id: int, *, code: str, reason: str, audit: str, who: str, now: datetime
    ) -> Registration:
        """Reject a pending registration with one of the program's codes."""
        with self.session() as s:
            reg = self._pending(s, registration_id)
            reg.status, reg.code, reg.reason = "rejected", code, reason
            reg.owned_until, reg.decided_at = None, now
            return self._reviewed(s, reg, audit, who, now)

    @staticmethod
    def _pending(s: Session, registration_id: int) -> Registration:
        reg = s.get(Registration, registration_id)
        if reg is None:
            raise ReviewError(
                f"no registration #{registration_id}; `dealsync registrations --status "
                "pending` lists the ones waiting for review"
            )
        if reg.status != "pending":
            raise ReviewError(
                f"registration #{registration_id} is {reg.status}, not pending: only a "
                "pending registration is approved or rejected"
            )
        return reg

    @staticmethod
    def _reviewed(
        s: Session, reg: Registration, audit: str, who: str, now: datetime
    ) -> Registration:
        note = reg.review_note
        reg.review_note = f"{note}; {audit}" if note else audit
        reg.reviewed_by, reg.reviewed_at = who, now
        # the partner's record and the vendor's company show it on the next pass
        reg.written_back, reg.vendor_written = False, False
        s.add(reg)
        s.commit()
        s.refresh(reg)
        return reg
