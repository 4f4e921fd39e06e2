#!/usr/bin/env python3
"""Chaos campaigns: random edits on both sides, passes killed at random points, write
failures, HubSpot-sandbox fault storms and restarts, a misbehaving SMTP server, webhook
deliveries that fail midway, records deleted and created again — then convergence and
invariants.

    python scripts/chaos.py --campaigns 1000 --seed 7 [--sandbox-every 10] [--workers 2]
        [--engine-only] [--no-smtp] [--no-webhooks] [--no-recreate]
    python scripts/chaos.py --seed 13 --only 89    # just campaign 89 of that seed

A campaign is one fresh world (a project folder in RAM: SQLite state, LocalCRM files,
the shipped mappings and rules, the program's hooks). Its steps are drawn from a
random generator seeded by ``(seed, campaign)``: seed a registered deal, edit a field
on either side (both sides at once too), delete on either side, win a deal, or run a
pass — clean, with injected write failures, or in a forked child that ``SIGKILL``\\ s
itself at a random named point. Every ``--sandbox-every``-th campaign puts the vendor
on the HubSpot sandbox (through the real adapter) with 429 storms, 5xx, latency and
dropped connections, and restarts the sandbox (same port, ``--data`` persistence)
mid-pass.

Three newer faults are on by default, each drawn from a generator of its own (so
``--no-<fault>`` leaves the rest of a campaign as it was):

* ``smtp`` — two in three product campaigns mail through the real ``SmtpTransport`` to
  a local SMTP server (``connector.testing.mail.ChaosSMTP``) that, in a share
  of its sessions, answers 250 to DATA and then 421 to QUIT, closes or resets the
  connection after the 250, answers 451, or resets before answering. It behaves again
  for convergence, when the outbox is flushed with time moved past every backoff.
* ``webhooks`` — on the file-CRM vendor, a vendor edit that the change search misses
  (modified before the pass's window, as when HubSpot's index lags) is told by a signed
  batch to the service's real ``POST /v1/webhooks/hubspot``; a delivery may fail
  midway (the state database refuses its n-th write, as a locked SQLite does) and is
  retried as HubSpot does: same event ids, fresh timestamp and signature.
* ``recreate`` — a deal's contact (or company) is deleted on one side and created again,
  same e-mail (domain), on the same side, associated with the deal.

After the steps: passes until one writes nothing, then the invariants — no duplicate
records or links, no link left pending, linked ``both`` fields equal in canonical form
(value_map applied) unless a conflict is open on them, a further pass writes nothing,
exactly one commission per deal won while its domain was owned (by its close date; written back), no duplicate outbox row, no
e-mail received twice except once per kill inside the outbox's documented window, every
e-mail the SMTP server accepted marked sent, no two live contacts with one e-mail or
companies with one domain on either side, and every vendor edit told by webhook on the
partner side (unless changed again since). Prints a summary (with the count of each
fault injected); exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.config.models import PortalConfig
from connector.engine.reconcile import FieldPlan
from connector.engine.sync import crash_points
from connector.engine.values import ValueError_, canonical
from connector.mail.transport import SmtpTransport
from connector.program.commission import closed_at
from connector.testing.clock import FileClock
from connector.testing.crash import fork_and_wait, kill_me
from connector.testing.faults import WebhookEndpoint, late_indexed_edit, webhook_event
from connector.testing.mail import ChaosSMTP, LogTransport
from connector.testing.world import (
    DEAL_STAGES,
    HubSpotPortals,
    project_yaml,
    seed_deal,
    write_project,
)

SRC = "dealsync_source_id"
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
OBJECTS = ("companies", "contacts", "deals")
POINTS = [
    *crash_points(["companies", "contacts", "deals"]),
    "while_writing_commission",
    "while_sending_outbox",
]
FAULT_KINDS = ("smtp", "webhooks", "recreate")
# what a webhook step changes on the vendor side (fields that travel both ways)
WEBHOOK_FIELDS = {
    "deals": ("amount", "closedate", "deal_currency_code"),
    "contacts": ("firstname", "lastname", "country"),
}
# delete-and-recreate: the identity a new record shares with the one it replaces, and
# the fields a user would type in again
IDENTITY = {"contacts": "email", "companies": "domain"}
RETYPED = {
    "contacts": ("firstname", "lastname", "email", "company", "country"),
    "companies": ("name", "domain", "website", "country"),
}
WRITE_CALLS = (
    "batch_upsert",
    "batch_update",
    "batch_archive",
    "batch_associate",
    "assoc_batch_create",
    "batch_create",
)


def writes_of(result: Any) -> dict[str, int]:
    """The write calls a pass made, from its run log (reads and searches are not writes)."""
    return {k: v for k, v in result.api_calls.items() if v and k.split(".", 1)[-1] in WRITE_CALLS}


VENDOR_TOKEN, PARTNER_TOKEN = "chaos-vendor", "chaos-acme"


def _close_time(value: object) -> datetime | None:
    """A vendor deal's close date as an instant (an ISO date or date-time, or epoch
    milliseconds), for the commission invariant; None when it has none."""
    text_ = str(value or "").strip()
    if not text_:
        return None
    if text_.isdigit():
        return datetime.fromtimestamp(int(text_) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(text_.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Stats:
    campaigns: int = 0
    sandbox_campaigns: int = 0
    passes: int = 0
    crashes: int = 0
    write_failures: int = 0
    sandbox_faults: int = 0
    sandbox_restarts: int = 0
    edits: int = 0
    deals: int = 0
    commissions: int = 0
    emails: int = 0
    resent_in_window: int = 0
    smtp_campaigns: int = 0
    smtp_faults: int = 0
    webhook_deliveries: int = 0
    webhook_events: int = 0
    webhook_failures: int = 0
    recreates: int = 0
    violations: list[str] = field(default_factory=list)

    def add(self, other: Stats) -> None:
        for k, v in other.__dict__.items():
            if isinstance(v, list):
                getattr(self, k).extend(v)
            else:
                setattr(self, k, getattr(self, k) + v)


# Search lags behind writes as HubSpot's does, shorter than the sandbox's default so
# campaigns stay quick; passes race it, and convergence is judged only on a quiet pass
# that started with everything searchable.
SEARCH_LAG = (0.05, 0.3)


class Sandbox:
    """The HubSpot sandbox of one campaign, restartable on the same port."""

    def __init__(self, root: Path) -> None:
        from connector.sandbox import PortalSpec, SandboxServer

        self._cls = SandboxServer
        self.specs = [PortalSpec("vendor", VENDOR_TOKEN)]
        self.data = str(root / "sandbox.json")
        self.srv = SandboxServer(
            self.specs, port=0, data_file=self.data, limits=False, search_lag=SEARCH_LAG
        ).start()
        self.port = self.srv.port
        self.faults: Any = None
        self.counted = 0

    @property
    def url(self) -> str:
        return self.srv.url

    def set_faults(self, spec: Any) -> None:
        from connector.sandbox import FaultSpec

        self.faults = spec
        self.srv.portal("vendor").set_faults(spec or FaultSpec())

    def fault_count(self) -> int:
        s = self.srv.stats("vendor")
        return int(
            sum(
                s.get(k, 0)
                for k in ("errors_5xx", "rate_limited", "dropped", "dropped_connections")
            )
        )

    def restart(self) -> None:
        self.counted += self.fault_count()
        self.srv.stop()
        for _ in range(50):
            try:
                self.srv = self._cls(
                    self.specs,
                    port=self.port,
                    data_file=self.data,
                    limits=False,
                    search_lag=SEARCH_LAG,
                ).start()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"could not restart the sandbox on port {self.port}")
        self.set_faults(self.faults)

    def indexed(self) -> bool:
        """Search shows every write made so far."""
        return self.srv.portal("vendor").pending_index() == 0

    def stop(self) -> None:
        self.counted += self.fault_count()
        self.srv.stop()


class Campaign:
    def __init__(
        self,
        number: int,
        seed: int,
        base: Path,
        sandbox: bool,
        engine_only: bool = False,
        faults: frozenset[str] = frozenset(FAULT_KINDS),
    ) -> None:
        self.n = number
        self.engine_only = engine_only
        self.rng = random.Random(f"{seed}:{number}")
        # each newer fault draws from its own generator: with them off, a campaign is
        # step for step the one it was before they existed, and leaving one out does
        # not change what the others do
        self.frng = {k: random.Random(f"{seed}:{number}:{k}") for k in FAULT_KINDS}
        self.faults = faults
        self.root = base / f"c{number}"
        self.root.mkdir(parents=True)
        self.sandbox = Sandbox(self.root) if sandbox else None
        hubspot = (
            HubSpotPortals(self.sandbox.url, {"vendor": "HS_VENDOR_TOKEN"})
            if self.sandbox
            else None
        )
        config = project_yaml(
            state_url=f"sqlite:///{self.root}/state.db",
            notify=True,
            portal_ids=True,
            hubspot=hubspot,
        )
        write_project(self.root, config)
        self.clock = FileClock(self.root / "clock")
        # two in three product campaigns mail through a real SMTP server that misbehaves
        self.smtp: ChaosSMTP | None = None
        if "smtp" in faults and not engine_only and self.frng["smtp"].random() < 2 / 3:
            self.smtp = ChaosSMTP(
                self.root / "smtp.log", random.Random(self.frng["smtp"].random()), rate=0.6
            )
        self.mail: LogTransport | ChaosSMTP = self.smtp or LogTransport(self.root / "mail.log")
        self.endpoint: WebhookEndpoint | None = None
        self.webhook_changes: list[tuple[str, str, str, str, int]] = []
        self.event_serial = 0
        self.stats = Stats(
            campaigns=1, sandbox_campaigns=int(sandbox), smtp_campaigns=int(bool(self.smtp))
        )
        self.outbox_kills = 0
        self.deals: list[str] = []  # partner deal ids
        self.serial = 0
        self.project: Any = None
        self.app, self.crms = self.open()
        self.app.setup()

    # ------------------------------------------------------------------ plumbing

    def open(self) -> tuple[Dealsync, dict[str, Any]]:
        env = {"HS_VENDOR_TOKEN": VENDOR_TOKEN}
        if self.project is None:
            self.project = load_project(self.root / "dealsync.yaml", env=env)
        project = self.project
        crms: dict[str, Any] = {}

        def factory(name: str, portal: PortalConfig) -> Any:
            if name in crms:
                return crms[name]
            if portal.adapter == "local":
                assert portal.path is not None
                crms[name] = LocalCRM(project.resolve(portal.path), name=name, clock=self.clock)
            else:
                from connector.testing.hubspot import unthrottled_adapter

                assert portal.host is not None
                crms[name] = unthrottled_adapter(VENDOR_TOKEN, portal.host, name, max_attempts=12)
            return crms[name]

        # engine only: no hooks, so detection streams into apply (docs/sync.md)
        hooks: list[Any] | None = [] if self.engine_only else None
        app = Dealsync(project, env=env, adapter_factory=factory, hooks=hooks)
        if self.smtp is not None:
            smtp = SmtpTransport("127.0.0.1", self.smtp.port, timeout=20)
            app.transport = lambda: smtp  # type: ignore[method-assign]
        else:
            log = self.mail
            assert isinstance(log, LogTransport)
            app.transport = lambda: log  # type: ignore[method-assign]
        self.factory = factory
        app.vendor()
        app.partner_crm("acme")
        return app, crms

    @property
    def partner(self) -> LocalCRM:
        return self.crms["acme"]

    def vendor_records(self, obj: str, archived: bool = False) -> list[tuple[str, dict[str, Any]]]:
        if self.sandbox is None:
            return [
                (r.id, dict(r.properties)) for r in self.crms["vendor"].all(obj, archived=archived)
            ]
        return [
            (str(r["id"]), dict(r["properties"]))
            for r in self.sandbox.srv.portal("vendor").all(obj, archived=archived)
        ]

    def vendor_edit(self, obj: str, rid: str, props: dict[str, str]) -> None:
        if self.sandbox is None:
            self.crms["vendor"].edit(obj, rid, props)
            return
        self.sandbox.set_faults(None)
        res = self.crms["vendor"].update(obj, [(rid, props)])
        assert res[0].ok, res[0].error

    def vendor_archive(self, obj: str, rid: str) -> None:
        if self.sandbox is None:
            self.crms["vendor"].remove(obj, rid)
            return
        self.sandbox.set_faults(None)
        self.crms["vendor"].archive(obj, [rid])

    def counterpart(self, obj: str, pid: str) -> str | None:
        found = [rid for rid, p in self.vendor_records(obj) if p.get(SRC) == f"acme:{pid}"]
        return found[0] if found else None

    # ------------------------------------------------------------------ steps

    def value(self, name: str, rng: random.Random | None = None) -> str:
        r = rng or self.rng
        if name == "amount":
            return f"{r.randint(1, 99999)}.{r.randint(0, 99):02d}"
        if name == "closedate":
            return f"2027-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if name == "dealstage":
            return r.choice(DEAL_STAGES)
        if name == "deal_currency_code":
            return r.choice(["EUR", "USD", "GBP"])
        return r.choice(["", "x", "notes ü", "line1\nline2", f"text {r.randint(0, 9)}"])

    def seed_deal(self) -> None:
        self.serial += 1
        n, p = self.serial, self.partner
        domain = f"chaos{self.n}x{n}.com"
        country = self.rng.choice(["DE", "AT", "US", "FR", "CH"])
        person = {
            "firstname": f"F{n}",
            "lastname": f"L{n}",
            "email": f"p{n}@{domain}",
            "country": country,
            "company": f"Co {n}",
        }
        seeded = seed_deal(
            p,
            company=f"Co {n}",
            domain=domain,
            contacts=[person],
            dealname=f"Deal {n}",
            amount=self.value("amount"),
        )
        self.deals.append(seeded.id)
        self.stats.deals += 1

    def live_deals(self) -> list[str]:
        return [d for d in self.deals if not self.partner.get("deals", d).archived]

    def edit(self) -> None:
        deals = self.live_deals()
        if not deals:
            return self.seed_deal()
        pid = self.rng.choice(deals)
        name = self.rng.choice(
            ["amount", "closedate", "dealstage", "description", "deal_currency_code"]
        )
        where = self.rng.choice(["partner", "vendor", "both"])
        vid = self.counterpart("deals", pid)
        if where in ("partner", "both"):
            self.partner.edit("deals", pid, {name: self.value(name)})
        if where in ("vendor", "both") and vid:
            self.vendor_edit("deals", vid, {name: self.value(name)})
        if self.rng.random() < 0.3:
            rec = self.partner.read("deals", [pid], [], associations=["companies"]).get(pid)
            for cid in rec.associations.get("companies", ()) if rec else ():
                if self.partner.get("companies", cid).archived:
                    continue  # deleted and created again (only in recreate campaigns)
                self.partner.edit(
                    "companies", cid, {"website": f"w{self.rng.randint(0, 99)}.example"}
                )
        self.stats.edits += 1

    def win(self) -> None:
        deals = self.live_deals()
        vid = self.counterpart("deals", self.rng.choice(deals)) if deals else None
        if vid:
            self.vendor_edit("deals", vid, {"dealstage": "closedwon"})
            self.stats.edits += 1

    def delete(self) -> None:
        deals = self.live_deals()
        if len(deals) < 2:
            return
        pid = self.rng.choice(deals)
        if self.rng.random() < 0.5:
            self.partner.remove("deals", pid)
        else:
            vid = self.counterpart("deals", pid)
            if vid:
                self.vendor_archive("deals", vid)
        self.stats.edits += 1

    def storm(self) -> None:
        if self.sandbox is None:
            return
        from connector.sandbox import FaultSpec

        if self.rng.random() < 0.3:
            self.sandbox.restart()
            self.stats.sandbox_restarts += 1
        self.sandbox.set_faults(
            FaultSpec(
                error_rate=self.rng.choice([0.0, 0.05, 0.15]),
                storm_429_rate=self.rng.choice([0.0, 0.05]),
                storm_429_length=self.rng.randint(1, 4),
                latency_ms=self.rng.choice([0, 0, 5]),
                drop_rate=self.rng.choice([0.0, 0.03]),
                seed=self.rng.randint(0, 10**6),
            )
        )

    def sync(self, *, expect_quiet: bool = False) -> Any:
        self.stats.passes += 1
        result = self.app.sync("acme", now=NOW + timedelta(days=1))
        return result

    def sync_with_failures(self) -> None:
        rate = self.rng.choice([0.1, 0.3, 0.6])
        rng = random.Random(self.rng.random())
        injected = [0]

        def fail(op: str, obj: str, key: str) -> str | None:
            if rng.random() < rate:
                injected[0] += 1
                return "503 injected failure"
            return None

        targets = [c for c in self.crms.values() if isinstance(c, LocalCRM)]
        for c in targets:
            c.fail = fail
        try:
            self.sync()
        finally:
            for c in targets:
                c.fail = None
        self.stats.write_failures += injected[0]

    def sync_restarting_sandbox(self) -> None:
        assert self.sandbox is not None
        point = self.rng.choice(
            ["after_detect", "after_plan:deals", "before_cursor", "after_cursor"]
        )
        sandbox = self.sandbox

        def restart(at: str) -> None:
            if at == point:
                sandbox.restart()
                self.stats.sandbox_restarts += 1

        self.storm()
        self.stats.passes += 1
        self.app.sync("acme", now=NOW + timedelta(days=1), crash_at=restart)

    def sync_killed(self) -> None:
        point = self.rng.choice(POINTS)

        def child() -> None:  # its own connections, killed at the point
            app, _ = self.open()
            app.sync("acme", now=NOW + timedelta(days=1), crash_at=kill_me(point))

        ended = fork_and_wait(child)
        self.stats.passes += 1
        if ended.signal:
            assert ended.killed
            self.stats.crashes += 1
            if point == "while_sending_outbox":
                self.outbox_kills += 1
        elif ended.code != 0:
            self.stats.violations.append(f"campaign {self.n}: a pass failed in the child")

    # ------------------------------------------------------------------ newer faults

    def webhooks(self) -> WebhookEndpoint:
        if self.endpoint is None:
            self.endpoint = WebhookEndpoint(
                self.root / "dealsync.yaml", {"HS_VENDOR_TOKEN": VENDOR_TOKEN}, self.factory
            )
        return self.endpoint

    def webhook_change(self) -> None:
        """Vendor edits the change search misses (modified before the pass's window, as
        when HubSpot's index lags), told by a signed webhook batch — a delivery that
        sometimes fails midway (the state database refuses its n-th write) and is
        retried as HubSpot does: same event ids, fresh timestamp and signature."""
        if self.sandbox is not None:  # the sandbox stamps its own modification times
            return
        r, store, vendor = self.frng["webhooks"], self.app.store, self.crms["vendor"]
        live = {obj: {rid for rid, _ in self.vendor_records(obj)} for obj in WEBHOOK_FIELDS}
        candidates = [
            (obj, lk.vendor_id)
            for obj in WEBHOOK_FIELDS
            for lk in store.links("acme", obj, ("active",))
            if lk.vendor_id in live[obj]
        ]
        if not candidates:
            return
        overlap = timedelta(seconds=self.project.config.sync.overlap_seconds)
        events: list[dict[str, Any]] = []
        for obj, vid in r.sample(candidates, min(len(candidates), r.randint(1, 3))):
            assert vid is not None
            name = r.choice(WEBHOOK_FIELDS[obj])
            value = self.value(name, r)
            cursor = store.cursor("acme", "vendor", obj)
            if cursor is None:  # no pass yet: the first one reads everything anyway
                vendor.edit(obj, vid, {name: value})
            else:
                at = (cursor if cursor.tzinfo else cursor.replace(tzinfo=UTC)) - overlap
                late_indexed_edit(vendor, obj, vid, {name: value}, at - timedelta(minutes=1))
            self.event_serial += 1
            events.append(webhook_event(self.event_serial, obj, vid, name, value))
            self.webhook_changes.append((obj, vid, name, value, self.event_serial))
        if r.random() < 0.3:  # HubSpot repeats events, in no particular order
            events.append(dict(r.choice(events)))
        r.shuffle(events)
        endpoint = self.webhooks()
        fail_first = r.random() < 0.6
        for attempt in range(8):
            fail = None
            if (attempt == 0 and fail_first) or (attempt > 0 and r.random() < 0.2):
                fail = r.randint(1, len(events) + 3)  # which write of the delivery fails
            status, fired = endpoint.post(events, attempt, fail)
            self.stats.webhook_failures += int(fired)
            if status < 300:
                break
            if not fired:
                self.violation(f"webhook delivery answered {status} with no fault injected")
                return
        else:
            self.violation("a webhook delivery was refused 8 times")
        self.stats.webhook_deliveries += 1
        self.stats.webhook_events += len(events)

    def vendor_associated(self, obj: str, vid: str) -> list[str]:
        if self.sandbox is None:
            return list(self.crms["vendor"].get("deals", vid).associations.get(obj, ()))
        portal = self.sandbox.srv.portal("vendor")
        return [str(a["toObjectId"]) for a in portal.associations_of("deals", vid, obj)]

    def recreate(self) -> None:
        """A user deletes a deal's contact (or company) on one side and creates it
        again — same e-mail (domain) — on the same side, associated with the deal."""
        r = self.frng["recreate"]
        deals = self.live_deals()
        if not deals:
            return
        pid = r.choice(deals)
        obj = r.choice(sorted(IDENTITY))
        side = r.choice(["partner", "vendor"])
        if side == "partner":
            rec = self.partner.read("deals", [pid], [], associations=[obj]).get(pid)
            ids = [
                i
                for i in (rec.associations.get(obj, ()) if rec else ())
                if not self.partner.get(obj, i).archived  # a file CRM keeps dead ones
            ]
            if not ids:
                return
            old = self.partner.get(obj, r.choice(ids))
            props = {k: v for k in RETYPED[obj] if (v := old.properties.get(k))}
        else:
            vdeal = self.counterpart("deals", pid)
            live = dict(self.vendor_records(obj))
            ids = [i for i in self.vendor_associated(obj, vdeal) if i in live] if vdeal else []
            if not vdeal or not ids:
                return
            old_id = r.choice(ids)
            vprops = live[old_id]
            props = {k: v for k in RETYPED[obj] if (v := vprops.get(k))}
        if not props.get(IDENTITY[obj]):
            return
        if r.random() < 0.5:  # typed in again, not a copy in every field
            other = r.choice([k for k in RETYPED[obj] if k not in (IDENTITY[obj], "name")])
            props[other] = f"{other} {r.randint(0, 99)}"
        if side == "partner":
            self.partner.remove(obj, old.id)
            new = self.partner.create(obj, props)
            self.partner.associate("deals", obj, [(pid, new.id)])
        elif self.sandbox is None:
            assert vdeal is not None
            crm = self.crms["vendor"]
            crm.remove(obj, old_id)
            made = crm.create(obj, props)
            crm.associate("deals", obj, [(vdeal, made.id)])
        else:
            assert vdeal is not None
            portal = self.sandbox.srv.portal("vendor")
            portal.archive(obj, old_id)
            created = portal.create(obj, props)
            portal.associate("deals", vdeal, obj, str(created["id"]))
        self.stats.recreates += 1

    # ------------------------------------------------------------------ the campaign

    def run(self) -> Stats:
        try:
            for _ in range(self.rng.randint(1, 3)):
                self.seed_deal()
            steps: list[tuple[Callable[[], Any], int]] = [
                (self.seed_deal, 2),
                (self.edit, 6),
                (self.win, 2),
                (self.delete, 1),
                (self.sync, 2),
                (self.sync_with_failures, 2),
                (self.sync_killed, 4),
            ]
            if self.sandbox is not None:
                steps += [(self.storm, 2), (self.sync_restarting_sandbox, 2)]
            funcs, weights = zip(*steps, strict=True)
            extra = [
                (kind, step, chance)
                for kind, step, chance in (
                    ("webhooks", self.webhook_change, 0.3),
                    ("recreate", self.recreate, 0.15),
                )
                if kind in self.faults
            ]
            for _ in range(self.rng.randint(6, 14)):
                self.rng.choices(funcs, weights)[0]()
                for kind, step, chance in extra:
                    if self.frng[kind].random() < chance:
                        step()
                self.clock.advance(timedelta(seconds=self.rng.choice([1, 5, 60, 600, 7200])))
            if self.sandbox is not None:
                self.sandbox.set_faults(None)
            if self.smtp is not None:
                self.smtp.behave()
            self.converge()
            self.flush_outbox()
            self.check()
        except Exception:
            self.stats.violations.append(f"campaign {self.n}: {traceback.format_exc()}")
        finally:
            if self.sandbox is not None:
                self.sandbox.stop()
                self.stats.sandbox_faults += self.sandbox.counted
            if self.smtp is not None:
                self.smtp.stop()
                self.stats.smtp_faults += sum(self.smtp.injected.values())
            if self.endpoint is not None:
                self.endpoint.close()
            self.app.close()
        return self.stats

    def flush_outbox(self) -> None:
        """Deliver what failed sends left queued: each retry is due a backoff later, and
        every pass of a campaign runs at the same ``now``, so time moves here."""
        if self.smtp is None:
            return
        for i in range(1, 12):
            if not self.app.outbox.messages("queued"):
                return
            self.app.send_outbox(now=NOW + timedelta(days=1, hours=7 * i))

    def converge(self) -> None:
        for _ in range(10):
            settled = self.sandbox is None or self.sandbox.indexed()
            r = self.sync()
            if r.status in ("ok", "conflicts") and not writes_of(r) and settled:
                return
            if not settled:
                time.sleep(0.1)
        self.stats.violations.append(
            f"campaign {self.n}: no quiet pass after 10 ({r.status}: {dict(r.counts)} {r.errors[:3]})"
        )

    def violation(self, what: str) -> None:
        self.stats.violations.append(f"campaign {self.n}: {what}")

    def check(self) -> None:
        store, app = self.app.store, self.app
        # 1. no duplicates: records by source id, links by record id
        for obj in OBJECTS:
            keys = [p.get(SRC) for _, p in self.vendor_records(obj) if p.get(SRC)]
            for k, n in Counter(keys).items():
                if n > 1:
                    self.violation(f"{n} vendor {obj} for {k}")
            pkeys = [r.get(SRC) for r in self.partner.all(obj) if r.get(SRC)]
            for k, n in Counter(pkeys).items():
                if n > 1:
                    self.violation(f"{n} partner {obj} for {k}")
            links = store.links("acme", obj, ("pending", "active", "flagged"))
            for side in ("partner_id", "vendor_id"):
                ids = Counter(getattr(lk, side) for lk in links if getattr(lk, side))
                for rid, n in ids.items():
                    if n > 1:
                        self.violation(f"{n} live links of {obj} {side} {rid}")
            if any(lk.status == "pending" for lk in links):
                self.violation(f"a pending {obj} link after convergence")
        # 2. linked both-fields agree (value_map applied) except open conflicts
        open_fields = {(c.link_id, c.field) for c in store.conflicts("acme")}
        vendor_now = {obj: dict(self.vendor_records(obj)) for obj in OBJECTS}
        for mapping in app.project.mappings:
            plan = FieldPlan(mapping)
            for lk in store.links("acme", mapping.name, ("active",)):
                prec = self.partner.read(
                    mapping.partner_object, [lk.partner_id or ""], plan.partner_properties()
                )
                vprops = vendor_now[mapping.vendor_object].get(lk.vendor_id or "")
                p = prec.get(lk.partner_id or "")
                if p is None or vprops is None:
                    self.violation(f"active {mapping.name} link {lk.id} without both records")
                    continue
                for f, mapper in plan.fields:
                    if f.direction != "both" or (lk.id, f.key) in open_fields:
                        continue
                    try:
                        pv = mapper.to_vendor(canonical(f.transform, p.properties.get(f.partner)))
                        vv = canonical(f.transform, vprops.get(f.vendor))
                    except ValueError_ as exc:
                        self.violation(f"{mapping.name} {f.key}: {exc}")
                        continue
                    if pv != vv:
                        self.violation(
                            f"{mapping.name} link {lk.id} field {f.key}: partner {pv!r} ≠ vendor {vv!r}"
                        )
        # 3. a further pass writes nothing
        r = self.sync()
        writes = writes_of(r)
        if writes or r.status not in ("ok", "conflicts"):
            self.violation(f"the pass after convergence wrote {writes} ({r.status})")
        # 4. exactly one commission per won owned deal, written back
        commissions = app.registry.commissions()
        by_deal = Counter(c.vendor_deal_id for c in commissions)
        for vid, n in by_deal.items():
            if n != 1:
                self.violation(f"{n} commissions for vendor deal {vid}")
        for c in commissions:
            if not c.written_back:
                self.violation(f"commission on {c.vendor_deal_id} never written back")
        registry = app.registry
        # a win whose close date lies outside the ownership window credits no one
        # (issue 16: the owner when the deal closed), kept with that reason instead
        outside = {
            u.vendor_deal_id
            for u in registry.uncredited()
            if u.code in ("won_after_ownership", "won_before_registration")
        }
        for lk in store.links("acme", "deals", ("active",)):
            props = vendor_now["deals"].get(lk.vendor_id or "", {})
            if props.get("dealstage") != "closedwon":
                continue
            reg = registry.find("acme", "deal", lk.partner_id or "")
            holder = registry.holder(reg.domain) if reg and reg.domain else None
            # owned when the deal closed (issue 16: the close date, a date-only value
            # read as that day's start in UTC; none: when the pass saw it won)
            closed = _close_time(props.get("closedate"))
            owned = (
                holder is not None
                and holder.partner == "acme"
                and holder.owned_until > NOW + timedelta(days=1)
                and reg is not None
                and (closed is None or reg.decided_at is None or closed >= reg.decided_at)
                and (closed is None or closed < holder.owned_until)
            )
            if lk.vendor_id in outside and not by_deal.get(lk.vendor_id or ""):
                # only when it really closed outside the registration's window
                closed = closed_at(props, NOW + timedelta(days=1))
                start, end = (reg.decided_at, reg.owned_until) if reg else (None, None)
                if (start and closed < start) or (end and closed > end):
                    continue
                self.violation(f"won deal {lk.vendor_id} refused though it closed {closed}")
                continue
            if owned and by_deal.get(lk.vendor_id or "", 0) != 1:
                why = [u.reason for u in registry.uncredited() if u.vendor_deal_id == lk.vendor_id]
                self.violation(
                    f"won owned deal {lk.vendor_id} has {by_deal.get(lk.vendor_id or '', 0)}"
                    f" commissions (not credited: {why}; close {props.get('closedate')!r})"
                )
        self.stats.commissions += len(commissions)
        # 5. outbox: one row per (kind, recipient); e-mails sent once, twice only in the window
        rows = app.outbox.messages(limit=100000)
        for key, n in Counter((m.kind, m.recipient.lower()) for m in rows).items():
            if n > 1:
                self.violation(f"{n} outbox rows for {key}")
        sent = Counter(m["message_id"] for m in self.mail.sent())
        extra = sum(n - 1 for n in sent.values())
        # each kill inside the send window may re-send the message it hit once (the
        # documented window); two kills can hit the same message
        if extra > self.outbox_kills or any(n > 1 + self.outbox_kills for n in sent.values()):
            self.violation(f"e-mails re-sent {extra} times with {self.outbox_kills} outbox kills")
        for m in rows:
            if m.status == "queued":
                self.violation(f"outbox message {m.id} still queued after convergence")
            if m.status == "sent" and sent.get(m.message_id, 0) < 1:
                self.violation(f"outbox message {m.id} marked sent but never sent")
        by_message_id = {m.message_id: m for m in rows}
        for mid in sent:  # the server took it: the row must say so
            row = by_message_id.get(mid)
            if row is None or row.status != "sent":
                self.violation(
                    f"e-mail {mid} was accepted by the SMTP server but its outbox row is "
                    f"{row.status if row else 'missing'}"
                )
        self.stats.emails += sum(sent.values())
        self.stats.resent_in_window += extra
        # 6. no two live records of one identity on either side (delete-and-recreate)
        for obj, prop in IDENTITY.items():
            sides = {
                "vendor": [p for _, p in self.vendor_records(obj)],
                "partner": [dict(r.properties) for r in self.partner.all(obj)],
            }
            for side, records in sides.items():
                same = Counter(str(p[prop]).strip().lower() for p in records if p.get(prop))
                for k, n in same.items():
                    if n > 1:
                        self.violation(f"{n} live {side} {obj} with {prop} {k}")
        # 7. every vendor change told by webhook reached the partner (unless superseded)
        self.check_webhook_changes(open_fields)

    def check_webhook_changes(self, open_fields: set[tuple[int, str]]) -> None:
        store, latest = self.app.store, {}
        for obj, vid, name, value, event in self.webhook_changes:
            latest[(obj, vid, name)] = (value, event)
        mappings = {m.name: m for m in self.app.project.mappings}
        for (obj, vid, name), (value, event) in latest.items():
            vprops = dict(self.vendor_records(obj)).get(vid)
            lk = store.links_by_ids("acme", obj, "vendor", [vid]).get(vid)
            if vprops is None or lk is None or lk.status != "active" or not lk.partner_id:
                continue  # deleted or unlinked since
            plan = FieldPlan(mappings[obj])
            for f, mapper in plan.fields:
                if f.vendor != name or (lk.id, f.key) in open_fields:
                    continue
                told = canonical(f.transform, value)
                if canonical(f.transform, vprops.get(name)) != told:
                    continue  # changed again since (or lost to a newer partner edit)
                p = self.partner.read(obj, [lk.partner_id], [f.partner]).get(lk.partner_id)
                pv = mapper.to_vendor(
                    canonical(f.transform, p.properties.get(f.partner) if p else None)
                )
                if pv != told:
                    self.violation(
                        f"webhook event {event} (vendor {obj} {vid} {name}={value!r}) never "
                        f"reached the partner, which has {pv!r}"
                    )


def run_campaign(args: tuple[int, int, str, bool, bool, frozenset[str]]) -> Stats:
    number, seed, base, sandbox, engine_only, faults = args
    stats = Campaign(number, seed, Path(base), sandbox, engine_only, faults).run()
    shutil.rmtree(Path(base) / f"c{number}", ignore_errors=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--sandbox-every",
        type=int,
        default=10,
        metavar="K",
        help="every K-th campaign runs the vendor on the HubSpot sandbox (0: never)",
    )
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument(
        "--only",
        type=int,
        metavar="N",
        help="run just campaign N (same world and generator as in a full run of that seed)",
    )
    ap.add_argument(
        "--engine-only",
        action="store_true",
        help="run the passes without the program's hooks (the streamed detection path); "
        "the commission and e-mail invariants then hold trivially",
    )
    for kind, what in (
        ("smtp", "mail through a real SMTP server that misbehaves after accepting"),
        ("webhooks", "webhook deliveries of vendor edits, failing midway and retried"),
        ("recreate", "deleting a contact or company and creating it again"),
    ):
        ap.add_argument(f"--no-{kind}", action="store_true", help=f"leave out {what}")
    args = ap.parse_args(argv)
    faults = frozenset(k for k in FAULT_KINDS if not getattr(args, f"no_{k}"))

    import logging

    logging.disable(logging.CRITICAL)  # record errors are expected; the summary counts
    from connector.program.domains import registrable_domain

    registrable_domain("warm.example.com")  # load the suffix list once, before forking
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="dealsync-chaos-", dir=shm if shm.is_dir() else None))
    jobs = [
        (
            n,
            args.seed,
            str(base),
            bool(args.sandbox_every) and n % args.sandbox_every == args.sandbox_every - 1,
            args.engine_only,
            faults,
        )
        for n in (range(args.campaigns) if args.only is None else [args.only])
    ]
    total = Stats()
    started = time.monotonic()
    try:
        if args.workers > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(
                args.workers, maxtasksperchild=50
            ) as pool:
                for i, stats in enumerate(pool.imap_unordered(run_campaign, jobs), 1):
                    total.add(stats)
                    for v in stats.violations:
                        print(f"VIOLATION {v}", file=sys.stderr, flush=True)
                    if i % 100 == 0:
                        print(
                            f"  {i} campaigns, {len(total.violations)} violations", file=sys.stderr
                        )
        else:
            for job in jobs:
                total.add(run_campaign(job))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    summary = {k: v for k, v in total.__dict__.items() if k != "violations"}
    summary["faults_injected"] = (
        total.write_failures
        + total.sandbox_faults
        + total.sandbox_restarts
        + total.smtp_faults
        + total.webhook_failures
        + total.recreates
    )
    summary["invariant_violations"] = len(total.violations)
    summary["seconds"] = round(elapsed, 1)
    print(
        f"chaos --campaigns {args.campaigns} --seed {args.seed} --sandbox-every {args.sandbox_every}"
        + (f" --only {args.only}" if args.only is not None else "")
        + (" --engine-only" if args.engine_only else "")
        + "".join(f" --no-{k}" for k in FAULT_KINDS if k not in faults)
    )
    for k, v in summary.items():
        print(f"  {k:22} {v}")
    for v in total.violations[:20]:
        print(f"VIOLATION {v}")
    print(json.dumps(summary))
    return 1 if total.violations else 0


if __name__ == "__main__":
    sys.exit(main())
