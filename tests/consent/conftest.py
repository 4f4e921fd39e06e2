"""Fixtures for the consent / notification / outbox tests (helpers in ``consent_support``).

The projects (state store and the CRMs' SQLite files) live in RAM (``/dev/shm``) when
the machine has it: every SQLite commit on disk is an fsync, and these tests commit a
lot; the behaviour is the same, only faster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consent_support import MakeWorld, World, build_world


def _scratch(fallback: Path) -> tuple[Path, bool]:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="dealsync-consent-", dir=shm)), True
    return fallback, False


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    root, owned = _scratch(tmp_path)
    yield root
    if owned:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def module_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root, owned = _scratch(tmp_path_factory.mktemp("module"))
    yield root
    if owned:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_world(scratch: Path) -> Iterator[MakeWorld]:
    """Build a world in ``scratch/name`` (several per test allowed); closed afterwards."""
    worlds: list[World] = []

    def build(name: str = "world", **kw: Any) -> World:
        w = build_world(scratch / name, **kw)
        worlds.append(w)
        return w

    yield build
    for w in worlds:
        w.app.close()


@pytest.fixture
def world(make_world: MakeWorld) -> World:
    return make_world()
