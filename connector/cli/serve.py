"""``dealsync serve``, ``sandbox`` and ``demo``: the long-running and guided commands."""

from __future__ import annotations

import sys

import click

from connector.cli.base import Ctx, cli, command


@command(cli)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=int,
    default=None,
    help="Port to listen on (0: any free port; default 8765, 8766 with --salesforce).",
)
@click.option(
    "--salesforce",
    is_flag=True,
    help="Run the offline Salesforce sandbox (HTTPS, its own CA) instead of HubSpot's.",
)
@click.option(
    "--org",
    "orgs",
    multiple=True,
    metavar="NAME:CLIENT_ID:CLIENT_SECRET",
    help="With --salesforce: an org and its connected app's consumer key and secret; "
    "repeat for several (default: partner-acme:acme-client-id:acme-secret).",
)
@click.option(
    "--api-allocation",
    type=int,
    default=100_000,
    show_default=True,
    help="With --salesforce: API requests per org per rolling 24 hours.",
)
@click.option(
    "--jwt-public-key",
    "jwt_key_file",
    metavar="FILE",
    help="With --salesforce: PEM public key (or certificate) the JWT bearer flow's "
    "assertions are checked with, for every org.",
)
@click.option(
    "--cert-dir",
    metavar="DIR",
    help="With --salesforce: keep the CA and certificate in DIR (reused on restart; "
    "default: a temporary directory).",
)
@click.option(
    "--session-ttl",
    type=float,
    metavar="SECONDS",
    help="With --salesforce: a session lapses after this long without a request (default 7200).",
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
    port: int | None,
    salesforce: bool,
    orgs: tuple[str, ...],
    api_allocation: int,
    jwt_key_file: str | None,
    cert_dir: str | None,
    session_ttl: float | None,
    portals: tuple[str, ...],
    rate_limit: str,
    search_rate: str,
    no_limits: bool,
    search_lag: str,
    faults: str | None,
    data_file: str | None,
) -> None:
    """Run the offline HubSpot sandbox (or, with --salesforce, the Salesforce one): a
    local fake CRM for the demo, tests and you."""
    from connector.sandbox import portal_specs, run_salesforce_sandbox_command, run_sandbox

    if salesforce:
        if portals:
            raise click.BadParameter(
                "--portal is for the HubSpot sandbox; with --salesforce use --org "
                "NAME:CLIENT_ID:CLIENT_SECRET",
                param_hint="--portal",
            )
        try:
            run_salesforce_sandbox_command(
                orgs,
                host=host,
                port=8766 if port is None else port,
                data_file=data_file,
                limits=not no_limits,
                faults=faults,
                api_allocation=api_allocation,
                jwt_key_file=jwt_key_file,
                cert_dir=cert_dir,
                session_ttl_seconds=session_ttl,
                print_fn=click.echo,
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        return
    if orgs:
        raise click.BadParameter(
            "--org is for the Salesforce sandbox: add --salesforce", param_hint="--org"
        )
    port = 8765 if port is None else port
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
