"""The ``dealsync`` command line: a thin layer over :mod:`connector.api`.

Exit codes: 0 clean, 1 conflicts left open, 2 some records failed, 3 fatal (bad
config, unreachable CRM, usage errors). Errors are one clean line; ``--debug`` shows
the traceback.

One module per concern (:mod:`.init`, :mod:`.sync`, :mod:`.conflicts`, :mod:`.mappings`, :mod:`.program`,
:mod:`.outbox`, :mod:`.partners`, :mod:`.privacy`, :mod:`.serve`, :mod:`.scale`), each adding its commands to the group in :mod:`.base`.
"""

from __future__ import annotations

import sys

import click

from connector.cli import (
    conflicts,
    init,
    mappings,
    outbox,
    partners,
    privacy,
    program,
    scale,
    serve,
    sync,
)
from connector.cli.base import cli, fatal, reader_went_away

__all__ = [
    "cli",
    "conflicts",
    "init",
    "main",
    "mappings",
    "outbox",
    "partners",
    "privacy",
    "program",
    "scale",
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
            sys.exit(fatal())
        except click.ClickException as exc:
            exc.show()
            sys.exit(fatal())
        finally:
            sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        reader_went_away()
