"""The partner program: ``dealsync register``, ``registrations``, ``commissions``."""

from __future__ import annotations

import sys

import click

from connector.api import EXIT_FAILED, RegistrationRefused, register_lead
from connector.cli.base import FORMAT, Ctx, cli, command, export_rows, handled, parse_now

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
    colour = "green" if reg.status == "accepted" else "red"
    click.secho(
        f"registration #{reg.id}: {reg.status}" + (f" ({reg.code})" if reg.code else ""), fg=colour
    )
    click.echo(f"  {reg.reason}")
    if reg.code == "invalid_data" and not (company or "").strip():
        click.echo("  pass --company with the lead's company name (it is required)")
    if reg.status != "accepted":
        sys.exit(EXIT_FAILED)


@cli.group(invoke_without_command=True)
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's registrations.")
@click.option(
    "--status",
    type=click.Choice(["accepted", "rejected", "expired", "withdrawn"]),
    help="Only registrations with this status.",
)
@click.option(
    "--kind", type=click.Choice(["lead", "deal"]), help="Only lead or deal registrations."
)
@FORMAT
@click.pass_context
@handled
def registrations(
    cctx: click.Context, partner: str | None, status: str | None, kind: str | None, fmt: str
) -> None:
    """List registrations and their decisions (table, CSV or JSON); subcommands change
    one: extend, withdraw."""
    if cctx.invoked_subcommand:
        return
    ctx = cctx.find_object(Ctx)
    assert ctx is not None
    rows = [r.model_dump() for r in ctx.app(check_env=False).registrations(partner, status, kind)]
    export_rows(rows, fmt, REGISTRATION_COLUMNS)


@command(cli)
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's commissions.")
@click.option("--kind", type=click.Choice(["deal", "self_serve"]), help="Only this kind of credit.")
@FORMAT
def commissions(ctx: Ctx, partner: str | None, kind: str | None, fmt: str) -> None:
    """List commissions and MRR credits earned (table, CSV or JSON)."""
    rows = [c.model_dump() for c in ctx.app(check_env=False).commissions(partner, kind)]
    export_rows(rows, fmt, COMMISSION_COLUMNS)


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
