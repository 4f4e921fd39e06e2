"""Issue 17: a first sync with the program's hooks reads the contacts by HubSpot's list
endpoint (the portal's general budget) while the companies are searched (the search
budget), over two sandbox portals. The outcome on both portals is the one the search
path gives; an incremental pass searches as before."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hs_support import FakeTime, make_adapter, settled_stats

from connector.adapters.hubspot import HubSpotAdapter
from connector.api import Dealsync
from connector.config import load_project
from connector.config.models import PortalConfig
from connector.records import utcnow
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, project_yaml, write_project

ENV = {"HS_VENDOR_TOKEN": "list-vendor", "HS_ACME_TOKEN": "list-acme"}
N = 150  # deals, each with a company and a contact: two list pages of contacts
# what differs between two portals holding the same records: times and HubSpot's own
VOLATILE = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_object_id"}
SOURCE_ID = "dealsync_source_id"
OWNED_UNTIL = "dealsync_owned_until"


def room(rules: str) -> str:
    """The shipped rules with tiers that take every deal seeded here (10–50 shipped)."""
    for shipped in (10, 25, 50):
        rules = rules.replace(f"capacity: {shipped}\n", f"capacity: {N + 50}\n")
    return rules


@contextmanager
def world(tmp_path: Path) -> Iterator[tuple[SandboxServer, Dealsync]]:
    """Two fresh sandbox portals (no search lag), the shipped mappings and hooks, and
    the partner's records seeded: N registered deals with a company and a contact each,
    a contact on no deal (never shared), and an archived contact."""
    specs = [PortalSpec("vendor", ENV["HS_VENDOR_TOKEN"]), PortalSpec("acme", ENV["HS_ACME_TOKEN"])]
    with SandboxServer(specs, port=0, limits=False, search_lag=0) as srv:
        portals = HubSpotPortals(srv.url, {"vendor": "HS_VENDOR_TOKEN", "acme": "HS_ACME_TOKEN"})
        config = write_project(tmp_path, project_yaml(hubspot=portals), rules_edit=room)
        project = load_project(config, env=ENV)
        ft = FakeTime()

        def factory(name: str, portal: PortalConfig) -> HubSpotAdapter:
            return make_adapter(srv.url, ENV[portal.token_env or ""], name=name, ft=ft)

        app = Dealsync(project, env=ENV, adapter_factory=factory)
        app.setup()
        partner = srv.portal("acme")
        companies = partner.seed(
            "companies", [{"name": f"Co {i}", "domain": f"co{i}.com"} for i in range(N)]
        )
        contacts = partner.seed(
            "contacts",
            [
                {"firstname": f"F{i}", "lastname": f"L{i}", "email": f"p{i}@co{i}.com"}
                for i in range(N + 2)
            ],
        )
        deals = partner.seed(
            "deals",
            [
                {
                    "dealname": f"Deal {i}",
                    "amount": str(1000 + i),
                    "dealstage": "qualifiedtobuy",
                    "pipeline": "default",
                    "closedate": "2027-06-30",
                    "dealsync_register": "true",
                }
                for i in range(N)
            ],
        )
        for d, c, p in zip(deals, companies, contacts, strict=False):
            partner.associate("deals", d, "companies", c)
            partner.associate("deals", d, "contacts", p)
        partner.archive("contacts", contacts[-1])
        srv.reset_stats()
        try:
            yield srv, app
        finally:
            app.close()


def contents(srv: SandboxServer) -> dict[str, Any]:
    """Both portals' records (live and archived) and the deals' associations, as two
    passes over the same records must leave them: partner records by id, vendor
    records by their source id (the vendor's own ids follow the order of its creates
    within a batch), times left out (``dealsync_owned_until`` is the pass's time
    plus the ownership period: only whether it is set)."""
    out: dict[str, Any] = {}
    for name in ("acme", "vendor"):
        portal = srv.portal(name)
        key: dict[str, str] = {}
        if name == "vendor":
            for obj in ("deals", "companies", "contacts"):
                for r in [*portal.all(obj), *portal.all(obj, archived=True)]:
                    key[str(r["id"])] = str(r["properties"].get(SOURCE_ID))
        for obj in ("deals", "companies", "contacts"):
            rows = []
            for r in [*portal.all(obj), *portal.all(obj, archived=True)]:
                rid = str(r["id"])
                props = {k: v for k, v in (r["properties"] or {}).items() if k not in VOLATILE}
                if props.get(OWNED_UNTIL):
                    props[OWNED_UNTIL] = "set"
                assoc = [
                    sorted(
                        key.get(t, t)
                        for t in (
                            str(a["toObjectId"]) for a in portal.associations_of(obj, rid, to)
                        )
                    )
                    for to in (("companies", "contacts") if obj == "deals" else ())
                ]
                rows.append(
                    (key.get(rid, rid), bool(r.get("archived")), sorted(props.items()), assoc)
                )
            out[f"{name}.{obj}"] = sorted(rows)
    return out


def paths(srv: SandboxServer, name: str, kind: str) -> Counter[str]:
    """The requests of one kind a portal served, by path."""
    settled_stats(srv, name)
    return Counter(c["path"] for c in srv.portal(name).calls if c["kind"] == kind)


def searched_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass as before listing: every object searched."""
    monkeypatch.setattr("connector.engine.sync.plan_listing", lambda jobs, held, crm: list(jobs))


def test_first_hooked_sync_lists_contacts_beside_company_searches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world(tmp_path / "listed") as (srv, app):
        listed = app.sync("acme")
        assert listed.status == "ok", listed.errors
        # the contacts (N + 1 live: 2 pages of 100) listed, the recycle bins listed as
        # before (one page per type), the companies and deals searched
        assert listed.api_calls.get("partner.list") == 2, listed.api_calls
        assert listed.api_calls.get("partner.list_archived") == 3, listed.api_calls
        searches = paths(srv, "acme", "search")
        assert searches["/crm/v3/objects/contacts/search"] == 0, searches
        assert searches["/crm/v3/objects/companies/search"] == 1, searches
        assert searches["/crm/v3/objects/deals/search"] == 1, searches
        lists = paths(srv, "acme", "list")
        assert lists["/crm/v3/objects/contacts"] == 2 + 1, lists  # + its recycle bin
        assert lists["/crm/v3/objects/companies"] == 1, lists
        after_listing = contents(srv)
        vendor_calls = settled_stats(srv, "vendor")["by_kind"]

    with world(tmp_path / "searched") as (srv, app):
        searched_only(monkeypatch)
        searched = app.sync("acme")
        assert searched.status == "ok", searched.errors
        assert "partner.list" not in searched.api_calls, searched.api_calls
        assert paths(srv, "acme", "search")["/crm/v3/objects/contacts/search"] == 1
        after_search = contents(srv)
        # the vendor portal is asked the same either way
        assert settled_stats(srv, "vendor")["by_kind"] == vendor_calls

    assert listed.counts == searched.counts
    assert listed.counts["created vendor contacts"] == N  # not the unshared one
    assert after_listing == after_search


def test_incremental_pass_searches_its_window(tmp_path: Path) -> None:
    with world(tmp_path) as (srv, app):
        first = app.sync("acme")
        assert first.status == "ok", first.errors
        partner = srv.portal("acme")
        [contact] = [
            str(r["id"])
            for r in partner.all("contacts")
            if r["properties"]["email"] == "p3@co3.com"
        ]
        partner.update("contacts", contact, {"firstname": "Changed"})
        srv.reset_stats()
        again = app.sync("acme", now=utcnow() + timedelta(seconds=1))
        assert again.status == "ok", again.errors
        assert "partner.list" not in again.api_calls, again.api_calls
        searches = paths(srv, "acme", "search")
        assert searches["/crm/v3/objects/contacts/search"] == 1, searches
        assert paths(srv, "acme", "list")["/crm/v3/objects/contacts"] == 1  # the recycle bin
        vendor = srv.portal("vendor")
        names = {r["properties"].get("firstname") for r in vendor.all("contacts")}
        assert "Changed" in names
