"""Fixtures for the partner-program tests (helpers live in ``program_support``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from program_support import MakeProgram, Program, TickClock, write_project

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.testing.world import local_factory


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for the SQLite files: on tmpfs when there is one (SQLite's fsyncs on a
    real disk make these tests several times slower), else pytest's tmp_path."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="dealsync-program-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_program(fast_dir: Path) -> Iterator[MakeProgram]:
    apps: list[Dealsync] = []
    tmp_path = fast_dir

    def build(name: str = "program", rules_edit: Callable[[str], str] | None = None) -> Program:
        root = tmp_path / name
        project = load_project(write_project(root, rules_edit), env={})
        clock = TickClock()
        crms: dict[str, LocalCRM] = {}
        factory = local_factory(project, crms, clock)

        app = Dealsync(project, env={}, adapter_factory=factory)
        apps.append(app)
        app.setup()
        return Program(root, project, app, crms, clock)

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def program(make_program: MakeProgram) -> Program:
    return make_program()
