"""Fixtures for the HubSpot adapter tests (helpers live in ``hs_support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from connector.sandbox import PortalSpec, SandboxServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., SandboxServer]]:
    """Factory for dedicated sandbox servers; all stopped after the test."""
    started: list[SandboxServer] = []

    def factory(*specs: PortalSpec, limits: bool = False) -> SandboxServer:
        srv = SandboxServer(portals=list(specs), port=0, limits=limits).start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
