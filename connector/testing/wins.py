"""Program scenes on the HubSpot sandbox shared by the scale tests: a lead registered
through the CLI, a deal the vendor wins, and how many searches a portal was asked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from connector.demo import PortalUser
from connector.sandbox import SandboxServer
from connector.testing.world import run_cli


def register_lead(
    config: Path, partner: str, domain: str, *, now: datetime, env: Mapping[str, str]
) -> None:
    """A lead registration of ``partner`` for ``domain`` (Carol Jones, US), by the CLI."""
    out = run_cli(
        config,
        "register", "lead", "--partner", partner, "--domain", domain,
        "--first", "Carol", "--last", "Jones", "--email", f"carol@{domain}",
        "--company", domain, "--country", "US", "--now", now.isoformat(),
        env=env,
    )  # fmt: skip
    assert out.exit_code == 0, out.output


def win_deal(vendor: PortalUser, domain: str, *, closed: datetime) -> str:
    """A won vendor deal (6,000) on a new company of ``domain``; its id."""
    company = vendor.create("companies", {"name": domain, "domain": domain})
    deal = vendor.create(
        "deals",
        {"dealname": domain, "pipeline": "default", "dealstage": "closedwon",
         "amount": "6000", "closedate": closed.isoformat()},
    )  # fmt: skip
    vendor.associate("deals", deal, "companies", company)
    return deal


def searches(srv: SandboxServer, portal: str, object_type: str) -> int:
    """How many searches of ``object_type`` the sandbox's ``portal`` has answered."""
    return sum(
        1
        for c in srv.portal(portal).calls
        if c["path"].rstrip("/").endswith(f"{object_type}/search")
    )
