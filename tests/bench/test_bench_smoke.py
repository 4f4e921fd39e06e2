"""Smoke run of the benchmark script at a tiny size (CI). No timing assertions: speed is
measured by ``scripts/bench.py`` itself and reported in docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_bench_tiny_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--size",
            "50",
            "--limits",
            "off",
            "--scenarios",
            "1,2,3,4",
            "--json",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    got = {(r["scenario"], r["variant"]) for r in rows}
    for scn in (1, 2, 3):
        for variant in ("product", "engine", "naive"):
            assert (scn, variant) in got, (scn, variant)
    for r in rows:
        assert r["calls"] > 0 and r["min_calls"] > 0
        if r["variant"] != "naive":
            assert r["status"] == "ok", r
            assert r["n_errors"] == 0, r["errors"]
            assert r["rate_limited_429"] == 0  # limits off: nothing to bounce off
    by = {(r["scenario"], r["variant"]): r for r in rows}
    # the initial sync created every record at the vendor, in both variants
    for variant in ("product", "engine"):
        counts = by[(1, variant)]["counts"]
        for obj in ("deals", "companies", "contacts"):
            assert counts.get(f"created vendor {obj}") == 50, counts
        assert by[(2, variant)]["counts"].get("updated deals", 0) == 0
        assert sum(by[(3, variant)]["counts"].get(f"updated {o}", 0) for o in
                   ("deals", "companies", "contacts")) == 50  # fmt: skip
    engine = report["engine"]
    assert engine["pairs"] == 100_000 and engine["fields"] == 10
    assert engine["actions"] > 0
    assert {t["target"] for t in report["targets"]}  # targets were evaluated
    assert "scn" in proc.stdout  # the table was printed


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("dealsync_bench", ROOT / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [49_751, 100_000])
def test_bench_project_for_large_sizes_loads_with_room_for_every_registration(
    tmp_path: Path, size: int
) -> None:
    """Issue 17: at N > 49,750 the bench's tiers asked for more capacity than a rules
    file may hold, and the project failed to load. Up to N = 100,000 it loads, and its
    largest tier holds N registrations (the product variant registers every deal)."""
    bench = _bench_module()
    bench.write_project(tmp_path, "http://127.0.0.1:9", size)
    env = {"BENCH_VENDOR_TOKEN": "v", "BENCH_PARTNER_TOKEN": "p"}
    project = load_project(tmp_path / "dealsync.yaml", env=env)
    assert max(t.capacity for t in project.rules.tiers) >= size
