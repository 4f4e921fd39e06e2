"""CI's small seeded chaos campaign (the full one: ``scripts/chaos.py --campaigns 1000``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mode", ["product", "engine-only"])
def test_a_small_seeded_campaign_finds_no_violation(mode: str) -> None:
    """``engine-only`` runs without hooks: detection then streams into apply."""
    extra = ["--engine-only"] if mode == "engine-only" else []
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "chaos.py"),
            "--campaigns",
            "10",
            "--seed",
            "1",
            "--sandbox-every",
            "5",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["campaigns"] == 10 and summary["sandbox_campaigns"] == 2
    assert summary["invariant_violations"] == 0
    assert summary["crashes"] > 0 and summary["faults_injected"] > 0
