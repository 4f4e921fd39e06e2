"""Dedicated HubSpot sandbox servers for one test (limits, faults, a lagging search),
started on free ports and all stopped after it; shared by the sandbox and the HubSpot
adapter tests, which differ only in whether limits are on by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from connector.sandbox import PortalSpec, SandboxServer

MakeServer = Callable[..., SandboxServer]


@contextmanager
def server_factory(*, limits: bool) -> Iterator[MakeServer]:
    """``factory(*specs, limits=..., search_lag=0)`` starts a server (``limits``
    defaults to the one given here); every server started is stopped on exit."""
    started: list[SandboxServer] = []
    default_limits = limits

    def factory(
        *specs: PortalSpec, limits: bool = default_limits, search_lag: object = 0
    ) -> SandboxServer:
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

    try:
        yield factory
    finally:
        for srv in started:
            srv.stop()
