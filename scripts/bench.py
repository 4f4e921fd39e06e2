#!/usr/bin/env python
"""dealsync benchmark suite (issue 8): the connector measured against HubSpot's limits.

    python scripts/bench.py [--size N] [--limits on|off|both] [--scenarios 1,2,3,4]
                            [--variants product,engine] [--naive-sample K] [--json out.json]

Scenarios, against sandbox portals started in this process (``connector.sandbox``):

1. initial sync of N registered partner deals, each with a company and a contact,
   partner → vendor;
2. an incremental pass with no changes over the N linked deals;
3. an incremental pass with 500 changes spread over both sides and all three objects;
4. the engine alone: reconcile 100,000 linked deals × 10 fields, no I/O.
5. (issue 17) DACH/EU consent: (5a) the initial sync of N deals whose contacts are
   German, Austrian, French; (5b) a quiet pass with the program's clock 31 days on;
6. (issue 17) ``--partners P`` partners × N deals, one ``sync --all`` against one
   vendor portal: the vendor portal's calls, utilisation, bound and 429s.

Product rows also carry the product's own lower bound (``product_*``), and the calls
the product trades for wall time (a first sync reads the contacts by batch read, 100 a
call on the general budget, beside the companies' searches by id, instead of searching
them at 200 a page: ``product_trade_calls``, not part of the bound; ``listing_trade``).

Each connector pass (1–3) runs in a child process (``--_child``) so its peak RSS is
the connector's own, for that scenario only, and its client-side rate limiter starts
fresh; the sandbox (which holds both portals' data) stays in this parent process.
Passes are measured twice: ``product`` (the real product, default hooks on:
registration, commission, consent, notifications) and ``engine`` (``hooks=[]``, the
sync engine alone — the figure compared with the batch/page lower bound).

A naive per-record connector (one call per record and action, through the plain
``hubspot-api-client``) runs on a sample of the same data as the baseline; its
per-record call count is exact by construction, so its totals are scaled to N.

Definitions of the lower bounds: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RATE_PER_10S = 100  # HubSpot Free/Starter private apps
SEARCH_PER_S = 5.0
BATCH = 100
SEARCH_PAGE = 200
ASSOC_READ_BATCH = 1000
ASSOC_CREATE_BATCH = 2000  # HubSpot's v4 association batch create limit
CHANGES = 500
ENGINE_PAIRS = 100_000

NON_CALLS = ("retries", "wait_ms", "429")


def _peak_rss_mb() -> float:
    """This process's peak RSS. On Linux from ``VmHWM``: ``ru_maxrss`` also keeps the
    high-water mark of the memory this process replaced at exec, and a child started by
    ``subprocess`` (vfork + exec) would report the parent's size, sandbox included."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


# ====================================================================== project


def write_project(root: Path, url: str, size: int) -> None:
    """The benchmark's project: vendor and partner on the sandbox at ``url`` with
    HubSpot Free/Starter limits, the shipped mappings, tiers with room for ``size``."""
    from connector.testing.world import HubSpotPortals, project_yaml
    from connector.testing.world import write_project as write_folder

    # A partner registering N deals needs a tier with room for N registrations; the
    # shipped example tiers hold 10–50. Only the capacities change, to N with some
    # room, within the most a rules file allows (N registrations fit up to that).
    cap = min(max_capacity(), max(100, size + CHANGES))

    def room(rules: str) -> str:
        for shipped in (10, 25, 50):
            rules = rules.replace(f"capacity: {shipped}\n", f"capacity: {cap}\n")
        return rules

    hubspot = HubSpotPortals(
        url,
        {"vendor": "BENCH_VENDOR_TOKEN", "acme": "BENCH_PARTNER_TOKEN"},
        extra=(f"rate_limit_per_10s: {RATE_PER_10S}", f"search_rate_per_s: {SEARCH_PER_S}"),
    )
    config = project_yaml(notify={"acme": "alerts@acme.example"}, hubspot=hubspot)
    write_folder(root, config, rules_edit=room)
    (root / "mail").mkdir(exist_ok=True)


def max_capacity() -> int:
    """The largest tier capacity a rules file may give (the config model's bound)."""
    from connector.config.models import Tier

    bound = next(m.le for m in Tier.model_fields["capacity"].metadata if hasattr(m, "le"))
    return int(bound)


def open_app(root: Path, tokens: dict[str, str], *, hooks: bool, limits: bool) -> Any:
    from connector.api import Dealsync, default_adapter_factory
    from connector.config import load_project

    env = {**os.environ, **tokens, "DEALSYNC_MAIL_SINK": str(root / "mail")}
    project = load_project(root / "dealsync.yaml", env=env)
    factory = None
    if not limits:
        # limits off: the server enforces nothing and neither does the client
        from connector.adapters.hubspot import HubSpotAdapter

        def factory(name: str, portal: Any) -> Any:
            return HubSpotAdapter(
                token=env[portal.token_env],
                host=portal.host,
                name=name,
                rate_limit_per_10s=10**9,
                search_rate_per_s=1e9,
            )

    else:
        factory = default_adapter_factory(project, env)
    return Dealsync(project, env=env, adapter_factory=factory, hooks=None if hooks else [])


# ====================================================================== child


def child_main(spec: dict[str, Any]) -> None:
    """Run one measured pass (or the engine scenario) and print its figures as JSON."""
    if spec["what"] == "engine":
        print(json.dumps(engine_scenario(spec["pairs"])))
        return
    if spec["what"] == "pass17":
        print(json.dumps(child17(spec)))
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    root = Path(spec["project"])
    app = open_app(root, spec["tokens"], hooks=spec["hooks"], limits=spec["limits"])
    app.vendor(), app.partner_crm("acme")  # build the clients before the clock starts
    t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
    result = app.sync("acme")
    wall = time.perf_counter() - t0
    # the pass's CPU: the whole process (its HTTP threads too), and the calling thread's
    cpu, cpu_main = time.process_time() - c0, time.thread_time() - m0
    calls = {k: v for k, v in result.api_calls.items()}
    app.close()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "cpu_main_s": cpu_main,
                "peak_rss_mb": _peak_rss_mb(),
                "status": result.status,
                "error": result.error,
                "errors": [str(e) for e in result.errors[:5]],
                "n_errors": len(result.errors),
                "counts": dict(result.counts),
                "client_calls": calls,
            }
        )
    )


def run_child(spec: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(spec)]
    if profile:
        cmd = [sys.executable, "-m", "pyinstrument", "-o", profile, "-r", "text", *cmd[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr[-4000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


# ====================================================================== data


def seed_partner(portal: Any, n: int, offset: int = 0) -> list[tuple[str, str, str]]:
    """N registered deals, each with its own company (own domain) and contact."""
    rng = random.Random(8 + offset)
    stages = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled"]
    companies = portal.seed(
        "companies",
        [
            {"name": f"Company {i}", "domain": f"co{i}-bench.com", "country": "US"}
            for i in range(offset, offset + n)
        ],
    )
    contacts = portal.seed(
        "contacts",
        [
            {
                "firstname": f"First{i}",
                "lastname": f"Last{i}",
                "email": f"person{i}@co{i}-bench.com",
                "company": f"Company {i}",
                "country": "US",
            }
            for i in range(offset, offset + n)
        ],
    )
    deals = portal.seed(
        "deals",
        [
            {
                "dealname": f"Deal {i}",
                "amount": str(rng.randrange(1000, 90000)),
                "dealstage": rng.choice(stages),
                "pipeline": "default",
                "closedate": "2027-03-31",
                "deal_currency_code": "EUR",
                "dealsync_register": "true",
            }
            for i in range(offset, offset + n)
        ],
    )
    for d, c, p in zip(deals, companies, contacts, strict=True):
        portal.associate("deals", d, "companies", c)
        portal.associate("deals", d, "contacts", p)
    return list(zip(deals, companies, contacts, strict=True))


def set_clock(srv: Any, shift: timedelta) -> None:
    for p in srv.portals:
        p.clock = lambda s=shift: datetime.now(UTC) + s


def make_changes(srv: Any, app: Any, n_changes: int) -> dict[str, int]:
    """``n_changes`` edits of synced fields, half on each side, over all three objects."""
    links: dict[str, list[Any]] = {}
    for obj in ("deals", "companies", "contacts"):
        links[obj] = [
            lk
            for lk in app.store.links_by_ids(
                "acme", obj, "partner", [str(i) for i in _all_ids(srv, "partner", obj)]
            ).values()
            if lk.status == "active" and lk.vendor_id
        ]
    rng = random.Random(3)
    edits = {"deals": ("amount", lambda: str(rng.randrange(1000, 90000))),
             "companies": ("website", lambda: f"https://w{rng.randrange(10**9)}.example"),
             "contacts": ("lastname", lambda: f"Changed{rng.randrange(10**9)}")}  # fmt: skip
    done: Counter[str] = Counter()
    per_obj = [n_changes // 3 + (1 if i < n_changes % 3 else 0) for i in range(3)]
    for (obj, (prop, value)), k in zip(edits.items(), per_obj, strict=True):
        sample = rng.sample(links[obj], min(k, len(links[obj])))
        for j, lk in enumerate(sample):
            side = "partner" if j % 2 == 0 else "vendor"
            rid = lk.partner_id if side == "partner" else lk.vendor_id
            srv.portal(portal_name(side)).update(obj, rid, {prop: value()})
            done[f"{side} {obj}"] += 1
    return dict(done)


def portal_name(side: str) -> str:
    return "partner-acme" if side == "partner" else "vendor"


def _all_ids(srv: Any, side: str, obj: str) -> list[str]:
    return [str(r["id"]) for r in srv.portal(portal_name(side)).all(obj)]


# ====================================================================== bounds


def lower_bound(scenario: int, n: int, changes: dict[str, int] | None = None) -> dict[str, Any]:
    """The fewest calls the batch/page limits allow for the engine's job, and the
    shortest time the rate limits allow for them (docs/benchmarks.md).

    Each portal has its own budgets (100 requests / 10 s, and 5 searches / s, counted
    apart), so a perfect client keeps all four busy at once: the time bound is the
    slowest of them."""
    # (portal, kind) -> calls
    parts: dict[tuple[str, str], int] = {}

    def add(side: str, what: str, k: int) -> None:
        parts[(side, what)] = parts.get((side, what), 0) + k

    if scenario == 1:
        add(
            "partner",
            "search (deals, companies, contacts at 200/page)",
            3 * max(1, math.ceil(n / SEARCH_PAGE)),
        )
        add("vendor", "search (one empty page per type)", 3)
        for side in ("partner", "vendor"):
            add(side, "list_archived (recycle bin, one page per type)", 3)
        add(
            "partner",
            "assoc_read (deal→company, deal→contact at 1000/call)",
            2 * math.ceil(n / ASSOC_READ_BATCH),
        )
        add("vendor", "batch_upsert (3N records at 100/call)", 3 * math.ceil(n / BATCH))
        add("vendor", "assoc_create (2N pairs at 2000/call)", 2 * math.ceil(n / ASSOC_CREATE_BATCH))
    elif scenario == 2:
        for side in ("partner", "vendor"):
            add(side, "search (one empty page per type)", 3)
            add(side, "list_archived (one page per type)", 3)
    elif scenario == 3:
        ch = changes or {}
        for side in ("partner", "vendor"):
            other = "vendor" if side == "partner" else "partner"
            for obj in ("deals", "companies", "contacts"):
                k = ch.get(f"{side} {obj}", 0)
                add(
                    side,
                    "search (changed records at 200/page, per type)",
                    max(1, math.ceil(k / SEARCH_PAGE)),
                )
                # a change on one side is written to the other
                add(other, "batch_update (counterparts at 100/call)", math.ceil(k / BATCH))
            add(side, "list_archived (one page per type)", 3)
        # changed partner deals need their associations (to notice new ones)
        add(
            "partner",
            "assoc_read (changed partner deals × 2 types at 1000/call)",
            2 * max(0, math.ceil(ch.get("partner deals", 0) / ASSOC_READ_BATCH)),
        )
    per_portal: dict[str, dict[str, float]] = {}
    for side in ("partner", "vendor"):
        search = sum(v for (s, k), v in parts.items() if s == side and k.startswith("search"))
        other = sum(v for (s, k), v in parts.items() if s == side and not k.startswith("search"))
        per_portal[side] = {
            "search_calls": search,
            "other_calls": other,
            "search_s": search / SEARCH_PER_S,
            "other_s": other / (RATE_PER_10S / 10.0),
        }
    times = [t for p in per_portal.values() for t in (p["search_s"], p["other_s"])]
    total = sum(parts.values())
    search_all = sum(v for (_, k), v in parts.items() if k.startswith("search"))
    return {
        "calls": total,
        "search_calls": search_all,
        "other_calls": total - search_all,
        "parts": {f"{s}: {k}": v for (s, k), v in parts.items()},
        "per_portal": per_portal,
        # the four budgets are independent: a perfect client keeps them all busy
        "time_s": max(times),
        # one budget after another, nothing overlapped: what a sequential client needs
        "time_sequential_s": sum(times),
    }  # fmt: skip


# ====================================================================== naive


class Naive:
    """One call per record and action, through the plain hubspot-api-client."""

    def __init__(self, url: str, partner_token: str, vendor_token: str) -> None:
        from hubspot import HubSpot

        self.calls: Counter[str] = Counter()
        p, v = (
            HubSpot(access_token=partner_token, host=url),
            HubSpot(access_token=vendor_token, host=url),
        )
        self.p = {t: getattr(p.crm, t).basic_api for t in ("deals", "companies", "contacts")}
        self.v = {t: getattr(v.crm, t).basic_api for t in ("deals", "companies", "contacts")}
        self.p_assoc = p.crm.associations.v4.basic_api
        self.v_assoc = v.crm.associations.v4.basic_api

    def _c(self, kind: str, fn: Any, *a: Any, **kw: Any) -> Any:
        self.calls[kind] += 1
        return fn(*a, **kw)

    def initial(self, k: int) -> int:
        """List partner deals page by page; per registered deal: read its company and
        contact ids and records, create the three counterparts, associate twice."""
        done, after = 0, None
        while done < k:
            page = self._c(
                "list", self.p["deals"].get_page, limit=100, after=after,
                properties=["dealname", "amount", "dealstage", "pipeline", "closedate",
                            "deal_currency_code", "description", "dealsync_register"],
            )  # fmt: skip
            for d in page.results:
                if done >= k:
                    break
                if (d.properties or {}).get("dealsync_register") != "true":
                    continue
                comp = self._c("assoc_get", self.p_assoc.get_page, "deals", d.id, "companies")
                cont = self._c("assoc_get", self.p_assoc.get_page, "deals", d.id, "contacts")
                c = self._c(
                    "get", self.p["companies"].get_by_id, comp.results[0].to_object_id,
                    properties=["name", "domain", "website", "country"],
                )  # fmt: skip
                p = self._c(
                    "get", self.p["contacts"].get_by_id, cont.results[0].to_object_id,
                    properties=["firstname", "lastname", "email", "company", "country"],
                )  # fmt: skip
                vc = self._c("create", self.v["companies"].create,
                             {"properties": {k2: v2 for k2, v2 in c.properties.items()
                                             if k2 in ("name", "domain", "country") and v2}})  # fmt: skip
                vp = self._c("create", self.v["contacts"].create,
                             {"properties": {k2: v2 for k2, v2 in p.properties.items()
                                             if k2 in ("firstname", "lastname", "email",
                                                       "company", "country") and v2}})  # fmt: skip
                props = {k2: v2 for k2, v2 in d.properties.items()
                         if k2 in ("dealname", "amount", "dealstage", "pipeline", "closedate",
                                   "deal_currency_code") and v2}  # fmt: skip
                vd = self._c("create", self.v["deals"].create, {"properties": props})
                self._c("assoc_create", self.v_assoc.create_default, "deals", vd.id,
                        "companies", vc.id)  # fmt: skip
                self._c("assoc_create", self.v_assoc.create_default, "deals", vd.id,
                        "contacts", vp.id)  # fmt: skip
                done += 1
            if not page.paging or not page.paging.next:
                break
            after = page.paging.next.after
        return done

    def incremental(self, pairs: dict[str, list[tuple[str, str]]], changed: set[str]) -> None:
        """Per linked pair and object: read both sides by id, compare, write the diff."""
        fields = {"deals": ["amount", "closedate", "dealstage", "deal_currency_code"],
                  "companies": ["domain", "website", "country"],
                  "contacts": ["firstname", "lastname", "email", "company", "country"]}  # fmt: skip
        for obj, plist in pairs.items():
            for pid, vid in plist:
                a = self._c("get", self.p[obj].get_by_id, pid, properties=fields[obj])
                b = self._c("get", self.v[obj].get_by_id, vid, properties=fields[obj])
                if f"{obj}:{pid}" in changed or f"{obj}:{vid}" in changed:
                    self._c("update", self.v[obj].update, vid,
                            {"properties": {f: a.properties.get(f) or "" for f in fields[obj]
                                            if a.properties.get(f) != b.properties.get(f)}})  # fmt: skip


# ====================================================================== engine (4)


def engine_scenario(pairs: int) -> dict[str, Any]:
    """Reconcile ``pairs`` linked deals × 10 fields, no I/O: 98% unchanged, 1% changed
    on the partner side, 1% on the vendor side (one field each)."""
    from connector.config.models import FieldMapping, ObjectMapping, ShareRule
    from connector.engine.reconcile import FieldPlan, PairState, reconcile
    from connector.records import Record

    fields = [
        FieldMapping(partner="dealname", vendor="dealname", direction="create_only"),
        FieldMapping(partner="amount", vendor="amount", transform="decimal", conflict="newest"),
        FieldMapping(partner="closedate", vendor="closedate", transform="date", conflict="newest"),
        FieldMapping(partner="dealstage", vendor="dealstage", transform="enum"),
        FieldMapping(
            partner="pipeline", vendor="pipeline", direction="create_only", transform="enum"
        ),
        FieldMapping(partner="deal_currency_code", vendor="deal_currency_code"),
        FieldMapping(partner="description", vendor="description", conflict="manual"),
        FieldMapping(partner="hs_priority", vendor="hs_priority"),
        FieldMapping(partner="dealtype", vendor="dealtype"),
        FieldMapping(partner="hs_next_step", vendor="hs_next_step"),
    ]
    mapping = ObjectMapping(
        name="deals", partner_object="deals", vendor_object="deals",
        share=ShareRule(partner=None), fields=fields,
    )  # fmt: skip
    t_build = time.perf_counter()
    compiled = FieldPlan(mapping)
    now = datetime.now(UTC)
    states = []
    for i in range(pairs):
        props = {
            "dealname": f"Deal {i}", "amount": f"{1000 + i}.5", "closedate": "2027-03-31",
            "dealstage": "qualifiedtobuy", "pipeline": "default", "deal_currency_code": "EUR",
            "description": f"text {i}", "hs_priority": "high", "dealtype": "newbusiness",
            "hs_next_step": "call",
        }  # fmt: skip
        base = {f.key: (props[f.partner], props[f.vendor]) for f in fields}
        base["amount"] = (f"{1000 + i}.5", f"{1000 + i}.5")
        p = Record("deals", f"p{i}", dict(props), now)
        v = Record("deals", f"v{i}", dict(props), now)
        if i % 100 == 0:
            p.properties["amount"] = f"{2000 + i}"
        elif i % 100 == 1:
            v.properties["hs_next_step"] = "meeting"
        states.append(PairState(i + 1, f"p{i}", f"v{i}", p, v, base))
    build = time.perf_counter() - t_build
    # three cold runs: a fresh FieldPlan each time (as each pass builds its own), so
    # its memo of canonical values starts empty
    times = []
    actions: list[Any] = []
    for _ in range(3):
        compiled = FieldPlan(mapping)
        t0 = time.perf_counter()
        actions = reconcile(compiled, states)
        times.append(time.perf_counter() - t0)
    return {
        "pairs": pairs,
        "fields": len(fields),
        "build_s": build,
        "wall_s": sorted(times)[1],  # median of three
        "wall_best_s": min(times),
        "wall_runs_s": [round(t, 3) for t in times],
        "actions": len(actions),
        "peak_rss_mb": _peak_rss_mb(),
    }


# ====================================================================== scenarios


def _server_calls(srv: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"by_kind": Counter(), "total": 0, "rate_limited": 0}
    for name in ("partner-acme", "vendor"):
        st = srv.stats(name)
        side = "partner" if name == "partner-acme" else "vendor"
        for k, v in st["by_kind"].items():
            out["by_kind"][f"{side}.{k}"] += v
        out["total"] += st["total"]
        out["rate_limited"] += st["rate_limited"]
    out["by_kind"] = dict(sorted(out["by_kind"].items()))
    return out


def budget_timeline(srv: Any, names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """When each portal's two budgets (searches; the rest) were used in the pass just
    measured, from the sandbox's log of served calls (429s left out): per side and
    budget, the calls, the first, the middle and the last one in seconds from the
    pass's first call, and the share of that span the budget was busy at its rate
    (1.0: saturated; above 1 in spans shorter than the 10-s window, whose burst it
    allows). Shows how long the budget that sets the bound waited for its work
    (issue 17)."""
    logged = {side: list(srv.portal(name).calls) for side, name in names.items()}
    starts = [c["at"] for calls in logged.values() for c in calls]
    if not starts:
        return {}
    t0 = min(starts)
    out: dict[str, dict[str, Any]] = {}
    for side, calls in logged.items():
        for budget, rate in (("search", SEARCH_PER_S), ("other", RATE_PER_10S / 10.0)):
            at = [
                c["at"] - t0
                for c in calls
                if c["status"] != 429 and c["kind"].startswith("search") == (budget == "search")
            ]
            if not at:
                continue
            at.sort()
            span = at[-1] - at[0]
            seconds = Counter(int(a) for a in at)
            out[f"{side} {budget}"] = {
                "calls": len(at),
                "first_s": round(at[0], 2),
                "half_s": round(at[len(at) // 2], 2),  # half its calls made by then
                "last_s": round(at[-1], 2),
                # the gaps between its calls against the gaps its rate allows
                "busy": round((len(at) - 1) / (rate * span), 3) if span > 0 else None,
                # its calls in each second of the pass (JSON only)
                "per_s": [seconds[i] for i in range(int(at[-1]) + 1)],
            }
    return out


def _kinds(by_kind: dict[str, int]) -> dict[str, int]:
    """Calls per kind summed over sides (429-rejected requests included)."""
    c: Counter[str] = Counter()
    for k, v in by_kind.items():
        c[k.split(".", 1)[1]] += v
    return dict(c)


def run_connector(
    n: int, limits: bool, hooks: bool, scenarios: list[int], log: Any, profile_dir: str | None
) -> list[dict[str, Any]]:
    """Scenarios 1–3 on one fresh pair of portals (one variant, one limits setting)."""
    from connector.sandbox import PortalSpec, SandboxServer

    variant = "product" if hooks else "engine"
    tag = uuid.uuid4().hex[:8]
    tokens = {"BENCH_VENDOR_TOKEN": f"bench-v-{tag}", "BENCH_PARTNER_TOKEN": f"bench-p-{tag}"}
    specs = [
        PortalSpec("vendor", tokens["BENCH_VENDOR_TOKEN"], rate_limit_per_10s=RATE_PER_10S,
                   search_rate_per_s=SEARCH_PER_S),
        PortalSpec("partner-acme", tokens["BENCH_PARTNER_TOKEN"],
                   rate_limit_per_10s=RATE_PER_10S, search_rate_per_s=SEARCH_PER_S),
    ]  # fmt: skip
    rows: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix=f"dealsync-bench-{variant}-"))
    # search answers at once: the benchmark measures what a pass costs on a portal whose
    # index has caught up (a scheduled pass, minutes after the edits), not the lag, which
    # the tests over the sandbox exercise
    with SandboxServer(portals=specs, port=0, limits=limits, search_lag=0) as srv:
        write_project(root, srv.url, n)
        # records and the initial sync are dated 2 h back, so the incremental passes'
        # overlap window (5 min) does not re-read them: "a pass some time later"
        set_clock(srv, timedelta(hours=-2))
        for p in srv.portals:
            p.limits_enabled = False
        app = open_app(root, tokens, hooks=hooks, limits=False)
        app.setup()
        t = time.perf_counter()
        seed_partner(srv.portal("partner-acme"), n)
        log(f"  [{variant}] seeded {n} deals+companies+contacts in {time.perf_counter() - t:.1f}s")
        for p in srv.portals:
            p.limits_enabled = limits
        srv.reset_stats()

        def measured(scn: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
            # issue 17: the program's work in this pass, counted before it runs
            work = (program_work(srv, "partner-acme", _rules_of(root, tokens), first=scn == 1,
                                 due="dach" if scn == 1 else None) if hooks else None)  # fmt: skip
            srv.reset_stats()
            prof = (
                f"{profile_dir}/s{scn}-{variant}-{'on' if limits else 'off'}.txt"
                if profile_dir
                else None
            )
            res = run_child(
                {"what": "pass", "project": str(root), "tokens": tokens, "hooks": hooks,
                 "limits": limits}, profile=prof,
            )  # fmt: skip
            sc = _server_calls(srv)
            calls = sc["total"] - sc["rate_limited"]
            row = {
                "scenario": scn, "variant": variant, "limits": "on" if limits else "off",
                "size": n, "status": res["status"], "n_errors": res["n_errors"],
                "errors": res["errors"], "calls": calls, "calls_by_kind": _kinds(sc["by_kind"]),
                "calls_by_side_kind": sc["by_kind"], "rate_limited_429": sc["rate_limited"],
                "wall_s": round(res["wall_s"], 3), "peak_rss_mb": round(res["peak_rss_mb"], 1),
                "cpu_s": round(res["cpu_s"], 3), "cpu_main_s": round(res["cpu_main_s"], 3),
                "counts": res["counts"], **(extra or {}),
            }  # fmt: skip
            lb = lower_bound(scn, n, (extra or {}).get("changes"))
            row["min_calls"] = lb["calls"]
            row["min_parts"] = lb["parts"]
            row["calls_ratio"] = round(calls / lb["calls"], 3) if lb["calls"] else None
            row["records"] = (
                3 * n if scn in (1, 2) else sum((extra or {}).get("changes", {}).values())
            )
            row["calls_per_record"] = round(calls / max(1, row["records"]), 4)
            searches = row["calls_by_side_kind"]
            row["searches_per_type_side"] = {
                side: searches.get(f"{side}.search", 0) / 3 for side in ("partner", "vendor")
            }
            if limits:
                row["time_bound_s"] = round(lb["time_s"], 2)
                row["time_bound_sequential_s"] = round(lb["time_sequential_s"], 2)
                row["time_ratio"] = round(res["wall_s"] / lb["time_s"], 3)
                row["budgets"] = budget_timeline(
                    srv, {"partner": "partner-acme", "vendor": "vendor"}
                )
            if work is not None:
                pb = product_bound(scn, n, (extra or {}).get("changes"), work)
                add_product_bound(row, pb, res["wall_s"], limits)
                row["program_work"] = dataclasses.asdict(work)
            log(
                f"  [{variant}] scenario {scn}: {calls} calls (min {lb['calls']}, "
                f"×{row['calls_ratio']}), {row['wall_s']}s (cpu {row['cpu_s']}s, main thread "
                f"{row['cpu_main_s']}s), {row['peak_rss_mb']} MB, "
                f"429s {sc['rate_limited']}, status {res['status']}"
            )
            for budget, b in row.get("budgets", {}).items():
                log(
                    f"    {budget}: {b['calls']} calls from {b['first_s']}s (half by "
                    f"{b['half_s']}s) to {b['last_s']}s, busy {b['busy']}"
                )
            return row

        if 1 in scenarios:
            rows.append(measured(1))
        elif 2 in scenarios or 3 in scenarios:
            for p in srv.portals:
                p.limits_enabled = False
            boot = open_app(root, tokens, hooks=hooks, limits=False).sync("acme")
            assert boot.status in ("ok", "conflicts"), boot.error
            for p in srv.portals:
                p.limits_enabled = limits
        set_clock(srv, timedelta(0))
        if 2 in scenarios:
            rows.append(measured(2))
        if 3 in scenarios:
            changes = make_changes(srv, app, min(CHANGES, n))
            rows.append(measured(3, {"changes": changes}))
        app.close()
    shutil.rmtree(root, ignore_errors=True)
    return rows


def run_naive(n: int, sample: int, log: Any) -> list[dict[str, Any]]:
    """The naive baseline on a sample of the same data, scaled to N (limits off)."""
    from connector.sandbox import PortalSpec, SandboxServer

    tag = uuid.uuid4().hex[:8]
    pt, vt = f"naive-p-{tag}", f"naive-v-{tag}"
    k = min(n, sample)
    rows = []
    with SandboxServer(
        portals=[PortalSpec("partner-acme", pt), PortalSpec("vendor", vt)],
        port=0,
        limits=False,
        search_lag=0,
    ) as srv:
        srv.portal("partner-acme").properties  # noqa: B018
        from connector.adapters.hubspot import HubSpotAdapter
        from connector.records import PropertySpec

        HubSpotAdapter(token=pt, host=srv.url, rate_limit_per_10s=10**9).ensure_properties(
            [PropertySpec("deals", "dealsync_register", "register")]
        )
        triples = seed_partner(srv.portal("partner-acme"), k)
        naive = Naive(srv.url, pt, vt)
        t0 = time.perf_counter()
        naive.initial(k)
        w1 = time.perf_counter() - t0
        c1 = sum(naive.calls.values())
        rows.append(_naive_row(1, n, k, c1, w1, Counter(naive.calls), 3 * k, 3 * n))
        # the naive connector keeps an id map of what it created
        vids = {o: [str(r["id"]) for r in srv.portal("vendor").all(o)] for o in
                ("deals", "companies", "contacts")}  # fmt: skip
        pairs = {
            "deals": list(zip([t[0] for t in triples], vids["deals"], strict=False)),
            "companies": list(zip([t[1] for t in triples], vids["companies"], strict=False)),
            "contacts": list(zip([t[2] for t in triples], vids["contacts"], strict=False)),
        }
        for scn, n_changed in ((2, 0), (3, CHANGES)):
            naive.calls.clear()
            rng = random.Random(scn)
            share = min(round(n_changed * k / n) if n else 0, 3 * k)
            changed = {
                f"{o}:{p[0]}" for o in pairs for p in rng.sample(pairs[o], min(k, share // 3))
            }
            t0 = time.perf_counter()
            naive.incremental(pairs, changed)
            w = time.perf_counter() - t0
            rows.append(
                _naive_row(
                    scn,
                    n,
                    k,
                    sum(naive.calls.values()),
                    w,
                    Counter(naive.calls),
                    3 * k if scn == 2 else n_changed,
                    3 * n if scn == 2 else n_changed,
                    scale_calls=True,
                )
            )
    for r in rows:
        log(
            f"  [naive] scenario {r['scenario']}: {r['calls']} calls for N={n} (sample {k}), "
            f"{r['wall_s']}s limits off; ≥{r['time_floor_limits_on_s']}s with limits on"
        )
    return rows


def _naive_row(scn: int, n: int, k: int, calls: int, wall: float, kinds: Counter[str],
               records_sample: int, records: int, scale_calls: bool = True) -> dict[str, Any]:  # fmt: skip
    scale = n / k if k else 1.0
    total = round(calls * scale)
    return {
        "scenario": scn, "variant": "naive", "limits": "off", "size": n, "sample": k,
        "calls": total, "calls_by_kind": {kk: round(v * scale) for kk, v in kinds.items()},
        "calls_per_record": round(total / max(1, records), 3),
        "wall_s": round(wall * scale, 2),
        # every naive call is a non-search request: 10/s at best
        "time_floor_limits_on_s": round(total / (RATE_PER_10S / 10.0), 1),
        "min_calls": lower_bound(scn, n, _even_changes() if scn == 3 else None)["calls"],
    }  # fmt: skip


def _even_changes() -> dict[str, int]:
    out = {}
    for i, obj in enumerate(("deals", "companies", "contacts")):
        k = CHANGES // 3 + (1 if i < CHANGES % 3 else 0)
        out[f"partner {obj}"] = (k + 1) // 2
        out[f"vendor {obj}"] = k // 2
    return out


# ====================================================================== issue 17
# The product variant's own lower bound, the DACH/EU consent scenario (5) and the
# many-partners scenario (6). Kept apart from the engine's code above (merges).

# a domain lookup: up to 5 filter groups per search, each an IN of up to 100 values
DOMAIN_VALUES_PER_SEARCH = 5 * 100
# consent statuses: HubSpot's batch status read (communication-preferences v4
# ``statuses/batch/read``), taken at the usual 100 inputs per batch
CONSENT_STATUS_BATCH = 100
CONSENT_SCENARIO = 5
PARTNERS_SCENARIO = 6
CONSENT_COUNTRIES = ("DE", "AT", "FR")  # two DACH, one other EU, in turn
NOTICE_SHIFT_DAYS = 31  # the EU notice is due after ``notice_after_days`` (30)


@dataclass(frozen=True)
class ProgramWork:
    """What the program's rules must do in one pass, counted from the scenario's data
    (never from what the product happened to call): the input of :func:`product_bound`."""

    registrations: int = 0  # submissions decided this pass (each decision written back)
    domain_values: int = 0  # domain spellings to look up at the vendor (d and www.d)
    owned_companies: int = 0  # vendor companies found with a sales owner: read with deals
    won_stages: int = 0  # program-wide: one search per won stage for won vendor deals
    event_reads: int = 0  # notification actions with a cursor set: one event read each
    consent_due: int = 0  # contacts whose consent decision is due (DACH and EU)
    notices_due: int = 0  # of them, EU notices: the engagement events must be read
    engagement_events: int = 0  # event types that make a notice unnecessary
    status_reads: bool = True  # opted in via subscriptions (rules)
    property_reads: bool = True  # opted in via vendor contact properties (rules)


def program_parts(work: ProgramWork, partner: str = "partner") -> dict[tuple[str, str], int]:
    """The fewest calls the program's work needs, by (portal, kind): every lookup at its
    batch or filter maximum, ownership riding in the company upsert (0 calls), the
    decisions in the partner batch update, consent reads in batch (docs/benchmarks.md)."""
    parts: dict[tuple[str, str], int] = {}

    def add(portal: str, kind: str, k: int) -> None:
        if k:
            parts[(portal, kind)] = parts.get((portal, kind), 0) + k

    add("vendor", "search (registered domains, 5 groups × 100 values)",
        math.ceil(work.domain_values / DOMAIN_VALUES_PER_SEARCH))  # fmt: skip
    add("vendor", "batch_read (owned companies with deals, then their deals, at 100)",
        2 * math.ceil(work.owned_companies / BATCH))  # fmt: skip
    add(partner, "batch_update (decisions written back at 100)",
        math.ceil(work.registrations / BATCH))  # fmt: skip
    add("vendor", "search (won vendor deals, one per won stage)", work.won_stages)
    add("vendor", "events_read (one per notification action)", work.event_reads)
    if work.status_reads:
        add("vendor", "commprefs batch read (consent statuses at 100)",
            math.ceil(work.consent_due / CONSENT_STATUS_BATCH))  # fmt: skip
    if work.property_reads:
        add("vendor", "batch_read (consent contact properties at 100)",
            math.ceil(work.consent_due / BATCH))  # fmt: skip
    if work.notices_due:
        add("vendor", "events_read (engagement, one per event type over the window)",
            work.engagement_events)  # fmt: skip
    return parts


def bound_from_parts(parts: dict[tuple[str, str], int]) -> dict[str, Any]:
    """Calls and time bound of ``parts`` over any set of portals, as :func:`lower_bound`
    computes them: each portal's two budgets (searches at 5/s, the rest at 10/s) run at
    once, so the time bound is the slowest budget of any portal."""
    per_portal: dict[str, dict[str, float]] = {}
    for portal in sorted({p for p, _ in parts}):
        search = sum(v for (p, k), v in parts.items() if p == portal and k.startswith("search"))
        other = sum(v for (p, k), v in parts.items() if p == portal and not k.startswith("search"))
        per_portal[portal] = {
            "search_calls": search,
            "other_calls": other,
            "search_s": search / SEARCH_PER_S,
            "other_s": other / (RATE_PER_10S / 10.0),
        }
    times = [t for p in per_portal.values() for t in (p["search_s"], p["other_s"])] or [0.0]
    return {
        "calls": sum(parts.values()),
        "parts": {f"{p}: {k}": v for (p, k), v in parts.items()},
        "per_portal": per_portal,
        "time_s": max(times),
        "time_sequential_s": sum(times),
    }


def _engine_parts(scenario: int, n: int, changes: dict[str, int] | None = None,
                  partner: str = "partner") -> dict[tuple[str, str], int]:  # fmt: skip
    """:func:`lower_bound`'s parts by (portal, kind), the partner portal renamed."""
    out: dict[tuple[str, str], int] = {}
    for key, v in lower_bound(scenario, n, changes)["parts"].items():
        side, kind = key.split(": ", 1)
        portal = partner if side == "partner" else side
        out[(portal, kind)] = out.get((portal, kind), 0) + v
    return out


def product_bound(scenario: int, n: int, changes: dict[str, int] | None,
                  work: ProgramWork) -> dict[str, Any]:  # fmt: skip
    """The product's bound: the engine's job (:func:`lower_bound`) plus the program's;
    under ``"traded"``, the same with the product's :func:`listing_trade`."""
    parts = _engine_parts(scenario, n, changes)
    for key, v in program_parts(work).items():
        parts[key] = parts.get(key, 0) + v
    bound = bound_from_parts(parts)
    trade = listing_trade(scenario, n)
    bound["trade"] = {f"{p}: {k}": v for (p, k), v in trade.items()}
    bound["traded"] = bound_from_parts(traded(parts, trade))
    return bound


# On a first sync with the program's hooks, the product reads the deals' contacts with
# each chunk of deals by batch read (engine/sync.py, _read_children) on the partner
# portal's general budget, beside the companies' searches by id
LIST_PAGE = 100  # HubSpot's batch read (and list endpoint): 100 a call


def listing_trade(scenario: int, n: int, partner: str = "partner") -> dict[tuple[str, str], int]:
    """The calls the product trades for wall time, by (portal, kind): on a first sync
    (``scenario`` 1; 5a and 6 are first syncs too) the partner's N contacts are read
    by batch read at 100 a call instead of searched at 200 a page, so the companies'
    searches and the contacts' reads use the partner portal's two budgets side by side.

    Not part of the bound, which stays the fewest calls the work needs (searching
    them). Reported next to it (``product_trade_calls``, ``product_traded_calls_ratio``)
    so the calls ratio stays the honest one and the extra calls are accounted for.
    The time bound is the shorter of the two ways (:func:`add_product_bound`)."""
    if scenario != 1:
        return {}
    return {
        (partner, "batch read (contacts at 100/call, traded for their searches)"):
            max(1, math.ceil(n / LIST_PAGE)),
        (partner, "search (contacts at 200/page, batch read instead)"):
            -max(1, math.ceil(n / SEARCH_PAGE)),
    }  # fmt: skip


def traded(parts: dict[tuple[str, str], int],
           trade: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:  # fmt: skip
    """``parts`` with ``trade`` added (what the product's way of doing the work costs)."""
    out = dict(parts)
    for key, v in trade.items():
        out[key] = out.get(key, 0) + v
    return out


def program_work(srv: Any, partner_portal: str, rules: Any, *, first: bool,
                 due: str | None = None) -> ProgramWork:  # fmt: skip
    """The program's work for a pass over the data now in the sandbox. ``first``: the
    partner's first pass (every registered deal is decided and written back; the
    notification cursors are only set). ``due``: which consent decisions fall due in
    this pass, ``"dach"`` (at once) or ``"eu"`` (notices, after the window)."""
    from connector.program.consent import region
    from connector.program.domains import DomainError, registrable_domain

    portal = srv.portal(partner_portal)
    registered = [
        d for d in portal.all("deals")
        if (d.get("properties") or {}).get("dealsync_register") == "true"
    ]  # fmt: skip
    domains: set[str] = set()
    for c in portal.all("companies"):
        try:
            domains.add(registrable_domain((c.get("properties") or {}).get("domain") or ""))
        except DomainError:
            continue
    owner = rules.vendor_signals.sales_owner_property
    owned = sum(
        1 for c in srv.portal("vendor").all("companies")
        if (c.get("properties") or {}).get(owner)
        and (c.get("properties") or {}).get("domain") in domains
    ) if first else 0  # fmt: skip
    consent = rules.consent
    regions: Counter[str] = Counter(
        region((p.get("properties") or {}).get("country"), consent) for p in portal.all("contacts")
    )
    due_n = regions.get(due, 0) if due else 0
    return ProgramWork(
        registrations=len(registered) if first else 0,
        domain_values=2 * len(domains) if first else 0,
        owned_companies=owned,
        won_stages=len(dict.fromkeys(rules.vendor_signals.won_stages)),
        event_reads=0 if first else len(rules.notifications.actions),
        consent_due=due_n,
        notices_due=due_n if due == "eu" else 0,
        engagement_events=len(consent.engagement_events),
        status_reads=consent.opted_in_via_subscriptions,
        property_reads=bool(consent.opted_in_properties),
    )


def add_product_bound(row: dict[str, Any], bound: dict[str, Any], wall_s: float,
                      limits: bool) -> dict[str, Any]:  # fmt: skip
    """The product bound's figures on a measured row (``product_*`` keys): the calls
    against the fewest calls (the bound), the calls the product trades for wall time
    (:func:`listing_trade`) and the calls against the bound plus that trade; the wall
    against the shortest time either way allows."""
    row["product_min_calls"] = bound["calls"]
    row["product_min_parts"] = bound["parts"]
    row["product_calls_ratio"] = round(row["calls"] / bound["calls"], 3) if bound["calls"] else None
    with_trade = bound.get("traded") or bound
    row["product_trade_calls"] = with_trade["calls"] - bound["calls"]
    row["product_trade_parts"] = bound.get("trade") or {}
    row["product_traded_calls_ratio"] = (
        round(row["calls"] / with_trade["calls"], 3) if with_trade["calls"] else None
    )
    if limits:
        time_s = min(bound["time_s"], with_trade["time_s"])
        row["product_time_bound_s"] = round(time_s, 2)
        row["product_time_ratio"] = round(wall_s / time_s, 3) if time_s else None
    return row


def _rules_of(root: Path, tokens: dict[str, str]) -> Any:
    from connector.config import load_project

    return load_project(root / "dealsync.yaml", env={**os.environ, **tokens}).rules


def _portal_calls(srv: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """Server-side counts of each named portal: calls (429s not counted), by kind, 429s."""
    out = {}
    for name in names:
        st = srv.stats(name)
        out[name] = {"calls": st["total"] - st["rate_limited"], "by_kind": dict(st["by_kind"]),
                     "rate_limited": st["rate_limited"]}  # fmt: skip
    return out


def seed_countries(portal: Any, countries: tuple[str, ...]) -> Counter[str]:
    """Give the seeded contacts (and their companies) these countries, in turn."""
    done: Counter[str] = Counter()
    for obj in ("companies", "contacts"):
        for i, r in enumerate(sorted(portal.all(obj), key=lambda r: int(r["id"]))):
            c = countries[i % len(countries)]
            portal.update(obj, str(r["id"]), {"country": c})
            if obj == "contacts":
                done[c] += 1
    return done


def run_consent(n: int, limits: bool, hooks: bool, log: Any) -> list[dict[str, Any]]:
    """Scenario 5: N registered deals whose contacts are German, Austrian and French.
    (5a) the initial sync, consent requests due at once for DACH contacts; (5b) a pass
    with no changes and the program's clock (``--now``) 31 days on: the EU notices due."""
    from connector.sandbox import PortalSpec, SandboxServer

    variant = "product" if hooks else "engine"
    tag = uuid.uuid4().hex[:8]
    tokens = {"BENCH_VENDOR_TOKEN": f"bench-v-{tag}", "BENCH_PARTNER_TOKEN": f"bench-p-{tag}"}
    specs = [PortalSpec(name, tokens[env], rate_limit_per_10s=RATE_PER_10S,
                        search_rate_per_s=SEARCH_PER_S)
             for name, env in (("vendor", "BENCH_VENDOR_TOKEN"),
                               ("partner-acme", "BENCH_PARTNER_TOKEN"))]  # fmt: skip
    rows = []
    root = Path(tempfile.mkdtemp(prefix=f"dealsync-bench-consent-{variant}-"))
    with SandboxServer(portals=specs, port=0, limits=limits, search_lag=0) as srv:
        write_project(root, srv.url, n)
        set_clock(srv, timedelta(hours=-2))
        for p in srv.portals:
            p.limits_enabled = False
        app = open_app(root, tokens, hooks=hooks, limits=False)
        app.setup()
        app.close()
        seed_partner(srv.portal("partner-acme"), n)
        by_country = seed_countries(srv.portal("partner-acme"), CONSENT_COUNTRIES)
        log(f"  [{variant}] seeded {n} deals, contacts by country {dict(by_country)}")
        for p in srv.portals:
            p.limits_enabled = limits
        rules = _rules_of(root, tokens)
        spec = {"what": "pass17", "project": str(root), "tokens": tokens, "hooks": hooks,
                "limits": limits}  # fmt: skip
        for label, scn, shift, first, due in (("5a", 1, 0, True, "dach"),
                                              ("5b", 2, NOTICE_SHIFT_DAYS, False, "eu")):  # fmt: skip
            if not first:
                set_clock(srv, timedelta(0))
            work = program_work(srv, "partner-acme", rules, first=first, due=due)
            srv.reset_stats()
            res = run_child({**spec, "now_days": shift})
            pc = _portal_calls(srv, ["partner-acme", "vendor"])
            calls = sum(v["calls"] for v in pc.values())
            engine = lower_bound(scn, n)
            row = {
                "scenario": label, "variant": variant, "limits": "on" if limits else "off",
                "size": n, "now_shift_days": shift, "status": res["status"],
                "n_errors": res["n_errors"], "errors": res["errors"], "calls": calls,
                "calls_by_side_kind": {f"{'partner' if k != 'vendor' else k}.{kk}": vv
                                       for k, v in pc.items() for kk, vv in v["by_kind"].items()},
                "rate_limited_429": sum(v["rate_limited"] for v in pc.values()),
                "wall_s": round(res["wall_s"], 3), "peak_rss_mb": round(res["peak_rss_mb"], 1),
                "counts": res["counts"], "contacts_by_country": dict(by_country),
                "program_work": dataclasses.asdict(work),
                "min_calls": engine["calls"],
                "calls_ratio": round(calls / engine["calls"], 3),
                "records": 3 * n, "calls_per_record": round(calls / (3 * n), 4),
            }  # fmt: skip
            if limits:
                row["time_bound_s"] = round(engine["time_s"], 2)
                row["time_ratio"] = round(res["wall_s"] / engine["time_s"], 3)
            bound = product_bound(scn, n, None, work if hooks else ProgramWork())
            if not hooks:  # the engine alone searches everything: nothing traded
                bound = {**bound, "trade": {}, "traded": bound}
            add_product_bound(row, bound, res["wall_s"], limits)
            row["consent_calls"] = sum(
                v for k, v in pc["vendor"]["by_kind"].items() if k.startswith("commprefs")
            ) + pc["vendor"]["by_kind"].get("events_read", 0)
            log(f"  [{variant}] scenario {label}: {calls} calls (product bound "
                f"{bound['calls']}, ×{row['product_calls_ratio']}), {row['wall_s']}s, "
                f"429s {row['rate_limited_429']}, status {res['status']}, "
                f"counts {res['counts']}")  # fmt: skip
            rows.append(row)
    shutil.rmtree(root, ignore_errors=True)
    return rows


def partners_yaml(base: str, partner_ids: list[str]) -> str:
    """``base`` (a one-partner ``dealsync.yaml`` for ``acme`` by :func:`write_project`)
    with the acme entry repeated for each of ``partner_ids``, each on its own token."""
    head, rest = base.split("partners:\n", 1)
    lines = rest.splitlines()
    entry = []
    while lines and lines[0].startswith("  "):
        entry.append(lines.pop(0))
    block = "\n".join(entry)
    out = []
    for i, pid in enumerate(partner_ids):
        out.append(
            block.replace("id: acme", f"id: {pid}")
            .replace("name: Acme Agency", f"name: Partner {i + 1:02d}")
            .replace("alerts@acme.example", f"alerts@{pid}.example")
            .replace("BENCH_PARTNER_TOKEN", f"BENCH_PARTNER_TOKEN_{pid.upper()}")
        )
    return head + "partners:\n" + "\n".join(out) + "\n" + "\n".join(lines) + "\n"


def run_partners(n_partners: int, m: int, limits: bool, hooks: bool,
                 log: Any, concurrency: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Scenario 6: P partners × M registered deals each, one ``sync --all`` against
    one vendor portal: the vendor portal's calls, utilisation, bound and 429s.
    ``concurrency``: ``sync_all``'s passes at once (None: the product's default)."""
    from connector.sandbox import PortalSpec, SandboxServer

    variant = "product" if hooks else "engine"
    tag = uuid.uuid4().hex[:8]
    pids = [f"p{i + 1:02d}" for i in range(n_partners)]
    tokens = {"BENCH_VENDOR_TOKEN": f"bench-v-{tag}"}
    tokens |= {f"BENCH_PARTNER_TOKEN_{p.upper()}": f"bench-{p}-{tag}" for p in pids}
    specs = [PortalSpec("vendor", tokens["BENCH_VENDOR_TOKEN"], rate_limit_per_10s=RATE_PER_10S,
                        search_rate_per_s=SEARCH_PER_S)]  # fmt: skip
    specs += [PortalSpec(f"partner-{p}", tokens[f"BENCH_PARTNER_TOKEN_{p.upper()}"],
                         rate_limit_per_10s=RATE_PER_10S, search_rate_per_s=SEARCH_PER_S)
              for p in pids]  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix=f"dealsync-bench-partners-{variant}-"))
    with SandboxServer(portals=specs, port=0, limits=limits, search_lag=0) as srv:
        write_project(root, srv.url, m)
        cfg = root / "dealsync.yaml"
        cfg.write_text(partners_yaml(cfg.read_text(), pids))
        set_clock(srv, timedelta(hours=-2))
        for portal in srv.portals:
            portal.limits_enabled = False
        app = open_app(root, tokens, hooks=hooks, limits=False)
        app.setup()
        app.close()
        for i, pid in enumerate(pids):
            seed_partner(srv.portal(f"partner-{pid}"), m, offset=i * m)
        log(f"  [{variant}] seeded {n_partners} partners × {m} deals")
        for portal in srv.portals:
            portal.limits_enabled = limits
        rules = _rules_of(root, tokens)
        parts: dict[tuple[str, str], int] = {}
        trade: dict[tuple[str, str], int] = {}  # each partner's first sync batch-reads its contacts
        events = 0
        for pid in pids:
            work = program_work(srv, f"partner-{pid}", rules, first=True)
            # program-wide vendor data (won deals, web events) is read once per `sync --all`
            events = max(events, work.event_reads)
            work = dataclasses.replace(work, won_stages=0, event_reads=0)
            for key, k in _engine_parts(1, m, partner=f"partner-{pid}").items():
                parts[key] = parts.get(key, 0) + k
            if hooks:
                for key, k in program_parts(work, partner=f"partner-{pid}").items():
                    parts[key] = parts.get(key, 0) + k
                trade = traded(trade, listing_trade(1, m, partner=f"partner-{pid}"))
        if hooks:
            once = ProgramWork(
                won_stages=len(dict.fromkeys(rules.vendor_signals.won_stages)), event_reads=events
            )
            for key, k in program_parts(once).items():
                parts[key] = parts.get(key, 0) + k
        bound = bound_from_parts(parts)
        vendor_bound = bound_from_parts({k: v for k, v in parts.items() if k[0] == "vendor"})
        srv.reset_stats()
        res = run_child({"what": "pass17", "project": str(root), "tokens": tokens,
                         "hooks": hooks, "limits": limits, "all": True,
                         "concurrency": concurrency})  # fmt: skip
        names = ["vendor", *(f"partner-{pid}" for pid in pids)]
        pc = _portal_calls(srv, names)
    shutil.rmtree(root, ignore_errors=True)
    v = pc["vendor"]
    v_search = v["by_kind"].get("search", 0)
    v_other = v["calls"] - v_search
    wall = res["wall_s"]
    calls = sum(x["calls"] for x in pc.values())
    row = {
        "scenario": PARTNERS_SCENARIO, "variant": variant, "limits": "on" if limits else "off",
        "size": m, "partners": n_partners, "status": res["status"], "n_errors": res["n_errors"],
        "errors": res["errors"], "calls": calls, "min_calls": bound["calls"],
        "calls_ratio": round(calls / bound["calls"], 3), "records": 3 * m * n_partners,
        "trade_calls": sum(trade.values()),
        "traded_calls_ratio": round(calls / (bound["calls"] + sum(trade.values())), 3),
        "calls_per_record": round(calls / (3 * m * n_partners), 4),
        "wall_s": round(wall, 3), "peak_rss_mb": round(res["peak_rss_mb"], 1),
        "counts": res["counts"], "rate_limited_429": sum(x["rate_limited"] for x in pc.values()),
        "vendor_calls": v["calls"], "vendor_calls_by_kind": v["by_kind"],
        "vendor_429": v["rate_limited"], "vendor_min_calls": vendor_bound["calls"],
        "vendor_min_parts": vendor_bound["parts"],
        "vendor_calls_ratio": round(v["calls"] / vendor_bound["calls"], 3),
        # share of the vendor portal's budgets the pass used while it ran
        "vendor_utilisation": round(v_other / (wall * RATE_PER_10S / 10.0), 3),
        "vendor_search_utilisation": round(v_search / (wall * SEARCH_PER_S), 3),
    }  # fmt: skip
    if limits:
        row["vendor_time_bound_s"] = round(vendor_bound["time_s"], 2)
        row["time_bound_s"] = round(bound["time_s"], 2)
        row["time_ratio"] = round(wall / vendor_bound["time_s"], 3)
    log(f"  [{variant}] scenario 6: {n_partners}×{m}: vendor {v['calls']} calls (bound "
        f"{vendor_bound['calls']}, ×{row['vendor_calls_ratio']}), {row['wall_s']}s, "
        f"vendor utilisation {row['vendor_utilisation']}, 429s {row['rate_limited_429']}, "
        f"status {res['status']}")  # fmt: skip
    return [row]


def child17(spec: dict[str, Any]) -> dict[str, Any]:
    """A measured pass of scenario 5 (``now_days``: the program's clock moved on) or
    6 (``all``: ``sync --all``), in the child process."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    root = Path(spec["project"])
    app = open_app(root, spec["tokens"], hooks=spec["hooks"], limits=spec["limits"])
    app.vendor()
    ids = [p.id for p in app.project.config.partners]
    for pid in ids:
        app.partner_crm(pid)  # build the clients before the clock starts
    days = spec.get("now_days") or 0
    now = datetime.now(UTC) + timedelta(days=days) if days else None
    t0 = time.perf_counter()
    at_once = {"concurrency": spec["concurrency"]} if spec.get("concurrency") else {}

    def measured() -> list[Any]:  # scenario 6: `sync --all`; 5: one partner's pass
        if spec.get("all"):
            return app.sync_all(now=now, **at_once)
        return [app.sync(ids[0], now=now)]

    results = measured()
    wall = time.perf_counter() - t0
    app.close()
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r.counts)
    bad = [r.status for r in results if r.status not in ("ok",)]
    return {
        "wall_s": wall, "peak_rss_mb": _peak_rss_mb(),
        "status": bad[0] if bad else "ok",
        "error": next((r.error for r in results if r.error), None),
        "errors": [str(e) for r in results for e in r.errors][:5],
        "n_errors": sum(len(r.errors) for r in results), "counts": dict(counts),
    }  # fmt: skip


def targets17(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 17's targets on the product bound (met / MISSED); the 429s and record
    errors of the new scenarios' rows are checked by :func:`targets`."""
    out = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"target": name, "met": ok, "detail": detail})

    for r in rows:
        tag = f"({r['scenario']}) {r['variant']}, limits {r['limits']}"
        if r["variant"] == "product" and r.get("product_min_calls"):
            trade = r.get("product_trade_calls") or 0
            add(f"{tag}: calls ≤ 1.1 × the product's bound", r["product_calls_ratio"] <= 1.1,
                f"{r['calls']} / {r['product_min_calls']} = ×{r['product_calls_ratio']}"
                + (f" (of which {trade:+d} traded for wall time: contacts by batch read; "
                   f"×{r['product_traded_calls_ratio']} the bound plus the trade)"
                   if trade else ""))  # fmt: skip
            if r["scenario"] == 1 and r.get("product_time_ratio") is not None:
                add(f"{tag}: wall ≤ 1.3 × the product's rate-limit bound",
                    r["product_time_ratio"] <= 1.3,
                    f"{r['wall_s']}s / {r['product_time_bound_s']}s = ×{r['product_time_ratio']}")  # fmt: skip
            if r["scenario"] == 2 and r.get("product_time_ratio") is not None:
                add(f"{tag}: quiet pass ≤ 1.2 × its bound", r["product_time_ratio"] <= 1.2,
                    f"{r['wall_s']}s / {r['product_time_bound_s']}s = ×{r['product_time_ratio']}")  # fmt: skip
        if r["scenario"] == PARTNERS_SCENARIO:
            if r["limits"] == "on":
                add(f"{tag}: wall ≤ 1.2 × the vendor portal's bound", r["time_ratio"] <= 1.2,
                    f"{r['wall_s']}s / {r['vendor_time_bound_s']}s = ×{r['time_ratio']}")  # fmt: skip
            add(f"{tag}: vendor calls ≤ 1.1 × the vendor portal's bound",
                r["vendor_calls_ratio"] <= 1.1,
                f"{r['vendor_calls']} / {r['vendor_min_calls']} = ×{r['vendor_calls_ratio']}")  # fmt: skip
    return out


def print_table17(rows: list[dict[str, Any]]) -> None:
    """The product bound of each product row, and scenario 6's vendor portal."""
    prod = [r for r in rows if r.get("product_min_calls")]
    if prod:
        print()
        hdr = (f"{'scn':>3} {'variant':8} {'lim':3} {'N':>6} {'calls':>7} {'prod.min':>8} "
               f"{'×pmin':>6} {'trade':>6} {'×pmin+t':>7} {'wall s':>8} {'pbound s':>8} "
               f"{'×pbound':>7}")  # fmt: skip
        print("product bound")
        print(hdr)
        print("-" * len(hdr))
        for r in prod:
            print(f"{r['scenario']!s:>3} {r['variant']:8} {r['limits']:3} {r['size']:>6} "
                  f"{r['calls']:>7} {r['product_min_calls']:>8} {r['product_calls_ratio']!s:>6} "
                  f"{r.get('product_trade_calls', 0):>+6} "
                  f"{r.get('product_traded_calls_ratio', '')!s:>7} "
                  f"{r['wall_s']:>8} {r.get('product_time_bound_s', '')!s:>8} "
                  f"{r.get('product_time_ratio', '')!s:>7}")  # fmt: skip
    for r in rows:
        if r["scenario"] == PARTNERS_SCENARIO:
            print(
                f"  6 {r['variant']} {r['partners']}×{r['size']} limits {r['limits']}: vendor "
                f"{r['vendor_calls']} calls (bound {r['vendor_min_calls']}, "
                f"×{r['vendor_calls_ratio']}), wall {r['wall_s']}s, vendor bound "
                f"{r.get('vendor_time_bound_s', '–')}s (×{r.get('time_ratio', '–')}), "
                f"utilisation {r['vendor_utilisation']} (search "
                f"{r['vendor_search_utilisation']}), 429s {r['rate_limited_429']}"
            )


def run_issue17(args: Any, scenarios: list[int], variants: list[str],
                limit_modes: list[bool], log: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Scenarios 5 (DACH/EU consent) and 6 (many partners), when asked for."""
    rows: list[dict[str, Any]] = []
    for limits in limit_modes:
        for variant in variants:
            if CONSENT_SCENARIO in scenarios:
                log(f"scenario 5, {variant}, limits {'on' if limits else 'off'}, N={args.size}")
                rows += run_consent(args.size, limits, variant == "product", log)
            if PARTNERS_SCENARIO in scenarios:
                log(f"scenario 6, {variant}, limits {'on' if limits else 'off'}, "
                    f"{args.partners} partners × {args.size}")  # fmt: skip
                if getattr(args, "workers", 0):
                    if limits and variant == "product":
                        rows += run_partners_workers(args.partners, args.size, args.workers,
                                                     True, log, args.worker_concurrency)  # fmt: skip
                    continue
                rows += run_partners(args.partners, args.size, limits, variant == "product", log,
                                     args.all_concurrency)  # fmt: skip
    return rows


# ---------------------------------------------------------------- scenario 6, workers
# (issue 18) the many-partner scenario through ``dealsync worker`` processes on
# PostgreSQL, sharing the vendor portal's budget in it. Kept apart (merges).

WORKER_CONCURRENCY = 4  # passes at a time per worker process


def bench_postgres(tag: str) -> tuple[str, Any]:
    """A fresh PostgreSQL database for the run (``DEALSYNC_BENCH_POSTGRES_URL``, else
    the local server) and a function dropping it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = os.environ.get(
        "DEALSYNC_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
    name = f"dealsync_bench_{tag}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.cli", "-c", str(root / "dealsync.yaml"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def run_worker_pass(root: Path, env: dict[str, str], workers: int, concurrency: int) -> float:
    """Queue a pass per partner, then run ``workers`` worker processes until the queue
    is empty; the wall time from the workers' start to the last one's exit."""
    queued = _cli(root, env, "enqueue", "sync", "--all")
    out, _ = queued.communicate()
    if queued.returncode != 0:
        raise RuntimeError(f"enqueue failed:\n{out[-3000:]}")
    t0 = time.perf_counter()
    procs = [
        _cli(root, env, "worker", "--concurrency", str(concurrency), "--until-empty")
        for _ in range(workers)
    ]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    bad = [o for p, o in zip(procs, outputs, strict=True) if p.returncode != 0]
    if bad:
        raise RuntimeError(f"a worker failed:\n{bad[0][-3000:]}")
    return wall


def _pass_statuses(root: Path, env: dict[str, str]) -> Counter[str]:
    from connector.api import Dealsync
    from connector.config import load_project

    app = Dealsync(load_project(root / "dealsync.yaml", env=env), env=env)
    got: Counter[str] = Counter()
    for partner in app.project.config.partners:
        got.update(r.status for r in app.runs(partner.id))
    app.close()
    return got


def _vendor_bound(srv: Any, root: Path, tokens: dict[str, str], pids: list[str], m: int,
                  scenario: int, hooks: bool) -> dict[str, Any]:  # fmt: skip
    """The vendor portal's bound for a ``sync --all`` of every partner (``scenario`` 1:
    initial, 2: quiet), as :func:`run_partners` computes it."""
    rules = _rules_of(root, tokens)
    parts: dict[tuple[str, str], int] = {}
    events = 0  # the web events of lead notifications: program-wide, read once per round
    for pid in pids:
        for key, k in _engine_parts(scenario, m, partner=f"partner-{pid}").items():
            parts[key] = parts.get(key, 0) + k
        if hooks:
            work = program_work(srv, f"partner-{pid}", rules, first=scenario == 1)
            events = max(events, work.event_reads)
            work = dataclasses.replace(work, won_stages=0, event_reads=0)
            for key, k in program_parts(work, partner=f"partner-{pid}").items():
                parts[key] = parts.get(key, 0) + k
    if hooks:
        once = ProgramWork(
            won_stages=len(dict.fromkeys(rules.vendor_signals.won_stages)), event_reads=events
        )
        for key, k in program_parts(once).items():
            parts[key] = parts.get(key, 0) + k
    return bound_from_parts({k: v for k, v in parts.items() if k[0] == "vendor"})


def run_partners_workers(n_partners: int, m: int, workers: int, hooks: bool, log: Any,
                         concurrency: int = WORKER_CONCURRENCY) -> list[dict[str, Any]]:  # fmt: skip
    """Scenario 6 through ``workers`` worker processes on PostgreSQL (the budgets
    shared in it): the initial sync and a quiet pass, each measured on the vendor
    portal — calls, wall time vs its rate-limit bound, 429s, budget utilisation."""
    from connector.sandbox import PortalSpec, SandboxServer

    variant = "product" if hooks else "engine"
    tag = uuid.uuid4().hex[:8]
    pids = [f"p{i + 1:03d}" for i in range(n_partners)]
    tokens = {"BENCH_VENDOR_TOKEN": f"bench-v-{tag}"}
    tokens |= {f"BENCH_PARTNER_TOKEN_{p.upper()}": f"bench-{p}-{tag}" for p in pids}
    specs = [PortalSpec("vendor", tokens["BENCH_VENDOR_TOKEN"], rate_limit_per_10s=RATE_PER_10S,
                        search_rate_per_s=SEARCH_PER_S)]  # fmt: skip
    specs += [PortalSpec(f"partner-{p}", tokens[f"BENCH_PARTNER_TOKEN_{p.upper()}"],
                         rate_limit_per_10s=RATE_PER_10S, search_rate_per_s=SEARCH_PER_S)
              for p in pids]  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix=f"dealsync-bench-workers-{variant}-"))
    state_url, drop = bench_postgres(tag)
    env = {**os.environ, **tokens, "DEALSYNC_MAIL_SINK": str(root / "mail")}
    env.pop("DEALSYNC_LIMITS_URL", None)  # the budgets live in the state's PostgreSQL
    rows: list[dict[str, Any]] = []
    try:
        with SandboxServer(portals=specs, port=0, limits=True, search_lag=0) as srv:
            write_project(root, srv.url, m)
            cfg = root / "dealsync.yaml"
            text = partners_yaml(cfg.read_text(), pids)
            text = "\n".join(
                f"state_url: '{state_url}'" if ln.startswith("state_url:") else ln
                for ln in text.splitlines()
            )
            cfg.write_text(text + "\n")
            if not hooks:
                log("  (engine variant: the workers run the product's hooks; use product)")
            set_clock(srv, timedelta(hours=-2))
            for portal in srv.portals:
                portal.limits_enabled = False
            setup = _cli(root, env, "setup")
            out, _ = setup.communicate()
            if setup.returncode != 0:
                raise RuntimeError(f"setup failed:\n{out[-3000:]}")
            schema = _cli(root, env, "worker", "--apply-schema", "--until-empty")
            out, _ = schema.communicate()
            if schema.returncode != 0:
                raise RuntimeError(f"the queue's schema failed:\n{out[-3000:]}")
            for i, pid in enumerate(pids):
                seed_partner(srv.portal(f"partner-{pid}"), m, offset=i * m)
            log(f"  [workers] seeded {n_partners} partners × {m} deals")
            for portal in srv.portals:
                portal.limits_enabled = True
            names = ["vendor", *(f"partner-{pid}" for pid in pids)]
            for scenario, label in ((1, "initial"), (2, "quiet")):
                bound = _vendor_bound(srv, root, tokens, pids, m, scenario, hooks=True)
                if scenario == 2:
                    set_clock(srv, timedelta(0))
                srv.reset_stats()
                wall = run_worker_pass(root, env, workers, concurrency)
                pc = _portal_calls(srv, names)
                row = _workers_row(scenario, label, pc, bound, wall, n_partners, m, workers, log)
                row["concurrency"] = concurrency
                rows.append(row)
            statuses = _pass_statuses(root, env)
            for row in rows:
                row["run_statuses"] = dict(statuses)
    finally:
        drop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def _workers_row(scenario: int, label: str, pc: dict[str, dict[str, Any]],
                 bound: dict[str, Any], wall: float, n_partners: int, m: int, workers: int,
                 log: Any) -> dict[str, Any]:  # fmt: skip
    v = pc["vendor"]
    v_search = v["by_kind"].get("search", 0)
    v_other = v["calls"] - v_search
    row = {
        "scenario": f"6w-{label}", "variant": "workers", "limits": "on", "size": m,
        "partners": n_partners, "workers": workers,
        # the vendor portal is what is measured here: its calls against its bound
        "calls": v["calls"], "min_calls": bound["calls"],
        "calls_per_record": round(v["calls"] / (3 * m * n_partners), 4),
        "all_calls": sum(x["calls"] for x in pc.values()), "time_bound_s": round(bound["time_s"], 2),
        "rate_limited_429": sum(x["rate_limited"] for x in pc.values()),
        "vendor_calls": v["calls"], "vendor_calls_by_kind": v["by_kind"],
        "vendor_429": v["rate_limited"], "vendor_min_calls": bound["calls"],
        "vendor_calls_ratio": round(v["calls"] / bound["calls"], 3) if bound["calls"] else None,
        "wall_s": round(wall, 2), "vendor_time_bound_s": round(bound["time_s"], 2),
        "time_ratio": round(wall / bound["time_s"], 3) if bound["time_s"] else None,
        "vendor_utilisation": round(v_other / (wall * RATE_PER_10S / 10.0), 3),
        "vendor_search_utilisation": round(v_search / (wall * SEARCH_PER_S), 3),
    }  # fmt: skip
    log(f"  [workers] scenario 6 {label}, {n_partners}×{m}, {workers} workers: vendor "
        f"{v['calls']} calls (bound {bound['calls']}, ×{row['vendor_calls_ratio']}), "
        f"{row['wall_s']}s vs bound {row['vendor_time_bound_s']}s (×{row['time_ratio']}), "
        f"utilisation {row['vendor_utilisation']} (search {row['vendor_search_utilisation']}), "
        f"429s {row['rate_limited_429']}")  # fmt: skip
    return row


def targets_workers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 18's targets for scenario 6 through workers (met / MISSED)."""
    out = []
    for r in rows:
        if not str(r["scenario"]).startswith("6w-"):
            continue
        tag = f"({r['scenario']}) {r['partners']}×{r['size']}, {r['workers']} workers"
        out.append({"target": f"{tag}: zero 429s", "met": r["rate_limited_429"] == 0,
                    "detail": f"{r['rate_limited_429']} 429s"})  # fmt: skip
        out.append({"target": f"{tag}: wall ≤ 1.2 × the vendor portal's bound",
                    "met": (r["time_ratio"] or 0) <= 1.2,
                    "detail": f"{r['wall_s']}s / {r['vendor_time_bound_s']}s = ×{r['time_ratio']}"})  # fmt: skip
    return out


def print_table_workers(rows: list[dict[str, Any]]) -> None:
    """Scenario 6 through workers: one line per measured pass."""
    for r in rows:
        if str(r["scenario"]).startswith("6w-"):
            print(
                f"  {r['scenario']} {r['partners']}×{r['size']}, {r['workers']} workers × "
                f"{r['concurrency']}: vendor {r['vendor_calls']} calls (bound "
                f"{r['vendor_min_calls']}, ×{r['vendor_calls_ratio']}), wall {r['wall_s']}s, "
                f"vendor bound {r['vendor_time_bound_s']}s (×{r['time_ratio']}), utilisation "
                f"{r['vendor_utilisation']} (search {r['vendor_search_utilisation']}), 429s "
                f"{r['rate_limited_429']}, runs {r.get('run_statuses')}"
            )


# ====================================================================== main


def targets(rows: list[dict[str, Any]], engine: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"target": name, "met": ok, "detail": detail})

    for r in rows:
        if r["variant"] not in ("engine", "product"):
            continue
        tag = f"({r['scenario']}) {r['variant']}, limits {r['limits']}"
        if r["scenario"] in (1, 3) and r["variant"] == "engine":
            add(f"{tag}: calls ≤ 1.1 × min", r["calls_ratio"] <= 1.1,
                f"{r['calls']} / {r['min_calls']} = ×{r['calls_ratio']}")  # fmt: skip
        if r["scenario"] == 2:
            s = r["searches_per_type_side"]
            add(f"{tag}: ≤ 1 search per type per side", max(s.values()) <= 1.0,
                f"partner {s['partner']:.2f}, vendor {s['vendor']:.2f} per type")  # fmt: skip
        if r["limits"] == "on":
            add(f"{tag}: zero 429s", r["rate_limited_429"] == 0, f"{r['rate_limited_429']} 429s")
            if r["variant"] == "engine":
                add(f"{tag}: wall ≤ 1.2 × rate-limit bound", r["time_ratio"] <= 1.2,
                    f"{r['wall_s']}s / {r['time_bound_s']}s = ×{r['time_ratio']}")  # fmt: skip
        if r["scenario"] == 1:
            add(f"{tag}: peak RSS ≤ 300 MB", r["peak_rss_mb"] <= 300, f"{r['peak_rss_mb']} MB")
        if r.get("n_errors"):
            add(f"{tag}: no record errors", False, f"{r['n_errors']}: {r['errors'][:2]}")
    if engine:
        add("(4) reconcile 100k × 10 ≤ 1.5 s", engine["wall_s"] <= 1.5,
            f"{engine['wall_s']:.3f}s (best of 3: {engine['wall_best_s']:.3f}s)")  # fmt: skip
    return out


def print_table(rows: list[dict[str, Any]], engine: dict[str, Any] | None, tg: list[dict[str, Any]]) -> None:  # fmt: skip
    hdr = (f"{'scn':>3} {'variant':8} {'lim':3} {'N':>6} {'calls':>7} {'min':>5} {'×min':>6} "
           f"{'calls/rec':>9} {'wall s':>8} {'bound s':>8} {'×bound':>6} {'429':>4} {'RSS MB':>7}")  # fmt: skip
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ratio = r.get("calls_ratio") or round(r["calls"] / r["min_calls"], 1)
        bound = r.get("time_bound_s", "")
        tr = r.get("time_ratio", "")
        if r["variant"] == "naive":
            bound, tr = f"≥{r['time_floor_limits_on_s']}", ""
        print(
            f"{r['scenario']:>3} {r['variant']:8} {r['limits']:3} {r['size']:>6} {r['calls']:>7} "
            f"{r['min_calls']:>5} {ratio:>6} {r['calls_per_record']:>9} {r['wall_s']:>8} "
            f"{bound!s:>8} {tr!s:>6} {r.get('rate_limited_429', ''):>4} "
            f"{r.get('peak_rss_mb', ''):>7}"
        )
    if engine:
        print(
            f"  4 engine   -   {engine['pairs']:>6} reconcile {engine['fields']} fields: "
            f"{engine['wall_s']:.3f}s (best {engine['wall_best_s']:.3f}s), "
            f"{engine['actions']} actions, build {engine['build_s']:.2f}s, "
            f"RSS {engine['peak_rss_mb']:.0f} MB"
        )
    print()
    for t in tg:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['detail']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--limits", choices=["on", "off", "both"], default="both")
    ap.add_argument("--scenarios", default="1,2,3,4")
    ap.add_argument("--variants", default="product,engine")
    ap.add_argument("--naive-sample", type=int, default=300)
    ap.add_argument("--engine-pairs", type=int, default=ENGINE_PAIRS)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--profile-dir", help="pyinstrument text profile of each measured pass")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--partners", type=int, default=15,
                    help="scenario 6: partners (each with --size deals) against one vendor")  # fmt: skip
    ap.add_argument("--all-concurrency", type=int, default=None, metavar="K",
                    help="scenario 6: sync_all's passes at once (default: the product's, "
                    "4; 1: one after another)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=0,
                    help="scenario 6 through N `dealsync worker` processes on PostgreSQL "
                    "(the product, limits on; DEALSYNC_BENCH_POSTGRES_URL)")  # fmt: skip
    ap.add_argument("--worker-concurrency", type=int, default=WORKER_CONCURRENCY,
                    help="with --workers: passes at a time per worker process")  # fmt: skip
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        child_main(json.loads(args._child))
        return 0

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    scenarios = sorted({int(s) for s in args.scenarios.split(",") if s.strip()})
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    limit_modes = {"on": [True], "off": [False], "both": [False, True]}[args.limits]
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
    t_all = time.perf_counter()
    rows: list[dict[str, Any]] = []
    conn = [s for s in scenarios if s in (1, 2, 3)]
    if conn and "product" in variants and args.size > max_capacity():
        ap.error(
            f"--size {args.size}: the product variant registers every deal, and a tier "
            f"holds at most {max_capacity()} registrations; use a smaller --size or "
            "--variants engine"
        )
    if conn:
        for limits in limit_modes:
            for variant in variants:
                log(
                    f"scenarios {conn}, {variant}, limits {'on' if limits else 'off'}, N={args.size}"
                )
                rows += run_connector(args.size, limits, variant == "product", conn, log,
                                      args.profile_dir)  # fmt: skip
        if args.naive_sample > 0:
            log(f"naive baseline (sample {min(args.size, args.naive_sample)})")
            rows += [
                r for r in run_naive(args.size, args.naive_sample, log) if r["scenario"] in conn
            ]
    engine = None
    if 4 in scenarios:
        engine = run_child({"what": "engine", "pairs": args.engine_pairs})
        log(f"scenario 4: {engine}")
    rows += run_issue17(args, scenarios, variants, limit_modes, log)
    tg = targets(rows, engine) + targets17(rows) + targets_workers(rows)
    print_table(rows, engine, tg)
    print_table17(rows)
    print_table_workers(rows)
    report = {
        "machine": {
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        },
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "size": args.size, "rows": rows, "engine": engine, "targets": tg,
        "elapsed_s": round(time.perf_counter() - t_all, 1),
    }  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
