"""Fixtures of the service tests (helpers in ``service_support``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import Harness, PassProbe, write_project
from starlette.testclient import TestClient

from connector.adapters.local import LocalCRM
from connector.service import Service, build_app


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    config = write_project(tmp_path)
    crms = {
        name: LocalCRM(tmp_path / f"{name}.db", name=name) for name in ("vendor", "acme", "globex")
    }
    h = Harness(tmp_path, config, crms, PassProbe())
    yield h
    h.probe.hold.set()
    for svc in h.services:
        svc.stop()


@pytest.fixture
def service(harness: Harness) -> Service:
    return harness.service()


@pytest.fixture
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(build_app(service)) as c:
        yield c
