"""Helpers for the reliability suite: worlds on files that a *forked* process can run
a pass of and be killed in (``SIGKILL``, no cleanup, no ``finally``).

A world is a project folder: the state store (SQLite file or a PostgreSQL schema),
one vendor and two partner :class:`LocalCRM` files, the shipped mappings and rules.
Each process opens its own connections (:meth:`FileWorld.open`), so a child never
touches the parent's. The CRMs run on a :class:`~connector.testing.clock.FileClock` — a tick clock kept in a
file, so the parent and its killed children share one ordering of events.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.engine.sync import PassResult
from connector.records import Record
from connector.testing.clock import FileClock
from connector.testing.crash import in_child, kill_me
from connector.testing.mail import LogTransport
from connector.testing.world import Seeded as Seeded  # re-exported for the tests
from connector.testing.world import (
    ann,
    counterpart,
    local_factory,
    project_yaml,
    seed_deal,
    write_project,
)

NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
OBJECTS = ("companies", "contacts", "deals")

CONFIG = project_yaml(("acme", "beta"), notify=True, state_url="{state_url}")


def scratch_dir(fallback: Path) -> Path:
    """A folder in RAM (``/dev/shm``) when there is one: SQLite commits without fsync."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="dealsync-rel-", dir=shm))
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


@dataclass
class Opened:
    """One process's view of a world: its own connections."""

    app: Dealsync
    crms: dict[str, LocalCRM]

    @property
    def vendor(self) -> LocalCRM:
        return self.crms["vendor"]

    def crm(self, partner: str = "acme") -> LocalCRM:
        return self.crms[partner]

    def close(self) -> None:
        self.app.close()
        for crm in self.crms.values():
            crm._db.close()


class FileWorld:
    def __init__(
        self,
        root: Path,
        state_url: str | None = None,
        *,
        program_hooks: bool = True,
        real_clock: bool = False,
    ) -> None:
        self.root = root
        url = state_url or f"sqlite:///{root / 'state.db'}"
        self.config = write_project(root, CONFIG.format(state_url=url))
        self.clock = FileClock(root / "clock")
        # the CLI in another process reads the CRMs on the real clock: seed on it too
        self.real_clock = real_clock
        self.mail = LogTransport(root / "mail.log")
        self.program_hooks = program_hooks
        self.here = self.open()
        self.here.app.setup()

    def open(self) -> Opened:
        project = load_project(self.config, env={})
        crms: dict[str, LocalCRM] = {}
        # the CLI in another process reads the CRMs on the real clock: seed on it too
        factory = local_factory(project, crms, None if self.real_clock else self.clock)

        app = Dealsync(
            project,
            env={},
            adapter_factory=factory,
            hooks=None if self.program_hooks else [],
        )
        app.transport = lambda: self.mail  # type: ignore[method-assign]
        app.vendor()
        for p in project.config.partners:
            app.partner_crm(p.id)
        return Opened(app, crms)

    def close(self) -> None:
        self.here.close()

    # ------------------------------------------------------------------ running

    @property
    def app(self) -> Dealsync:
        return self.here.app

    @property
    def vendor(self) -> LocalCRM:
        return self.here.vendor

    def crm(self, partner: str = "acme") -> LocalCRM:
        return self.here.crm(partner)

    def sync(self, partner: str = "acme", now: datetime = NOW, **kw: Any) -> PassResult:
        return self.app.sync(partner, now=now, **kw)

    def sync_killed_at(self, point: str, partner: str = "acme", now: datetime = NOW) -> bool:
        """A pass in a child process killed at ``point``; True when it was killed
        (False: the pass never reached the point and finished normally)."""

        def child() -> None:
            mine = self.open()
            mine.app.sync(partner, now=now, crash_at=kill_me(point))

        sig = in_child(child)
        assert sig in (0, 9), f"child ended by signal {sig}"
        return sig == 9

    def points_of_a_pass(self, partner: str = "acme", now: datetime = NOW) -> list[str]:
        """The named points a pass from this state reaches (run in a child, whose
        effects are thrown away by the caller: use it on a throwaway world)."""
        seen: list[str] = []
        self.sync(partner, now=now, crash_at=seen.append)
        return seen

    # ------------------------------------------------------------------ seeding

    def seed_deal(
        self, partner: str = "acme", *, contacts: list[dict[str, str]] | None = None, **kw: Any
    ) -> Seeded:
        """A registered deal (see :func:`~connector.testing.world.seed_deal`); its one
        contact is Ann, in Germany, unless ``contacts`` says otherwise."""
        kw.setdefault("domain", "globex.com")
        kw.setdefault("company", "Globex")
        if contacts is None:
            contacts = [ann(kw["domain"], kw["company"], country="DE")]
        return seed_deal(self.crm(partner), contacts=contacts, **kw)

    def counterpart(self, obj: str, partner_id: str, partner: str = "acme") -> Record | None:
        return counterpart(self.vendor, partner, obj, partner_id)

    # ------------------------------------------------------------------ comparing

    def final_state(self) -> dict[str, Any]:
        """Both sides, the links, conflicts, retries, commissions and the outbox —
        everything except times, which differ between a crashed and a clean history."""
        state: dict[str, Any] = {}
        for name, crm in self.here.crms.items():
            for obj in OBJECTS:
                state[f"{name}.{obj}"] = sorted(
                    (
                        r.id,
                        r.archived,
                        sorted(r.properties.items()),
                        sorted((k, v) for k, v in r.associations.items() if v),
                    )
                    for r in crm.all(obj) + crm.all(obj, archived=True)
                )
        store = self.app.store
        for p in ("acme", "beta"):
            for obj in OBJECTS:
                state[f"links.{p}.{obj}"] = sorted(
                    (lk.partner_id, lk.vendor_id, lk.status, sorted(lk.base.items()))
                    for lk in store.links(
                        p, obj, ("pending", "active", "flagged", "unlinked", "deleted")
                    )
                )
            state[f"conflicts.{p}"] = sorted(
                (c.object, c.field, c.status) for c in store.conflicts(p, None)
            )
            state[f"retries.{p}"] = store.retry_count(p)
        state["commissions"] = sorted(
            (c.partner, c.kind, c.vendor_deal_id, c.partner_deal_id, c.commission, c.written_back)
            for c in self.app.registry.commissions()
        )
        state["outbox"] = sorted(
            (m.dedupe_key, m.kind, m.recipient, m.message_id, m.status)
            for m in self.app.outbox.messages(limit=100000)
        )
        return state


MakeFileWorld = Callable[..., FileWorld]


@contextmanager
def file_world(
    base: Path, name: str = "world", state_url: str | None = None, **kw: Any
) -> Iterator[FileWorld]:
    w = FileWorld(base / name, state_url, **kw)
    try:
        yield w
    finally:
        w.close()
