"""``dealsync demo --partner-crm salesforce``: the tour with a partner on Salesforce.

The same program as the HubSpot tour (:mod:`connector.demo`), the partner's CRM
being a Salesforce org: the offline Salesforce sandbox serves it over HTTPS (its own
CA, written into the demo folder), the vendor stays a HubSpot sandbox portal. The
partner's connection names the shipped ``mappings/salesforce_partner.yaml``; a
partner user works in the org through the plain ``simple-salesforce`` client, and
real passes run through the public API, the same code path as ``dealsync sync``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from connector.api import Dealsync
from connector.config import load_project
from connector.demo import (
    DEMO_SEARCH_LAG,
    SEED,
    TOKENS,
    Echo,
    PortalUser,
    _outbox,
    _prepare,
    _review_step,
    _Settled,
    _show,
    _vendor_led_win,
)
from connector.records import utcnow

ORG = "partner-acme"
SF_CLIENT = {
    "DEALSYNC_DEMO_ACME_SF_CLIENT_ID": "demo-acme-connected-app",
    "DEALSYNC_DEMO_ACME_SF_CLIENT_SECRET": "demo-acme-secret",
}
CA_DIR = "salesforce-sandbox"
# HubSpot's default pipeline stage → the Salesforce picklist value the mapping pairs it with
SF_STAGE = {
    "appointmentscheduled": "Prospecting",
    "qualifiedtobuy": "Qualification",
    "presentationscheduled": "Needs Analysis",
}

CONFIG = """\
# Written by `dealsync demo --partner-crm salesforce`: the vendor on a HubSpot (sandbox)
# portal, partner acme on a Salesforce org (the Salesforce sandbox, its CA in {ca_dir}/).
# Both sandboxes ran in-process; start them with `dealsync sandbox` and export the
# variables of .env to use this project again.
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: DEALSYNC_DEMO_VENDOR_TOKEN
  host: {hubspot}
partners:
  - id: acme
    name: Acme Agency
    notify_email: alerts@acme-agency.example
    adapter: salesforce
    login_url: {salesforce}
    client_id_env: DEALSYNC_DEMO_ACME_SF_CLIENT_ID
    client_secret_env: DEALSYNC_DEMO_ACME_SF_CLIENT_SECRET
    ca_bundle: {ca_dir}/sandbox-ca.pem
    # a Salesforce partner's own mapping: Opportunity/Account/Contact, StageName...
    mappings: [mappings/salesforce_partner.yaml]
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""


class SalesforceUser:
    """A person working in the partner's Salesforce org, through simple-salesforce."""

    def __init__(self, sandbox: Any, client_id: str, secret: str) -> None:
        from connector.sandbox.salesforce.login import client_credentials_token, simple_salesforce

        self._sf = simple_salesforce(sandbox, client_credentials_token(sandbox, client_id, secret))

    def create(self, sobject: str, fields: dict[str, Any]) -> str:
        return str(getattr(self._sf, sobject).create(fields)["id"])

    def edit(self, sobject: str, rid: str, fields: dict[str, Any]) -> None:
        getattr(self._sf, sobject).update(rid, fields)

    def get(self, sobject: str, rid: str) -> dict[str, Any]:
        return dict(getattr(self._sf, sobject).get(rid))


def run_salesforce_demo(directory: str | None = None, *, echo: Echo = print) -> int:
    """Run the tour with a Salesforce partner; returns the exit code (0 when every step
    behaved)."""
    from connector.sandbox import PortalSpec, SandboxServer
    from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox

    vendor_only = [PortalSpec(name="vendor", token=TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"])]
    org = OrgSpec(
        ORG,
        SF_CLIENT["DEALSYNC_DEMO_ACME_SF_CLIENT_ID"],
        SF_CLIENT["DEALSYNC_DEMO_ACME_SF_CLIENT_SECRET"],
    )
    with SandboxServer(portals=vendor_only, port=0, limits=True, search_lag=DEMO_SEARCH_LAG) as srv:
        root = _prepare(directory, srv.url)
        with SalesforceSandbox([org], cert_dir=str(root / CA_DIR)) as sf:
            (root / "dealsync.yaml").write_text(
                CONFIG.format(hubspot=srv.url, salesforce=sf.url, ca_dir=CA_DIR)
            )
            with (root / ".env").open("a") as env_file:
                env_file.write("".join(f"{k}={v}\n" for k, v in SF_CLIENT.items()))

            def settle() -> None:
                deadline = time.monotonic() + 30
                while any(p.pending_index() for p in srv.portals) and time.monotonic() < deadline:
                    time.sleep(0.05)

            partner = SalesforceUser(sf, *SF_CLIENT.values())
            return _tour(root, srv.url, sf.url, partner, echo, settle)


def _tour(
    root: Path,
    hubspot_url: str,
    salesforce_url: str,
    partner: SalesforceUser,
    echo: Echo,
    settle: Callable[[], None],
) -> int:
    echo(f"dealsync demo in {root}")
    echo(f"HubSpot sandbox at {hubspot_url}: the vendor's portal, HubSpot's rate limits on")
    echo(
        f"Salesforce sandbox at {salesforce_url}: partner Acme's org (HTTPS, its CA in "
        f"{CA_DIR}/), the org's 24-hour API allocation counted\n"
    )
    env = {**os.environ, **TOKENS, **SF_CLIENT, "DEALSYNC_MAIL_SINK": str(root / "mail")}
    real = Dealsync(load_project(root / "dealsync.yaml", env=env), env=env)
    app = _Settled(real, settle)
    vendor = PortalUser(hubspot_url, TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"])
    installed = app.setup()
    echo(
        f"dealsync setup: created {len(installed.get('acme', []))} custom fields in the org "
        f"(dealsync_source_id__c, dealsync_register__c, ...) and "
        f"{len(installed.get('vendor', []))} properties in the vendor's portal"
    )
    vendor.create(
        "companies",
        {"name": "Wayne Enterprises", "domain": "wayne.com", "lifecyclestage": "customer"},
    )
    echo("the vendor already has Wayne Enterprises (wayne.com) as a customer")
    deals: list[str] = []
    for company, domain, country, first, last, email, dname, amount, stage, registered in SEED:
        account = partner.create(
            "Account",
            {"Name": company, "Website": f"https://www.{domain}/", "BillingCountry": country},
        )
        contact = partner.create(
            "Contact",
            {"FirstName": first, "LastName": last, "Email": email, "MailingCountry": country}
            | {"AccountId": account},
        )
        fields: dict[str, Any] = {
            "Name": dname,
            "Amount": float(amount),
            "StageName": SF_STAGE[stage],
            "CloseDate": "2027-03-31",
            "AccountId": account,
        }
        if registered:
            fields["dealsync_register__c"] = "true"
        deal = partner.create("Opportunity", fields)
        partner.create("OpportunityContactRole", {"OpportunityId": deal, "ContactId": contact})
        deals.append(deal)
    echo(
        f"a partner user created {len(SEED)} Opportunities, each with an Account (its Website) "
        f"and a Contact role, {sum(1 for s in SEED if s[-1])} of them marked for registration\n"
    )
    globex, initech, umbrella, wayne = deals[0], deals[1], deals[2], deals[4]

    echo("1. First pass: registered Opportunities, their Accounts and Contacts appear at the")
    echo("   vendor as deals, companies and contacts (StageName → dealstage, Website → domain).")
    r = app.sync("acme")
    _show(echo, r)
    vdeal = {
        d: vendor.find_by("deals", "dealsync_source_id", f"acme:{d}")
        for d in (globex, initech, umbrella)
    }
    for vid in vdeal.values():
        props = vendor.get("deals", vid, "dealname", "amount", "dealstage")
        companies = vendor.associated("deals", vid, "companies")
        domains = [vendor.get("companies", c, "domain")["domain"] for c in companies]
        echo(
            f"     vendor deal {vid}: {props['dealname']!r} amount {props['amount']} stage "
            f"{props['dealstage']}, company {domains}, contacts "
            f"{vendor.associated('deals', vid, 'contacts')}"
        )
    echo("     the unregistered Hooli Opportunity stays private to the partner.")
    for reg in app.registry.registrations("acme"):
        echo(
            f"     registration of {reg.domain}: {reg.status}"
            + (f" ({reg.code})" if reg.code else "")
        )
    wb = partner.get("Opportunity", wayne)
    echo(
        f"     written back to the Wayne Opportunity: {wb['dealsync_registration_status__c']}: "
        f"{wb['dealsync_registration_reason__c']!r}; nothing mirrored to the vendor\n"
    )

    echo("2. A vendor user marks Globex closed-won; the Opportunity's StageName follows and, the")
    echo("   domain being owned by Acme, a 20% commission is earned and written to it.")
    vendor.edit("deals", vdeal[globex], {"dealstage": "closedwon"})
    r = app.sync("acme")
    _show(echo, r)
    opp = partner.get("Opportunity", globex)
    echo(
        f"     Opportunity Globex: StageName {opp['StageName']!r}, dealsync_commission__c "
        f"{opp['dealsync_commission__c']} {opp['dealsync_commission_currency__c'] or ''}".rstrip()
    )
    for com in app.registry.commissions("acme"):
        echo(
            f"     commission #{com.id}: {com.rate} x {com.amount} = {com.commission}; "
            f"MRR credit {com.mrr}"
        )
    echo("")

    echo(
        "3. Both sides edit Initech's amount; policy `newest` keeps the later edit (the vendor's)."
    )
    partner.edit("Opportunity", initech, {"Amount": 13000})
    time.sleep(1.1)  # Salesforce stamps modifications to the second
    vendor.edit("deals", vdeal[initech], {"amount": "14250"})
    r = app.sync("acme")
    _show(echo, r)
    echo(
        f"     Opportunity Amount {partner.get('Opportunity', initech)['Amount']} / vendor amount "
        f"{vendor.get('deals', vdeal[initech], 'amount')['amount']}\n"
    )

    echo("4. Both sides rewrite Umbrella's description; that field is `manual`: a conflict opens.")
    partner.edit("Opportunity", umbrella, {"Description": "Pilot for 50 seats"})
    vendor.edit("deals", vdeal[umbrella], {"description": "Pilot, security review pending"})
    r = app.sync("acme")
    _show(echo, r)
    for conflict in app.store.conflicts("acme"):
        echo(
            f"     conflict #{conflict.id}: {conflict.object} {conflict.field}: "
            f"partner={conflict.partner_value!r} vendor={conflict.vendor_value!r}"
        )
    echo("     (resolve with: dealsync conflicts resolve ID --take vendor)\n")

    echo("5. Consent e-mails after the registrations (each Contact's MailingCountry decides):")
    _outbox(echo, app)
    echo(
        "     Initech's contact is in Germany: asked for consent at once. Umbrella's (France) gets"
    )
    echo("     a notice after 30 days; Globex's (US) gets none. No e-mail names the partner.\n")

    echo("6. Someone at Initech requests a demo on the vendor's site; Acme owns initech.de,")
    echo("   so Acme hears which company did what and when, never who.")
    vendor.send_event("pe_demo_requested", "bill@initech.de")
    r = app.sync("acme")
    _show(echo, r)
    for m in app.outbox.messages(kind="lead_notification"):
        echo(f"     to {m.recipient}: {m.subject!r}")
    echo("")

    later = utcnow() + timedelta(days=31)
    echo(
        f"7. A pass as of 31 days later (dealsync sync --now {later:%Y-%m-%dT%H:%M}Z): the EU notice is due."
    )
    r = app.sync("acme", now=later)
    _show(echo, r)
    _outbox(echo, app, kind="data_notice")
    echo("")

    echo("8. One more pass right after: nothing to write, nothing to send.")
    before = len(app.outbox.messages(limit=100000))
    r = app.sync("acme", now=later)
    _show(echo, r)
    writes = sum(v for k, v in r.counts.items() if k.startswith(("created", "updated", "archived")))
    new_mail = len(app.outbox.messages(limit=100000)) - before
    echo(f"     writes in this pass: {writes}; new e-mails: {new_mail}\n")

    led = _vendor_led_win(echo, app, vendor)
    approved = _review_step(echo, real, later)

    echo("Summary")
    for st in app.status():
        links = ", ".join(f"{obj} {c.get('active', 0)}" for obj, c in sorted(st.links.items()))
        echo(f"  {st.partner} (Salesforce): linked {links}; open conflicts {st.open_conflicts}")
    echo(
        f"  runs recorded: {len(app.store.runs('acme', 100))} (dealsync --config "
        f"{root / 'dealsync.yaml'} runs)"
    )
    app.close()
    regs = {reg.domain: reg.status for reg in app.registry.registrations("acme")}
    kinds = {(m.kind, m.recipient, m.status) for m in app.outbox.messages(limit=100000)}
    ok = (
        ("consent_request", "bill@initech.de", "sent") in kinds
        and ("data_notice", "alice@umbrella.fr", "sent") in kinds
        and any(k[0] == "lead_notification" and k[2] == "sent" for k in kinds)
        and opp["StageName"] == "Closed Won"
        and new_mail == 0
        and writes == 0
        and r.status in ("ok", "conflicts")
        and len(app.store.conflicts("acme")) == 1
        and regs.get("wayne.com") == "rejected"
        and regs.get("globex.com") == "accepted"
        and len(app.registry.commissions("acme")) == 2
        and led
        and approved
    )
    return 0 if ok else 2
