"""``dealsync demo``: a guided tour on two HubSpot sandbox portals, from a fresh clone.

It starts the offline HubSpot sandbox in-process (a partner portal and a vendor
portal, HubSpot's rate limits on), writes a self-contained project into a folder
(config, mappings, state), seeds registered deals on the partner portal with the plain
``hubspot-api-client`` — as a partner's user would — and runs real passes through the
public API, the same code path as ``dealsync sync``, narrating what each shows.
``--partner-crm salesforce`` runs the tour with the partner on a Salesforce org of the
offline Salesforce sandbox instead (:func:`run_salesforce_demo`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from hubspot import HubSpot
from urllib3.util.retry import Retry

from connector.api import Dealsync, register_lead
from connector.config import load_project
from connector.engine.sync import PassResult
from connector.records import utcnow

Echo = Callable[[str], None]

# package data in a wheel; in a clone a link to the repository's mappings/
SHIPPED_MAPPINGS = Path(__file__).resolve().parent / "shipped_mappings"


def hubspot_project_yaml(
    url: str,
    vendor_token_env: str,
    partner_token_env: str,
    *,
    notify_email: str | None = None,
    portal_keys: Mapping[str, object] | None = None,
) -> str:
    """A ``dealsync.yaml`` of a vendor portal and one partner (acme) on HubSpot portals
    at ``url`` (a sandbox), each token in the named variable; ``portal_keys`` are more
    keys for both portals (rate limits). The demo, the benchmarks and the sandbox tests
    write their projects with it."""

    def portal(indent: str, token_env: str) -> list[str]:
        keys = {"adapter": "hubspot", "token_env": token_env, "host": url, **(portal_keys or {})}
        return [f"{indent}{k}: {v}" for k, v in keys.items()]

    lines = ["version: 1", "state_url: sqlite:///state.db", "vendor:", "  name: vendor"]
    lines += [*portal("  ", vendor_token_env), "partners:", "  - id: acme", "    name: Acme Agency"]
    if notify_email:
        lines.append(f"    notify_email: {notify_email}")
    lines += portal("    ", partner_token_env)
    lines += ["mappings: [mappings/shared_deals.yaml]", "rules: mappings/rules.yaml"]
    return "\n".join(lines) + "\n"


CONFIG = (
    "# Written by `dealsync demo`: two HubSpot (sandbox) portals and one partner connection.\n"
    "# The sandbox ran in-process at {url}; start one with `dealsync sandbox --port {port}`\n"
    "# and export the two tokens to use this project again.\n"
) + hubspot_project_yaml(
    "{url}",
    "DEALSYNC_DEMO_VENDOR_TOKEN",
    "DEALSYNC_DEMO_ACME_TOKEN",
    notify_email="alerts@acme-agency.example",
)
"""The demo's ``dealsync.yaml``, to be filled in with ``.format(url=..., port=...)``."""
TOKENS = {
    "DEALSYNC_DEMO_VENDOR_TOKEN": "demo-vendor-token",
    "DEALSYNC_DEMO_ACME_TOKEN": "demo-acme-token",
}


class PortalUser:
    """A person working in one HubSpot portal, through the plain hubspot-api-client."""

    def __init__(self, url: str, token: str) -> None:
        # a person shares the portal's rate budget with dealsync: a 429 is waited out
        # and tried again, as HubSpot's own UI does, instead of ending the tour
        retry = Retry(total=8, backoff_factor=0.5, status_forcelist=(429,), allowed_methods=None)
        client = HubSpot(access_token=token, host=url, retry=retry)
        crm = client.crm
        self._basic = {t: getattr(crm, t).basic_api for t in ("deals", "companies", "contacts")}
        self._assoc = crm.associations.v4.basic_api
        self._events = client.events.send.basic_api

    def create(self, object_type: str, properties: dict[str, str]) -> str:
        return str(self._basic[object_type].create({"properties": properties}).id)

    def edit(self, object_type: str, rid: str, properties: dict[str, str]) -> None:
        self._basic[object_type].update(rid, {"properties": properties})

    def get(self, object_type: str, rid: str, *props: str) -> dict[str, Any]:
        obj = self._basic[object_type].get_by_id(rid, properties=list(props))
        return dict(obj.properties)

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self._assoc.create_default(from_type, from_id, to_type, to_id)

    def associated(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        page = self._assoc.get_page(from_type, from_id, to_type)
        return [str(r.to_object_id) for r in page.results or []]

    def send_event(self, event_name: str, email: str) -> None:
        """The contact with this e-mail did something on the vendor's site."""
        self._events.send({"eventName": event_name, "email": email})

    def find_by(self, object_type: str, prop: str, value: str) -> str:
        """The id of the record whose ``prop`` is ``value`` (list, no search lag)."""
        after = None
        while True:
            page = self._basic[object_type].get_page(limit=100, after=after, properties=[prop])
            for obj in page.results or []:
                if obj.properties.get(prop) == value:
                    return str(obj.id)
            if not page.paging or not page.paging.next:
                raise KeyError(f"no {object_type} with {prop}={value}")
            after = page.paging.next.after


# (company, domain, country, first, last, email, deal name, amount, stage, registered)
SEED = [
    ("Globex", "globex.com", "US", "Hank", "Scorpio", "hank@globex.com",
     "Globex platform", "48000.00", "qualifiedtobuy", True),
    ("Initech", "initech.de", "DE", "Bill", "Lumbergh", "bill@initech.de",
     "Initech rollout", "12500", "presentationscheduled", True),
    ("Umbrella", "umbrella.fr", "FR", "Alice", "Abernathy", "alice@umbrella.fr",
     "Umbrella pilot", "7300.50", "appointmentscheduled", True),
    ("Hooli", "hooli.com", "US", "Gavin", "Belson", "gavin@hooli.com",
     "Hooli (not registered)", "99000", "qualifiedtobuy", False),
    ("Wayne Enterprises", "wayne.com", "US", "Lucius", "Fox", "lucius@wayne.com",
     "Wayne upgrade", "25000", "qualifiedtobuy", True),
]  # fmt: skip


DEMO_REVIEW = """
# the demo's: lead registrations wait for the program's review (step 9)
review:
  deal: automatic
  lead: manual
  notify_email: partner-program@vendor.example"""


def _prepare(directory: str | None, url: str) -> Path:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="dealsync-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (root / ("state.db" + suffix)).unlink(missing_ok=True)
    (root / "mappings").mkdir(exist_ok=True)
    if not SHIPPED_MAPPINGS.is_dir():
        raise FileNotFoundError(
            f"shipped mappings not found at {SHIPPED_MAPPINGS}; reinstall dealsync "
            "(`pip install --force-reinstall dealsync`, or `pip install -e .` in a clone)"
        )
    for f in SHIPPED_MAPPINGS.glob("*.yaml"):
        shutil.copy(f, root / "mappings" / f.name)
    # the demo reviews lead registrations by hand (step 9); deals stay automatic
    rules = root / "mappings" / "rules.yaml"
    shipped = rules.read_text()
    start = shipped.index("\nreview:\n")
    end = shipped.index("\n\n", start + 1)
    rules.write_text(shipped[:start] + DEMO_REVIEW + shipped[end:])
    port = url.rsplit(":", 1)[-1]
    (root / "dealsync.yaml").write_text(CONFIG.format(url=url, port=port))
    mail = {"DEALSYNC_MAIL_SINK": str(root / "mail")}
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in {**TOKENS, **mail}.items()))
    return root


def _show(echo: Echo, result: PassResult) -> None:
    calls = sum(v for k, v in result.api_calls.items() if not k.endswith(("wait_ms", "retries")))
    echo(f"  → {result.status}; plan: {result.plan.summary()}; {calls} API calls")


class _Settled:
    """The demo's ``Dealsync``: each pass waits for the sandbox's search index first."""

    def __init__(self, app: Dealsync, settle: Callable[[], None]) -> None:
        self._app = app
        self._settle = settle

    def sync(self, *args: Any, **kwargs: Any) -> Any:
        self._settle()
        return self._app.sync(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


def _outbox(echo: Echo, app: Dealsync | _Settled, kind: str | None = None) -> None:
    for m in app.outbox.messages(kind=kind):
        if m.kind == "lead_notification":
            continue
        echo(f"     {m.kind} to {m.recipient} [{m.status}, {m.language}]: {m.subject!r}")


PARTNER_CRMS = ("hubspot", "salesforce")
"""The partner CRMs the tour can show (``dealsync demo --partner-crm``)."""


def run_demo(
    directory: str | None = None, *, echo: Echo = print, partner_crm: str = "hubspot"
) -> int:
    """Run the tour; returns the exit code (0 when every step behaved). ``partner_crm``:
    the partner's CRM (the vendor is always a HubSpot portal): a second HubSpot
    sandbox portal, or a Salesforce org on the Salesforce sandbox
    (the second half of this module)."""
    if partner_crm not in PARTNER_CRMS:
        raise ValueError(f"partner CRM {partner_crm!r}: choose one of {', '.join(PARTNER_CRMS)}")
    if partner_crm == "salesforce":
        return run_salesforce_demo(directory, echo=echo)
    from connector.sandbox import PortalSpec, SandboxServer

    portals = [
        PortalSpec(name="vendor", token=TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"]),
        PortalSpec(name="partner-acme", token=TOKENS["DEALSYNC_DEMO_ACME_TOKEN"]),
    ]
    # search lags behind writes as HubSpot's does; shorter than the sandbox's default
    # (1-3 s) so the tour does not drag, and waited for before each pass
    with SandboxServer(portals=portals, port=0, limits=True, search_lag=DEMO_SEARCH_LAG) as srv:
        root = _prepare(directory, srv.url)

        def settle() -> None:
            deadline = time.monotonic() + 30
            while any(p.pending_index() for p in srv.portals) and time.monotonic() < deadline:
                time.sleep(0.05)

        return _tour(root, srv.url, echo, settle)


DEMO_SEARCH_LAG = (0.2, 0.6)


class Closing(NamedTuple):
    """What the tour's closing steps showed, for its final verdict: the vendor-led win
    credited, the lead approved, and the quiet pass with its writes and new e-mails."""

    led: bool
    approved: bool
    quiet: PassResult
    writes: int
    new_mail: int


def _closing_steps(
    echo: Echo, app: Dealsync | _Settled, vendor: PortalUser, real: Dealsync, *, bodies: bool
) -> Closing:
    """Steps 6 to 10 of the tour, the same whatever the partner's CRM: a lead
    notification (``bodies``: with its activity lines), the EU notice 31 days later, a
    quiet pass, a vendor-led win and a lead approved by review."""
    echo("6. Someone at Initech requests a demo on the vendor's site; Acme owns initech.de,")
    echo("   so Acme hears which company did what and when, never who.")
    vendor.send_event("pe_demo_requested", "bill@initech.de")
    r = app.sync("acme")
    _show(echo, r)
    for m in app.outbox.messages(kind="lead_notification"):
        echo(f"     to {m.recipient}: {m.subject!r}")
        if bodies:
            for line in m.body.splitlines():
                if line.strip().startswith("- "):
                    echo(f"       {line.strip()}")
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
    return Closing(led, approved, r, writes, new_mail)


def _vendor_led_win(echo: Echo, app: Dealsync | _Settled, vendor: PortalUser) -> bool:
    """Step 9: a deal the vendor's own sales team wins on a domain Acme owns credits
    Acme (issue 16) — no shared deal, nothing on the partner's side."""
    echo("9. The vendor's own sales team wins a deal with Initech in the vendor portal (no shared")
    echo("   deal); Acme owns initech.de, so Acme is credited: 20% and MRR, kind vendor_led.")
    company = vendor.find_by("companies", "domain", "initech.de")
    now = utcnow()
    deal = vendor.create(
        "deals",
        {
            "dealname": "Initech support plan (vendor sales)",
            "amount": "6000",
            "dealstage": "closedwon",
            "pipeline": "default",
            "closedate": f"{now:%Y-%m-%dT%H:%M:%S}Z",
            "deal_currency_code": "EUR",
            "hubspot_owner_id": "1",
        },
    )
    vendor.associate("deals", deal, "companies", company)
    r = app.sync("acme", now=now)
    _show(echo, r)
    found = [c for c in app.registry.commissions("acme") if c.vendor_deal_id == deal]
    for com in found:
        echo(
            f"     commission #{com.id} ({com.kind}): {com.rate} x {com.amount} {com.currency} = "
            f"{com.commission}; MRR credit {com.mrr}"
        )
    echo("     (dealsync commissions --kind vendor_led lists it)\n")
    return [c.kind for c in found] == ["vendor_led"]


def _tour(root: Path, url: str, echo: Echo, settle: Callable[[], None] = lambda: None) -> int:
    echo(f"dealsync demo in {root}")
    echo(
        f"HubSpot sandbox at {url}: portals 'partner-acme' and 'vendor', HubSpot's rate limits on,\n"
        f"search {DEMO_SEARCH_LAG[0]}-{DEMO_SEARCH_LAG[1]} s behind writes (each pass below "
        "starts once search shows the edits before it, as a scheduled pass would)\n"
    )
    env = {**os.environ, **TOKENS, "DEALSYNC_MAIL_SINK": str(root / "mail")}
    real = Dealsync(load_project(root / "dealsync.yaml", env=env), env=env)
    app = _Settled(real, settle)
    partner = PortalUser(url, TOKENS["DEALSYNC_DEMO_ACME_TOKEN"])
    vendor = PortalUser(url, TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"])
    installed = app.setup()
    echo(
        f"dealsync setup: installed {sum(len(v) for v in installed.values())} custom properties "
        "(source ids, partner id, the registration flag)"
    )

    vendor.create(
        "companies",
        {"name": "Wayne Enterprises", "domain": "wayne.com", "lifecyclestage": "customer"},
    )
    echo("the vendor already has Wayne Enterprises (wayne.com) as a customer")
    deals: list[str] = []
    for company, domain, country, first, last, email, dname, amount, stage, registered in SEED:
        c = partner.create("companies", {"name": company, "domain": domain, "country": country})
        p = partner.create(
            "contacts",
            {
                "firstname": first,
                "lastname": last,
                "email": email,
                "company": company,
                "country": country,
            },
        )
        props = {
            "dealname": dname,
            "amount": amount,
            "dealstage": stage,
            "pipeline": "default",
            "closedate": "2027-03-31",
            "deal_currency_code": "EUR",
        }
        if registered:
            props["dealsync_register"] = "true"
        d = partner.create("deals", props)
        partner.associate("deals", d, "companies", c)
        partner.associate("deals", d, "contacts", p)
        deals.append(d)
    echo(
        f"a partner user created {len(SEED)} deals with a company and a contact each, "
        f"{sum(1 for s in SEED if s[-1])} of them marked for registration\n"
    )
    globex, initech, umbrella, wayne = deals[0], deals[1], deals[2], deals[4]

    echo("1. First pass: registered deals, their companies and contacts appear at the vendor.")
    r = app.sync("acme")
    _show(echo, r)
    vdeal = {
        d: vendor.find_by("deals", "dealsync_source_id", f"acme:{d}")
        for d in (globex, initech, umbrella)
    }
    for vid in vdeal.values():
        props = vendor.get("deals", vid, "dealname", "amount", "dealstage")
        echo(
            f"     vendor deal {vid}: {props['dealname']!r} amount {props['amount']} stage "
            f"{props['dealstage']}, companies {vendor.associated('deals', vid, 'companies')}, "
            f"contacts {vendor.associated('deals', vid, 'contacts')}"
        )
    echo("     the unregistered Hooli deal stays private to the partner.")
    for reg in app.registry.registrations("acme"):
        echo(
            f"     registration of {reg.domain}: {reg.status}"
            + (f" ({reg.code})" if reg.code else "")
        )
    wb = partner.get("deals", wayne, "dealsync_registration_status", "dealsync_registration_reason")
    echo(
        f"     written back to the partner's Wayne deal: {wb['dealsync_registration_status']}: "
        f"{wb['dealsync_registration_reason']!r}; nothing mirrored to the vendor\n"
    )

    echo("2. A vendor user marks Globex closed-won; the stage flows back and, the domain being")
    echo("   owned by Acme, a 20% commission is earned and written to the partner's deal.")
    vendor.edit("deals", vdeal[globex], {"dealstage": "closedwon"})
    r = app.sync("acme")
    _show(echo, r)
    props = partner.get(
        "deals", globex, "dealstage", "dealsync_commission", "dealsync_commission_currency"
    )
    echo(
        f"     partner Globex: stage {props['dealstage']!r}, commission {props['dealsync_commission']} "
        f"{props['dealsync_commission_currency']}"
    )
    for com in app.registry.commissions("acme"):
        echo(
            f"     commission #{com.id}: {com.rate} x {com.amount} {com.currency} = {com.commission}; "
            f"MRR credit {com.mrr}"
        )
    echo("")

    echo(
        "3. Both sides edit Initech's amount; policy `newest` keeps the later edit (the vendor's)."
    )
    partner.edit("deals", initech, {"amount": "13000"})
    time.sleep(0.01)
    vendor.edit("deals", vdeal[initech], {"amount": "14250"})
    r = app.sync("acme")
    _show(echo, r)
    echo(
        f"     partner {partner.get('deals', initech, 'amount')['amount']} / vendor "
        f"{vendor.get('deals', vdeal[initech], 'amount')['amount']}\n"
    )

    echo("4. Both sides rewrite Umbrella's description; that field is `manual`: a conflict opens.")
    partner.edit("deals", umbrella, {"description": "Pilot for 50 seats"})
    vendor.edit("deals", vdeal[umbrella], {"description": "Pilot, security review pending"})
    r = app.sync("acme")
    _show(echo, r)
    for conflict in app.store.conflicts("acme"):
        echo(
            f"     conflict #{conflict.id}: {conflict.object} {conflict.field}: "
            f"partner={conflict.partner_value!r} vendor={conflict.vendor_value!r}"
        )
    echo("     (resolve with: dealsync conflicts resolve ID --take vendor)\n")

    echo("5. Consent e-mails after the registrations (sent to the file sink in mail/):")
    _outbox(echo, app)
    echo(
        "     Initech's contact is in Germany: asked for consent at once. Umbrella's (France) gets"
    )
    echo("     a notice after 30 days; Globex's (US) gets none. No e-mail names the partner.\n")

    done = _closing_steps(echo, app, vendor, real, bodies=True)

    echo("Summary")
    for st in app.status():
        links = ", ".join(f"{obj} {c.get('active', 0)}" for obj, c in sorted(st.links.items()))
        echo(
            f"  {st.partner}: linked {links}; open conflicts {st.open_conflicts}; "
            f"failing records {st.failing_records}"
        )
        echo(
            f"  tier {st.tier}: credited MRR {st.credited_mrr}; registrations "
            f"{st.active_registrations} of {st.capacity}"
        )
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
        and done.new_mail == 0
        and done.writes == 0
        and done.quiet.status in ("ok", "conflicts")
        and len(app.store.conflicts("acme")) == 1
        and regs.get("wayne.com") == "rejected"
        and regs.get("globex.com") == "accepted"
        and len(app.registry.commissions("acme")) == 2
        and done.led
        and done.approved
    )
    return 0 if ok else 2


def _review_step(echo: Echo, app: Dealsync, now: datetime) -> bool:
    """Step 10: a lead registered by hand waits for review (the demo's rules say
    ``review.lead: manual``) and is approved; True when it then owns its domain."""
    echo(
        "10. Acme registers a lead by hand; lead registrations are reviewed (review.lead: manual):"
    )
    reg = register_lead(
        app,
        partner="acme",
        domain="https://www.soylent.com",
        first="Sol",
        last="Green",
        email="sol@soylent.com",
        company="Soylent",
        country="US",
        now=now,
    )
    echo(f"     dealsync register lead … → registration #{reg.id}: {reg.status} ({reg.code})")
    pending = [r.id for r in app.pending_registrations("acme")]
    echo(f"     dealsync registrations --status pending → {pending}")
    assert reg.id is not None
    done = app.approve_registration(
        reg.id, by="demo", reason="known account", now=now + timedelta(hours=2)
    )
    echo(f"     dealsync registrations approve {reg.id} --reason 'known account' → {done.status}")
    echo(f"     {done.reason}")
    echo(f"     {done.review_note}\n")
    return reg.status == "pending" and done.status == "accepted"


# --------------------------------------------------------------------------- salesforce
# ``dealsync demo --partner-crm salesforce``: the same tour with the partner's CRM a
# Salesforce org — the offline Salesforce sandbox over HTTPS (its own CA, written into
# the demo folder) — and the vendor a HubSpot sandbox portal. The partner's connection
# names the shipped mappings/salesforce_partner.yaml; a partner user works in the org
# through the plain simple-salesforce client.

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

SF_CONFIG = """\
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
    from connector.sandbox.salesforce import ORG_AGE, OrgSpec, SalesforceSandbox

    vendor_only = [PortalSpec(name="vendor", token=TOKENS["DEALSYNC_DEMO_VENDOR_TOKEN"])]
    org = OrgSpec(
        ORG,
        SF_CLIENT["DEALSYNC_DEMO_ACME_SF_CLIENT_ID"],
        SF_CLIENT["DEALSYNC_DEMO_ACME_SF_CLIENT_SECRET"],
        existed_for=ORG_AGE,
    )
    with SandboxServer(portals=vendor_only, port=0, limits=True, search_lag=DEMO_SEARCH_LAG) as srv:
        root = _prepare(directory, srv.url)
        with SalesforceSandbox([org], cert_dir=str(root / CA_DIR)) as sf:
            (root / "dealsync.yaml").write_text(
                SF_CONFIG.format(hubspot=srv.url, salesforce=sf.url, ca_dir=CA_DIR)
            )
            with (root / ".env").open("a") as env_file:
                env_file.write("".join(f"{k}={v}\n" for k, v in SF_CLIENT.items()))

            def settle() -> None:
                deadline = time.monotonic() + 30
                while any(p.pending_index() for p in srv.portals) and time.monotonic() < deadline:
                    time.sleep(0.05)

            partner = SalesforceUser(sf, *SF_CLIENT.values())
            return _salesforce_tour(root, srv.url, sf.url, partner, echo, settle)


def _salesforce_tour(
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

    done = _closing_steps(echo, app, vendor, real, bodies=False)

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
        and done.new_mail == 0
        and done.writes == 0
        and done.quiet.status in ("ok", "conflicts")
        and len(app.store.conflicts("acme")) == 1
        and regs.get("wayne.com") == "rejected"
        and regs.get("globex.com") == "accepted"
        and len(app.registry.commissions("acme")) == 2
        and done.led
        and done.approved
    )
    return 0 if ok else 2
