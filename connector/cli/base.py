"""What every ``dealsync`` command shares: the group, its context, error handling, output.

Exit codes: 0 clean, 1 conflicts left open, 2 some records failed, 3 fatal (bad
config, unreachable CRM, usage errors). Errors are one clean line; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click

from connector.api import (
    EXIT_FATAL,
    LOG_FORMATS,
    LOG_LEVELS,
    ConfigError,
    Dealsync,
    DealsyncError,
    LockHeld,
    configure_logging,
    shown,
)

F = TypeVar("F", bound=Callable[..., Any])


class Ctx:
    def __init__(
        self,
        config: str | None,
        debug: bool,
        log_level: str | None = None,
        log_format: str = "text",
    ) -> None:
        self.config = config
        self.debug = debug
        # as given (flag or environment), None when not: ``serve`` then logs at info
        self.log_level = log_level
        self.log_format = log_format
        self._app: Dealsync | None = None

    def app(self, *, check_env: bool = True) -> Dealsync:
        if self._app is None:
            self._app = Dealsync.open(self.config, check_env=check_env)
        return self._app


def fail(message: str, code: int = EXIT_FATAL) -> None:
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
            fail(
                f"{len(exc.problems):,} configuration problem(s); fix them and run `dealsync check`"
            )
        except click.ClickException:
            raise
        except (DealsyncError, LockHeld) as exc:
            if ctx and ctx.debug:
                raise
            fail(str(exc))
        except Exception as exc:  # the last line of defence: never a bare traceback
            if ctx and ctx.debug:
                raise
            fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")

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
@click.option(
    "--log-level",
    envvar="DEALSYNC_LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Log lines at this level and above go to stderr "
    "(default: $DEALSYNC_LOG_LEVEL, else warning; info for `serve`; debug with --debug).",
)
@click.option(
    "--log-format",
    envvar="DEALSYNC_LOG_FORMAT",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    default="text",
    show_default=True,
    help="text: one line per event; json: one JSON object per line "
    "(timestamp, level, logger, event, and connection/run_id during a pass).",
)
@click.version_option(package_name="dealsync")
@click.pass_context
def cli(
    ctx: click.Context,
    config: str | None,
    debug: bool,
    log_level: str | None,
    log_format: str,
) -> None:
    """dealsync keeps partner-registered deals in sync between a partner CRM and a
    vendor CRM, applying the partner program's rules on every pass."""
    level = log_level.lower() if log_level else None
    configure_logging(level or ("debug" if debug else "warning"), log_format.lower())
    ctx.obj = Ctx(config, debug, level, log_format.lower())


pass_ctx = click.make_pass_decorator(Ctx)


def command(group: click.Group, name: str | None = None) -> Callable[[F], click.Command]:
    """``group``'s command ``name``, handed the :class:`Ctx` and reporting failures as one
    line: the decorators every command would otherwise stack (options go below it)."""

    def decorate(fn: F) -> click.Command:
        return group.command(name)(pass_ctx(handled(fn)))

    return decorate


def parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 datetime, e.g. 2027-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def export_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str]) -> None:
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
