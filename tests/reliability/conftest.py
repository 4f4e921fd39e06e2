"""Fixtures of the reliability suite (helpers live in ``rel_support``). Nothing here
is parametrised: the modules that run on both databases say so with their own
``state_backend`` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rel_support import FileWorld, MakeFileWorld, scratch_dir


@pytest.fixture
def make_file_world(
    tmp_path: Path, state_backend: str, state_url_factory: Callable[[str], str]
) -> Iterator[MakeFileWorld]:
    """``build(name, **kw)``: a :class:`FileWorld` in RAM on the test's state backend
    (a fresh PostgreSQL schema each); all closed after the test."""
    base = scratch_dir(tmp_path)
    worlds: list[FileWorld] = []

    def build(name: str, **kw: Any) -> FileWorld:
        url = None if state_backend == "sqlite" else state_url_factory(name)
        w = FileWorld(base / name, url, **kw)
        worlds.append(w)
        return w

    yield build
    for w in worlds:
        w.close()
