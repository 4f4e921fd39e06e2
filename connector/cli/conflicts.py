"""``dealsync conflicts``: list, show and resolve conflicts."""

from __future__ import annotations

import click

from connector.cli.base import Ctx, cli, command, handled


@cli.group(invoke_without_command=True)
@click.option("--connection", "-p", metavar="PARTNER", help="Only this partner's conflicts.")
@click.option("--all", "show_all", is_flag=True, help="Include resolved conflicts.")
@click.pass_context
@handled
def conflicts(cctx: click.Context, connection: str | None, show_all: bool) -> None:
    """List open conflicts (subcommands: show, resolve)."""
    if cctx.invoked_subcommand:
        return
    ctx = cctx.find_object(Ctx)
    assert ctx is not None
    rows = ctx.app(check_env=False).conflicts(connection, open_only=not show_all)
    if not rows:
        click.echo("no open conflicts" if not show_all else "no conflicts")
        return
    for c in rows:
        click.echo(
            f"#{c.id} [{c.status}] {c.connection} {c.object} partner {c.partner_id} / vendor "
            f"{c.vendor_id} field {c.field}: partner={c.partner_value!r} vendor={c.vendor_value!r}"
        )


@command(conflicts, "show")
@click.argument("conflict_id", type=int)
def conflicts_show(ctx: Ctx, conflict_id: int) -> None:
    """Show one conflict in full."""
    c = ctx.app(check_env=False).conflict(conflict_id)
    for key, value in c.model_dump().items():
        click.echo(f"{key:>14}: {value}")


@command(conflicts, "resolve")
@click.argument("conflict_id", type=int)
@click.option(
    "--take", type=click.Choice(["partner", "vendor"]), help="Keep this side's current value."
)
@click.option("--value", help="Set both sides to this value (in the partner's terms).")
def conflicts_resolve(ctx: Ctx, conflict_id: int, take: str | None, value: str | None) -> None:
    """Resolve a conflict by taking one side or giving a value."""
    row = ctx.app().resolve_conflict(conflict_id, take=take, value=value)  # type: ignore[arg-type]
    click.secho(f"conflict #{row.id} resolved: {row.resolution}", fg="green")
