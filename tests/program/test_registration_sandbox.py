"""The registration flow through two HubSpot sandbox portals (a partner's and the
vendor's), with the HubSpot adapter and the plain hubspot-api-client as the users:
setup, an accepted and a rejected deal registration, closed-won → commission."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connector.api import Dealsync
from connector.config import load_project
from connector.demo import CONFIG, SHIPPED_MAPPINGS, TOKENS, PortalUser
from connector.records import utcnow
from connector.sandbox import PortalSpec, SandboxServer


@pytest.fixture
def portals() -> Iterator[SandboxServer]:
    specs = [
        PortalSpec(name="vendor", token=TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"]),
        PortalSpec(name="partner-acme", token=TOKENS["DEALSYNC_DEMO_ACME_TOKEN"]),
    ]
    with SandboxServer(portals=specs, port=0, limits=False, search_lag=0) as srv:
        yield srv


def _project(root: Path, url: str) -> Path:
    (root / "mappings").mkdir(parents=True)
    for f in SHIPPED_MAPPINGS.glob("*.yaml"):
        (root / "mappings" / f.name).write_text(f.read_text())
    port = url.rsplit(":", 1)[-1]
    (root / "dealsync.yaml").write_text(CONFIG.format(url=url, port=port))
    return root / "dealsync.yaml"


def _seed(user: PortalUser, company: str, domain: str, email: str, amount: str) -> str:
    c = user.create("companies", {"name": company, "domain": domain})
    p = user.create("contacts", {"firstname": "Pat", "lastname": "Doe", "email": email})
    d = user.create(
        "deals",
        {
            "dealname": f"{company} deal",
            "amount": amount,
            "dealstage": "qualifiedtobuy",
            "pipeline": "default",
            "deal_currency_code": "EUR",
            "dealsync_register": "true",
        },
    )
    user.associate("deals", d, "companies", c)
    user.associate("deals", d, "contacts", p)
    return d


def test_registration_and_commission_through_sandbox_portals(
    portals: SandboxServer, tmp_path: Path
) -> None:
    env = dict(TOKENS)
    app = Dealsync(load_project(_project(tmp_path, portals.url), env=env), env=env)
    try:
        partner = PortalUser(portals.url, TOKENS["DEALSYNC_DEMO_ACME_TOKEN"])
        vendor = PortalUser(portals.url, TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"])
        installed = app.setup()
        assert "deals.dealsync_registration_status" in installed["acme"]
        assert "companies.dealsync_owner_partner" in installed["vendor"]
        assert app.setup() == {"vendor": [], "acme": []}  # idempotent

        customer = vendor.create(
            "companies", {"name": "Wayne", "domain": "wayne.com", "lifecyclestage": "customer"}
        )
        globex = _seed(partner, "Globex", "www.globex.com", "hank@globex.com", "48000")
        wayne = _seed(partner, "Wayne", "wayne.com", "lucius@wayne.com", "25000")

        now = utcnow()
        result = app.sync("acme", now=now)
        assert result.status == "ok", result.errors

        regs = {r.domain: r for r in app.registry.registrations("acme")}
        assert regs["globex.com"].status == "accepted"
        assert (regs["wayne.com"].status, regs["wayne.com"].code) == (
            "rejected",
            "already_customer",
        )
        # accepted: the shared deal with its company and contact at the vendor
        vdeal = vendor.find_by("deals", "dealsync_source_id", f"acme:{globex}")
        [vcomp] = vendor.associated("deals", vdeal, "companies")
        assert len(vendor.associated("deals", vdeal, "contacts")) == 1
        owner = vendor.get(
            "companies", vcomp, "domain", "dealsync_owner_partner", "dealsync_registration_id"
        )
        assert owner["dealsync_owner_partner"] == "acme"
        assert owner["dealsync_registration_id"] == str(regs["globex.com"].id)
        back = partner.get("deals", globex, "dealsync_registration_status")
        assert back["dealsync_registration_status"] == "accepted"
        # rejected: the reason on the partner's deal, nothing mirrored
        back = partner.get(
            "deals",
            wayne,
            "dealsync_registration_status",
            "dealsync_registration_code",
            "dealsync_registration_reason",
        )
        assert back["dealsync_registration_status"] == "rejected"
        assert back["dealsync_registration_code"] == "already_customer"
        assert (
            back["dealsync_registration_reason"] == "wayne.com is already a customer of the vendor."
        )
        with pytest.raises(KeyError):
            vendor.find_by("deals", "dealsync_source_id", f"acme:{wayne}")
        assert vendor.get("companies", customer, "dealsync_owner_partner").get(
            "dealsync_owner_partner"
        ) in (None, "")

        # closed-won at the vendor → 20% commission written back to the partner's deal
        vendor.edit("deals", vdeal, {"dealstage": "closedwon"})
        result = app.sync("acme", now=now + timedelta(seconds=5))
        assert result.status == "ok", result.errors
        [c] = app.registry.commissions("acme")
        assert (c.kind, c.vendor_deal_id, c.partner_deal_id, c.currency) == (
            "shared",
            vdeal,
            globex,
            "EUR",
        )
        assert Decimal(c.commission) == Decimal("9600.00")
        assert Decimal(c.mrr) == Decimal("4000.00")
        props = partner.get(
            "deals",
            globex,
            "dealstage",
            "dealsync_commission",
            "dealsync_commission_currency",
            "dealsync_commission_status",
        )
        assert props["dealstage"] == "closedwon"
        assert Decimal(props["dealsync_commission"]) == Decimal("9600")
        assert props["dealsync_commission_currency"] == "EUR"
        assert props["dealsync_commission_status"] == "earned"

        # once: another pass earns nothing more; the tier reflects the credit
        app.sync("acme", now=now + timedelta(seconds=10))
        assert len(app.registry.commissions()) == 1
        [status] = app.status(now + timedelta(seconds=10))
        assert status.tier == "silver" and Decimal(status.credited_mrr) == Decimal("4000.00")
    finally:
        app.close()
