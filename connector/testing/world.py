"""The pieces every test world is built from: a project folder (the shipped mappings
and a ``dealsync.yaml`` naming embedded CRM files), an adapter factory opening those
files on a shared clock, and a partner deal seeded with the records it hangs on.

The test suites' worlds (``tests/conftest.py``, ``tests/*/..._support.py``) differ in
what they hold and check; what they all did the same way lives here once. The shipped
mappings are read from the checkout (``mappings/`` next to ``connector/``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Self

from connector.adapters.local import LocalCRM
from connector.config import Project, load_project
from connector.config.models import PortalConfig
from connector.records import Record
from connector.testing.clock import TickClock

if TYPE_CHECKING:
    from click.testing import Result

    from connector.api import Dealsync

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MAPPINGS = ROOT / "mappings"
SOURCE_ID = "dealsync_source_id"
DEFAULT_STATE_URL = "sqlite:///state.db"

Edit = Callable[[str], str]
AdapterFactory = Callable[[str, PortalConfig], LocalCRM]

# HubSpot's default sales pipeline, as the shipped mapping and the sandbox name it
DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)


@dataclass(frozen=True)
class PartnerEntry:
    """One partner of a test project's ``dealsync.yaml``."""

    id: str
    name: str
    notify_email: str | None = None
    portal_id: int | None = None


PARTNERS = {
    "acme": PartnerEntry("acme", "Acme Agency", "alerts@acme-agency.example", 2001),
    "beta": PartnerEntry("beta", "Beta Partners", "leads@beta-partners.example", 2002),
    "globex": PartnerEntry("globex", "Globex Reseller", None, 2002),
}


@dataclass(frozen=True)
class HubSpotPortals:
    """Which portals of a test project are HubSpot portals at ``url`` (the sandbox):
    ``token_env`` names each one's token variable by portal name (``vendor`` or a
    partner id); the others stay embedded CRM files. ``extra`` lines (e.g. rate
    limits) are added to each HubSpot portal."""

    url: str
    token_env: Mapping[str, str]
    extra: Sequence[str] = ()

    def portal(self, name: str) -> list[str] | None:
        """The portal's adapter lines (unindented), None for an embedded CRM file."""
        if name not in self.token_env:
            return None
        lines = ["adapter: hubspot", f"token_env: {self.token_env[name]}", f"host: {self.url}"]
        return lines + list(self.extra)


def project_yaml(
    partners: Sequence[str] = ("acme",),
    *,
    state_url: str = DEFAULT_STATE_URL,
    notify: bool | Mapping[str, str] = False,
    portal_ids: bool = False,
    extra: str = "",
    hubspot: HubSpotPortals | None = None,
) -> str:
    """A ``dealsync.yaml`` on embedded CRM files (``vendor.db``, ``partner-<id>.db``):
    ``notify`` adds each partner's ``notify_email`` (a mapping: these addresses by
    partner id), ``portal_ids`` the HubSpot portal ids webhooks are routed by,
    ``hubspot`` puts the portals it names on HubSpot, ``extra`` is appended (e.g. a
    ``service:`` block)."""

    def adapter(name: str, path: str, indent: str) -> list[str]:
        lines = hubspot.portal(name) if hubspot is not None else None
        return [indent + line for line in (lines or ["adapter: local", f"path: {path}"])]

    url = state_url if state_url == DEFAULT_STATE_URL else f"'{state_url}'"
    lines = ["version: 1", f"state_url: {url}", "vendor:", "  name: vendor"]
    lines += adapter("vendor", "vendor.db", "  ")
    if portal_ids:
        lines.append("  portal_id: 1000")
    lines.append("partners:")
    for pid in partners:
        p = PARTNERS[pid]
        lines += [f"  - id: {p.id}", f"    name: {p.name}"]
        email = notify.get(p.id) if isinstance(notify, Mapping) else notify and p.notify_email
        if email:
            lines.append(f"    notify_email: {email}")
        lines += adapter(p.id, f"partner-{p.id}.db", "    ")
        if portal_ids and p.portal_id is not None:
            lines.append(f"    portal_id: {p.portal_id}")
    lines += ["mappings: [mappings/shared_deals.yaml]", "rules: mappings/rules.yaml"]
    return "\n".join(lines) + "\n" + extra


def write_project(
    root: Path,
    config: str,
    *,
    rules_edit: Edit | None = None,
    mapping_edit: Edit | None = None,
    edits_must_change: bool = False,
) -> Path:
    """``root`` as a project folder: the shipped mappings (``rules_edit`` and
    ``mapping_edit`` rewrite ``rules.yaml`` / ``shared_deals.yaml``; with
    ``edits_must_change`` an edit that changes nothing fails the test) and ``config``
    as ``dealsync.yaml``, whose path is returned."""
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    for f in SHIPPED_MAPPINGS.glob("*.yaml"):
        shutil.copy(f, root / "mappings" / f.name)
    for name, edit in (("rules.yaml", rules_edit), ("shared_deals.yaml", mapping_edit)):
        if edit is not None:
            target = root / "mappings" / name
            before = target.read_text()
            edited = edit(before)
            if edits_must_change:
                assert edited != before, f"the edit of {name} changed nothing"
            target.write_text(edited)
    (root / "dealsync.yaml").write_text(config)
    return root / "dealsync.yaml"


def local_factory(
    project: Project,
    crms: dict[str, LocalCRM],
    clock: Callable[[], datetime] | None = None,
) -> AdapterFactory:
    """An adapter factory opening each portal's CRM file once (kept in ``crms`` by
    portal name), on ``clock`` (None: the real one)."""

    def factory(portal_name: str, portal: PortalConfig) -> LocalCRM:
        if portal_name not in crms:
            assert portal.path is not None
            path = project.resolve(portal.path)
            crms[portal_name] = (
                LocalCRM(path, name=portal_name)
                if clock is None
                else LocalCRM(path, name=portal_name, clock=clock)
            )
        return crms[portal_name]

    return factory


@dataclass
class Seeded:
    """A deal seeded on the partner side with the records it hangs on."""

    deal: Record
    company: Record
    contacts: list[Record] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.deal.id


def seed_deal(
    crm: LocalCRM,
    *,
    company: str = "Globex",
    domain: str | None = "globex.com",
    contacts: Sequence[Mapping[str, str]] = (),
    with_company: bool = True,
    registered: bool = True,
    dealname: str | None = None,
    amount: str | None = "12000",
    stage: str = "qualifiedtobuy",
    closedate: str | None = "2027-03-31",
    currency: str | None = "EUR",
    country: str | None = "US",
    **extra: str | None,
) -> Seeded:
    """A company (in ``country``), ``contacts`` and a deal (``dealname`` defaults to
    "<company> deal") on a partner's CRM, the deal associated with both;
    ``registered`` sets the flag that makes it a shared deal. None values are left out."""
    comp = crm.create(
        "companies", _present({"name": company, "domain": domain, "country": country})
    )
    people = [crm.create("contacts", c) for c in contacts]
    props = {
        "dealname": dealname or f"{company} deal",
        "amount": amount,
        "dealstage": stage,
        "pipeline": "default",
        "closedate": closedate,
        "deal_currency_code": currency,
        **extra,
    }
    if registered:
        props["dealsync_register"] = "true"
    deal = crm.create("deals", _present(props))
    if with_company:
        crm.associate("deals", "companies", [(deal.id, comp.id)])
    if people:
        crm.associate("deals", "contacts", [(deal.id, p.id) for p in people])
    return Seeded(crm.get("deals", deal.id), comp, people)


def ann(domain: str, company: str, **props: str) -> dict[str, str]:
    """The one contact a seeded deal has when a test does not care who it is."""
    return {
        "firstname": "Ann",
        "lastname": "Lee",
        "email": f"ann@{domain}",
        "company": company,
        **props,
    }


def counterpart(vendor: LocalCRM, partner: str, obj: str, partner_id: str) -> Record | None:
    """The live vendor record carrying ``<partner>:<partner_id>`` as its source id
    (a second one fails the test: the connector made a duplicate)."""
    key = f"{partner}:{partner_id}"
    found = [r for r in vendor.all(obj) if r.get(SOURCE_ID) == key]
    assert len(found) <= 1, f"duplicate vendor {obj} for {key}: {found}"
    return found[0] if found else None


def _present(props: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in props.items() if v is not None}


@dataclass
class FileCRMWorld:
    """A project folder whose portals are embedded CRM files (so the CLI, a separate
    ``Dealsync``, sees the same data), opened through ``load_project`` and the public
    ``Dealsync`` API on one tick clock. The suites' worlds add what they look at."""

    root: Path
    project: Project
    app: Dealsync
    crms: dict[str, LocalCRM]
    clock: TickClock

    @classmethod
    def open(cls, config: Path, env: Mapping[str, str] | None = None) -> Self:
        """The world of the project ``config`` (``dealsync.yaml``), set up; ``env``
        is the API's environment (the project itself is loaded with none)."""
        from connector.api import Dealsync

        project = load_project(config, env={})
        clock = TickClock()
        crms: dict[str, LocalCRM] = {}
        app = Dealsync(
            project, env=dict(env or {}), adapter_factory=local_factory(project, crms, clock)
        )
        app.setup()
        return cls(config.parent, project, app, crms, clock)

    @property
    def vendor(self) -> LocalCRM:
        return self.crms["vendor"]

    def crm(self, partner: str = "acme") -> LocalCRM:
        return self.crms[partner]

    def counterpart(self, partner: str, obj: str, partner_id: str) -> Record | None:
        return counterpart(self.vendor, partner, obj, partner_id)

    def cli(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        """The CLI on this project, as a user runs it."""
        from click.testing import CliRunner

        from connector.cli import cli

        return CliRunner().invoke(
            cli,
            ["--config", str(self.root / "dealsync.yaml"), *args],
            env=dict(env or {}),
            catch_exceptions=False,
        )


def run_cli(config: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
    """The CLI on the project ``config`` (``dealsync.yaml``) with only ``env`` set, as a
    user runs it (for projects whose portals are sandbox HubSpot portals, where no
    :class:`FileCRMWorld` is at hand)."""
    from click.testing import CliRunner

    from connector.cli import cli

    return CliRunner().invoke(
        cli, ["--config", str(config), *args], env=dict(env or {}), catch_exceptions=False
    )


def review_rules(text: str, **keys: str) -> str:
    """``rules.yaml`` text with its ``review:`` block replaced by one of these keys (the
    shipped file's block ends at the first blank line), for a ``rules_edit``."""
    block = "review:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())
    cut = re.sub(r"(?ms)^review:\n.*?(?=^\s*$)", "", text, count=1)
    return cut.rstrip("\n") + "\n\n" + block
