"""Smoke run of the benchmark script at a tiny size (CI). No timing assertions: speed is
measured by ``scripts/bench.py`` itself and reported in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
