"""What every ``dealsync`` command shares: the group, its context, error handling, output.

Exit codes: 0 clean, 1 conflicts left open, 2 some records failed, 3 fatal (bad
config, unreachable CRM, usage errors). Errors are one clean line; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

# connector.api (the engine, the state store, the HubSpot client) is imported where a
# command uses it, so `dealsync --help` starts without loading any of it (issue 17)
# logging is set up before any command runs, from connector.logs (light: no engine, no
# store, no HubSpot client), so `dealsync sync --help` stays quick too
from connector.logs import LOG_FORMATS, LOG_LEVELS, configure_logging

if TYPE_CHECKING:
    from connector.api import Dealsync

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
            from connector.api import Dealsync

            self._app = Dealsync.open(self.config, check_env=check_env)
        return self._app


def fail(message: str, code: int | None = None) -> None:
    """One red line, then exit ``code`` (default: fatal, 3)."""
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(fatal() if code is None else code)


def fatal() -> int:
    """The fatal exit code (3), from the API."""
    from connector.api import EXIT_FATAL

    return EXIT_FATAL


def handled(fn: F) -> F:
    """Turn domain errors into one line and exit code 3; tracebacks only with --debug."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from connector.api import ConfigError, DealsyncError, shown

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
        except BrokenPipeError:  # ``| head``: the reader has read enough; not an error
            reader_went_away()
        except Exception as exc:  # the last line of defence: never a bare traceback
            if ctx and ctx.debug:
                raise
            # LockHeld comes with the state store: imported only once something failed,
            # so a command that never opens the store (``check``) does not load it
            from connector.api import LockHeld

            if isinstance(exc, (DealsyncError, LockHeld)):
                fail(str(exc))
            fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")

    return wrapper  # type: ignore[return-value]


def reader_went_away() -> None:
    """``dealsync runs | head -1``: the reader closed the pipe, which is how it says it
    has read enough. Exit quietly (0, no traceback), with stdout pointed at /dev/null so
    the interpreter's last flush does not complain about the closed pipe either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture)
        pass
    finally:
        os.close(devnull)
    sys.exit(0)


class GlobalOptionsAnywhere(click.Group):
    """The ``dealsync`` group: its own options (``--config/-c``, ``--debug`` and any
    added later) are accepted after the subcommand too — ``dealsync sync -c FILE`` as
    well as ``dealsync -c FILE sync`` — by moving them in front before click parses.
    An option a subcommand declares itself (``serve --config``) stays the
    subcommand's, and nothing after ``--`` moves."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.hoisted(ctx, args))

    def hoisted(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.params:
            if isinstance(param, click.Option) and not param.is_eager:
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        # the group's own leading options, as click would read them
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            name = args[i].split("=", 1)[0]
            i += 1
            if takes_value.get(name) and "=" not in args[i - 1]:
                i += 1
        head, tail = args[:i], args[i:]
        if not tail:
            return list(args)
        own = _declared_options(self.get_command(ctx, tail[0]), ctx)
        moved: list[str] = []
        kept: list[str] = []
        j = 0
        while j < len(tail):
            token = tail[j]
            if token == "--":
                kept.extend(tail[j:])
                break
            name = token.split("=", 1)[0]
            if name not in takes_value and token[:1] == "-" and token[1:2] != "-":
                name = token[:2]  # -cFILE
            if name in takes_value and name not in own:
                moved.append(token)
                if takes_value[name] and token == name and j + 1 < len(tail):
                    moved.append(tail[j + 1])
                    j += 1
            else:
                kept.append(token)
            j += 1
        return head + moved + kept


def _declared_options(command: click.Command | None, ctx: click.Context) -> set[str]:
    """Every option string ``command`` (and, for a group, its subcommands) declares."""
    if command is None:
        return set()
    names = {
        name
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= _declared_options(sub, ctx)
    return names


@click.group(cls=GlobalOptionsAnywhere, context_settings={"help_option_names": ["-h", "--help"]})
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


def export_rows(
    rows: list[dict[str, Any]],
    fmt: str,
    columns: list[str],
    *,
    empty: str = "nothing to show",
    raw: Any = None,
) -> None:
    """Print a listing as a table, CSV or JSON: the one output path of every listing.

    ``rows`` hold the cells (dicts, lists, datetimes and booleans are turned into text
    here, never shown as Python reprs); ``columns`` are the table's and the CSV's
    columns, in their order. JSON prints ``raw`` when given (the API's rows as they
    always were, for scripts), else ``rows``. ``empty`` is what the table says when
    there is nothing to list."""
    if fmt == "json":
        click.echo(json.dumps(rows if raw is None else raw, indent=2, default=str))
        return
    if fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell_text(row.get(k), sep="; ") for k in columns})
        return
    if not rows:
        click.echo(empty)
        return
    render_table(rows, columns)


def cell_text(value: Any, *, sep: str = "\n") -> str:
    """A value as a person reads it in a cell: ``key: value`` lines for a mapping (a
    nested one indented), one line per item of a list, ``yes``/``no``, datetimes to the
    second; ``sep`` joins the lines (CSV joins them with ``; `` to stay one line)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict):
                inner = ", ".join(f"{k} {cell_text(v)}" for k, v in item.items())
                lines.append(f"{key}: {inner}" if inner else f"{key}: -")
            else:
                lines.append(f"{key}: {cell_text(item, sep=', ')}")
        return sep.join(lines)
    if isinstance(value, list | tuple | set):
        return sep.join(cell_text(v, sep=", ") for v in value)
    return str(value)


def plain_output() -> bool:
    """No colour and no box drawing: stdout is a pipe or a file, or NO_COLOR is set
    (https://no-color.org), so what is printed copies, pastes and greps as text."""
    return bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()


def _is_id(column: str) -> bool:
    return column == "id" or column.endswith(("_id", "_ids"))


NARROWEST_CELL = 20
"""Columns no wider than this never wrap (dates, statuses, codes, counts), and a long
column wraps to no fewer characters: past that a table would be a column of word
fragments, and each row is shown as a block of ``column: value`` lines instead."""


def render_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A table that fits the terminal, nothing cut: long cells wrap at words (a word
    longer than its column folds); id and short columns never wrap or shrink, so every id stays
    whole and greppable; when even wrapping cannot fit the columns (a narrow
    terminal, a wide listing), each row becomes a block of ``column: value`` lines.

    On a terminal the header is bold and underlined. Piped, or with NO_COLOR, it is
    plain text in aligned columns (no colour, no box drawing, no trailing blanks), at
    ``$COLUMNS`` when set, else as wide as its rows: one line per row for ``grep``."""
    import io
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    plain = plain_output()
    labels = [c.replace("_", " ") for c in columns]
    cells = [[cell_text(r.get(c)) for c in columns] for r in rows]
    natural = [
        max(len(label), *(len(line) for row in cells for line in row[i].splitlines() or [""]))
        for i, label in enumerate(labels)
    ]
    gaps = 2 * (len(columns) - 1)
    width: int | None = None
    if plain:
        try:
            width = int(os.environ.get("COLUMNS", "")) or None
        except ValueError:
            width = None
        width = width or sum(natural) + gaps  # a pipe: as wide as it takes
    else:
        width = shutil.get_terminal_size().columns
    out = io.StringIO()
    console = Console(
        file=out,
        width=max(width, 20),
        force_terminal=not plain,
        no_color=plain,
        color_system=None if plain else "auto",
        highlight=False,
        emoji=False,
        markup=False,
    )
    ids = [_is_id(c) for c in columns]
    squeezed = gaps + sum(
        n if is_id else min(n, NARROWEST_CELL) for n, is_id in zip(natural, ids, strict=True)
    )
    if squeezed <= width:
        table = Table(
            box=None if plain else box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            header_style="" if plain else "bold",
        )
        for label, n, is_id in zip(labels, natural, ids, strict=True):
            if is_id or n <= NARROWEST_CELL:
                table.add_column(Text(label), no_wrap=True, min_width=n)
            else:
                table.add_column(Text(label), overflow="fold")
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table, crop=False)
    else:
        for n, row in enumerate(cells):
            if n:
                console.print()
            block = Table.grid(padding=(0, 2))
            block.add_column(no_wrap=True, style="" if plain else "bold")
            block.add_column(overflow="fold")
            for label, cell, is_id in zip(labels, row, ids, strict=True):
                if cell:
                    block.add_row(Text(label), Text(cell, no_wrap=is_id))
            console.print(block, crop=False)
    click.echo("\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines()))


def FORMAT(fn: F) -> F:
    """The one output flag of every listing: ``--format table|csv|json`` (table by
    default), and ``--json`` as the short way to say ``--format json``; the command
    gets ``fmt``."""

    @wraps(fn)
    def wrapper(*args: Any, fmt: str = "table", as_json: bool = False, **kwargs: Any) -> Any:
        return fn(*args, fmt="json" if as_json else fmt, **kwargs)

    wrapper = click.option(
        "--json", "as_json", is_flag=True, help="Print as JSON (same as --format json)."
    )(wrapper)
    wrapper = click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help="Output format: a table fitted to the terminal, CSV or JSON.",
    )(wrapper)
    return wrapper  # type: ignore[return-value]
