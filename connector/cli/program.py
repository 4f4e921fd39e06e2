"""The partner program: ``dealsync register``, ``registrations``, ``commissions``."""

from __future__ import annotations

import sys
from typing import Any

import click

from connector.cli.base import (
    FORMAT,
    Ctx,
    cli,
    command,
    export_rows,
    handled,
    parse_now,
    pass_ctx,
)

# The columns of the listings, in their order (kept as one wrapped list each).
# fmt: off
REGISTRATION_COLUMNS = [
    "id", "partner", "kind", "partner_record_id", "domain", "status", "code", "owned_until",
    "decided_at", "reason",
]
COMMISSION_COLUMNS = [
    "id", "partner", "kind", "vendor_deal_id", "partner_deal_id", "domain", "amount",
    "currency", "rate", "commission", "mrr", "earned_at",
]
UNCREDITED_COLUMNS = [
    "vendor_deal_id", "partner", "kind", "domain", "amount", "currency", "closed_at", "code",
    "reason",
]
# fmt: on


@cli.group()
def register() -> None:
    """Submit registrations on a partner's behalf."""


@command(register, "lead")
@click.option(
    "--partner", "-p", required=True, metavar="PARTNER", help="The partner registering the lead."
)
@click.option(
    "--domain", "-d", required=True, help="The lead's company domain (URL, host or e-mail)."
)
@click.option("--first", required=True, help="The contact's first name.")
@click.option("--last", required=True, help="The contact's last name.")
@click.option("--email", required=True, help="The contact's e-mail address.")
@click.option(
    "--company", help="The company's name (required by the program: without it, invalid_data)."
)
@click.option("--country", help="The contact's country (ISO code or name).")
@click.option("--now", metavar="ISO-DATETIME", help="Decide as of this time.")
def register_lead_cmd(
    ctx: Ctx,
    partner: str,
    domain: str,
    first: str,
    last: str,
    email: str,
    company: str | None,
    country: str | None,
    now: str | None,
) -> None:
    """Register a lead (company domain + contact) through the program's checks."""
    from connector.api import EXIT_FAILED, consent_outlook, register_lead, registration_emails

    reg = register_lead(
        ctx.app(),
        partner=partner,
        domain=domain,
        first=first,
        last=last,
        email=email,
        company=company,
        country=country,
        now=parse_now(now),
    )
    colour = {"accepted": "green", "pending": "yellow"}.get(reg.status, "red")
    click.secho(
        f"registration #{reg.id}: {reg.status}" + (f" ({reg.code})" if reg.code else ""), fg=colour
    )
    click.echo(f"  {reg.reason}")
    if reg.code == "invalid_data" and not (company or "").strip():
        click.echo("  pass --company with the lead's company name (it is required)")
    if reg.status == "pending":
        click.echo(f"  review it: dealsync registrations approve|reject {reg.id}")
    if reg.status not in ("accepted", "pending"):
        sys.exit(EXIT_FAILED)
    assert reg.id is not None
    for m in registration_emails(ctx.app(), reg.id):
        # decided at registration (DESIGN §2.2 "immediately"); the lead's address is
        # not printed: `dealsync outbox show ID` has it
        why = f" — {m.detail}" if m.status in ("suppressed", "held") and m.detail else ""
        click.echo(f"  e-mail #{m.id}: {m.kind} {m.status}{why}")
    for line in consent_outlook(ctx.app(), reg, parse_now(now)):
        click.echo(f"  e-mail: {line}")


@cli.group(invoke_without_command=True)
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's registrations.")
@click.option(
    "--status",
    type=click.Choice(["accepted", "rejected", "pending", "expired", "withdrawn"]),
    help="Only registrations with this status (pending: waiting for review).",
)
@click.option(
    "--kind", type=click.Choice(["lead", "deal"]), help="Only lead or deal registrations."
)
@FORMAT
@click.pass_context
def registrations(
    click_ctx: click.Context, partner: str | None, status: str | None, kind: str | None, fmt: str
) -> None:
    """List registrations and their decisions (table, CSV or JSON); subcommands change
    one: approve, reject (pending ones), extend, withdraw."""
    if click_ctx.invoked_subcommand is not None:
        return
    _list_registrations(partner, status, kind, fmt)


@pass_ctx
@handled
def _list_registrations(
    ctx: Ctx, partner: str | None, status: str | None, kind: str | None, fmt: str
) -> None:
    rows = [r.model_dump() for r in ctx.app(check_env=False).registrations(partner, status, kind)]
    columns = REGISTRATION_COLUMNS + (["review_note"] if status == "pending" else [])
    export_rows(rows, fmt, columns)


@command(cli)
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's commissions.")
@click.option(
    "--kind",
    type=click.Choice(["shared", "vendor_led", "self_serve", "deal"]),
    help="Only this kind of sale (deal: the old name of shared).",
)
@click.option(
    "--not-credited",
    "not_credited",
    is_flag=True,
    help="List the won deals that credit no one, and why, instead.",
)
@FORMAT
def commissions(
    ctx: Ctx, partner: str | None, kind: str | None, not_credited: bool, fmt: str
) -> None:
    """List commissions and MRR credits earned (table, CSV or JSON); the table ends
    with the won deals that credited no one."""
    app = ctx.app(check_env=False)
    kind = "shared" if kind == "deal" else kind
    refused = [r.model_dump() for r in app.uncredited(partner) if kind in (None, r.kind)]
    if not_credited:
        export_rows(refused, fmt, UNCREDITED_COLUMNS)
        return
    rows = [c.model_dump() for c in app.commissions(partner, kind)]
    export_rows(rows, fmt, COMMISSION_COLUMNS)
    if fmt == "table" and refused:
        click.secho(f"won deals not credited: {len(refused)}", fg="yellow")
        for r in refused:
            click.echo(
                f"  vendor deal {r['vendor_deal_id']} ({r['kind']}, {r['domain'] or 'no domain'}"
                f", {r['amount']} {r['currency'] or ''}".rstrip()
                + f"): {r['reason']}"
            )


# ---------------------------------------------------------------- review (issue 16 item 5)


def _show_reviewed(row: Any, verb: str) -> None:
    """The reviewed registration (a state row, read by attribute)."""
    colour = "green" if row.status == "accepted" else "red"
    click.secho(f"registration #{row.id} {verb}: {row.status}", fg=colour)
    click.echo(f"  {row.reason}")
    click.echo(f"  {row.review_note}")
    if row.written_back:
        click.echo("  written back to the partner's record")
    else:
        click.echo(
            f"  the partner's record is written on the next `dealsync sync --connection "
            f"{row.partner}`"
        )


@command(registrations, "approve")
@click.argument("registration_id", type=int, metavar="ID")
@click.option("--reason", help="Why it is approved (kept with who and when).")
@click.option("--now", metavar="ISO-DATETIME", help="Approve as of this time.")
def approve_cmd(ctx: Ctx, registration_id: int, reason: str | None, now: str | None) -> None:
    """Approve a pending registration: it owns its domain from now on."""
    reg = ctx.app().approve_registration(
        registration_id, by="cli", reason=reason, now=parse_now(now)
    )
    _show_reviewed(reg, "approved")


@command(registrations, "reject")
@click.argument("registration_id", type=int, metavar="ID")
@click.option(
    "--reason",
    "code",
    required=True,
    metavar="CODE",
    help="The rejection code: one of the program's codes (docs/program.md; an unknown "
    "code is refused, listing them).",
)
@click.option("--now", metavar="ISO-DATETIME", help="Reject as of this time.")
def reject_cmd(ctx: Ctx, registration_id: int, code: str, now: str | None) -> None:
    """Reject a pending registration with one of the program's rejection codes."""
    reg = ctx.app().reject_registration(registration_id, code, by="cli", now=parse_now(now))
    _show_reviewed(reg, "rejected")


@command(registrations, "extend")
@click.argument("registration_id", type=int)
@click.option("--reason", default="", help="Why it is extended (recorded with who).")
@click.option("--by", default="cli", show_default=True, help="Who extends it (recorded).")
@click.option("--now", metavar="ISO-DATETIME", help="Decide as of this time.")
def registrations_extend(
    ctx: Ctx, registration_id: int, reason: str, by: str, now: str | None
) -> None:
    """Extend an active registration once by the rules' expiry.extend_months, when the
    rules allow it (recent activity at the domain); refused with the reason otherwise."""
    from connector.api import EXIT_FAILED, RegistrationRefused

    try:
        reg = ctx.app().extend_registration(
            registration_id, reason=reason, by=by, now=parse_now(now)
        )
    except RegistrationRefused as exc:
        click.secho(f"registration #{registration_id}: {exc}", fg="red")
        sys.exit(EXIT_FAILED)
    click.secho(f"registration #{reg.id}: extended until {reg.owned_until}", fg="green")
    click.echo(f"  {reg.reason}")
    _written(reg.written_back and reg.vendor_written)


@command(registrations, "withdraw")
@click.argument("registration_id", type=int)
@click.option("--reason", default="", help="Why it is withdrawn (recorded with who).")
@click.option("--by", default="cli", show_default=True, help="Who withdraws it (recorded).")
@click.option("--now", metavar="ISO-DATETIME", help="Withdraw as of this time.")
def registrations_withdraw(
    ctx: Ctx, registration_id: int, reason: str, by: str, now: str | None
) -> None:
    """Withdraw an active registration: the domain is free, capacity released, the
    vendor company's owner fields cleared, its unsent e-mails cancelled."""
    from connector.api import EXIT_FAILED, RegistrationRefused

    try:
        done = ctx.app().withdraw_registration(
            registration_id, reason=reason, by=by, now=parse_now(now)
        )
    except RegistrationRefused as exc:
        click.secho(f"registration #{registration_id}: {exc}", fg="red")
        sys.exit(EXIT_FAILED)
    reg = done.registration
    click.secho(f"registration #{reg.id}: withdrawn", fg="green")
    click.echo(f"  {reg.reason}")
    _written(reg.written_back and reg.vendor_written)
    if done.cancelled_emails:
        ids = ", ".join(f"#{i}" for i in done.cancelled_emails)
        click.echo(f"  cancelled e-mails: {ids} (see `dealsync outbox --status cancelled`)")


def _written(both: bool) -> None:
    """Say whether both CRMs show the change yet (else the next pass retries it)."""
    if both:
        click.echo("  written to the partner's record and the vendor company")
    else:
        click.secho(
            "  not written to both CRMs yet (see the log); the next `dealsync sync` retries it",
            fg="yellow",
        )
