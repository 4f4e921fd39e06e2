"""Fixtures of the scale-out tests: the state (and the queue) on PostgreSQL — each test
a fresh schema of the module's database, skipped when no PostgreSQL answers — and the
scale-out packages (the ``[scale]`` extra), skipped when missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("procrastinate", reason="the [scale] extra is not installed")

if TYPE_CHECKING:
    from connector.testing.queue import Deployment


@pytest.fixture
def state_backend() -> str:
    """The queue lives in the state's database: PostgreSQL only."""
    return "postgres"


@pytest.fixture
def deployment(tmp_path: Path, state_url_factory: Callable[[str], str]) -> Iterator[Deployment]:
    """Two connections (acme, globex) on PostgreSQL with a queue, and their serve."""
    from connector.testing.queue import Deployment

    world = Deployment.create(tmp_path, state_url_factory("deployment"))
    yield world
    world.close()
