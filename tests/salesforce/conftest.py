"""Salesforce sandboxes for one test: started on free ports over HTTPS, each stopped
after it (``make_sandbox(OrgSpec(...), limits=...)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox
from connector.testing.salesforce import CLIENT_ID, CLIENT_SECRET

MakeSandbox = Callable[..., SalesforceSandbox]


@pytest.fixture
def make_sandbox() -> Iterator[MakeSandbox]:
    started: list[SalesforceSandbox] = []

    def make(*specs: OrgSpec, limits: bool = False, **kwargs: Any) -> SalesforceSandbox:
        sf = SalesforceSandbox(
            list(specs) or [OrgSpec("initech", CLIENT_ID, CLIENT_SECRET)], limits=limits, **kwargs
        ).start()
        started.append(sf)
        return sf

    try:
        yield make
    finally:
        for sf in started:
            sf.stop()
