"""``dealsync worker`` and ``dealsync enqueue``: passes from a queue in the state's
PostgreSQL, run by workers on any number of machines (docs/scale-out.md)."""

from __future__ import annotations

import click

from connector.cli.base import Ctx, cli, command, parse_now


@command(cli)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=int,
    help="Passes at a time (of different connections).",
)
@click.option(
    "--queues",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queues to work from; repeat for several (default: passes).",
)
@click.option(
    "--apply-schema",
    is_flag=True,
    help="Create the queue's tables (procrastinate's schema) in the state's database first.",
)
@click.option(
    "--stalled-after",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="A worker silent this long is dead: its jobs are retried by another worker.",
)
@click.option(
    "--until-empty",
    is_flag=True,
    help="Stop once no job is due (a retry scheduled for later is left to the next run).",
)
@click.option(
    "--database-retries",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="Retries of a pass whose database connection dropped, before its job is failed.",
)
def worker(
    ctx: Ctx,
    concurrency: int,
    queues: tuple[str, ...],
    apply_schema: bool,
    stalled_after: float,
    until_empty: bool,
    database_retries: int,
) -> None:
    """Run pass jobs from the queue (needs a PostgreSQL state_url). A database that
    does not answer is waited for, logged, not a crash."""
    from connector.api import scale

    scale.run_worker(
        ctx.app(),
        concurrency=concurrency,
        queues=queues,
        stalled_after=stalled_after,
        until_empty=until_empty,
        apply_schema=apply_schema,
        database_retries=database_retries,
        echo=click.echo,
    )


@cli.group()
def enqueue() -> None:
    """Put jobs in the queue for `dealsync worker` processes."""


@command(enqueue, "sync")
@click.option(
    "--connection",
    "connections",
    multiple=True,
    metavar="PARTNER",
    help="A partner's connection; repeat for several.",
)
@click.option("--all", "all_", is_flag=True, help="Every partner's connection.")
@click.option("--full", is_flag=True, help="Passes as `sync --full`.")
@click.option("--now", metavar="ISO-DATETIME", help="Apply the program's rules as of this time.")
def enqueue_sync(
    ctx: Ctx, connections: tuple[str, ...], all_: bool, full: bool, now: str | None
) -> None:
    """Queue a pass per connection; a connection whose pass is already waiting joins it."""
    if bool(connections) == all_:
        raise click.UsageError("give --connection PARTNER (repeatable) or --all")
    moment = parse_now(now)
    at = moment.isoformat() if moment else None
    from connector.api import scale

    for line in scale.enqueue_sync(
        ctx.app(check_env=False), None if all_ else list(connections), full=full, now=at
    ):
        click.echo(line)


@command(enqueue, "outbox")
def enqueue_outbox(ctx: Ctx) -> None:
    """Queue an outbox delivery (a worker sends the due e-mails; joined when one waits)."""
    from connector.api import scale

    click.echo(scale.enqueue_delivery(ctx.app(check_env=False)))


@command(cli, "queue")
def queue(ctx: Ctx) -> None:
    """Show the queue: jobs per queue and status, the oldest waiting, failed jobs."""
    from connector.api import scale

    for line in scale.queue_lines(ctx.app(check_env=False)):
        click.echo(line)
