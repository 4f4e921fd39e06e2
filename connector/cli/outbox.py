"""``dealsync outbox``: list, show, send, retry, release and cancel e-mails."""

from __future__ import annotations

import sys

import click

from connector.cli.base import FORMAT, Ctx, cli, command, export_rows, handled, pass_ctx


@cli.group(invoke_without_command=True)
@click.option(
    "--status",
    type=click.Choice(["queued", "sent", "failed", "held", "suppressed", "cancelled"]),
    help="Only messages with this status (held: a privacy check objected; release or cancel).",
)
@click.option(
    "--kind",
    type=click.Choice(
        [
            "consent_request",
            "data_notice",
            "lead_notification",
            "review_reminder",
            "expiry_reminder",
        ]
    ),
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


@command(outbox, "show")
@click.argument("message_id", type=int)
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


@command(outbox, "send")
def outbox_send(ctx: Ctx) -> None:
    """Deliver every due message now (SMTP or the file sink)."""
    results = ctx.app(check_env=False).send_outbox()
    sent = sum(1 for r in results if r.ok)
    for r in results:
        if not r.ok:
            click.secho(f"#{r.id} to {r.recipient}: {r.detail}", fg="red")
    click.echo(f"sent {sent}, not sent {len(results) - sent}")
    if sent < len(results):
        from connector.api import EXIT_FAILED

        sys.exit(EXIT_FAILED)


@command(outbox, "retry")
@click.argument("ids", type=int, nargs=-1)
def outbox_retry(ctx: Ctx, ids: tuple[int, ...]) -> None:
    """Queue failed messages again (all failed ones, or the given IDs)."""
    n = ctx.app(check_env=False).retry_emails(ids)
    click.echo(f"{n} message(s) queued again")


# ``outbox release ID`` and ``outbox cancel ID``: a decision on one message (the admin
# page offers the same two), its help and what the command says when it is done
_SETTLE = {
    "release": (
        "Send a held message after all (read it first with `outbox show ID`).",
        "released: queued, sent on the next delivery",
    ),
    "cancel": (
        "Never send a held, queued or failed message (the row stays, marked cancelled).",
        "cancelled",
    ),
}


def _settle_command(action: str, help_text: str, done: str) -> None:
    @outbox.command(action, help=help_text)
    @click.argument("message_id", type=int)
    @pass_ctx
    @handled
    def settle(ctx: Ctx, message_id: int) -> None:
        m = ctx.app(check_env=False).settle_email(message_id, action, by="cli")
        click.echo(f"#{m.id} {done}")


for _action, (_help, _done) in _SETTLE.items():
    _settle_command(_action, _help, _done)
