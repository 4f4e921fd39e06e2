"""CI's small seeded chaos campaign (the full one: ``scripts/chaos.py --campaigns 1000``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def chaos(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["product", "engine-only"])
def test_a_small_seeded_campaign_finds_no_violation(mode: str) -> None:
    """``engine-only`` runs without hooks: detection then streams into apply. The
    newer faults are on by default: a misbehaving SMTP server (product path only —
    without hooks nothing is mailed), webhook deliveries failing midway, and contacts
    and companies deleted and created again."""
    extra = ["--engine-only"] if mode == "engine-only" else []
    proc, summary = chaos("--campaigns", "10", "--seed", "1", "--sandbox-every", "5", *extra)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert summary["campaigns"] == 10 and summary["sandbox_campaigns"] == 2
    assert summary["invariant_violations"] == 0
    assert summary["crashes"] > 0 and summary["faults_injected"] > 0
    assert summary["webhook_deliveries"] > 0 and summary["webhook_failures"] > 0
    assert summary["recreates"] > 0
    if mode == "product":
        assert summary["smtp_campaigns"] > 0 and summary["smtp_faults"] > 0
    else:
        assert summary["smtp_campaigns"] == 0


def test_each_newer_fault_can_be_left_out() -> None:
    """With the three flags a campaign is the one it was before those faults existed."""
    proc, summary = chaos(
        "--campaigns", "3", "--seed", "1", "--no-smtp", "--no-webhooks", "--no-recreate"
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "--no-smtp --no-webhooks --no-recreate" in proc.stdout.splitlines()[0]
    new = ("smtp_campaigns", "smtp_faults", "webhook_deliveries", "webhook_failures", "recreates")
    assert [summary[k] for k in new] == [0] * len(new)
    assert summary["passes"] > 0 and summary["invariant_violations"] == 0
