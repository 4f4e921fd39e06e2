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
