"""Shared fixtures: a *world* of two embedded CRMs, a state store and the shipped mappings.

Kept light on purpose (every test directory shares it): the only autouse fixture keeps
each test's process environment to itself, and the world is built only by tests that
ask for it. The world goes through the real
front door — a project folder loaded by ``load_project`` and the ``Dealsync`` API —
with only the portals swapped for in-memory :class:`LocalCRM`\\ s on a shared clock.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import Project, load_project
from connector.config.models import PortalConfig
from connector.engine.sync import PassResult
from connector.records import Record
from connector.state.store import StateStore
from connector.state.tables import Link
from connector.testing.clock import TickClock
from connector.testing.world import Seeded, counterpart, project_yaml, seed_deal, write_project

PARTNER = "acme"

# Calls that change something in a CRM (reads and searches are not writes).
WRITE_CALLS = ("batch_upsert", "batch_update", "batch_archive", "batch_associate")

PROJECT_CONFIG = project_yaml()

PROGRAM_NOW = datetime(2027, 1, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _own_environment() -> Iterator[None]:
    """A command run in-process loads its project's ``.env`` into ``os.environ``, as
    the ``dealsync`` process does (real variables win); in the test process that would
    leak into later tests — the demo's ``DEALSYNC_MAIL_SINK`` turning every later
    test's queued e-mail into a sent one. Each test gets the environment back as it
    found it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    # a program on PostgreSQL points the process's HubSpot limiters at its shared budget
    # store (connector.adapters.ratelimit.use_store); the next test starts without one
    from connector.adapters.ratelimit import use_store

    use_store(None)


@dataclass
class World:
    """Two portals, one connection, one state store, the shipped mappings."""

    root: Path
    project: Project
    app: Dealsync
    partner: LocalCRM
    vendor: LocalCRM
    clock: TickClock
    _serial: int = 0

    @property
    def store(self) -> StateStore:
        return self.app.store

    def sync(self, **kwargs: Any) -> PassResult:
        # a fixed "now" keeps the program hooks' dates (ownership, consent) repeatable
        kwargs.setdefault("now", PROGRAM_NOW)
        return self.app.sync(PARTNER, **kwargs)

    # ------------------------------------------------------------------ seeding

    def seed_deal(
        self,
        *,
        registered: bool = True,
        name: str | None = None,
        amount: str | None = "1500.00",
        closedate: str | None = "2027-03-31",
        stage: str = "qualifiedtobuy",
        description: str | None = None,
        contacts: int = 1,
        **extra: str,
    ) -> Seeded:
        """A deal with one company and ``contacts`` contacts, associated on the partner
        side; ``registered`` sets the flag that makes it a shared deal."""
        self._serial += 1
        n = self._serial
        people = [
            {
                "firstname": f"First{n}{i}",
                "lastname": f"Last{n}{i}",
                "email": f"person{i}@company{n}.com",
                "company": f"Company {n}",
                "country": "US",
            }
            for i in range(contacts)
        ]
        return seed_deal(
            self.partner,
            company=f"Company {n}",
            domain=f"company{n}.com",
            contacts=people,
            registered=registered,
            dealname=name or f"Deal {n}",
            amount=amount,
            stage=stage,
            closedate=closedate,
            description=description,
            **extra,
        )

    # ------------------------------------------------------------------ looking

    def counterpart(self, obj: str, partner_id: str) -> Record | None:
        """The live vendor record carrying ``partner_id`` as its source id."""
        return counterpart(self.vendor, PARTNER, obj, partner_id)

    def link(self, obj: str, partner_id: str) -> Link | None:
        return self.store.links_by_ids(PARTNER, obj, "partner", [partner_id]).get(partner_id)

    def writes(self) -> int:
        """Write calls made so far on both sides."""
        return sum(crm.calls[k] for crm in (self.partner, self.vendor) for k in WRITE_CALLS)

    def quiet_sync(self) -> PassResult:
        """A pass that must write nothing and touch no record; what else it must show
        (its status, its counts) is the caller's to check."""
        before_writes, before = self.writes(), self.snapshot()
        result = self.sync()
        assert self.writes() == before_writes, result.plan.summary()
        assert self.snapshot() == before
        return result

    def snapshot(self) -> dict[str, list[tuple[str, str, dict[str, str | None], bool]]]:
        """Everything in both CRMs, to compare worlds."""
        out: dict[str, list[tuple[str, str, dict[str, str | None], bool]]] = {}
        for side, crm in (("partner", self.partner), ("vendor", self.vendor)):
            for obj in ("companies", "contacts", "deals"):
                out[f"{side}.{obj}"] = [
                    (r.id, r.updated_at.isoformat(), dict(r.properties), r.archived)
                    for r in crm.all(obj) + crm.all(obj, archived=True)
                ]
        return out


def _write_project(
    root: Path, mapping_edit: Callable[[str], str] | None, state_url: str | None = None
) -> Path:
    text = PROJECT_CONFIG if state_url is None else project_yaml(state_url=state_url)
    return write_project(root, text, mapping_edit=mapping_edit)


# ---------------------------------------------------------------------- state databases

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
_postgres: dict[str, str | None] = {}


def postgres_server_url() -> str | None:
    """The test PostgreSQL server: ``DEALSYNC_TEST_POSTGRES_URL``, else one answering
    on 127.0.0.1:5432; None when there is none (its test parameters are skipped)."""
    if "url" in _postgres:
        return _postgres["url"]
    url = os.environ.get("DEALSYNC_TEST_POSTGRES_URL") or None
    if url is None:
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
            url = DEFAULT_POSTGRES_URL
        except OSError:
            url = None
    if url is not None:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            url = None
        finally:
            engine.dispose()
    _postgres["url"] = url
    return url


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A fresh database for one test module (``dealsync_test_<random>``), dropped after."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("no PostgreSQL server (set DEALSYNC_TEST_POSTGRES_URL)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"dealsync_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def state_backend() -> str:
    """Which database the state store uses; a directory's conftest may parametrise it
    over ``["sqlite", "postgres"]`` (``tests/engine`` does)."""
    return "sqlite"


StateUrlFactory = Callable[[str], str]


@pytest.fixture
def state_url_factory(
    request: pytest.FixtureRequest, state_backend: str, tmp_path: Path
) -> StateUrlFactory:
    """``factory(name)`` → a fresh, empty state database URL: a SQLite file under
    ``tmp_path/name``, or a new schema of the module's PostgreSQL database."""
    if state_backend == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name / 'state.db'}"
    assert state_backend == "postgres", state_backend
    database: str = request.getfixturevalue("postgres_database")
    from sqlalchemy import create_engine, text

    def fresh(name: str) -> str:
        schema = f"s_{uuid.uuid4().hex[:12]}"
        engine = create_engine(database, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        finally:
            engine.dispose()
        return f"{database}?options=-csearch_path%3D{schema}"

    return fresh


MakeWorld = Callable[..., World]


@pytest.fixture
def make_world(
    tmp_path: Path, state_backend: str, state_url_factory: StateUrlFactory
) -> Iterator[MakeWorld]:
    """Build a world; ``mapping_edit`` rewrites the shipped ``shared_deals.yaml`` text
    first (e.g. another ``on_delete`` policy); ``program_hooks`` runs the program's
    hooks as the CLI does; ``search_lag`` makes both CRMs' change searches lag behind
    writes, as HubSpot's do. Several worlds per test are allowed."""
    apps: list[Dealsync] = []

    def build(
        mapping_edit: Callable[[str], str] | None = None,
        name: str = "world",
        *,
        program_hooks: bool = False,
        search_lag: timedelta = timedelta(0),
    ) -> World:
        root = tmp_path / name
        # SQLite: the project's own state.db (as shipped); PostgreSQL: a fresh schema
        state_url = None if state_backend == "sqlite" else state_url_factory(name)
        project = load_project(_write_project(root, mapping_edit, state_url), env={})
        clock = TickClock()
        crms = {
            "vendor": LocalCRM(name="vendor", clock=clock, search_lag=search_lag),
            PARTNER: LocalCRM(name=PARTNER, clock=clock, search_lag=search_lag),
        }

        def factory(portal_name: str, _portal: PortalConfig) -> LocalCRM:
            return crms[portal_name]

        # the engine alone by default; ``program_hooks`` adds the program's rules
        # (registration, consent, ...) exactly as the CLI runs them
        hooks = None if program_hooks else []
        app = Dealsync(project, env={}, adapter_factory=factory, hooks=hooks)
        apps.append(app)
        app.setup()
        return World(root, project, app, crms[PARTNER], crms["vendor"], clock)

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def world(make_world: MakeWorld) -> World:
    return make_world()
