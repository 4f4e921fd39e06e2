"""The pieces every test world is built from: a project folder (the shipped mappings
and a ``dealsync.yaml`` naming embedded CRM files), an adapter factory opening those
files on a shared clock, and a partner deal seeded with the records it hangs on.

The test suites' worlds (``tests/conftest.py``, ``tests/*/..._support.py``) differ in
what they hold and check; what they all did the same way lives here once. The shipped
mappings are read from the checkout (``mappings/`` next to ``connector/``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from connector.adapters.local import LocalCRM
from connector.config import Project
from connector.config.models import PortalConfig
from connector.records import Record

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MAPPINGS = ROOT / "mappings"
SOURCE_ID = "dealsync_source_id"
DEFAULT_STATE_URL = "sqlite:///state.db"

Edit = Callable[[str], str]
AdapterFactory = Callable[[str, PortalConfig], LocalCRM]


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


def project_yaml(
    partners: Sequence[str] = ("acme",),
    *,
    state_url: str = DEFAULT_STATE_URL,
    notify: bool = False,
    portal_ids: bool = False,
    extra: str = "",
) -> str:
    """A ``dealsync.yaml`` on embedded CRM files (``vendor.db``, ``partner-<id>.db``):
    ``notify`` adds each partner's ``notify_email``, ``portal_ids`` the HubSpot portal
    ids webhooks are routed by, ``extra`` is appended (e.g. a ``service:`` block)."""
    url = state_url if state_url == DEFAULT_STATE_URL else f"'{state_url}'"
    lines = ["version: 1", f"state_url: {url}", "vendor:", "  name: vendor"]
    lines += ["  adapter: local", "  path: vendor.db"]
    if portal_ids:
        lines.append("  portal_id: 1000")
    lines.append("partners:")
    for pid in partners:
        p = PARTNERS[pid]
        lines += [f"  - id: {p.id}", f"    name: {p.name}"]
        if notify and p.notify_email:
            lines.append(f"    notify_email: {p.notify_email}")
        lines += ["    adapter: local", f"    path: partner-{p.id}.db"]
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
    currency: str = "EUR",
    **extra: str | None,
) -> Seeded:
    """A company (``country: US``), ``contacts`` and a deal (``dealname`` defaults to
    "<company> deal") on a partner's CRM, the deal associated with both;
    ``registered`` sets the flag that makes it a shared deal. None values are left out."""
    comp = crm.create("companies", _present({"name": company, "domain": domain, "country": "US"}))
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


def _present(props: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in props.items() if v is not None}
