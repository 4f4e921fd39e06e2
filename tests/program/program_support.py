"""Helpers for the partner-program tests.

A program world: one vendor LocalCRM, two partner LocalCRMs (acme, beta), one state
store, the shipped mappings and rules, loaded through ``load_project`` and driven by
the public ``Dealsync`` API. The CRMs are SQLite files in the project folder so the
CLI (a separate ``Dealsync``) sees the same data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.engine.sync import PassResult
from connector.program.domains import DomainError, registrable_domain
from connector.records import Record
from connector.testing.clock import TickClock as TickClock  # re-exported for the tests
from connector.testing.world import FileCRMWorld, ann, project_yaml, seed_deal
from connector.testing.world import Seeded as Seeded  # re-exported for the tests
from connector.testing.world import write_project as _write_project

PARTNERS = ("acme", "beta")

# the moment the rules are applied at (the CRMs run on their own tick clock)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)

CONFIG = project_yaml(PARTNERS)


class Program(FileCRMWorld):
    """Two partners registering deals and leads with one vendor."""

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
        self, partner: str = "acme", *, contacts: list[dict[str, str]] | None = None, **kw: Any
    ) -> Seeded:
        """A registered deal (see :func:`~connector.testing.world.seed_deal`); its one
        contact is Ann at the company's registrable domain (example.org when it has none)."""
        domain = kw.setdefault("domain", "globex.com")
        company = kw.setdefault("company", "Globex")
        if contacts is None:
            try:
                host = registrable_domain(domain or "")
            except DomainError:
                host = "example.org"
            contacts = [ann(host, company)]
        return seed_deal(self.crm(partner), contacts=contacts, **kw)

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

    def vendor_companies(self, domain: str) -> list[Record]:
        return [c for c in self.vendor.all("companies") if c.get("domain") == domain]


MakeProgram = Callable[..., Program]


def write_project(root: Path, rules_edit: Callable[[str], str] | None = None) -> Path:
    return _write_project(root, CONFIG, rules_edit=rules_edit)
