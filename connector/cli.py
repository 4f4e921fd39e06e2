"""The ``dealsync`` command line: a thin layer over :mod:`connector.api`.

Exit codes: 0 clean, 1 conflicts left open, 2 some records failed, 3 fatal (bad
config, unreachable CRM, usage errors). Errors are one clean line; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click

from connector.api import Dealsync, DealsyncError
from connector.config import ConfigError, check_project, load_project, shown
from connector.engine.sync import EXIT_FAILED, EXIT_FATAL, PassResult
from connector.state.store import LockHeld

F = TypeVar("F", bound=Callable[..., Any])


class Ctx:
    def __init__(self, config: str | None, debug: bool) -> None:
        self.config = config
        self.debug = debug
        self._app: Dealsync | None = None

    def app(self, *, check_env: bool = True) -> Dealsync:
        if self._app is None:
            self._app = Dealsync(load_project(self.config, check_env=check_env))
        return self._app


def _fail(message: str, code: int = EXIT_FATAL) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


def handled(fn: F) -> F:
    """Turn domain errors into one line and exit code 3; tracebacks only with --debug."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Ctx)
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            if ctx and ctx.debug:
                raise
            for line in shown(exc.problems):
                click.secho(line, fg="red", err=True)
            _fail(
                f"{len(exc.problems):,} configuration problem(s); fix them and run `dealsync check`"
            )
        except click.ClickException:
            raise
        except (DealsyncError, LockHeld) as exc:
            if ctx and ctx.debug:
                raise
            _fail(str(exc))
        except Exception as exc:  # the last line of defence: never a bare traceback
            if ctx and ctx.debug:
                raise
            _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    envvar="DEALSYNC_CONFIG",
    metavar="FILE",
    help="Path of dealsync.yaml (default: $DEALSYNC_CONFIG or ./dealsync.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="dealsync")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool) -> None:
    """dealsync keeps partner-registered deals in sync between a partner CRM and a
    vendor CRM, applying the partner program's rules on every pass."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Ctx(config, debug)


pass_ctx = click.make_pass_decorator(Ctx)


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 datetime, e.g. 2027-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    _fail(f"{len(problems):,} problem(s) found")


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
    when = _parse_now(now)
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
    rows = ctx.app(check_env=False).store.conflicts(connection, None if show_all else "open")
    if not rows:
        click.echo("no open conflicts" if not show_all else "no conflicts")
        return
    for c in rows:
        click.echo(
            f"#{c.id} [{c.status}] {c.connection} {c.object} partner {c.partner_id} / vendor "
            f"{c.vendor_id} field {c.field}: partner={c.partner_value!r} vendor={c.vendor_value!r}"
        )


@conflicts.command("show")
@click.argument("conflict_id", type=int)
@pass_ctx
@handled
def conflicts_show(ctx: Ctx, conflict_id: int) -> None:
    """Show one conflict in full."""
    c = ctx.app(check_env=False).store.conflict(conflict_id)
    if c is None:
        raise DealsyncError(f"no conflict #{conflict_id}")
    for key, value in c.model_dump().items():
        click.echo(f"{key:>14}: {value}")


@conflicts.command("resolve")
@click.argument("conflict_id", type=int)
@click.option(
    "--take", type=click.Choice(["partner", "vendor"]), help="Keep this side's current value."
)
@click.option("--value", help="Set both sides to this value (in the partner's terms).")
@pass_ctx
@handled
def conflicts_resolve(ctx: Ctx, conflict_id: int, take: str | None, value: str | None) -> None:
    """Resolve a conflict by taking one side or giving a value."""
    row = ctx.app().resolve_conflict(conflict_id, take=take, value=value)  # type: ignore[arg-type]
    click.secho(f"conflict #{row.id} resolved: {row.resolution}", fg="green")


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
    store = ctx.app(check_env=False).store
    store.interrupt_orphaned_runs(connection)  # a killed pass's run is not "running"
    if run_id is None:
        rows = store.runs(connection, limit)
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
    run = store.run(run_id)
    if run is None:
        raise DealsyncError(f"no run #{run_id}")
    records = store.run_records(run_id, "failed" if failed else None)
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


@cli.group()
def register() -> None:
    """Submit registrations on a partner's behalf."""


@register.command("lead")
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
@pass_ctx
@handled
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
    from connector.api import register_lead

    reg = register_lead(
        ctx.app(),
        partner=partner,
        domain=domain,
        first=first,
        last=last,
        email=email,
        company=company,
        country=country,
        now=_parse_now(now),
    )
    colour = "green" if reg.status == "accepted" else "red"
    click.secho(
        f"registration #{reg.id}: {reg.status}" + (f" ({reg.code})" if reg.code else ""), fg=colour
    )
    click.echo(f"  {reg.reason}")
    if reg.status != "accepted":
        sys.exit(EXIT_FAILED)


def _export(rows: list[dict[str, Any]], fmt: str, columns: list[str]) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        return
    if not rows:
        click.echo("nothing to show")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    widths = {c: min(w, 60) for c, w in widths.items()}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r.get(c) or "")[: widths[c]].ljust(widths[c]) for c in columns))


FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


@cli.command()
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
@pass_ctx
@handled
def registrations(
    ctx: Ctx, partner: str | None, status: str | None, kind: str | None, fmt: str
) -> None:
    """List registrations and their decisions (table, CSV or JSON)."""
    rows = [
        r.model_dump()
        for r in ctx.app(check_env=False).registry.registrations(partner, status, kind)
    ]
    _export(
        rows,
        fmt,
        [
            "id",
            "partner",
            "kind",
            "partner_record_id",
            "domain",
            "status",
            "code",
            "owned_until",
            "decided_at",
            "reason",
        ],
    )


@cli.command()
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's commissions.")
@click.option("--kind", type=click.Choice(["deal", "self_serve"]), help="Only this kind of credit.")
@FORMAT
@pass_ctx
@handled
def commissions(ctx: Ctx, partner: str | None, kind: str | None, fmt: str) -> None:
    """List commissions and MRR credits earned (table, CSV or JSON)."""
    rows = [c.model_dump() for c in ctx.app(check_env=False).registry.commissions(partner, kind)]
    _export(
        rows,
        fmt,
        [
            "id",
            "partner",
            "kind",
            "vendor_deal_id",
            "partner_deal_id",
            "domain",
            "amount",
            "currency",
            "rate",
            "commission",
            "mrr",
            "earned_at",
        ],
    )


@cli.group(invoke_without_command=True)
@click.option(
    "--status",
    type=click.Choice(["queued", "sent", "failed", "held", "suppressed", "cancelled"]),
    help="Only messages with this status (held: a privacy check objected; release or cancel).",
)
@click.option(
    "--kind",
    type=click.Choice(["consent_request", "data_notice", "lead_notification"]),
    help="Only this kind of e-mail.",
)
@FORMAT
@click.pass_context
@handled
def outbox(cctx: click.Context, status: str | None, kind: str | None, fmt: str) -> None:
    """List e-mails in the outbox (subcommands: send, retry, show, release, cancel)."""
    if cctx.invoked_subcommand:
        return
    ctx = cctx.find_object(Ctx)
    assert ctx is not None
    rows = [
        m.model_dump(exclude={"body"})
        for m in ctx.app(check_env=False).outbox.messages(status, kind)
    ]
    if fmt == "table":
        for row in rows:
            row["detail"] = (row["detail"] or "").replace("\n", " | ") or None
    _export(
        rows,
        fmt,
        [
            "id",
            "kind",
            "recipient",
            "status",
            "attempts",
            "created_at",
            "sent_at",
            "subject",
            "detail",
        ],
    )


@outbox.command("show")
@click.argument("message_id", type=int)
@pass_ctx
@handled
def outbox_show(ctx: Ctx, message_id: int) -> None:
    """Show one message as it will be (or was) sent."""
    m = ctx.app(check_env=False).outbox.get(message_id)
    if m is None:
        raise DealsyncError(f"no outbox message #{message_id}")
    click.echo(
        f"To: {m.recipient}\nSubject: {m.subject}\nMessage-ID: {m.message_id}\nStatus: {m.status}"
        + (f" ({m.detail})" if m.detail else "")
        + (
            f"\nHeld for a decision: `dealsync outbox release {m.id}` sends it as shown below, "
            f"`dealsync outbox cancel {m.id}` never sends it."
            if m.status == "held"
            else ""
        )
        + f"\n\n{m.body}"
    )


@outbox.command("send")
@pass_ctx
@handled
def outbox_send(ctx: Ctx) -> None:
    """Deliver every due message now (SMTP or the file sink)."""
    results = ctx.app(check_env=False).send_outbox()
    sent = sum(1 for r in results if r.ok)
    for r in results:
        if not r.ok:
            click.secho(f"#{r.id} to {r.recipient}: {r.detail}", fg="red")
    click.echo(f"sent {sent}, not sent {len(results) - sent}")
    if sent < len(results):
        sys.exit(EXIT_FAILED)


@outbox.command("retry")
@click.argument("ids", type=int, nargs=-1)
@pass_ctx
@handled
def outbox_retry(ctx: Ctx, ids: tuple[int, ...]) -> None:
    """Queue failed messages again (all failed ones, or the given IDs)."""
    n = ctx.app(check_env=False).outbox.retry(list(ids) or None)
    click.echo(f"{n} message(s) queued again")


@outbox.command("release")
@click.argument("message_id", type=int)
@pass_ctx
@handled
def outbox_release(ctx: Ctx, message_id: int) -> None:
    """Send a held message after all (read it first with `outbox show ID`)."""
    m = ctx.app(check_env=False).release_email(message_id, by="cli")
    click.echo(f"#{m.id} released: queued, sent on the next delivery")


@outbox.command("cancel")
@click.argument("message_id", type=int)
@pass_ctx
@handled
def outbox_cancel(ctx: Ctx, message_id: int) -> None:
    """Never send a held, queued or failed message (the row stays, marked cancelled)."""
    m = ctx.app(check_env=False).cancel_email(message_id, by="cli")
    click.echo(f"#{m.id} cancelled")


@cli.group()
def partners() -> None:
    """Partner settings kept in the state store."""


@partners.command("notify")
@click.option("--partner", "-p", required=True, metavar="PARTNER", help="The partner.")
@click.option("--email", "-e", help="Where to send its lead notifications.")
@click.option("--on/--off", "enabled", default=True, help="Subscribe or unsubscribe.")
@pass_ctx
@handled
def partners_notify(ctx: Ctx, partner: str, email: str | None, enabled: bool) -> None:
    """Subscribe a partner to lead notifications (or turn them off)."""
    from connector.hooks.notifications import set_subscription

    app = ctx.app(check_env=False)
    cfg = app.partner(partner)
    try:
        row = set_subscription(app.store, partner, email, enabled, default=cfg.notify_email)
    except ValueError as exc:
        raise DealsyncError(str(exc)) from None
    click.echo(f"{partner}: lead notifications {'on' if row.enabled else 'off'} ({row.email})")


def _rate(value: str, unit: str) -> float:
    text = value.strip().lower().removesuffix(unit)
    try:
        number = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a rate like 100{unit}") from None
    if number <= 0:
        raise click.BadParameter(f"{value!r} must be positive")
    return number


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8765, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option(
    "--portal",
    "portals",
    multiple=True,
    metavar="NAME:TOKEN",
    help="A portal and its access token; repeat for several "
    "(default: vendor:vendor-token and partner-acme:acme-token).",
)
@click.option(
    "--rate-limit",
    default="100/10s",
    show_default=True,
    metavar="N/10s",
    help="Requests per rolling 10 seconds per portal.",
)
@click.option(
    "--search-rate",
    default="5/s",
    show_default=True,
    metavar="N/s",
    help="Search requests per second per portal.",
)
@click.option("--no-limits", is_flag=True, help="Turn rate limits off.")
@click.option(
    "--search-lag",
    default="1-3",
    show_default=True,
    metavar="MIN-MAX",
    help="Seconds before a write shows in search, drawn per write (0: at once).",
)
@click.option(
    "--faults",
    metavar="SPEC",
    help="Fault injection for every portal, e.g. 5xx=0.2,429=0.1,latency=50,drop=0.05,seed=7.",
)
@click.option(
    "--data",
    "data_file",
    metavar="FILE",
    help="Load portals from FILE at start, save them on exit.",
)
@pass_ctx
@handled
def sandbox(
    ctx: Ctx,
    host: str,
    port: int,
    portals: tuple[str, ...],
    rate_limit: str,
    search_rate: str,
    no_limits: bool,
    search_lag: str,
    faults: str | None,
    data_file: str | None,
) -> None:
    """Run the offline HubSpot sandbox: a local fake HubSpot for the demo, tests and you."""
    from connector.sandbox import FaultSpec, PortalSpec, parse_faults, parse_portal, run_sandbox
    from connector.sandbox.store import parse_search_lag

    try:
        fault_spec = parse_faults(faults) if faults else FaultSpec()
        lag = parse_search_lag(search_lag)
        pairs = [parse_portal(p) for p in portals] or [
            ("vendor", "vendor-token"),
            ("partner-acme", "acme-token"),
        ]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    per_10s = int(_rate(rate_limit, "/10s"))
    per_s = _rate(search_rate, "/s")
    specs = [
        PortalSpec(
            name=n,
            token=t,
            rate_limit_per_10s=per_10s,
            search_rate_per_s=per_s,
            search_lag=lag,
            faults=fault_spec,
        )
        for n, t in pairs
    ]
    run_sandbox(specs, host, port, data_file, not no_limits, print_fn=click.echo)


@cli.command()
@click.option(
    "--dir", "directory", metavar="DIR", help="Where to build the demo (default: a temp dir)."
)
@pass_ctx
@handled
def demo(ctx: Ctx, directory: str | None) -> None:
    """Build two embedded CRMs, seed registered deals, and show sync passes."""
    from connector.demo import run_demo

    sys.exit(run_demo(directory, echo=click.echo))


# --------------------------------------------------------------------------- service


@partners.group("token")
def partners_token() -> None:
    """API tokens partners use to trigger their own sync (``dealsync serve``)."""


@partners_token.command("create")
@click.option("--partner", "-p", required=True, metavar="PARTNER", help="The partner.")
@click.option("--label", default="", help="A note to tell tokens apart (e.g. who holds it).")
@click.option(
    "--expires",
    metavar="WHEN",
    help="Refuse the token after this: 90d (days), 12h (hours) or an ISO date "
    "(2027-06-30, UTC). Default: valid until revoked.",
)
@pass_ctx
@handled
def partners_token_create(ctx: Ctx, partner: str, label: str, expires: str | None) -> None:
    """Create a token for a partner; it is shown once and stored only as a hash."""
    from connector.service.tokens import PartnerTokens, parse_expiry

    app = ctx.app(check_env=False)
    app.partner(partner)
    try:
        expires_at = parse_expiry(expires) if expires is not None else None
    except ValueError as exc:
        raise DealsyncError(str(exc)) from None
    info, token = PartnerTokens(app.store).create(partner, label, expires_at=expires_at)
    until = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "no expiry"
    click.echo(f"token #{info.id} for {partner}, {until} (shown once, store it now):")
    click.echo(token)


@partners_token.command("list")
@click.option("--partner", "-p", metavar="PARTNER", help="Only this partner's tokens.")
@pass_ctx
@handled
def partners_token_list(ctx: Ctx, partner: str | None) -> None:
    """List tokens (id, prefix, state, expiry, label, dates); never the secrets."""
    from connector.service.tokens import PartnerTokens

    app = ctx.app(check_env=False)
    rows = PartnerTokens(app.store).list(partner)
    if not rows:
        click.echo("no tokens")
    for t in rows:
        if t.revoked_at:
            state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}"
        elif t.expired and t.expires_at:
            state = f"expired {t.expires_at:%Y-%m-%d %H:%M}"
        else:
            until = f"expires {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "no expiry"
            state = f"active ({until})"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        click.echo(
            f"#{t.id}  {t.partner}  dsk_{t.prefix}_…  {state}  created "
            f"{t.created_at:%Y-%m-%d %H:%M}  last used {used}  {t.label}"
        )


@partners_token.command("revoke")
@click.option("--partner", "-p", required=True, metavar="PARTNER", help="The partner.")
@click.argument("token_id", type=int)
@pass_ctx
@handled
def partners_token_revoke(ctx: Ctx, partner: str, token_id: int) -> None:
    """Revoke one of a partner's tokens by id (see `dealsync partners token list`)."""
    from connector.service.tokens import PartnerTokens

    app = ctx.app(check_env=False)
    info = PartnerTokens(app.store).revoke(token_id, partner)
    if info is None:
        raise DealsyncError(f"no token #{token_id} for partner {partner!r}")
    click.echo(f"token #{info.id} of {partner} revoked")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config", "config_file", metavar="FILE", help="Path of dealsync.yaml (overrides -c)."
)
@pass_ctx
@handled
def serve(ctx: Ctx, host: str, port: int, config_file: str | None) -> None:
    """Run the service: scheduled passes, partner triggers, HubSpot webhooks,
    /healthz, /metrics and the sync-health page at /admin."""
    import uvicorn

    from connector.config import config_path_from
    from connector.service import Service, build_app

    logging.getLogger("dealsync").setLevel(logging.DEBUG if ctx.debug else logging.INFO)
    service = Service(config_path_from(config_file or ctx.config))
    service.start()
    click.echo(
        f"dealsync serving {len(service.project.config.partners)} connection(s) "
        f"on http://{host}:{port} (admin page: /admin)",
        err=True,
    )
    try:
        uvicorn.run(build_app(service), host=host, port=port, log_level="info")
    finally:
        service.stop()


def main() -> None:
    """Entry point: click's own usage errors exit 3 too (2 means "records failed")."""
    try:
        cli.main(prog_name="dealsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_FATAL)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_FATAL)


if __name__ == "__main__":
    main()
