"""The engine and state-store suites run on SQLite and, when a server answers, on
PostgreSQL (``DEALSYNC_TEST_POSTGRES_URL`` or 127.0.0.1:5432; skipped otherwise)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
