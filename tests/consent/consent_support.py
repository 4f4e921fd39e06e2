"""Helpers for the consent, lead-notification and outbox tests (issue 5).

A world: one vendor LocalCRM and two partner LocalCRMs (acme, beta) in SQLite files in
a project folder (so the CLI, a separate ``Dealsync``, sees the same data), the
shipped mappings and rules loaded by ``load_project``, driven through the public
``Dealsync`` API. Rules are applied at explicit moments (``now``); the CRMs run on
their own tick clock (every reading one second on), so no test sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from click.testing import CliRunner
from click.testing import Result as CliResult

from connector.cli import cli as cli_group
from connector.engine.sync import PassResult
from connector.records import Record
from connector.sandbox import PortalSpec, SandboxServer
from connector.sandbox.store import Portal
from connector.state.tables import OutboxMessage
from connector.testing.clock import TickClock as TickClock  # re-exported for the tests
from connector.testing.mail import free_port as free_port  # re-exported for the tests
from connector.testing.world import FileCRMWorld, HubSpotPortals, project_yaml, seed_deal
from connector.testing.world import Seeded as Seeded  # re-exported for the tests
from connector.testing.world import write_project as _write_project

NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
DAY30 = NOW + timedelta(days=30)

CONFIG = project_yaml(("acme", "beta"), notify=True)

# everything that would let a lead infer the registering partner
PARTNER_IDENTITY = {
    "acme": ("acme", "Acme Agency", "alerts@acme-agency.example", "acme-agency.example"),
    "beta": ("beta", "Beta Partners", "leads@beta-partners.example", "beta-partners.example"),
}
CONSENT_KINDS = ("consent_request", "data_notice")


def person(
    email: str, country: str | None = None, language: str | None = None, **props: str
) -> dict[str, str]:
    """A partner contact's properties (first/last names derived from the e-mail)."""
    local = email.split("@")[0]
    out = {
        "firstname": f"Fn{local.capitalize()}",
        "lastname": f"Ln{local.capitalize()}",
        "email": email,
    }
    if country is not None:
        out["country"] = country
    if language is not None:
        out["hs_language"] = language
    out.update(props)
    return out


class World(FileCRMWorld):
    """Two partners' deals and contacts on one vendor, with the outbox to look at."""

    def sync(self, partner: str = "acme", now: datetime = NOW, **kw: Any) -> PassResult:
        result = self.app.sync(partner, now=now, **kw)
        assert result.status in ("ok", "conflicts"), (result.status, result.error, result.errors)
        return result

    # ------------------------------------------------------------------ seeding

    def seed_deal(
        self, partner: str = "acme", *, contacts: list[dict[str, str]] | None = None, **kw: Any
    ) -> Seeded:
        """A registered deal (see :func:`~connector.testing.world.seed_deal`) whose
        contacts (by default ann@<domain>, in Germany) work at its company."""
        domain = kw.setdefault("domain", "globex.com")
        company = kw.setdefault("company", "Globex")
        if contacts is None:
            contacts = [person(f"ann@{domain}", "DE")]
        contacts = [{"company": company, **c} for c in contacts]
        return seed_deal(self.crm(partner), contacts=contacts, **kw)

    # ------------------------------------------------------------------ looking

    def vendor_contact(self, email: str) -> Record:
        found = [c for c in self.vendor.all("contacts") if c.get("email") == email]
        assert len(found) == 1, f"expected one vendor contact {email}: {found}"
        return found[0]

    def messages(self, kind: str | None = None, status: str | None = None) -> list[OutboxMessage]:
        return self.app.outbox.messages(status=status, kind=kind, limit=100000)

    def consent_messages(self) -> list[OutboxMessage]:
        return [m for m in self.messages() if m.kind in CONSENT_KINDS]

    def by_recipient(self, kind: str | None = None) -> dict[str, OutboxMessage]:
        out: dict[str, OutboxMessage] = {}
        for m in self.messages(kind):
            assert (m.kind, m.recipient) not in {(x.kind, x.recipient) for x in out.values()}
            out[m.recipient] = m
        return out


MakeWorld = Callable[..., World]


def write_project(
    root: Path,
    rules_edit: Callable[[str], str] | None = None,
    mapping_edit: Callable[[str], str] | None = None,
    config: str = CONFIG,
) -> Path:
    return _write_project(
        root, config, rules_edit=rules_edit, mapping_edit=mapping_edit, edits_must_change=True
    )


def build_world(
    root: Path,
    *,
    rules_edit: Callable[[str], str] | None = None,
    mapping_edit: Callable[[str], str] | None = None,
    env: Mapping[str, str] | None = None,
    config: str = CONFIG,
) -> World:
    """A project in ``root`` loaded by ``load_project``, portals on one tick clock;
    ``config`` replaces the two-partner ``dealsync.yaml``."""
    return World.open(write_project(root, rules_edit, mapping_edit, config), env)


def contains_any(text: str, needles: tuple[str, ...] | list[str]) -> list[str]:
    folded = text.casefold()
    return [n for n in needles if n.casefold() in folded]


# ---------------------------------------------------------------------- SMTP


class Recorder:
    """An aiosmtpd handler that keeps every message it is offered. ``refuse`` > 0
    answers that many DATA commands with a temporary failure (451) first."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, list[str], bytes]] = []
        self.offered: list[bytes] = []
        self.refuse = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.original_content or envelope.content)
        self.offered.append(content)
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return f"250 2.0.0 Ok: queued as Q{len(self.accepted):04d}"

    def parsed(self) -> list[Message]:
        return [message_from_bytes(raw) for _, _, raw in self.accepted]


def smtp_server(handler: Recorder, port: int) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


# ---------------------------------------------------------------------- sandbox portals


SANDBOX_TOKENS = {"vendor": "consent-vendor-token", "acme": "consent-acme-token"}
SANDBOX_TOKEN_ENV = {"vendor": "CONSENT_VENDOR_TOKEN", "acme": "CONSENT_ACME_TOKEN"}


def sandbox_specs() -> list[PortalSpec]:
    """The vendor's and acme's HubSpot portals (search consistent at once)."""
    return [
        PortalSpec(name, token, search_lag=(0.0, 0.0)) for name, token in SANDBOX_TOKENS.items()
    ]


@dataclass
class SandboxProgram:
    """A project whose vendor and partner (acme) are HubSpot portals on the sandbox,
    driven through the CLI as an admin does, with a mail sink folder as transport
    (``mail=False``: no transport configured)."""

    root: Path
    server: SandboxServer
    mail: bool = True

    @property
    def sink(self) -> Path:
        return self.root / "sink"

    @property
    def env(self) -> dict[str, str]:
        env = {SANDBOX_TOKEN_ENV[name]: token for name, token in SANDBOX_TOKENS.items()}
        if self.mail:
            env["DEALSYNC_MAIL_SINK"] = str(self.sink)
        return env

    @property
    def vendor(self) -> Portal:
        return self.server.portal("vendor")

    def cli(self, *args: str, ok: bool = True) -> CliResult:
        result = CliRunner().invoke(
            cli_group, ["--config", str(self.root / "dealsync.yaml"), *args], env=self.env
        )
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def register(self, email: str, domain: str, now: datetime, **options: str) -> CliResult:
        """``dealsync register lead`` for acme (``options``: company, country)."""
        args = ["register", "lead", "--partner", "acme", "--domain", domain]
        args += ["--first", "Lea", "--last", "Kurz", "--email", email, "--now", now.isoformat()]
        for name, value in options.items():
            args += [f"--{name}", value]
        return self.cli(*args)

    def sync(self, now: datetime) -> CliResult:
        return self.cli("sync", "--connection", "acme", "--now", now.isoformat())

    def sent(self) -> list[Message]:
        """Every message the mail sink received, as the lead would read it."""
        if not self.sink.is_dir():
            return []
        return [message_from_bytes(p.read_bytes()) for p in sorted(self.sink.glob("*.eml"))]

    def sent_to(self, email: str) -> list[str]:
        """The Content-Language of each message the sink received for ``email``."""
        return [str(m["Content-Language"]) for m in self.sent() if m["To"] == email]

    def subscribe(self, email: str, at: datetime) -> None:
        """The lead subscribes to the vendor's newsletter at ``at`` (the portal records
        the change at that time, as HubSpot's subscription statuses do)."""
        before = self.vendor.clock
        self.vendor.clock = lambda: at
        try:
            self.vendor.set_subscription(email, "1001", True)
        finally:
            self.vendor.clock = before

    def confirm(self, email: str, at: datetime) -> None:
        """The lead confirms its e-mail address with the vendor at ``at``: the vendor
        contact's ``dealsync_email_confirmed`` becomes true then (its history says when)."""
        before = self.vendor.clock
        self.vendor.clock = lambda: at
        try:
            self.vendor.update(
                "contacts", email, {"dealsync_email_confirmed": "true"}, id_property="email"
            )
        finally:
            self.vendor.clock = before

    def web_event(self, email: str, event: str, at: datetime) -> None:
        """The lead does ``event`` on the vendor's site at ``at`` (its ``occurredAt``)."""
        self.vendor.send_event({"eventName": event, "email": email, "occurredAt": at.isoformat()})

    def vendor_company(self, domain: str, name: str, country: str) -> str:
        """A company the vendor already has, in ``country``."""
        return str(
            self.vendor.create("companies", {"domain": domain, "name": name, "country": country})[
                "id"
            ]
        )


def sandbox_program(
    root: Path,
    server: SandboxServer,
    *,
    rules_edit: Callable[[str], str] | None = None,
    mail: bool = True,
) -> SandboxProgram:
    """A project on the sandbox's portals in ``root``, set up through the CLI."""
    config = project_yaml(("acme",), hubspot=HubSpotPortals(server.url, SANDBOX_TOKEN_ENV))
    write_project(root, rules_edit, config=config)
    program = SandboxProgram(root, server, mail)
    program.cli("setup")
    return program
