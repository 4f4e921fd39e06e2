"""The ``dealsync`` command line: a thin layer over :mod:`connector.api`.

Exit codes: 0 clean, 1 conflicts left open, 2 some records failed, 3 fatal (bad
config, unreachable CRM, usage errors). Errors are one clean line; ``--debug`` shows
the traceback.

One module per concern (:mod:`.sync`, :mod:`.conflicts`, :mod:`.mappings`, :mod:`.program`,
:mod:`.outbox`, :mod:`.partners`, :mod:`.privacy`, :mod:`.serve`), each adding its commands to the group in :mod:`.base`.
"""

from __future__ import annotations

import os
import sys

import click

from connector.api import EXIT_FATAL
from connector.cli import conflicts, mappings, outbox, partners, privacy, program, serve, sync
from connector.cli.base import cli

__all__ = [
    "cli",
    "conflicts",
    "main",
    "mappings",
    "outbox",
    "partners",
    "privacy",
    "program",
    "serve",
    "sync",
]


def main() -> None:
    """Entry point: click's own usage errors exit 3 too (2 means "records failed")."""
    try:
        try:
            cli.main(prog_name="dealsync", standalone_mode=False)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_FATAL)
        except click.ClickException as exc:
            exc.show()
            sys.exit(EXIT_FATAL)
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        _reader_went_away()


def _reader_went_away() -> None:
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
