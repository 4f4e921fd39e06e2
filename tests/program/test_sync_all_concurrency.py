"""Issue 17: ``sync --all`` runs up to K connections' passes at once (threads), so
the vendor portal's budget serves one pass while another reads its partner's portal.

The vendor's portal is on the HubSpot sandbox (the real hubspot-api-client, which may
be called from several threads); the partners' CRMs are embedded files. A hook
records how many passes are between detection and their end at once; the first
passes to arrive wait for each other there (a barrier, not a clock), so passes that
really run at once are seen meeting, and passes run one after another never do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.local import LocalCRM
from connector.api import UNUSABLE, Dealsync
from connector.api.app import ALL_STAGE, default_hooks
from connector.config import load_project
from connector.engine.hooks import BaseHook
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.world import HubSpotPortals, ann, project_yaml, seed_deal, write_project

TOKEN = "all17-vendor-token"
ENV = {"ALL17_VENDOR_TOKEN": TOKEN}
PARTNERS = ("acme", "beta", "globex")


class Meet(BaseHook):
    """Counts the passes in flight (after detection, before the pass's end); the first
    ``parties`` passes to get there wait for each other (at most ``patience`` seconds,
    so passes that never meet fail instead of hanging)."""

    name = "meet"

    def __init__(self, parties: int, patience: float = 20.0) -> None:
        self.parties = parties
        self.barrier = threading.Barrier(parties, timeout=patience)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.arrived = 0

    def after_detect(self, ctx: Any, seen: Any) -> None:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            first = self.arrived < self.parties
            self.arrived += 1
        if first:
            self.barrier.wait()

    def after_pass(self, ctx: Any) -> None:
        with self.lock:
            self.in_flight -= 1


class Scene:
    def __init__(self, root: Path, srv: SandboxServer, tokens: dict[str, str]) -> None:
        self.srv = srv
        portals = HubSpotPortals(srv.url, {"vendor": "ALL17_VENDOR_TOKEN", **tokens})
        self.config = write_project(root, project_yaml(PARTNERS, hubspot=portals))
        self.project = load_project(self.config, env=ENV, partner_env=False)
        self.on_hubspot = set(tokens)

    def seed(self) -> None:
        for i, pid in enumerate(PARTNERS):
            if pid in self.on_hubspot:
                continue
            partner = self.project.config.partner(pid)
            assert partner.path is not None
            crm = LocalCRM(self.project.resolve(partner.path), name=pid)
            for k in range(2):
                name = f"Co{i}x{k}"
                domain = f"{name.lower()}.com"
                seed_deal(
                    crm,
                    company=name,
                    domain=domain,
                    dealname=f"{pid} {k}",
                    contacts=[ann(domain, name)],
                )

    def app(self, *extra: BaseHook, env: dict[str, str] | None = None) -> Dealsync:
        app = Dealsync(
            self.project,
            env=ENV if env is None else env,
            hooks=[*default_hooks(self.project), *extra],
        )
        return app

    def vendor_deals(self) -> list[str]:
        portal = self.srv.portal("vendor")
        return sorted(
            r.props.get("dealname", "") for r in portal.records["deals"].values() if not r.archived
        )


@pytest.fixture
def scene(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Scene]:
    """``tokens`` (an indirect parameter): partners on HubSpot, by their token
    variable (not set: the connection cannot run)."""
    tokens = getattr(request, "param", {})
    with SandboxServer([PortalSpec("vendor", TOKEN)], port=0, limits=False, search_lag=0) as srv:
        s = Scene(tmp_path, srv, tokens)
        setup = s.app()
        report = setup.setup_checked()  # a partner whose token is not set is told
        assert set(report.failed) == set(tokens), report.failed
        setup.close()
        s.seed()
        yield s


def end_state(scene: Scene, app: Dealsync, results: list[Any]) -> Any:
    return (
        [(r.connection, r.status, dict(r.counts)) for r in results],
        {pid: app.store.link_counts(pid) for pid in PARTNERS},
        scene.vendor_deals(),
    )


def test_passes_run_at_once_and_meet(scene: Scene) -> None:
    meet = Meet(2)
    app = scene.app(meet)
    results = app.sync_all(concurrency=2)
    assert [r.connection for r in results] == list(PARTNERS)  # the partners' order
    assert [r.status for r in results] == ["ok"] * len(PARTNERS), [r.error for r in results]
    assert meet.most >= 2  # two passes were in flight at once
    assert meet.in_flight == 0
    app.close()


@pytest.mark.parametrize("k", [1, 3])
def test_k_passes_at_once_end_where_one_after_another_does(
    tmp_path: Path, scene: Scene, k: int
) -> None:
    app = scene.app()
    results = app.sync_all(concurrency=k)
    state = end_state(scene, app, results)
    app.close()
    assert [r.connection for r in results] == list(PARTNERS)
    assert all(r.status == "ok" for r in results)
    # what one after another gives (k=1) is what k at once gives: each pass its own
    each = {
        "read with deals companies": 2,  # a first sync reads them with the deals
        "read with deals contacts": 2,
        "created vendor deals": 2,
        "created vendor companies": 2,
        "created vendor contacts": 2,
        "associated deals→companies": 2,
        "associated deals→contacts": 2,
    }
    assert [dict(r.counts) for r in results] == [each] * len(PARTNERS)
    # every partner's two deals are shared with the vendor, once
    assert state[2] == sorted(f"{pid} {n}" for pid in PARTNERS for n in range(2))
    for pid in PARTNERS:
        assert state[1][pid].get("deals", {}).get("active") == 2, state[1][pid]
    # and a second cycle at once finds nothing to do
    again = scene.app().sync_all(concurrency=k)
    assert all(not any(c.startswith("created") for c in r.counts) for r in again), [
        r.counts for r in again
    ]
    assert scene.vendor_deals() == state[2]


@pytest.mark.parametrize("scene", [{"globex": "ALL17_GLOBEX_TOKEN"}], indirect=True)
def test_an_unusable_partner_is_reported_and_the_others_run_at_once(scene: Scene) -> None:
    # globex's portal is on HubSpot with a token variable that is not set
    meet = Meet(2)
    app = scene.app(meet)
    results = app.sync_all(concurrency=2)
    by = {r.connection: r for r in results}
    assert [r.connection for r in results] == list(PARTNERS)
    assert by["globex"].status == UNUSABLE
    assert "ALL17_GLOBEX_TOKEN" in (by["globex"].error or "")
    assert all(by[p].status == "ok" for p in PARTNERS if p != "globex")
    assert meet.most >= 2
    app.close()


def test_passes_at_once_show_one_progress_over_the_connections(scene: Scene) -> None:
    # each pass's own stages (detect, apply...) would take the one display in turns
    # and restart it; with passes at once the display counts the ended connections
    shown: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def progress(stage: str, done: int, total: int) -> None:
        with lock:
            shown.append((stage, done, total))

    app = scene.app(Meet(2))
    results = app.sync_all(concurrency=2, progress=progress)
    app.close()
    assert all(r.status == "ok" for r in results)
    assert shown == [(ALL_STAGE, k, len(PARTNERS)) for k in range(1, len(PARTNERS) + 1)]
