"""What many registrations cost at the vendor (issue 17): a partner registers 250 deals,
each at its own domain, in one pass against two HubSpot sandbox portals. The vendor has
none of the domains. Counted through the sandbox's own request log:

* the domain lookups are batched to HubSpot's search limits (5 filter groups of one IN
  filter with 100 values, each domain looked up with and without ``www.``): the 500
  values take one search, not one per 100 values;
* the ownership of each accepted registration rides on the create of its vendor
  company: no separate ownership update.

Then every side is checked: each registration accepted and its vendor ownership marked
written, each vendor company carrying its partner, its registration and the end date.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.api import Dealsync
from connector.config import load_project
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, write_project

DOMAINS = 250
TOKENS = {"CALLS_VENDOR_TOKEN": "calls-vendor", "CALLS_PARTNER_TOKEN": "calls-acme"}


@pytest.fixture
def portals() -> Iterator[SandboxServer]:
    specs = [
        PortalSpec(name="vendor", token=TOKENS["CALLS_VENDOR_TOKEN"]),
        PortalSpec(name="partner-acme", token=TOKENS["CALLS_PARTNER_TOKEN"]),
    ]
    with SandboxServer(portals=specs, port=0, limits=False, search_lag=0) as srv:
        yield srv


def _room(rules: str) -> str:
    """Tiers with room for every registration (the shipped ones hold 10–50)."""
    for shipped in (10, 25, 50):
        rules = rules.replace(f"capacity: {shipped}\n", f"capacity: {2 * DOMAINS}\n")
    return rules


def _app(root: Path, url: str) -> Dealsync:
    hubspot = HubSpotPortals(url, {"vendor": "CALLS_VENDOR_TOKEN", "acme": "CALLS_PARTNER_TOKEN"})
    config = project_yaml(notify={"acme": "alerts@acme.example"}, hubspot=hubspot)
    path = write_project(root, config, rules_edit=_room)
    env = {**TOKENS, "DEALSYNC_MAIL_SINK": str(root / "mail")}
    (root / "mail").mkdir()
    return Dealsync(load_project(path, env=env), env=env)


def _seed(srv: SandboxServer, n: int) -> list[str]:
    """``n`` registered partner deals, each with its own company (domain) and contact."""
    portal = srv.portal("partner-acme")
    companies = portal.seed(
        "companies", [{"name": f"Co {i}", "domain": f"co{i}-calls.com"} for i in range(n)]
    )
    contacts = portal.seed(
        "contacts",
        [
            {"firstname": "Pat", "lastname": f"Doe{i}", "email": f"pat{i}@co{i}-calls.com"}
            for i in range(n)
        ],
    )
    deals = portal.seed(
        "deals",
        [
            {
                "dealname": f"Deal {i}",
                "amount": "1000",
                "dealstage": "qualifiedtobuy",
                "pipeline": "default",
                "dealsync_register": "true",
            }
            for i in range(n)
        ],
    )
    for d, c, p in zip(deals, companies, contacts, strict=True):
        portal.associate("deals", d, "companies", c)
        portal.associate("deals", d, "contacts", p)
    return [str(d) for d in deals]


def _vendor_calls(srv: SandboxServer, method: str, path: str) -> int:
    return sum(
        1
        for c in srv.portal("vendor").calls
        if c["method"] == method and c["path"].split("?")[0] == path
    )


@pytest.mark.parametrize("page", [None, 7])
def test_many_registrations_cost_one_search_per_500_domains_and_no_ownership_updates(
    portals: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int | None
) -> None:
    """``page``: the ownership write reads its registrations 7 at a time (at N = 50,000
    its whole list was the pass's peak of memory); the outcome and the calls are the
    same, and no page holds more than 7."""
    from connector.hooks import registration_crm
    from connector.state.registry import Registry

    pages: list[int] = []
    if page is not None:
        monkeypatch.setattr(registration_crm, "OWNERSHIP_PAGE", page)
        original = Registry.pending_vendor_write_pages

        def spy(self: Registry, partner: str, size: int = 5000) -> Iterator[list[Any]]:
            for rows in original(self, partner, size):
                pages.append(len(rows))
                yield rows

        monkeypatch.setattr(Registry, "pending_vendor_write_pages", spy)
    app = _app(tmp_path, portals.url)
    try:
        app.setup()
        deals = _seed(portals, DOMAINS)
        portals.reset_stats()

        result = app.sync("acme")

        assert result.status == "ok", result.errors
        searches = _vendor_calls(portals, "POST", "/crm/v3/objects/companies/search")
        # one page of change detection (the vendor has no companies yet), then the
        # domain lookups: one search per 500 values, a domain being looked up with and
        # without www. (250 domains: one search; at 100 values a search, five)
        assert searches <= 1 + math.ceil(2 * DOMAINS / 500)
        updates = _vendor_calls(portals, "POST", "/crm/v3/objects/companies/batch/update")
        assert updates == 0  # the ownership was written with each company's create

        regs = {r.partner_record_id: r for r in app.registry.registrations("acme")}
        assert sorted(regs) == sorted(deals)
        assert {r.status for r in regs.values()} == {"accepted"}
        assert all(r.vendor_written and r.vendor_company_id for r in regs.values())
        vendor = portals.portal("vendor")
        by_id = {str(c["id"]): c["properties"] for c in vendor.all("companies")}
        assert len(by_id) == DOMAINS
        for reg in regs.values():
            props = by_id[str(reg.vendor_company_id)]
            assert props["domain"] == reg.domain
            assert props["dealsync_owner_partner"] == "acme"
            assert props["dealsync_registration_id"] == str(reg.id)
            assert reg.owned_until is not None
            assert props["dealsync_owned_until"].startswith(reg.owned_until.strftime("%Y-%m-%d"))
        # a second pass has nothing left to write for the program
        assert app.sync("acme").effect_counts() == {}
        if page is not None:  # the first pass's pages (the second had none pending)
            assert pages == [7] * (DOMAINS // 7) + [DOMAINS % 7], pages
    finally:
        app.close()
