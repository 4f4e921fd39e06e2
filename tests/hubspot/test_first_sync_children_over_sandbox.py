"""Issue 17: a first sync with the program's hooks reads the companies and contacts of
each chunk of deals with that chunk, over two sandbox portals: the companies by a search
on ``hs_object_id`` (the search budget, 200 a call), the contacts by batch read (the
general budget, beside those searches), and of the contacts it detects only those
flagged as leads. The outcome on both portals is the one of holding every company and
contact whole first (the contacts then listed); an incremental pass searches as before.
"""

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
from connector.engine.sync import SyncPass
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


def held_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass as before: every company and contact detected and held first."""
    monkeypatch.setattr(SyncPass, "read_with_stream", lambda self, order, streamed: {})


def test_first_hooked_sync_reads_the_children_with_the_deals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world(tmp_path / "streamed") as (srv, app):
        streamed = app.sync("acme")
        assert streamed.status == "ok", streamed.errors
        # no listing; the recycle bins of the contacts (the leads' search) and deals
        assert "partner.list" not in streamed.api_calls, streamed.api_calls
        assert streamed.api_calls.get("partner.list_archived") == 2, streamed.api_calls
        searches = paths(srv, "acme", "search")
        # the leads' search and no other: the contacts are read by batch read
        assert searches["/crm/v3/objects/contacts/search"] == 1, searches
        # the 150 deals' companies in one search by id, and no detection of them
        assert searches["/crm/v3/objects/companies/search"] == 1, searches
        assert searches["/crm/v3/objects/deals/search"] == 1, searches
        reads = paths(srv, "acme", "batch_read")
        assert reads["/crm/v3/objects/contacts/batch/read"] == 2, reads  # 150 at 100 a call
        assert reads["/crm/v3/objects/companies/batch/read"] == 0, reads
        after_streamed = contents(srv)
        vendor_calls = settled_stats(srv, "vendor")["by_kind"]

    with world(tmp_path / "held") as (srv, app):
        held_whole(monkeypatch)
        held = app.sync("acme")
        assert held.status == "ok", held.errors
        assert held.api_calls.get("partner.list") == 2, held.api_calls  # the contacts
        after_held = contents(srv)
        # the vendor portal is asked the same either way
        assert settled_stats(srv, "vendor")["by_kind"] == vendor_calls

    read_with = {k: v for k, v in streamed.counts.items() if k.startswith("read with deals ")}
    # said in the pass's counts: what was read with the deals (the rest no deal shares)
    assert read_with == {"read with deals companies": N, "read with deals contacts": N}
    assert streamed.counts - Counter(read_with) == held.counts
    assert streamed.counts["created vendor contacts"] == N  # not the unshared one
    assert after_streamed == after_held


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


def test_a_partner_portal_without_the_lead_flag_syncs_and_says_none_is_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A partner portal ``dealsync setup`` has not given the lead flag (a partner added
    later): the leads' search is refused (no such property), which means no contact is
    flagged; the first sync goes on with the deals' contacts and says so."""
    with world(tmp_path) as (srv, app):
        srv.portal("acme").archive_property("contacts", "dealsync_register_lead")
        result = app.sync("acme")
        assert result.status == "ok", (result.error, result.errors)
        flagged = (
            "contacts flagged by dealsync_register_lead: none (no such property; dealsync setup)"
        )
        assert result.counts[flagged] == 1, result.counts
        assert result.counts["created vendor contacts"] == N
        assert "run `dealsync setup`" in caplog.text
        run = app.store.run(result.run_id or 0)
        assert run is not None and run.counts[flagged] == 1  # `dealsync runs` shows it
