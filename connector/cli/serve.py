"""``dealsync serve``, ``sandbox`` and ``demo``: the long-running and guided commands."""

from __future__ import annotations

import sys

import click

from connector.cli.base import Ctx, cli, command


@command(cli)
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
    from connector.sandbox import portal_specs, run_sandbox

    try:
        specs = portal_specs(
            portals,
            rate_limit=rate_limit,
            search_rate=search_rate,
            search_lag=search_lag,
            faults=faults,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    run_sandbox(specs, host, port, data_file, not no_limits, print_fn=click.echo)


@command(cli)
@click.option(
    "--dir", "directory", metavar="DIR", help="Where to build the demo (default: a temp dir)."
)
@click.option(
    "--partner-crm",
    type=click.Choice(["hubspot", "salesforce"]),
    default="hubspot",
    show_default=True,
    help="The partner's CRM: a HubSpot portal, or a Salesforce org (the vendor stays HubSpot).",
)
def demo(ctx: Ctx, directory: str | None, partner_crm: str) -> None:
    """Start offline sandboxes, seed registered deals, and show sync passes."""
    from connector.demo import run_demo

    sys.exit(run_demo(directory, echo=click.echo, partner_crm=partner_crm))


# --------------------------------------------------------------------------- service


@command(cli)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--config", "config_file", metavar="FILE", help="Path of dealsync.yaml (overrides -c)."
)
def serve(ctx: Ctx, host: str, port: int, config_file: str | None) -> None:
    """Run the service: scheduled passes, partner triggers, HubSpot webhooks,
    /healthz, /metrics and the sync-health page at /admin."""
    from connector.service import serve as serve_until_stopped

    serve_until_stopped(
        config_file or ctx.config,
        host,
        port,
        debug=ctx.debug,
        log_level=ctx.log_level,
        log_format=ctx.log_format,
    )
