"""Fixtures for the HubSpot adapter tests (helpers live in ``hs_support``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.testing.sandbox import MakeServer, server_factory


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Factory for dedicated sandbox servers; all stopped after the test."""
    with server_factory(limits=False) as factory:
        yield factory
