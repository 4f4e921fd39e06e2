"""``dealsync conflicts``: list, show and resolve conflicts."""

from __future__ import annotations

import click

from connector.cli.base import FORMAT, Ctx, cli, command, export_rows, handled

CONFLICT_COLUMNS = [
    "id", "status", "connection", "object", "partner_id", "vendor_id", "field",
    "partner_value", "vendor_value", "opened_at",
]  # fmt: skip


@cli.group(invoke_without_command=True)
@click.option("--connection", "-p", metavar="PARTNER", help="Only this partner's conflicts.")
@click.option("--all", "show_all", is_flag=True, help="Include resolved conflicts.")
@FORMAT
@click.pass_context
@handled
def conflicts(cctx: click.Context, connection: str | None, show_all: bool, fmt: str) -> None:
    """List open conflicts (table, CSV or JSON; subcommands: show, resolve)."""
    if cctx.invoked_subcommand:
        return
    ctx = cctx.find_object(Ctx)
    assert ctx is not None
    rows = [
        c.model_dump()
        for c in ctx.app(check_env=False).conflicts(connection, open_only=not show_all)
    ]
    export_rows(
        rows, fmt, CONFLICT_COLUMNS, empty="no conflicts" if show_all else "no open conflicts"
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
