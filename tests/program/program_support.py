"""Helpers for the partner-program tests.

A program world: one vendor LocalCRM, two partner LocalCRMs (acme, beta), one state
store, the shipped mappings and rules, loaded through ``load_project`` and driven by
the public ``Dealsync`` API. The CRMs are SQLite files in the project folder so the
CLI (a separate ``Dealsync``) sees the same data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from connector.testing.world import Seeded as Seeded  # re-exported for the tests
from connector.testing.world import project_yaml, seed_deal
from connector.testing.world import write_project as _write_project

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MAPPINGS = ROOT / "mappings"
SOURCE_ID = "dealsync_source_id"
PARTNERS = ("acme", "beta")

# the moment the rules are applied at (the CRMs run on their own tick clock)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)

CONFIG = project_yaml(PARTNERS)


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
        if contacts is None:
            try:
                host = registrable_domain(domain or "")
            except DomainError:
                host = "example.org"
            contacts = [
                {"firstname": "Ann", "lastname": "Lee", "email": f"ann@{host}", "company": company}
            ]
        return seed_deal(
            self.crm(partner),
            company=company,
            domain=domain,
            contacts=contacts,
            with_company=with_company,
            registered=registered,
            amount=amount,
            stage=stage,
            currency=currency,
        )

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
    return _write_project(root, CONFIG, rules_edit=rules_edit)
