"""Fixtures for the sandbox tests: servers on free ports and real HubSpot clients.

Each test module gets its own server so that record counts stay predictable; limits are
off except where a test builds a dedicated server to exercise them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hubspot import HubSpot

from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.sandbox import MakeServer, server_factory

VENDOR = "vendor-token"
PARTNER = "partner-token"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    """Two portals, limits off."""
    specs = [
        PortalSpec(name="vendor", token=VENDOR, portal_id=1001),
        PortalSpec(
            name="partner",
            token=PARTNER,
            portal_id=2002,
            deal_stages=["new", "working", "won", "lost"],
        ),
    ]
    # search answers at once here: these tests are about what search finds, not when
    # (tests/sandbox/test_sandbox_consistency.py is about when)
    with SandboxServer(portals=specs, host="127.0.0.1", port=0, limits=False, search_lag=0) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: SandboxServer) -> HubSpot:
    """A real hubspot-api-client for the vendor portal."""
    return HubSpot(access_token=VENDOR, host=server.url)


@pytest.fixture(scope="module")
def partner_client(server: SandboxServer) -> HubSpot:
    """A real hubspot-api-client for the partner portal."""
    return HubSpot(access_token=PARTNER, host=server.url)


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Factory for dedicated servers (limits, faults); stopped after the test."""
    with server_factory(limits=True) as factory:
        yield factory
