"""A local, stateful fake HubSpot for tests, demos and benchmarks.

It hosts several portals (one per access token), speaks the subset of HubSpot's CRM,
associations, properties, pipelines, events and communication-preferences APIs that
dealsync uses, and enforces HubSpot's limits (batch sizes, search paging caps, rate
limits) so that the connector is exercised against the same constraints as production.
The real ``hubspot-api-client`` works against it unmodified::

    with SandboxServer([PortalSpec("vendor", "vendor-token")], limits=False) as srv:
        client = HubSpot(access_token="vendor-token", host=srv.url)
"""

from __future__ import annotations

from typing import Any

from connector.sandbox.errors import ApiError
from connector.sandbox.faults import FaultSpec, parse_faults
from connector.sandbox.server import SandboxServer, parse_portal, portal_specs, run_sandbox
from connector.sandbox.store import Portal, PortalSpec

__all__ = [
    "ApiError",
    "FaultSpec",
    "Portal",
    "PortalSpec",
    "SandboxServer",
    "parse_faults",
    "parse_portal",
    "portal_specs",
    "run_salesforce_sandbox_command",
    "run_sandbox",
]


def run_salesforce_sandbox_command(*args: Any, **kwargs: Any) -> None:
    """``dealsync sandbox --salesforce`` (connector/sandbox/salesforce), imported only
    when asked so the HubSpot sandbox does not load TLS and JWT code."""
    from connector.sandbox.salesforce import salesforce_sandbox_command

    salesforce_sandbox_command(*args, **kwargs)
