"""The API's partner-program commands: registrations, commissions, a partner's
notification settings and API tokens, and registering a lead by hand (mixed into
:class:`connector.api.Dealsync`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from connector.api.errors import DealsyncError
from connector.api.host import Host
from connector.program.decide import Person, Submission
from connector.records import utcnow
from connector.state.leads import set_subscription
from connector.state.registry import Registry
from connector.state.tables import (
    Commission,
    OutboxMessage,
    PartnerSubscription,
    Registration,
    UncreditedWin,
)
from connector.state.tokens import TokenInfo, parse_expiry

if TYPE_CHECKING:
    from connector.api import Dealsync
    from connector.engine.hooks import PassContext


class ProgramCommands(Host):
    """The registry, commissions, notification settings and tokens."""

    @property
    def registry(self) -> Registry:
        return self.store.registry

    def registrations(
        self, partner: str | None = None, status: str | None = None, kind: str | None = None
    ) -> list[Registration]:
        return self.store.registry.registrations(partner, status, kind)

    def commissions(self, partner: str | None = None, kind: str | None = None) -> list[Commission]:
        """Commissions earned; ``kind`` is shared, vendor_led or self_serve (``deal``,
        the old name of shared, still works)."""
        return self.store.registry.commissions(partner, "shared" if kind == "deal" else kind)

    def uncredited(self, partner: str | None = None) -> list[UncreditedWin]:
        """Won vendor deals that credit no one, with why (``partner``: the ones that
        missed its ownership window)."""
        return self.store.registry.uncredited(partner)

    def set_notifications(
        self, partner: str, email: str | None, enabled: bool
    ) -> PartnerSubscription:
        """Subscribe a partner to lead notifications, or unsubscribe it."""
        cfg = self.partner(partner)
        try:
            return set_subscription(self.store, partner, email, enabled, default=cfg.notify_email)
        except ValueError as exc:
            raise DealsyncError(str(exc)) from None

    def create_token(
        self, partner: str, label: str = "", *, expires: str | None = None
    ) -> tuple[TokenInfo, str]:
        """A new API token for a partner (``expires``: 90d, 12h or an ISO date); the
        token itself is returned once and stored only as a hash."""
        self.partner(partner)
        try:
            expires_at = parse_expiry(expires) if expires is not None else None
        except ValueError as exc:
            raise DealsyncError(str(exc)) from None
        return self.store.tokens.create(partner, label, expires_at=expires_at)

    def tokens(self, partner: str | None = None) -> list[TokenInfo]:
        return self.store.tokens.list(partner)

    def revoke_token(self, partner: str, token_id: int) -> TokenInfo:
        info = self.store.tokens.revoke(token_id, partner)
        if info is None:
            raise DealsyncError(f"no token #{token_id} for partner {partner!r}")
        return info


def register_lead(
    app: Dealsync,
    *,
    partner: str,
    domain: str,
    first: str,
    last: str,
    email: str,
    company: str | None = None,
    country: str | None = None,
    now: datetime | None = None,
) -> Registration:
    """Submit a lead on a partner's behalf (``dealsync register lead``): the same checks
    as a lead flagged in the partner's CRM; an accepted lead's company and contact are
    written to the vendor CRM at once. ``company`` is required data like the contact's
    names: without it the lead is rejected ``invalid_data`` (it no longer defaults to
    the domain)."""
    from connector.engine.hooks import PassContext
    from connector.hooks.registration_crm import decide_submissions, write_vendor_ownership

    cfg = app.partner(partner)
    moment = now or utcnow()
    sub = Submission(
        partner=partner,
        kind="lead",
        partner_object="cli",
        partner_record_id=f"cli:{email.strip().lower()}",
        domain_text=domain,
        # the program's rule: company is required; without it the lead is invalid data
        company_name=(company or "").strip(),
        contacts=(
            Person(
                email=email.strip(),
                first_name=first.strip(),
                last_name=last.strip(),
                country=country,
            ),
        ),
    )
    ctx = PassContext(
        partner=cfg,
        partner_crm=app.vendor(),
        vendor_crm=app.vendor(),
        store=app.store,
        now=moment,
        dry_run=False,
        run_id=None,
    )
    registry = app.registry
    existing = registry.find(partner, "lead", sub.partner_record_id)
    if existing is not None and (
        existing.status == "accepted"
        # waiting for review: the same lead again changes nothing (nor its SLA clock)
        or (existing.status == "pending" and existing.fingerprint == sub.fingerprint())
    ):
        return existing
    [(_, decision)] = decide_submissions(ctx, registry, app.project.rules, [sub])
    reg = registry.record(sub, decision, now=moment)
    company_mapping = next(
        (m for m in app.project.mappings if m.partner_object == "companies"), None
    )
    contact_mapping = next(
        (m for m in app.project.mappings if m.partner_object == "contacts"), None
    )
    write_vendor_ownership(ctx, registry, app.project.rules, company_mapping, contact_mapping)
    assert reg.id is not None
    registry.mark([reg.id], written_back=True)
    final = registry.get(reg.id)
    assert final is not None
    if final.status == "accepted":
        consent_at_registration(app, ctx, final)
    return final


def consent_at_registration(app: Dealsync, ctx: PassContext, reg: Registration) -> int:
    """DESIGN §2.2's "immediately": the consent e-mails of a registration accepted
    outside a pass are decided the moment it is accepted (a DACH lead's request
    queued, or suppressed with its reason), and delivered at once when a mail
    transport is configured — not at the partner's next pass, which finds the
    decision's outbox row and sends nothing more. Returns how many were decided."""
    from connector.hooks.consent import ConsentHook, decide_consent

    hook = next((h for h in app.hooks if isinstance(h, ConsentHook)), None)
    if hook is None or reg.id is None:
        return 0
    decided = decide_consent(ctx, hook.rules, registration_ids={reg.id})
    if decided and app.transport() is not None:
        app._deliver_after_pass(ctx.now, None)
    return decided


def consent_outlook(app: Dealsync, reg: Registration, now: datetime | None = None) -> list[str]:
    """What is still to come for a registration's contacts, for ``register lead`` to
    print (never silent): an EU notice's due time, or why a contact gets nothing.
    Decided as a dry run — nothing is queued or written."""
    from connector.engine.hooks import PassContext
    from connector.hooks.consent import ConsentHook, ConsentOutlook, decide_consent

    hook = next((h for h in app.hooks if isinstance(h, ConsentHook)), None)
    if hook is None or reg.id is None or reg.status != "accepted":
        return []
    ctx = PassContext(
        partner=app.partner(reg.partner),
        partner_crm=app.vendor(),
        vendor_crm=app.vendor(),
        store=app.store,
        now=now or utcnow(),
        dry_run=True,
        run_id=None,
    )
    decide_consent(ctx, hook.rules, registration_ids={reg.id})
    outlook = ctx.noted(ConsentOutlook) or ConsentOutlook()
    lines = [
        f"data_notice due {due:%Y-%m-%d %H:%M} UTC unless the lead opts in or engages by then"
        for _, due in outlook.later
    ]
    lines += [f"none: {why}" for _, why in outlook.never]
    return lines


def registration_emails(app: Dealsync, registration_id: int) -> list[OutboxMessage]:
    """The outbox rows decided for one registration (what ``register lead`` shows)."""
    return app.outbox.of_registration(registration_id)
