"""``dealsync outbox``: list, show, send, retry, release and cancel e-mails."""

from __future__ import annotations

import sys

import click

from connector.cli.base import FORMAT, Ctx, cli, export_rows, handled, pass_ctx
from connector.engine.sync import EXIT_FAILED


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
    rows = [m.model_dump(exclude={"body"}) for m in ctx.app(check_env=False).emails(status, kind)]
    if fmt == "table":
        for row in rows:
            row["detail"] = (row["detail"] or "").replace("\n", " | ") or None
    export_rows(
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
    m = ctx.app(check_env=False).email(message_id)
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
    n = ctx.app(check_env=False).retry_emails(ids)
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
