"""Fixtures of the scale-out tests: the state (and the queue) on PostgreSQL — each test
a fresh schema of the module's database, skipped when no PostgreSQL answers — and the
scale-out packages (the ``[scale]`` extra), skipped when missing."""

from __future__ import annotations

import pytest

pytest.importorskip("procrastinate", reason="the [scale] extra is not installed")


@pytest.fixture
def state_backend() -> str:
    """The queue lives in the state's database: PostgreSQL only."""
    return "postgres"
