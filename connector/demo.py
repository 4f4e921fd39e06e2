"""``dealsync demo``: a guided tour on two embedded CRMs, from a fresh clone.

It writes a self-contained project into a folder (config, mappings, state, both
CRMs), seeds registered deals on the partner side and runs real passes through the
public API — the same code path as ``dealsync sync`` — narrating what each shows.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.engine.sync import PassResult

Echo = Callable[[str], None]

SHIPPED_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"

CONFIG = """\
# Written by `dealsync demo`: two embedded CRMs and one partner connection.
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: local
  path: vendor.db
partners:
  - id: acme
    name: Acme Agency
    adapter: local
    path: partner-acme.db
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""

SEED = [
    # (company, domain, country, contact first, last, email, deal name, amount, stage, registered)
    ("Globex", "globex.com", "US", "Hank", "Scorpio", "hank@globex.com", "Globex platform", "48000.00", "qualifiedtobuy", True),
    ("Initech", "initech.de", "DE", "Bill", "Lumbergh", "bill@initech.de", "Initech rollout", "12500", "presentationscheduled", True),
    ("Umbrella", "umbrella.fr", "FR", "Alice", "Abernathy", "alice@umbrella.fr", "Umbrella pilot", "7300.50", "appointmentscheduled", True),
    ("Hooli", "hooli.com", "US", "Gavin", "Belson", "gavin@hooli.com", "Hooli (not registered)", "99000", "qualifiedtobuy", False),
]


def _prepare(directory: str | None) -> Path:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="dealsync-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    for name in ("state.db", "vendor.db", "partner-acme.db"):
        for suffix in ("", "-wal", "-shm"):
            (root / (name + suffix)).unlink(missing_ok=True)
    (root / "mappings").mkdir(exist_ok=True)
    if not SHIPPED_MAPPINGS.is_dir():
        raise FileNotFoundError(
            f"shipped mappings not found at {SHIPPED_MAPPINGS}; install dealsync from a clone "
            "with `pip install -e .`"
        )
    for f in SHIPPED_MAPPINGS.glob("*.yaml"):
        shutil.copy(f, root / "mappings" / f.name)
    (root / "dealsync.yaml").write_text(CONFIG)
    return root


def _show(echo: Echo, title: str, result: PassResult) -> None:
    echo(f"  → {result.status}; plan: {result.plan.summary()}")


def run_demo(directory: str | None = None, *, echo: Echo = print) -> int:
    root = _prepare(directory)
    echo(f"dealsync demo in {root}\n")
    app = Dealsync(load_project(root / "dealsync.yaml"))
    installed = app.setup()
    partner = app.partner_crm("acme")
    vendor = app.vendor()
    assert isinstance(partner, LocalCRM) and isinstance(vendor, LocalCRM)
    echo(f"setup: installed {sum(len(v) for v in installed.values())} custom properties in 2 portals")

    deals = []
    for company, domain, country, first, last, email, dname, amount, stage, registered in SEED:
        c = partner.create("companies", {"name": company, "domain": domain, "country": country})
        p = partner.create("contacts", {"firstname": first, "lastname": last, "email": email,
                                        "company": company, "country": country})
        props = {"dealname": dname, "amount": amount, "dealstage": stage, "pipeline": "default",
                 "closedate": "2027-03-31", "deal_currency_code": "EUR"}
        if registered:
            props["dealsync_register"] = "true"
        d = partner.create("deals", props)
        partner.associate("deals", "companies", [(d.id, c.id)])
        partner.associate("deals", "contacts", [(d.id, p.id)])
        deals.append(d)
    echo(f"seeded the partner CRM: {len(SEED)} deals with a company and a contact each, "
         f"{sum(1 for s in SEED if s[-1])} of them registered\n")

    echo("1. First pass: registered deals, their companies and contacts appear at the vendor.")
    r = app.sync("acme")
    _show(echo, "first", r)
    vdeals = {d.properties.get("dealsync_source_id", "").split(":")[-1]: d for d in vendor.all("deals")}
    for d in vendor.all("deals"):
        echo(f"     vendor deal {d.id}: {d.properties.get('dealname')!r} amount {d.properties.get('amount')} "
             f"stage {d.properties.get('dealstage')} (companies {list(d.associations.get('companies', ()))})")
    echo("     the unregistered Hooli deal stays private to the partner.\n")

    globex, initech, umbrella = deals[0], deals[1], deals[2]
    echo("2. The vendor moves Globex to 'contractsent'; the next pass brings it back.")
    vendor.edit("deals", vdeals[globex.id].id, {"dealstage": "contractsent"})
    r = app.sync("acme")
    _show(echo, "back", r)
    echo(f"     partner Globex stage is now {partner.get('deals', globex.id).properties.get('dealstage')!r}\n")

    echo("3. Both sides edit Initech's amount; policy `newest` keeps the later edit (vendor's).")
    partner.edit("deals", initech.id, {"amount": "13000"})
    time.sleep(0.01)
    vendor.edit("deals", vdeals[initech.id].id, {"amount": "14250"})
    r = app.sync("acme")
    _show(echo, "newest", r)
    echo(f"     both sides now say {partner.get('deals', initech.id).properties.get('amount')} / "
         f"{vendor.get('deals', vdeals[initech.id].id).properties.get('amount')}\n")

    echo("4. Both sides rewrite Umbrella's description; that field is `manual`, so a conflict opens.")
    partner.edit("deals", umbrella.id, {"description": "Pilot for 50 seats"})
    vendor.edit("deals", vdeals[umbrella.id].id, {"description": "Pilot, security review pending"})
    r = app.sync("acme")
    _show(echo, "manual", r)
    for c in app.store.conflicts("acme"):
        echo(f"     conflict #{c.id}: {c.object} field {c.field}: partner={c.partner_value!r} "
             f"vendor={c.vendor_value!r}")
    echo("     (resolve with: dealsync conflicts resolve ID --take vendor)\n")

    echo("5. One more pass right after: nothing to write.")
    r = app.sync("acme")
    _show(echo, "quiet", r)
    writes = sum(v for k, v in r.counts.items() if k.startswith(("created", "updated", "archived")))
    echo(f"     writes in this pass: {writes}\n")

    echo("Summary")
    for s in app.status():
        links = ", ".join(f"{obj} {c.get('active', 0)}" for obj, c in sorted(s.links.items()))
        echo(f"  {s.partner}: linked {links}; open conflicts {s.open_conflicts}; failing {s.failing_records}")
    echo(f"  runs recorded: {len(app.store.runs('acme', 100))}")
    echo(f"\nExplore it: cd {root} && dealsync status && dealsync runs && dealsync conflicts")
    app.close()
    ok = writes == 0 and r.status in ("ok", "conflicts")
    return 0 if ok else 2
