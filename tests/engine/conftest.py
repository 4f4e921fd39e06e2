"""The engine and state-store suites run on SQLite and, when a server answers, on
PostgreSQL (``DEALSYNC_TEST_POSTGRES_URL`` or 127.0.0.1:5432; skipped otherwise)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def state_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["one-chunk", "chunk-of-1"])
def detect_chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Streaming: detection hands partner records to apply in chunks; with chunks of one
    record every record is its own small pass, which must converge to the same state."""
    if request.param == "chunk-of-1":
        monkeypatch.setattr("connector.engine.sync.DETECT_CHUNK", 1)
    return str(request.param)
