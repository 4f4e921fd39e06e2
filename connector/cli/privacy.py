"""``dealsync privacy``: the lead's rights — which partner registered a lead (``source``),
erasing a lead (``erase``), and the audit of both (``audit``)."""

from __future__ import annotations

import json
from typing import Any

import click

from connector.cli.base import FORMAT, Ctx, cli, command, export_rows

AUDIT_COLUMNS = ["id", "at", "action", "requested_by", "subject", "outcome", "summary"]

EMAIL = click.option("--email", required=True, help="The lead's e-mail address.")
REQUESTED_BY = click.option(
    "--requested-by",
    metavar="WHO",
    help="Who asked for it, for the audit (default: the OS user, else 'cli').",
)


@cli.group()
def privacy() -> None:
    """The lead's rights: the source of its data, erasure, and their audit."""


@command(privacy, "source")
@EMAIL
@REQUESTED_BY
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def privacy_source(ctx: Ctx, email: str, requested_by: str | None, as_json: bool) -> None:
    """Which partner registered this lead, and when: for a reply to the lead (audited).

    The only place dealsync names the registering partner for a lead: answer only a
    lead who expressly asked for the source of its data."""
    from connector.api import default_requester, no_record

    answer = ctx.app().source_of(email, requested_by=requested_by or default_requester())
    if as_json:
        click.echo(json.dumps(answer.as_dict(), indent=2))
        return
    request = f"request #{answer.request.id}, audited"
    if not answer.found:
        click.echo(f"{no_record(email)} ({request})")
        return
    click.echo(f"source of {answer.email}'s data ({request}):")
    for e in answer.sources:
        what = f"registration #{e.registration_id}" if e.registration_id else "synced record"
        click.echo(f"  {what} ({e.kind}, {e.status}): partner {e.partner} ({e.partner_name})")
        click.echo(f"    registered at {e.registered_at.isoformat(timespec='seconds')}")
        if e.company:
            click.echo(f"    company {e.company} ({e.domain})")
        click.echo(f"    through {e.through}")
    click.echo("\nreply to the lead:\n")
    click.echo(answer.reply)


@command(privacy, "erase")
@EMAIL
@REQUESTED_BY
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what would be erased.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def privacy_erase(
    ctx: Ctx, email: str, requested_by: str | None, yes: bool, dry_run: bool, as_json: bool
) -> None:
    """Erase a lead's personal data from the state and the outbox (audited).

    Registrations and commissions stay, pseudonymised; CRM records are not deleted
    (the output says what to do in the CRMs)."""
    from connector.api import default_requester, no_record

    app = ctx.app()
    who = requested_by or default_requester()
    plan = app.erase_person(email, requested_by=who, dry_run=True)
    if dry_run and not as_json and plan.found:
        _show(plan.as_dict(), "would erase")
        return
    if plan.found and not dry_run and not yes and not as_json:
        _show(plan.as_dict(), "would erase")
        click.confirm("erase it?", abort=True)
    result = plan if dry_run else app.erase_person(email, requested_by=who)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    if not result.found:
        audited = f" (request #{result.request.id}, audited)" if result.request else ""
        click.echo(f"{no_record(email)}; nothing to erase{audited}")
        return
    assert result.request is not None
    _show(result.as_dict(), "erased")
    click.secho(
        f"request #{result.request.id} audited; the lead is "
        f"{result.request.answer.get('pseudonym')} in what stays",
        fg="green",
    )
    if result.compacted:
        click.echo(f"  {result.compacted}")
    for step in result.crm:
        click.echo(f"  to do: {step}")


def _show(done: dict[str, Any], verb: str) -> None:
    regs = ", ".join(f"#{r}" for r in done["registrations"]) or "none"
    click.echo(f"{verb} {done['email']} from dealsync's state:")
    click.echo(
        f"  registrations {regs}: {done['contacts_deleted']} contact row(s) deleted, "
        f"{done['record_ids_pseudonymised']} record id(s) pseudonymised "
        "(the registrations and their commissions stay)"
    )
    click.echo(
        f"  outbox: {done['emails_erased']} e-mail(s) to the lead lose address and text "
        f"({done['emails_cancelled']} not sent yet: cancelled)"
    )
    click.echo(
        f"  synced records: {done['links_ended']} contact link(s) ended, "
        f"{done['link_fields_dropped']} other field(s) dropped"
    )
    texts = done["texts_scrubbed"]
    if texts:
        listed = ", ".join(f"{t} {n}" for t, n in texts.items())
        click.echo(f"  free text naming the lead: {listed}")


@command(privacy, "audit")
@click.option("--action", type=click.Choice(["source", "erase"]), help="Only this kind of request.")
@click.option("--email", help="Only the requests about this address (found by its hash).")
@FORMAT
def privacy_audit(ctx: Ctx, action: str | None, email: str | None, fmt: str) -> None:
    """List the audited source and erasure requests (no address in clear)."""
    rows = ctx.app(check_env=False).privacy_audit_rows(action, email)
    export_rows(rows, fmt, AUDIT_COLUMNS, empty="no audited requests")
