"""``dealsync init [DIR]``: a new project folder — ``dealsync.yaml``, ``.env`` with the
secrets' variable names and the shipped mappings — from questions or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from connector.cli.base import Ctx, cli, command


@command(cli)
@click.argument("directory", default=".", required=False, metavar="[DIR]")
@click.option(
    "--vendor-adapter", metavar="KIND", help="The vendor portal's kind (default: hubspot)."
)
@click.option(
    "--vendor-token-env",
    metavar="VAR",
    help="The variable holding the vendor portal's token (default: DEALSYNC_VENDOR_TOKEN).",
)
@click.option(
    "--vendor-host", metavar="URL", help="The vendor portal's API host (default: the kind's)."
)
@click.option(
    "--partner",
    "partners",
    multiple=True,
    metavar="ID[:NAME]",
    help="A first partner connection; repeat for several.",
)
@click.option(
    "--partner-adapter",
    "partner_adapters",
    multiple=True,
    metavar="[ID=]KIND",
    help="The partners' portal kind (default: the vendor's); ID=KIND for one partner.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PORTAL.KEY=VALUE",
    help="Any key of a portal (vendor or a partner id), e.g. --set acme.host=URL.",
)
@click.option("--no-input", is_flag=True, help="Ask nothing: flags and defaults only (scripts).")
@click.option("--force", is_flag=True, help="Overwrite files that exist (default: keep them).")
def init(
    ctx: Ctx,
    directory: str,
    vendor_adapter: str | None,
    vendor_token_env: str | None,
    vendor_host: str | None,
    partners: tuple[str, ...],
    partner_adapters: tuple[str, ...],
    sets: tuple[str, ...],
    no_input: bool,
    force: bool,
) -> None:
    """Write a project into DIR (default: here): dealsync.yaml, .env naming the
    secrets' variables (no values) and the shipped mappings and rules.

    Asks for the vendor portal and the first partners unless --no-input; an existing
    file is kept unless --force. What is written passes `dealsync check` once the
    secrets are set."""
    from connector.api import onboarding as ob

    root = Path(directory)
    interactive = not no_input
    if ob.config_kept(root, force):
        # kept as it is, so nothing to ask: .env and the mappings are written if missing
        told = (vendor_adapter, vendor_token_env, vendor_host)
        if partners or partner_adapters or sets or any(v is not None for v in told):
            click.secho(
                f"{root / 'dealsync.yaml'} exists and is kept, so the portal and partner "
                "options are not used (--force writes a new one; `dealsync partners add` "
                "adds a partner to it)",
                fg="yellow",
                err=True,
            )
        _report(ob.init_project(root, None, [], force=False))
        return
    given = ob.parse_sets(sets)
    vendor_keys = dict(given.pop("vendor", {}))
    for key, value in (("token_env", vendor_token_env), ("host", vendor_host)):
        if value is not None:
            vendor_keys[key] = value

    kinds = ob.kind_names()
    if vendor_adapter is None:
        vendor_adapter = ob.default_kind()
        if interactive:
            vendor_adapter = click.prompt(
                f"Vendor portal adapter ({ob.describe_kinds()})",
                default=vendor_adapter,
                type=click.Choice(kinds),
                show_choices=False,
            )
    vendor = ob.portal(
        vendor_adapter,
        "vendor",
        vendor_keys,
        ask=_asker("vendor", interactive),
        where="vendor portal",
    )

    every, per = ob.parse_partner_adapters(partner_adapters)
    wanted = [ob.parse_partner(p) for p in partners]
    unknown = sorted((set(per) | set(given)) - {pid for pid, _ in wanted})
    if unknown:
        raise ob.OnboardingRefused(
            f"{unknown[0]!r} is named in --partner-adapter or --set but is not a --partner"
        )

    def partner(pid: str, name: str) -> Any:
        kind = per.get(pid) or every
        if kind is None:
            kind = vendor_adapter
            if interactive:
                kind = click.prompt(
                    f"Partner {pid}: adapter", default=kind, type=click.Choice(kinds)
                )
        keys = ob.portal(
            kind, pid, given.get(pid), ask=_asker(f"partner {pid}", interactive),
            where=f"--partner {pid}",
        )  # fmt: skip
        return ob.Partner(pid, name, keys)

    if wanted or not interactive:
        chosen = [partner(pid, name) for pid, name in wanted]
    else:
        chosen = _ask_partners(partner)
    _report(ob.init_project(root, vendor, chosen, force=force))


def _asker(label: str, interactive: bool) -> Any:
    """A prompt for one key of ``label``'s portal; Enter takes the suggestion (or
    leaves an optional key out). None without questions (--no-input)."""
    if not interactive:
        return None

    def prompt(key: Any, suggestion: str | None) -> str | None:
        if key.names_env:
            what = " (the environment variable to hold it)"
        elif key.required:
            what = " (required)"
        elif suggestion is None:
            what = " (optional; Enter leaves it out)"
        else:
            what = ""
        answer = click.prompt(
            f"{label.capitalize()}: {key.name}{what}",
            default=suggestion if suggestion is not None else "",
            show_default=suggestion is not None,
        )
        return str(answer).strip() or None

    return prompt


def _ask_partners(partner: Any) -> list[Any]:
    """Partners asked one by one (id, name, then its portal), until no more."""
    from connector.api import onboarding as ob

    out: list[Any] = []
    while True:
        pid = click.prompt("Partner id (lowercase letters, digits, - and _)").strip()
        try:
            ob.check_partner_id(pid, "partner id")
        except ob.OnboardingRefused as exc:
            click.secho(str(exc), fg="red", err=True)
            continue
        if pid in {p.id for p in out}:
            click.secho(f"partner {pid!r} is listed already", fg="red", err=True)
            continue
        name = click.prompt(f"Partner {pid}: name", default=pid).strip() or pid
        out.append(partner(pid, name))
        if not click.confirm("Add another partner?", default=False):
            return out


def _report(report: Any) -> None:
    for path in report.written:
        click.echo(f"wrote {path}")
    for path in report.kept:
        click.echo(f"kept  {path} (exists; --force overwrites it)")
    if report.secrets:
        click.echo("\nSecrets to set (in .env or the environment; never in dealsync.yaml):")
        for var in report.secrets:
            click.echo(f"  {var.name}: {var.purpose} — {var.source}")
    click.echo("\nNext:")
    for n, step in enumerate(report.next_steps(), 1):
        click.echo(f"  {n}. {step}")
