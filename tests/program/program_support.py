"""Helpers for the partner-program tests.

A program world: one vendor LocalCRM, two partner LocalCRMs (acme, beta), one state
store, the shipped mappings and rules, loaded through ``load_project`` and driven by
the public ``Dealsync`` API. The CRMs are SQLite files in the project folder so the
CLI (a separate ``Dealsync``) sees the same data."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.cli import cli
from connector.config import Project
from connector.engine.sync import PassResult
from connector.program.domains import DomainError, registrable_domain
from connector.records import Record
from connector.testing.clock import TickClock as TickClock  # re-exported for the tests

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MAPPINGS = ROOT / "mappings"
SOURCE_ID = "dealsync_source_id"
PARTNERS = ("acme", "beta")

# the moment the rules are applied at (the CRMs run on their own tick clock)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)

CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: local
  path: vendor.db
partners:
  - id: acme
    name: Acme Agency
    adapter: local
    path: partner-acme.db
  - id: beta
    name: Beta Partners
    adapter: local
    path: partner-beta.db
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""


@dataclass
class Seeded:
    deal: Record
    company: Record
    contacts: list[Record] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.deal.id


@dataclass
class Program:
    root: Path
    project: Project
    app: Dealsync
    crms: dict[str, LocalCRM]
    clock: TickClock

    @property
    def vendor(self) -> LocalCRM:
        return self.crms["vendor"]

    def crm(self, partner: str) -> LocalCRM:
        return self.crms[partner]

    @property
    def registry(self) -> Any:
        return self.app.registry

    def sync(self, partner: str = "acme", now: datetime = NOW, **kw: Any) -> PassResult:
        result = self.app.sync(partner, now=now, **kw)
        return result

    def sync_all(self, now: datetime = NOW, **kw: Any) -> list[PassResult]:
        return self.app.sync_all(now=now, **kw)

    # ------------------------------------------------------------------ seeding

    def seed_deal(
        self,
        partner: str = "acme",
        *,
        domain: str | None = "globex.com",
        company: str = "Globex",
        contacts: list[dict[str, str]] | None = None,
        with_company: bool = True,
        registered: bool = True,
        amount: str = "12000",
        stage: str = "qualifiedtobuy",
        currency: str = "EUR",
    ) -> Seeded:
        crm = self.crm(partner)
        comp_props = {"name": company, "country": "US"}
        if domain:
            comp_props["domain"] = domain
        comp = crm.create("companies", comp_props)
        if contacts is None:
            try:
                host = registrable_domain(domain or "")
            except DomainError:
                host = "example.org"
            contacts = [
                {"firstname": "Ann", "lastname": "Lee", "email": f"ann@{host}", "company": company}
            ]
        people = [crm.create("contacts", c) for c in contacts]
        props = {
            "dealname": f"{company} deal",
            "amount": amount,
            "dealstage": stage,
            "pipeline": "default",
            "closedate": "2027-03-31",
            "deal_currency_code": currency,
        }
        if registered:
            props["dealsync_register"] = "true"
        deal = crm.create("deals", props)
        if with_company:
            crm.associate("deals", "companies", [(deal.id, comp.id)])
        if people:
            crm.associate("deals", "contacts", [(deal.id, p.id) for p in people])
        return Seeded(crm.get("deals", deal.id), comp, people)

    def seed_lead(
        self, partner: str = "acme", *, email: str = "carol@initech.de", **props: str
    ) -> Record:
        base = {
            "firstname": "Carol",
            "lastname": "Jones",
            "email": email,
            "company": "Initech",
            "dealsync_register_lead": "true",
        }
        base.update(props)
        return self.crm(partner).create("contacts", {k: v for k, v in base.items() if v})

    def vendor_customer(self, domain: str, **props: str) -> Record:
        return self.vendor.create("companies", {"name": domain, "domain": domain, **props})

    # ------------------------------------------------------------------ looking

    def counterpart(self, partner: str, obj: str, partner_id: str) -> Record | None:
        key = f"{partner}:{partner_id}"
        found = [r for r in self.vendor.all(obj) if r.get(SOURCE_ID) == key]
        assert len(found) <= 1, f"duplicate vendor {obj}: {found}"
        return found[0] if found else None

    def vendor_companies(self, domain: str) -> list[Record]:
        return [c for c in self.vendor.all("companies") if c.get("domain") == domain]

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(
            cli, ["--config", str(self.root / "dealsync.yaml"), *args], catch_exceptions=False
        )


MakeProgram = Callable[..., Program]


def write_project(root: Path, rules_edit: Callable[[str], str] | None = None) -> Path:
    (root / "mappings").mkdir(parents=True, exist_ok=True)
    for f in SHIPPED_MAPPINGS.glob("*.yaml"):
        shutil.copy(f, root / "mappings" / f.name)
    if rules_edit is not None:
        rules = root / "mappings" / "rules.yaml"
        rules.write_text(rules_edit(rules.read_text()))
    (root / "dealsync.yaml").write_text(CONFIG)
    return root / "dealsync.yaml"
