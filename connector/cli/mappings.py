"""``dealsync mapping history``: the mapping versions each connection synced with."""

from __future__ import annotations

import click

from connector.cli.base import FORMAT, Ctx, cli, command, export_rows


@cli.group()
def mapping() -> None:
    """The mapping dealsync synced with (subcommand: history)."""


@command(mapping, "history")
@click.option("--connection", "-p", metavar="PARTNER", help="Only this partner's versions.")
@FORMAT
def mapping_history(ctx: Ctx, connection: str | None, fmt: str) -> None:
    """List the recorded mapping versions: when, and which fields were added (+),
    removed (-) or changed (~). A version is recorded by the first pass that synced
    with it, after its migration committed (dry runs record nothing)."""
    rows = [
        r.model_dump(exclude={"fingerprint"})
        for r in ctx.app(check_env=False).mapping_history(connection)
    ]
    shown = [{**r, "version": f"v{r['id']}"} for r in rows]
    export_rows(
        shown,
        fmt,
        ["version", "connection", "recorded_at", "run_id", "changes"],
        raw=rows,
        empty="no mapping versions recorded yet (the first sync records one)",
    )
