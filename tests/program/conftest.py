"""Fixtures for the partner-program tests (helpers live in ``program_support``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from program_support import MakeProgram, Program, write_project

from connector.api import Dealsync


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
        program = Program.open(write_project(tmp_path / name, rules_edit))
        apps.append(program.app)
        return program

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def program(make_program: MakeProgram) -> Program:
    return make_program()
