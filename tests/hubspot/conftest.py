"""Fixtures for the HubSpot adapter tests (helpers live in ``hs_support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from connector.sandbox import PortalSpec, SandboxServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., SandboxServer]]:
    """Factory for dedicated sandbox servers; all stopped after the test."""
    started: list[SandboxServer] = []

    def factory(*specs: PortalSpec, limits: bool = False, search_lag: object = 0) -> SandboxServer:
        """``search_lag=0`` unless a test asks: the sandbox's default lag is for the
        tests about consistency and the sync passes over the sandbox."""
        srv = SandboxServer(
            portals=list(specs),
            port=0,
            limits=limits,
            search_lag=search_lag,  # type: ignore[arg-type]
        ).start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
