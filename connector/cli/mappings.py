"""``dealsync mapping history``: the mapping versions each connection synced with."""

from __future__ import annotations

import json

import click

from connector.cli.base import Ctx, cli, command


@cli.group()
def mapping() -> None:
    """The mapping dealsync synced with (subcommand: history)."""


@command(mapping, "history")
@click.option("--connection", "-p", metavar="PARTNER", help="Only this partner's versions.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def mapping_history(ctx: Ctx, connection: str | None, as_json: bool) -> None:
    """List the recorded mapping versions: when, and which fields were added (+),
    removed (-) or changed (~). A version is recorded by the first pass that synced
    with it, after its migration committed (dry runs record nothing)."""
    rows = ctx.app(check_env=False).mapping_history(connection)
    if as_json:
        click.echo(
            json.dumps([r.model_dump(exclude={"fingerprint"}) for r in rows], indent=2, default=str)
        )
        return
    if not rows:
        click.echo("no mapping versions recorded yet (the first sync records one)")
        return
    for r in rows:
        run = f" run #{r.run_id}" if r.run_id is not None else ""
        click.secho(f"v{r.id} {r.connection} {r.recorded_at:%Y-%m-%d %H:%M:%S}{run}", bold=True)
        for line in r.changes:
            click.echo(f"  {line}")
