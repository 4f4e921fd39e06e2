"""The partner program: ``dealsync register``, ``registrations``, ``commissions``."""

from __future__ import annotations

import sys

import click

from connector.cli.base import FORMAT, Ctx, cli, command, export_rows, parse_now

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
@click.option("--company", help="The company's name (default: the domain).")
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
    from connector.api import EXIT_FAILED, register_lead

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
    if reg.status != "accepted":
        sys.exit(EXIT_FAILED)


@command(cli)
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
def registrations(
    ctx: Ctx, partner: str | None, status: str | None, kind: str | None, fmt: str
) -> None:
    """List registrations and their decisions (table, CSV or JSON)."""
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
