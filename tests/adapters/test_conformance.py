"""Both adapters pass the same conformance kit (``connector/testing/adapter_suite.py``):
LocalCRM directly, and the HubSpot adapter through the official client over a
sandbox portal with no search-index lag (the kit still polls index reads)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from connector.adapters.hubspot import HubSpotAdapter
from connector.adapters.local import LocalCRM
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing.adapter_suite import (
    ADAPTER_CHECKS,
    Check,
    LocalBackdoor,
    SandboxBackdoor,
    Subject,
    check_id,
)

_TOKENS = itertools.count(1)


@pytest.fixture
def sandbox_subject() -> Iterator[Subject]:
    # a fresh token per test: the client-side limiter is cached per (host, token)
    token = f"conformance-{next(_TOKENS)}"
    srv = SandboxServer(
        portals=[PortalSpec(name="conf", token=token, search_lag=0.0)], port=0, limits=False
    ).start()
    try:
        adapter = HubSpotAdapter(
            token=token,
            host=srv.url,
            name="conf",
            rate_limit_per_10s=100_000,
            search_rate_per_s=10_000.0,
            max_attempts=3,
        )
        yield Subject(adapter, SandboxBackdoor(srv.portal("conf")))
    finally:
        srv.stop()


@pytest.mark.parametrize("check", ADAPTER_CHECKS, ids=check_id)
def test_local_crm_conforms(check: Check) -> None:
    crm = LocalCRM(name="conf")
    check(Subject(crm, LocalBackdoor(crm)))


@pytest.mark.parametrize("check", ADAPTER_CHECKS, ids=check_id)
def test_hubspot_adapter_conforms(check: Check, sandbox_subject: Subject) -> None:
    check(sandbox_subject)


def test_kit_covers_every_protocol_method() -> None:
    """A method added to the Protocol without a check here fails this test."""
    from connector.adapters.base import CRMAdapter

    methods = {
        name
        for name in vars(CRMAdapter)
        if not name.startswith("_") and callable(getattr(CRMAdapter, name))
    }
    import inspect

    import connector.testing.adapter_suite as kit

    text = inspect.getsource(kit)
    missing = {m for m in methods if f"adapter.{m}(" not in text}
    assert not missing, f"no conformance check calls {sorted(missing)}"
