"""``dealsync check``, ``setup``, ``sync``, ``status`` and ``runs``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from connector.cli.base import (
    FORMAT,
    Ctx,
    cell_text,
    cli,
    command,
    export_rows,
    fail,
    parse_now,
    plain_output,
)

if TYPE_CHECKING:  # imported where used: `dealsync --help` loads no engine (issue 17)
    from connector.api import PassResult, Problem


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
    from connector.api import UNUSABLE, Associate, effect_summary

    if as_json:
        return
    if result.status == UNUSABLE:  # the other connections ran; this one could not
        click.secho(f"{result.connection}: cannot run", bold=True, fg="red")
        click.secho(f"  {result.error}", fg="red")
        click.echo(
            f"  nothing was synced; fix that, then run `dealsync sync --connection {result.connection}`"
        )
        return
    head = f"{result.connection}: {result.status}"
    if result.dry_run:
        head += " (dry run — nothing written)"
    click.secho(
        head, bold=True, fg={"ok": "green", "conflicts": "yellow"}.get(result.status, "red")
    )
    for line in result.mapping_changes:
        click.secho(f"  {line}", fg="cyan")
    click.echo(f"  plan: {result.plan.summary()}")
    if checked := result.counts.get("full_checked"):
        click.echo(f"  full: {checked:,} linked pair(s) re-read on both sides")
    if result.dry_run:  # what the plan's counts stand for, as a real pass would mirror them
        assoc = [a for a in result.plan.actions if isinstance(a, Associate)]
        for a in assoc[:20]:
            click.echo(
                f"  associate {a.object} → {a.to_object}: {a.target} {a.counterpart_id} "
                f"(partner {a.record_id}) with {a.target} {', '.join(a.to_ids)}"
            )
        if len(assoc) > 20:
            click.echo(f"  … and {len(assoc) - 20} more associations")
    # the program's effects: what a dry run would do, what a real pass did
    lines = effect_summary(result.effect_counts())
    label = "program (would)" if result.dry_run else "program"
    click.echo(f"  {label}: " + ("nothing to do" if not lines else lines[0]))
    for line in lines[1:]:
        click.echo(" " * (len(label) + 4) + line)
    _print_summary_extras(result)
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


def _print_summary_extras(result: PassResult) -> None:
    """What the program lines do not say: the e-mails sent after the pass, the
    commissions' total, the conflicts this pass opened (``--json``: ``summary``)."""
    summary = result.summary()
    emails, commissions = summary["emails"], summary["commissions"]
    if emails["sent"] or emails["send_failed"]:
        failed = emails["send_failed"]
        click.echo(
            f"  e-mails sent after the pass: {emails['sent']}"
            + (f", {failed} failed (tried again later; `dealsync outbox`)" if failed else "")
        )
    if commissions["total"]:
        total = ", ".join(f"{v} {c}".strip() for c, v in commissions["total"].items())
        click.echo(f"  commissions earned: {total} ({commissions['earned']})")
    if opened := summary["conflicts"]["opened"]:
        click.secho(f"  conflicts opened: {opened}", fg="yellow")


# ---------------------------------------------------------------------- commands


@command(cli)
@click.option("--file", "-f", "path", metavar="FILE", help="Config to check (default: --config).")
@click.option(
    "--online",
    is_flag=True,
    help="Also read every portal's real properties and pipelines and check the mappings "
    "and rules against them (property names, types, options, stages, read-only).",
)
def check(ctx: Ctx, path: str | None, online: bool) -> None:
    """Validate dealsync.yaml, the mappings and the rules; report every problem.

    Warnings (values dealsync normalised, checks it could not make) are shown but do
    not fail the check; errors exit 3."""
    from connector.api import check_config, errors_of, shown

    problems = check_config(path or ctx.config, online=online)
    found = errors_of(problems)
    for p, line in zip(problems, shown(problems), strict=False):
        click.secho(line, fg="red" if p.is_error else None if p.is_note else "yellow", err=True)
    for line in shown(problems)[len(problems) :]:
        click.secho(line, err=True)
    if found:
        fail(f"{len(found):,} problem(s) found" + _warned(problems))
    what = "configuration, mappings and rules are valid"
    if online:
        what += " against the portals' real properties and pipelines"
    click.secho(what + _warned(problems), fg="green")


def _warned(problems: list[Problem]) -> str:
    n = sum(1 for p in problems if not p.is_error and not p.is_note)
    return f" ({n:,} warning(s) above)" if n else ""


@command(cli)
def setup(ctx: Ctx) -> None:
    """Install the custom properties dealsync needs in every portal (idempotent),
    then check the mappings and rules against the portals (as `check --online`).

    A portal that cannot be set up (a partner's token variable not set, a refused
    token, a host that does not answer) is reported and the others are still set up;
    that, or an error of the check, exits 3."""
    from connector.api import errors_of, shown

    report = ctx.app().setup_checked(ctx.config)
    for portal, names in report.installed.items():
        click.echo(f"{portal}: " + (", ".join(names) if names else "nothing to install"))
    for portal, reason in report.failed.items():
        click.secho(f"{portal}: not set up: {reason}", fg="red", err=True)
    problems = report.problems
    for p, line in zip(problems, shown(problems), strict=False):
        click.secho(line, fg="red" if p.is_error else None if p.is_note else "yellow", err=True)
    for line in shown(problems)[len(problems) :]:
        click.secho(line, err=True)
    found = errors_of(problems)
    if report.failed or found:
        parts = []
        if report.failed:
            parts.append(
                f"{len(report.failed):,} portal(s) not set up ({', '.join(report.failed)})"
            )
        if found:
            parts.append(f"{len(found):,} problem(s) found against the portals")
        fail("; ".join(parts) + _warned(problems) + "; the other portals were set up")
    click.secho(
        "set up; mappings and rules valid against the portals' real properties and pipelines"
        + _warned(problems),
        fg="green",
    )


@command(cli)
@click.option(
    "--connection", "-p", "connection", metavar="PARTNER", help="Sync one partner's connection."
)
@click.option("--all", "all_", is_flag=True, help="Sync every connection (the default).")
@click.option("--dry-run", is_flag=True, help="Plan and print; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--now", metavar="ISO-DATETIME", help="Apply the program's rules as of this time.")
@click.option(
    "--full",
    is_flag=True,
    help="Also re-read every linked record on both sides by id and write only the "
    "differences (repairs edits detection did not see).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="With --all: up to K connections' passes at once (default 4; 1: one after "
    "another). They share the vendor portal's rate limit and its program-wide reads; "
    "with a vendor portal that is an embedded CRM file they run one after another.",
)
def sync(
    ctx: Ctx,
    connection: str | None,
    all_: bool,
    dry_run: bool,
    as_json: bool,
    now: str | None,
    full: bool,
    concurrency: int | None,
) -> None:
    """Run a sync pass for one connection or all of them."""
    if connection and all_:
        raise click.UsageError("give --connection or --all, not both")
    with _progress(not as_json) as progress:
        results = ctx.app().sync_all(
            [connection] if connection else None,
            dry_run=dry_run,
            now=parse_now(now),
            progress=progress,
            full=full,
            concurrency=concurrency,
        )
    from connector.api import UNUSABLE

    unusable = [r for r in results if r.status == UNUSABLE]
    if connection and unusable:  # the one connection asked for: an error, one line
        fail(f"connection {connection!r} cannot run: {unusable[0].error}")
    for r in results:
        print_result(r, as_json=as_json)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    if unusable:  # the others ran; say once more which did not (exit 3)
        names = ", ".join(r.connection for r in unusable)
        fail(f"{len(unusable)} connection(s) could not run ({names}); the others were synced")
    sys.exit(max((r.exit_code for r in results), default=0))


@command(cli)
@click.argument("obj", metavar="OBJECT")
@click.argument("record_id", metavar="ID")
@click.option(
    "--side",
    type=click.Choice(["partner", "vendor"]),
    default="partner",
    show_default=True,
    help="Which side's record ID is.",
)
@click.option("--connection", "-p", metavar="PARTNER", help="The partner's connection.")
@click.option("--dry-run", is_flag=True, help="Plan and print; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--now", metavar="ISO-DATETIME", help="Apply the program's rules as of this time.")
def resync(
    ctx: Ctx,
    obj: str,
    record_id: str,
    side: str,
    connection: str | None,
    dry_run: bool,
    as_json: bool,
    now: str | None,
) -> None:
    """Re-read one linked pair on both sides and write only its differences."""
    result = ctx.app().resync(
        obj,
        record_id,
        side="vendor" if side == "vendor" else "partner",
        connection=connection,
        dry_run=dry_run,
        now=parse_now(now),
    )
    print_result(result, as_json=as_json)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        _print_writes(result)
    sys.exit(result.exit_code)


def _print_writes(result: PassResult) -> None:
    """Each property a resync wrote (or, dry run, would write), per side and record."""
    from connector.api import Update

    failed = {(e.object, e.record_id) for e in result.errors}
    wrote = False
    for a in result.plan.actions:
        if not isinstance(a, Update):
            continue
        for target, rid, props in (
            ("partner", a.partner_id, a.partner_properties),
            ("vendor", a.vendor_id, a.vendor_properties),
        ):
            verb = "would write" if result.dry_run else "wrote"
            if not result.dry_run and (a.object, rid) in failed:
                verb = "failed to write"  # the error itself is printed above
            for name, value in sorted(props.items()):
                wrote = True
                click.echo(f"  {verb} {target} {a.object} {rid}: {name} = {value!r}")
    if not wrote:
        click.echo("  in agreement: no property to write")


# The columns of the listings, in their order (kept as one wrapped list each).
# fmt: off
STATUS_COLUMNS = [
    "partner", "name", "links", "open_conflicts", "failing_records", "held_emails",
    "pending_review", "tier", "registrations", "commissions", "not_credited", "last_run",
    "cannot_run",
]
RUN_COLUMNS = [
    "id", "connection", "status", "dry_run", "trigger", "started_at", "plan", "api_calls",
    "error",
]
RECORD_COLUMNS = ["outcome", "action", "object", "side", "record_id", "field", "detail"]
FAILED_COLUMNS = [
    "run_id", "connection", "started_at", "object", "side", "record_id", "action", "field",
    "detail",
]
# fmt: on


@command(cli)
@FORMAT
def status(ctx: Ctx, fmt: str) -> None:
    """Per connection: linked records, open conflicts, failing records, last run
    (a table, CSV or JSON); what needs doing is said below the table."""
    rows = ctx.app(check_env=False).status()
    shown = [
        {
            **r.__dict__,
            "links": {
                obj: ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                for obj, counts in sorted(r.links.items())
            }
            or "nothing linked yet",
            "tier": f"{r.tier} (credited MRR {r.credited_mrr}, trailing window)",
            "registrations": f"{r.active_registrations} of {r.capacity}",
            "commissions": dict(sorted(r.commissions.items())) or None,
            "last_run": _last_run(r.last_run),
            "cannot_run": r.unusable,
        }
        for r in rows
    ]
    export_rows(shown, fmt, STATUS_COLUMNS, raw=[r.__dict__ for r in rows], empty="no connections")
    if fmt != "table":
        return
    for r in rows:  # what to do, where the user looks (never only a number in a cell)
        if r.unusable:
            click.secho(f"{r.partner}: cannot run: {r.unusable}", fg="red")
            continue
        if r.open_conflicts:
            click.secho(
                f"{r.partner}: open conflicts: {r.open_conflicts} (dealsync conflicts)",
                fg="yellow",
            )
        if r.held_emails:
            click.secho(
                f"{r.partner}: e-mails held: {r.held_emails} (dealsync outbox --status held)",
                fg="yellow",
            )
        if r.pending_review:
            click.secho(
                f"{r.partner}: registrations pending review: {r.pending_review} (dealsync "
                "registrations --status pending; approve or reject them)",
                fg="yellow",
            )
        if r.not_credited:
            click.secho(
                f"{r.partner}: won deals not credited: {r.not_credited} "
                "(dealsync commissions --not-credited)",
                fg="yellow",
            )


def _last_run(last: dict[str, Any] | None) -> str | None:
    if not last:
        return None
    when = str(last["started_at"]).replace("T", " ")[:19]
    return f"#{last['id']} {last['status']} at {when}" + (" (dry run)" if last["dry_run"] else "")


def _calls(api_calls: dict[str, Any]) -> int:
    """A run's API calls (not its waits, retries and 429 counters)."""
    return sum(
        v
        for k, v in api_calls.items()
        if isinstance(v, int) and not k.endswith(("wait_ms", "retries", "429"))
    )


@command(cli)
@click.argument("run_id", type=int, required=False)
@click.option("--connection", "-p", metavar="PARTNER", help="Only this partner's runs.")
@click.option("--limit", default=20, show_default=True, help="How many runs to list (or search).")
@click.option(
    "--failed",
    is_flag=True,
    help="Only what failed: RUN_ID's failed records, or without RUN_ID the failed "
    "records and failed runs of the last --limit runs.",
)
@FORMAT
def runs(
    ctx: Ctx, run_id: int | None, connection: str | None, limit: int, failed: bool, fmt: str
) -> None:
    """Run history, or one run's per-record outcomes and API calls."""
    app = ctx.app(check_env=False)  # a killed pass's run shows as interrupted, not running
    if run_id is None and failed:
        found = app.failures(connection, limit)
        rows = [
            {
                "run_id": run.id,
                "connection": run.connection,
                "run_status": run.status,
                "started_at": run.started_at,
                **(
                    rec.model_dump(exclude={"id", "run_id"})
                    if rec is not None
                    else {"action": "run", "outcome": run.status, "detail": run.error}
                ),
            }
            for run, rec in found
        ]
        export_rows(rows, fmt, FAILED_COLUMNS, empty=f"nothing failed in the last {limit} run(s)")
        return
    if run_id is None:
        listed = app.runs(connection, limit)
        rows = [
            {
                **r.model_dump(),
                "plan": sum(r.counts.get("plan", {}).values()),
                "api_calls": _calls(r.api_calls),
            }
            for r in listed
        ]
        export_rows(
            rows, fmt, RUN_COLUMNS, raw=[r.model_dump() for r in listed], empty="no runs yet"
        )
        return
    run, records = app.run(run_id, failed_only=failed, connection=connection)
    if fmt == "json":
        raw = {"run": run.model_dump(), "records": [r.model_dump() for r in records]}
        export_rows([], fmt, [], raw=raw)
        return
    if fmt == "table":
        click.secho(f"run #{run.id} {run.connection} {run.status}", bold=not plain_output())
        click.echo(f"  started {run.started_at}  finished {run.finished_at}  trigger {run.trigger}")
        for key, value in sorted(run.counts.items()):
            click.echo(f"  {key}: {cell_text(value, sep=', ')}")
        if run.api_calls:
            click.echo(
                "  api calls: " + ", ".join(f"{k} {v}" for k, v in sorted(run.api_calls.items()))
            )
        if run.error:
            click.secho(f"  error: {run.error}", fg="red")
    empty = "no failed records" if failed else "no records"
    export_rows([r.model_dump() for r in records], fmt, RECORD_COLUMNS, empty=empty)
