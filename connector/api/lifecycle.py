"""The API's registration lifecycle commands: extend a registration once, withdraw one
(mixed into :class:`connector.api.Dealsync`; ``dealsync registrations extend|withdraw``).

The rules are :mod:`connector.program.lifecycle` (pure); the registry records the
change with who and why; then both CRMs are written at once, as a pass would: the
vendor company's ownership (``dealsync_owned_until`` moved, or the owner fields
cleared) and the partner's registered record (its new end, or ``withdrawn``). A write
that fails is retried by the next pass (the registration stays marked unwritten, and
the CLI says so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from connector.api.errors import DealsyncError
from connector.api.host import Host
from connector.program.lifecycle import Refusal, check_withdrawal, decide_extension
from connector.records import utcnow
from connector.state.registry import AlreadyChanged
from connector.state.tables import Registration

log = logging.getLogger("dealsync.api")


class RegistrationRefused(DealsyncError):
    """The program's rules refuse this change; ``code`` says which rule."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"refused ({refusal.code}): {refusal.reason}")
        self.code = refusal.code
        self.reason = refusal.reason


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawn registration and the e-mails of it that were cancelled."""

    registration: Registration
    cancelled_emails: list[int]


class LifecycleCommands(Host):
    """Extending and withdrawing registrations by hand."""

    def _registration(self, registration_id: int) -> Registration:
        reg = self.store.registry.get(registration_id)
        if reg is None:
            raise DealsyncError(
                f"no registration #{registration_id} (see `dealsync registrations`)"
            )
        return reg

    def extend_registration(
        self,
        registration_id: int,
        *,
        reason: str = "",
        by: str = "cli",
        now: datetime | None = None,
    ) -> Registration:
        """Extend an active registration once by ``expiry.extend_months`` when the rules
        allow it (:func:`~connector.program.lifecycle.decide_extension`); raises
        :class:`RegistrationRefused` with the rule's code and reason otherwise."""
        moment = now or utcnow()
        registry = self.store.registry
        reg = self._registration(registration_id)
        from connector.hooks.objects import program_mappings

        deals: str | None = None  # the deal mapping (its links' sync times are activity)
        try:
            naming = self.partner_crm(reg.partner).naming
        except DealsyncError:  # its token is not set: the other activity still counts
            pass
        else:
            deal_mapping = program_mappings(self.project.mappings, naming).deals
            deals = deal_mapping.name if deal_mapping is not None else None
        outcome = decide_extension(
            reg,
            extended_before=bool(registry.extended_ids([registration_id])),
            activity=registry.latest_activity(reg, moment, deals),
            rules=self.project.rules.expiry,
            now=moment,
        )
        if isinstance(outcome, Refusal):
            raise RegistrationRefused(outcome)
        try:
            extended = registry.extend(
                registration_id, outcome, by=by, reason=reason or "no reason given", now=moment
            )
        except AlreadyChanged:
            raise RegistrationRefused(
                Refusal(
                    "already_extended",
                    f"registration #{registration_id} was extended meanwhile by someone else",
                )
            ) from None
        log.info("registration %s extended by %s until %s", reg.id, by, outcome.new_until)
        return self._write_registration(extended, moment)

    def withdraw_registration(
        self,
        registration_id: int,
        *,
        reason: str = "",
        by: str = "cli",
        now: datetime | None = None,
    ) -> Withdrawal:
        """Withdraw an active registration: its domain is free and its capacity
        released, the vendor company's owner fields are cleared, the partner's record
        says ``withdrawn``, and its e-mails not sent yet are cancelled."""
        moment = now or utcnow()
        registry = self.store.registry
        reg = self._registration(registration_id)
        refusal = check_withdrawal(reg, moment)
        if refusal is not None:
            raise RegistrationRefused(refusal)
        why = reason or "no reason given"
        try:
            withdrawn = registry.withdraw(registration_id, by=by, reason=why, now=moment)
        except AlreadyChanged:
            raise RegistrationRefused(
                Refusal("not_active", f"registration #{registration_id} was withdrawn meanwhile")
            ) from None
        cancelled = self.store.outbox.cancel_for_registration(
            registration_id,
            by=by,
            why=f"registration #{registration_id} withdrawn ({why})",
            now=moment,
        )
        log.info("registration %s withdrawn by %s", reg.id, by)
        return Withdrawal(self._write_registration(withdrawn, moment), cancelled)

    def _write_registration(self, reg: Registration, now: datetime) -> Registration:
        """Write a changed registration to both CRMs now (what the next pass would do)."""
        from connector.engine.hooks import PassContext
        from connector.hooks.objects import program_mappings
        from connector.hooks.registration_crm import write_back, write_vendor_ownership

        rid = reg.id
        assert rid is not None
        try:
            partner_crm = self.partner_crm(reg.partner)
        except DealsyncError as exc:  # its token is not set: the change stands, unwritten
            log.warning("registration %s recorded, not written to the CRMs: %s", rid, exc)
            return reg
        ctx = PassContext(
            partner=self.partner(reg.partner),
            partner_crm=partner_crm,
            vendor_crm=self.vendor(),
            store=self.store,
            now=now,
            dry_run=False,
            run_id=None,
        )
        objects = program_mappings(self.project.mappings, partner_crm.naming)
        registry = self.store.registry
        write_vendor_ownership(
            ctx, registry, self.project.rules, objects.companies, objects.contacts
        )
        write_back(ctx, registry)
        final = registry.get(rid)
        assert final is not None
        return final
