"""Measure the vendor calls of ``sync --all`` over P partners, with the program's
cycle (program-wide vendor data read once for all partners) and without it (each
partner's pass on its own, as ``sync --all`` ran before issue 17) — the figures of
``docs/benchmarks.md`` ("Program-wide vendor data per cycle"). A measurement run by
hand, not a test.

    python scripts/cycle_calls.py --partners 5

The vendor's portal is the HubSpot sandbox (no rate limits, counted per request);
the partners' CRMs are embedded files. Each partner registers one lead; the vendor
wins a deal on each lead's company; then one ``sync --all`` is counted.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.demo import PortalUser
from connector.sandbox import PortalSpec, SandboxServer
from connector.testing import world as test_world
from connector.testing.world import HubSpotPortals, PartnerEntry, project_yaml, write_project

T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
TOKEN = "cycle-vendor-token"


def measure(partners: int, cycle: bool) -> Counter[str]:
    from connector.api import Dealsync
    from connector.config import load_project

    ids = [f"partner{i}" for i in range(partners)]
    for pid in ids:
        test_world.PARTNERS.setdefault(pid, PartnerEntry(pid, f"Partner {pid}"))
    env = {"CYCLE_VENDOR_TOKEN": TOKEN}
    with (
        tempfile.TemporaryDirectory() as d,
        SandboxServer([PortalSpec("vendor", TOKEN)], port=0, limits=False, search_lag=0) as srv,
    ):
        portals = HubSpotPortals(srv.url, {"vendor": "CYCLE_VENDOR_TOKEN"})
        config = write_project(Path(d), project_yaml(ids, hubspot=portals))
        app = Dealsync(load_project(config, env=env), env=env)
        app.setup()
        vendor = PortalUser(srv.url, TOKEN)
        for pid in ids:
            domain = f"{pid}-lead.com"
            test_world.run_cli(
                config, "register", "lead", "--partner", pid, "--domain", domain,
                "--first", "Carol", "--last", "Jones", "--email", f"carol@{domain}",
                "--company", "Lead", "--country", "US", "--now", T0.isoformat(), env=env,
            )  # fmt: skip
        app.sync_all(now=T0 + timedelta(days=1))
        for pid in ids:
            domain = f"{pid}-lead.com"
            company = vendor.create("companies", {"name": domain, "domain": domain})
            deal = vendor.create(
                "deals",
                {"dealname": domain, "pipeline": "default", "dealstage": "closedwon",
                 "amount": "6000", "closedate": (T0 + timedelta(days=2)).isoformat()},
            )  # fmt: skip
            vendor.associate("deals", deal, "companies", company)
        srv.reset_stats()
        later = T0 + timedelta(days=3)
        # without the cycle: each partner's pass on its own, as sync --all did before
        run = app.sync_all if cycle else lambda now: [app.sync(p, now=now) for p in ids]
        results = run(now=later)
        assert all(r.status == "ok" for r in results), [r.status for r in results]
        out: Counter[str] = Counter()
        for c in srv.portal("vendor").calls:
            out["total"] += 1
            path = c["path"].rstrip("/")
            if path.endswith("deals/search"):
                out["deal searches"] += 1
            elif "deals" in path and c["method"] == "GET":
                out["deal listings (recycle bin)"] += 1
        out["commissions"] = len(app.registry.commissions())
        app.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=5)
    args = parser.parse_args()
    for cycle in (False, True):
        counts = measure(args.partners, cycle)
        label = "one cycle (sync --all)" if cycle else "a pass per partner (before)"
        print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
