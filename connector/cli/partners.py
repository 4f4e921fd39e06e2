"""``dealsync partners``: lead notifications and API tokens."""

from __future__ import annotations

from dataclasses import asdict

import click

from connector.cli.base import FORMAT, Ctx, cli, command, export_rows


@cli.group()
def partners() -> None:
    """Partner settings kept in the state store."""


@command(partners, "notify")
@click.option("--partner", "-p", required=True, metavar="PARTNER", help="The partner.")
@click.option("--email", "-e", help="Where to send its lead notifications.")
@click.option("--on/--off", "enabled", default=True, help="Subscribe or unsubscribe.")
def partners_notify(ctx: Ctx, partner: str, email: str | None, enabled: bool) -> None:
    """Subscribe a partner to lead notifications (or turn them off)."""
    row = ctx.app(check_env=False).set_notifications(partner, email, enabled)
    click.echo(f"{partner}: lead notifications {'on' if row.enabled else 'off'} ({row.email})")


@partners.group("token")
def partners_token() -> None:
    """API tokens partners use to trigger their own sync (``dealsync serve``)."""


@command(partners_token, "create")
@click.option("--partner", "-p", required=True, metavar="PARTNER", help="The partner.")
@click.option("--label", default="", help="A note to tell tokens apart (e.g. who holds it).")
@click.option(
    "--expires",
    metavar="WHEN",
    help="Refuse the token after this: 90d (days), 12h (hours) or an ISO date "
    "(2027-06-30, UTC). Default: valid until revoked.",
)
def partners_token_create(ctx: Ctx, partner: str, label: str, expires: str | None) -> None:
    """Create a token for a partner; it is shown once and stored only as a hash."""
    info, token = ctx.app(check_env=False).create_token(partner, label, expires=expires)
    until = f"expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else "no expiry"
    click.echo(f"token #{info.id} for {partner}, {until} (shown once, store it now):")
    click.echo(token)


@command(partners_token, "list")
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's tokens.")
@FORMAT
def partners_token_list(ctx: Ctx, partner: str | None, fmt: str) -> None:
    """List tokens (id, prefix, state, expiry, label, dates); never the secrets."""
    rows = []
    for t in ctx.app(check_env=False).tokens(partner):
        if t.revoked_at:
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        elif t.expired and t.expires_at:
            state = f"expired {t.expires_at:%Y-%m-%d %H:%M}"
        else:
            until = f"expires {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "no expiry"
            state = f"active ({until})"
        rows.append(
            {
                **asdict(t),
                "token": f"dsk_{t.prefix}_…",
                "state": state,
                "last_used_at": t.last_used_at or "never",
            }
        )
    export_rows(
        rows,
        fmt,
        ["id", "partner", "token", "state", "created_at", "last_used_at", "label"],
        empty="no tokens",
    )


@command(partners_token, "revoke")
@click.option("--partner", "-p", required=True, metavar="PARTNER", help="The partner.")
@click.argument("token_id", type=int)
def partners_token_revoke(ctx: Ctx, partner: str, token_id: int) -> None:
    """Revoke one of a partner's tokens by id (see `dealsync partners token list`)."""
    info = ctx.app(check_env=False).revoke_token(partner, token_id)
    click.echo(f"token #{info.id} of {partner} revoked")


@command(partners, "add")
@click.argument("partner_id", metavar="ID")
@click.option("--name", help="The partner's name (default: the id).")
@click.option("--adapter", metavar="KIND", help="Its portal's kind (default: the vendor's).")
@click.option(
    "--token-env",
    metavar="VAR",
    help="The variable holding its token (default: DEALSYNC_PARTNER_<ID>_TOKEN).",
)
@click.option("--host", metavar="URL", help="Its portal's API host (default: the kind's).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other key of its portal's kind (e.g. --set path=.dealsync/partner-x.db).",
)
@click.option("--notify-email", metavar="EMAIL", help="Where its lead notifications go.")
@click.option("--tier", help="Its tier (a name from the rules' tiers).")
@click.option(
    "--schedule",
    metavar="EVERY|CRON",
    help="When `dealsync serve` syncs it: 300, 5m, 1h, or a cron expression (UTC).",
)
def partners_add(
    ctx: Ctx,
    partner_id: str,
    name: str | None,
    adapter: str | None,
    token_env: str | None,
    host: str | None,
    sets: tuple[str, ...],
    notify_email: str | None,
    tier: str | None,
    schedule: str | None,
) -> None:
    """Append a partner connection to dealsync.yaml, keeping its comments and layout.

    Refused, with the file unchanged, when the id is taken or invalid or the result
    would not pass `dealsync check`; prints the variables to set next."""
    from connector.api import onboarding as ob

    keys = ob.parse_keys(sets)
    for key, value in (("token_env", token_env), ("host", host)):
        if value is not None:
            keys[key] = value
    added = ob.add_partner(
        ctx.config,
        partner_id,
        name=name,
        adapter=adapter,
        keys=keys,
        notify_email=notify_email,
        tier=tier,
        schedule=schedule,
    )
    click.echo(
        f"added partner {added.partner.id} ({added.partner.portal.adapter}) to {added.config} "
        f"as partners[{added.index}], line {added.line}"
    )
    for var, present in added.secrets:
        if present:
            click.echo(f"  {var.name} is set already ({var.purpose})")
        else:
            click.echo(f"  set {var.name} in .env or the environment: {var.source}")
    click.echo(
        "Next: `dealsync check --online`, `dealsync setup`, then "
        f"`dealsync sync --connection {added.partner.id}` "
        "(a running `dealsync serve` reloads the file on its own)"
    )
