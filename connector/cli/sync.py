"""``dealsync check``, ``setup``, ``sync``, ``status`` and ``runs``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from connector.cli.base import Ctx, cli, fail, handled, parse_now, pass_ctx
from connector.config import check_project, shown
from connector.engine.plan import Associate
from connector.engine.sync import PassResult


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on long passes when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    state: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = state.get("bar")
        if state.get("stage") != stage:
            if bar is not None:
                bar.render_finish()
            bar = click.progressbar(length=max(total, 1), label=stage.ljust(28), file=sys.stderr)
            state.update(stage=stage, bar=bar, done=0)
        step = done - state["done"]
        if step > 0 and bar is not None:
            bar.update(step)
            state["done"] = done

    try:
        yield update
    finally:
        if state.get("bar") is not None:
            state["bar"].render_finish()


def print_result(result: PassResult, *, as_json: bool) -> None:
    if as_json:
        return
    head = f"{result.connection}: {result.status}"
    if result.dry_run:
        head += " (dry run — nothing written)"
    click.secho(
        head, bold=True, fg={"ok": "green", "conflicts": "yellow"}.get(result.status, "red")
    )
    click.echo(f"  plan: {result.plan.summary()}")
    if result.dry_run:  # what the plan's counts stand for, as a real pass would mirror them
        assoc = [a for a in result.plan.actions if isinstance(a, Associate)]
        for a in assoc[:20]:
            click.echo(
                f"  associate {a.object} → {a.to_object}: {a.target} {a.counterpart_id} "
                f"(partner {a.record_id}) with {a.target} {', '.join(a.to_ids)}"
            )
        if len(assoc) > 20:
            click.echo(f"  … and {len(assoc) - 20} more associations")
    if result.counts and not result.dry_run:
        click.echo("  done: " + ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items())))
    for err in result.errors[:20]:
        click.secho(f"  failed: {err}", fg="red")
    if len(result.errors) > 20:
        click.echo(f"  … and {len(result.errors) - 20} more (dealsync runs {result.run_id})")
    if result.open_conflicts:
        click.secho(f"  {result.open_conflicts} open conflict(s): dealsync conflicts", fg="yellow")
    if result.error:
        click.secho(f"  stopped: {result.error}", fg="red")
    if result.run_id:
        click.echo(f"  run #{result.run_id}")


# ---------------------------------------------------------------------- commands


@cli.command()
@click.option("--file", "-f", "path", metavar="FILE", help="Config to check (default: --config).")
@pass_ctx
@handled
def check(ctx: Ctx, path: str | None) -> None:
    """Validate dealsync.yaml, the mappings and the rules; report every problem."""
    problems = check_project(path or ctx.config)
    if not problems:
        click.secho("configuration, mappings and rules are valid", fg="green")
        return
    for line in shown(problems):
        click.secho(line, fg="red", err=True)
    fail(f"{len(problems):,} problem(s) found")


@cli.command()
@pass_ctx
@handled
def setup(ctx: Ctx) -> None:
    """Install the custom properties dealsync needs in every portal (idempotent)."""
    created = ctx.app().setup()
    for portal, names in created.items():
        click.echo(f"{portal}: " + (", ".join(names) if names else "nothing to install"))


@cli.command()
@click.option(
    "--connection", "-p", "connection", metavar="PARTNER", help="Sync one partner's connection."
)
@click.option("--all", "all_", is_flag=True, help="Sync every connection (the default).")
@click.option("--dry-run", is_flag=True, help="Plan and print; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--now", metavar="ISO-DATETIME", help="Apply the program's rules as of this time.")
@pass_ctx
@handled
def sync(
    ctx: Ctx, connection: str | None, all_: bool, dry_run: bool, as_json: bool, now: str | None
) -> None:
    """Run a sync pass for one connection or all of them."""
    if connection and all_:
        raise click.UsageError("give --connection or --all, not both")
    app = ctx.app()
    when = parse_now(now)
    ids = [connection] if connection else [p.id for p in app.project.config.partners]
    results = []
    with _progress(not as_json) as progress:
        for pid in ids:
            results.append(app.sync(pid, dry_run=dry_run, now=when, progress=progress))
    for r in results:
        print_result(r, as_json=as_json)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    sys.exit(max((r.exit_code for r in results), default=0))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handled
def status(ctx: Ctx, as_json: bool) -> None:
    """Per connection: linked records, open conflicts, failing records, last run."""
    rows = ctx.app(check_env=False).status()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2, default=str))
        return
    for r in rows:
        click.secho(f"{r.partner} ({r.name})", bold=True)
        for obj, counts in sorted(r.links.items()):
            click.echo(f"  {obj}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if not r.links:
            click.echo("  nothing linked yet")
        click.echo(f"  open conflicts: {r.open_conflicts}   failing records: {r.failing_records}")
        if r.held_emails:
            click.secho(
                f"  e-mails held: {r.held_emails} (dealsync outbox --status held)", fg="yellow"
            )
        click.echo(
            f"  tier: {r.tier} (credited MRR {r.credited_mrr}, trailing window); registrations "
            f"{r.active_registrations} of {r.capacity}"
        )
        if r.last_run:
            lr = r.last_run
            click.echo(
                f"  last run: #{lr['id']} {lr['status']} at {lr['started_at']}"
                + (" (dry run)" if lr["dry_run"] else "")
            )


@cli.command()
@click.argument("run_id", type=int, required=False)
@click.option("--connection", "-p", metavar="PARTNER", help="Only this partner's runs.")
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
@click.option("--failed", is_flag=True, help="With RUN_ID: only failed records.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_ctx
@handled
def runs(
    ctx: Ctx, run_id: int | None, connection: str | None, limit: int, failed: bool, as_json: bool
) -> None:
    """Run history, or one run's per-record outcomes and API calls."""
    app = ctx.app(check_env=False)  # a killed pass's run shows as interrupted, not running
    if run_id is None:
        rows = app.runs(connection, limit)
        if as_json:
            click.echo(json.dumps([r.model_dump() for r in rows], indent=2, default=str))
            return
        for r in rows:
            plan = r.counts.get("plan", {})
            calls = sum(
                v
                for k, v in r.api_calls.items()
                if isinstance(v, int) and not k.endswith(("wait_ms", "retries", "429"))
            )
            click.echo(
                f"#{r.id} {r.connection} {r.status}{' (dry run)' if r.dry_run else ''} "
                f"{r.started_at:%Y-%m-%d %H:%M:%S} plan={sum(plan.values())} api_calls={calls}"
                + (f" error={r.error}" if r.error else "")
            )
        if not rows:
            click.echo("no runs yet")
        return
    run, records = app.run(run_id, failed_only=failed, connection=connection)
    if as_json:
        click.echo(
            json.dumps(
                {"run": run.model_dump(), "records": [r.model_dump() for r in records]},
                indent=2,
                default=str,
            )
        )
        return
    click.secho(f"run #{run.id} {run.connection} {run.status}", bold=True)
    click.echo(f"  started {run.started_at}  finished {run.finished_at}  trigger {run.trigger}")
    for key, value in sorted(run.counts.items()):
        click.echo(f"  {key}: {value}")
    if run.api_calls:
        click.echo(
            "  api calls: " + ", ".join(f"{k}={v}" for k, v in sorted(run.api_calls.items()))
        )
    if run.error:
        click.secho(f"  error: {run.error}", fg="red")
    for rec in records:
        line = f"  {rec.outcome:8} {rec.action:9} {rec.object} {rec.side} {rec.record_id}"
        if rec.field:
            line += f" field {rec.field}"
        if rec.detail:
            line += f": {rec.detail}"
        click.echo(line)
