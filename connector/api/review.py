"""The API's registration review commands (issue 16 item 5): the pending registrations,
their approval and their rejection, mixed into :class:`connector.api.Dealsync`.

The rules are :mod:`connector.program.review`; the registry makes a review durable (an
approval takes the domain claim in the same transaction). Then, at once, the usual
write-backs of the registration hook's ``after_pass``: the status and reason on the
partner's record, the ownership on the vendor's company (an approved lead's company
and contact are created there). What depends on a pass follows on the partner's next
``sync`` as for a registration accepted there: an approved deal is mirrored with its
company and contacts (the write-back changed it, so the pass sees it), and the consent
e-mails are decided. A write-back that fails now (the CRM unreachable) is retried by
that pass; the approval stands.
"""

from __future__ import annotations

import logging
from datetime import datetime

from connector.api.errors import DealsyncError
from connector.api.host import Host
from connector.api.program import consent_at_registration
from connector.program.review import (
    REJECT_CODES,
    ReviewError,
    accepted_reason,
    approval_until,
    rejection,
    reviewed_by,
)
from connector.records import utcnow
from connector.state.tables import Registration

log = logging.getLogger("dealsync.review")


class ReviewCommands(Host):
    """``registrations --status pending``, ``registrations approve|reject``."""

    reject_codes: tuple[str, ...] = REJECT_CODES

    def pending_registrations(self, partner: str | None = None) -> list[Registration]:
        return self.store.registry.registrations(partner, "pending")

    def approve_registration(
        self,
        registration_id: int,
        *,
        by: str = "cli",
        reason: str | None = None,
        now: datetime | None = None,
    ) -> Registration:
        """Accept a pending registration: it owns its domain from now for
        ``ownership_months``. Refused (:class:`DealsyncError`) when it is not pending or
        another partner holds the domain now."""
        moment = now or utcnow()
        registry = self.store.registry
        reg = registry.get(registration_id)
        domain = reg.domain if reg is not None else ""
        try:
            done = registry.approve(
                registration_id,
                owned_until=approval_until(self.project.rules, moment),
                reason=lambda until: accepted_reason(domain, until),
                audit=reviewed_by(by, "approved", moment, reason),
                who=by,
                now=moment,
            )
        except ReviewError as exc:
            raise DealsyncError(str(exc)) from None
        return self._written_back(done, moment)

    def reject_registration(
        self,
        registration_id: int,
        code: str,
        *,
        by: str = "cli",
        now: datetime | None = None,
    ) -> Registration:
        """Reject a pending registration with one of the program's codes (an unknown
        code is an error listing them)."""
        moment = now or utcnow()
        registry = self.store.registry
        reg = registry.get(registration_id)
        try:
            reason = rejection(code, reg.domain if reg is not None else "")
            done = registry.reject_pending(
                registration_id,
                code=code,
                reason=reason,
                audit=reviewed_by(by, f"rejected ({code})", moment, None),
                who=by,
                now=moment,
            )
        except ReviewError as exc:
            raise DealsyncError(str(exc)) from None
        return self._written_back(done, moment)

    def _written_back(self, reg: Registration, now: datetime) -> Registration:
        """The registration hook's write-backs for the reviewed registration's partner,
        now (a failure is logged and left to the next pass); the row as they leave it."""
        from connector.engine.hooks import PassContext
        from connector.hooks.registration import RegistrationHook

        assert reg.id is not None
        cli_lead = reg.partner_record_id.startswith("cli:")
        ctx: PassContext | None = None
        try:
            ctx = PassContext(
                partner=self.partner(reg.partner),
                # a lead registered on the command line has no partner record
                partner_crm=self.vendor() if cli_lead else self.partner_crm(reg.partner),
                vendor_crm=self.vendor(),
                store=self.store,
                now=now,
                dry_run=False,
                run_id=None,
            )
            RegistrationHook(self.project.rules, self.project.mappings).after_pass(ctx)
        except Exception as exc:  # the review stands; the next pass writes it back
            log.warning(
                "registration %s reviewed; write-back left to the next pass: %s", reg.id, exc
            )
        final = self.store.registry.get(reg.id)
        assert final is not None
        if ctx is not None and final.status == "accepted" and final.kind == "lead":
            # accepted at approval, so "immediately" (DESIGN §2.2) is now, as for a
            # lead accepted at registration; an approved deal's contacts are decided
            # by the pass that mirrors it
            consent_at_registration(self, ctx, final)  # type: ignore[arg-type]
        return final
