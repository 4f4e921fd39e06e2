"""Smoke runs of the benchmark's issue-17 parts at tiny sizes: the product variant's own
lower bound, the DACH/EU consent scenario (5) and the many-partners scenario (6). No
timing assertions: the figures are measured by ``scripts/bench.py`` and reported in
docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    """``scripts/bench.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("dealsync_bench", ROOT / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), *args, "--json", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "product bound" in proc.stdout  # the product-bound table was printed
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_product_bound_is_the_engine_bound_plus_the_programs_batched_work() -> None:
    """The definition in docs/benchmarks.md: the program's lookups at their API maxima
    on top of the engine's bound, from the work's counts."""
    bench = _bench()
    n = 10_000
    work = bench.ProgramWork(registrations=n, domain_values=2 * n, won_stages=1)
    got = bench.product_bound(1, n, None, work)
    engine = bench.lower_bound(1, n)["calls"]
    # 2N domain spellings at 5 groups × 100 values, N decisions at 100 per batch update,
    # one won-deal search; ownership rides in the upsert (no call)
    assert got["calls"] == engine + math.ceil(2 * n / 500) + math.ceil(n / 100) + 1
    # consent: statuses and contact properties in batches of 100, the engagement events
    # once per event type when notices are due
    consent = bench.ProgramWork(consent_due=250, notices_due=250, engagement_events=3)
    assert bench.product_bound(2, n, None, consent)["calls"] == (
        bench.lower_bound(2, n)["calls"] + 2 * math.ceil(250 / 100) + 3
    )


def test_the_first_sync_listing_is_a_trade_next_to_the_bound_not_in_it() -> None:
    """The product lists the contacts on a first sync (100 a page, for 50 searches at
    200 at N = 10,000): the bound stays the fewest calls; the trade is reported beside
    it, and the time bound is the shorter of the two ways."""
    bench = _bench()
    n = 10_000
    work = bench.ProgramWork(registrations=n, domain_values=2 * n, won_stages=1)
    got = bench.product_bound(1, n, None, work)
    assert got["calls"] == 630
    assert sum(got["trade"].values()) == 100 - 50
    assert got["traded"]["calls"] == 680
    row = bench.add_product_bound({"calls": 680}, got, 40.0, True)
    assert row["product_min_calls"] == 630 and row["product_calls_ratio"] == 1.079
    assert row["product_trade_calls"] == 50 and row["product_traded_calls_ratio"] == 1.0
    assert row["product_time_bound_s"] == round(min(got["time_s"], got["traded"]["time_s"]), 2)
    # incremental passes search: nothing traded
    assert bench.listing_trade(2, n) == {} and bench.listing_trade(3, n) == {}
    assert bench.product_bound(2, n, None, bench.ProgramWork())["trade"] == {}


@pytest.mark.timeout(600)
def test_bench_consent_and_many_partners_tiny(tmp_path: Path) -> None:
    size, partners = 12, 2
    report = _run(
        tmp_path,
        *("--size", str(size), "--partners", str(partners), "--limits", "off"),
        *("--scenarios", "5,6", "--variants", "product", "--naive-sample", "0"),
    )
    by = {r["scenario"]: r for r in report["rows"]}
    assert set(by) == {"5a", "5b", 6}
    for r in by.values():
        assert r["status"] == "ok" and r["n_errors"] == 0, r
        assert r["rate_limited_429"] == 0  # limits off
        assert r["product_min_calls" if r["scenario"] != 6 else "vendor_min_calls"] > 0

    # (5a) initial sync: the German and Austrian contacts' consent is decided at once
    a = by["5a"]
    countries = a["contacts_by_country"]
    assert set(countries) == {"DE", "AT", "FR"} and sum(countries.values()) == size
    assert a["program_work"]["consent_due"] == countries["DE"] + countries["AT"]
    assert a["counts"].get("created vendor contacts") == size
    # consent statuses are read in batches (communication preferences v4), not per contact
    assert any(k.startswith("vendor.commprefs") for k in a["calls_by_side_kind"]), sorted(
        a["calls_by_side_kind"]
    )
    assert a["product_min_calls"] > a["min_calls"]  # the program's work is in the bound
    # (5b) 31 days on: the French contacts' notices are due, engagement events read
    b = by["5b"]
    assert b["now_shift_days"] == 31
    assert b["program_work"]["notices_due"] == countries["FR"]
    assert b["calls_by_side_kind"].get("vendor.events_read", 0) > 0

    # (6) one `sync --all` of P partners × M deals against one vendor portal
    six = by[6]
    assert six["partners"] == partners and six["size"] == size
    assert six["counts"].get("created vendor deals") == partners * size
    assert 0 < six["vendor_calls"] <= six["calls"]
    assert six["vendor_utilisation"] > 0

    names = {t["target"] for t in report["targets"]}
    assert any("product's bound" in t for t in names)
    assert any("vendor portal's bound" in t for t in names)


@pytest.mark.timeout(600)
def test_bench_product_rows_carry_the_product_bound(tmp_path: Path) -> None:
    report = _run(
        tmp_path,
        *("--size", "20", "--limits", "off", "--scenarios", "1,2"),
        *("--variants", "product", "--naive-sample", "0"),
    )
    rows = {r["scenario"]: r for r in report["rows"]}
    first = rows[1]
    # counted from the seeded data: every deal registered, each with its own domain
    assert first["program_work"]["registrations"] == 20
    assert first["program_work"]["domain_values"] == 2 * 20
    assert rows[2]["program_work"]["registrations"] == 0  # decided in the first pass
    # the engine's bound stays in min_calls; the product's is larger by the program's work
    assert first["product_min_calls"] > first["min_calls"]
    assert any("decisions written back" in k for k in first["product_min_parts"])
    # the first sync's listing of the contacts: 1 list page for 1 search at N = 20
    assert first["product_trade_calls"] == 0 and first["product_trade_parts"]
    assert rows[2]["product_trade_calls"] == 0 and not rows[2]["product_trade_parts"]
    assert rows[2]["product_min_calls"] >= rows[2]["min_calls"]


class _Logged:
    """A sandbox portal's log of served calls, as ``budget_timeline`` reads it."""

    def __init__(self, calls: list[tuple[float, str, int]]) -> None:
        self.calls = [{"at": at, "kind": kind, "status": status} for at, kind, status in calls]


class _Server:
    def __init__(self, **portals: _Logged) -> None:
        self._portals = portals

    def portal(self, name: str) -> _Logged:
        return self._portals[name]


def test_the_budget_timeline_shows_when_each_budget_started_and_how_busy_it_was() -> None:
    """The vendor's writes starting 10 s after the partner's first search show as the
    vendor budget's first call at 10 s; a 429 is not a served call."""
    bench = _bench()
    partner = _Logged([(100.0, "search", 200), (100.2, "search", 200), (100.4, "search", 429)])
    vendor = _Logged([(110.0 + i / 10, "batch_upsert", 200) for i in range(11)])
    out = bench.budget_timeline(_Server(p=partner, v=vendor), {"partner": "p", "vendor": "v"})
    assert out["partner search"] == {
        "calls": 2,
        "first_s": 0.0,
        "half_s": 0.2,
        "last_s": 0.2,
        "busy": 1.0,
        "per_s": [2],
    }
    assert out["vendor other"]["calls"] == 11 and out["vendor other"]["first_s"] == 10.0
    assert out["vendor other"]["busy"] == 1.0  # 11 calls in 1 s at 10/s: saturated
    assert out["vendor other"]["per_s"] == [0] * 10 + [10, 1]
    assert "vendor search" not in out and "partner other" not in out
