"""Versioned schema: registered upgrade steps, each applied in its own transaction.

The pattern of sqlite-utils' ``migrations.py``: the store records which versions are
applied; opening a store applies the missing ones in order. A new table or column is a
new step appended here — never an edit of an old step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text
from sqlalchemy.schema import CreateColumn

from connector.state import tables


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create(*models: type) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        for model in models:
            model.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]

    return run


def _add_columns(model: type, *names: str) -> Callable[[Connection], None]:
    """``ALTER TABLE … ADD COLUMN`` for columns of ``model`` the table lacks (a fresh
    database created them with the table already), in the dialect's own DDL."""

    def run(conn: Connection) -> None:
        table = model.__table__  # type: ignore[attr-defined]
        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for name in names:
            if name not in have:
                ddl = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))

    return run


def _runs_and_tokens(conn: Connection) -> None:
    _add_columns(tables.Run, "owner")(conn)
    _add_columns(tables.PartnerToken, "expires_at")(conn)


STEPS: list[Step] = [
    Step(
        1,
        "links with base snapshots, cursors, retries, conflicts, runs, locks",
        _create(
            tables.Link,
            tables.Cursor,
            tables.RetryItem,
            tables.ConflictRow,
            tables.Run,
            tables.RunRecord,
            tables.SyncLock,
        ),
    ),
    Step(
        2,
        "registrations, their contacts, domain claims, commissions",
        _create(
            tables.Registration,
            tables.RegistrationContact,
            tables.DomainClaim,
            tables.Commission,
        ),
    ),
    Step(
        3,
        "e-mail outbox, partner notification subscriptions, lead activity",
        _create(tables.OutboxMessage, tables.PartnerSubscription, tables.LeadActivity),
    ),
    Step(
        4,
        "service: hashed partner API tokens, webhook event and signature dedupe",
        _create(tables.PartnerToken, tables.WebhookSeen),
    ),
    Step(
        5,
        "runs: the process that runs each (interrupted runs); partner tokens: expiry",
        _runs_and_tokens,
    ),
]


def _redecide_outbox_blocked(conn: Connection) -> None:
    """Issue 12, e-mail: before it, a message the (substring) privacy check blocked was
    recorded ``suppressed`` with a ``blocked:`` reason and no text, and never looked at
    again. Drop those rows (and unlink their lead activity) so the next pass decides
    them again with the whole-word check: queued, or ``held`` with its text for an
    admin to release or cancel. Self-contained: only the outbox and lead_activity."""
    blocked = "status = 'suppressed' AND detail LIKE :prefix"
    prefix = {"prefix": "blocked:%"}
    conn.execute(
        text(
            "UPDATE lead_activity SET outbox_id = NULL "
            f"WHERE outbox_id IN (SELECT id FROM outbox WHERE {blocked})"
        ),
        prefix,
    )
    conn.execute(text(f"DELETE FROM outbox WHERE {blocked}"), prefix)


STEPS.append(
    Step(
        6,
        "outbox: e-mails the old privacy check blocked are decided again (held, not dropped)",
        _redecide_outbox_blocked,
    )
)

STEPS.append(
    Step(
        7,
        "mapping versions: the mapping each connection last synced with (mapping migrations)",
        _create(tables.MappingVersion),
    )
)

STEPS.append(
    Step(
        8,
        "registrations: review (why a registration waits, who approved or rejected it, when)",
        _add_columns(tables.Registration, "review_note", "reviewed_by", "reviewed_at"),
    )
)


def _commission_kinds(conn: Connection) -> None:
    """Issue 16: every won vendor deal on an owned domain earns, so a commission says
    which kind of sale it was — a shared deal's rows, ``deal`` until now, become
    ``shared`` — and the won deals that credit no one are kept with the reason."""
    _create(tables.UncreditedWin)(conn)
    conn.execute(text("UPDATE commission SET kind = 'shared' WHERE kind = 'deal'"))


STEPS.append(
    Step(
        9,
        "commissions: kind shared / vendor_led / self_serve; won deals not credited, with why",
        _commission_kinds,
    )
)

STEPS.append(
    Step(
        10,
        "registrations: their company's country, read once for the consent fallback",
        _add_columns(tables.Registration, "company_country"),
    )
)

STEPS.append(
    Step(
        11,
        "registration changes: extensions and withdrawals by hand, with who and why",
        _create(tables.RegistrationChange),
    )
)

STEPS.append(
    Step(
        12,
        "privacy: the audit of the leads' source and erasure requests, its hashing key",
        _create(tables.PrivacyAudit, tables.PrivacyKey),
    )
)

STEPS.append(
    Step(
        13,
        "links: each side's modification time of the version its base was taken from",
        _add_columns(tables.Link, "base_partner_at", "base_vendor_at"),
    )
)


def _consent_marks(conn: Connection) -> None:
    _add_columns(tables.RegistrationContact, "consent_for", "consent_next", "consent_key")(conn)
    for index in tables.RegistrationContact.__table__.indexes:  # type: ignore[attr-defined]
        if index.name == "ix_regcontact_consent_next":
            index.create(conn, checkfirst=True)


STEPS.append(
    Step(
        18,
        "registration contacts: when their consent work is due (a quiet pass reads no more)",
        _consent_marks,
    )
)

STEPS.append(
    Step(
        19,
        "scale-out: jobs to ask the queue for, recorded with the state change needing them",
        _create(tables.JobRequest),
    )
)

STEPS.append(
    Step(
        20,
        "scale-out: program-wide vendor reads shared by the pass jobs of one round",
        _create(tables.RoundWindow),
    )
)


def _create_index(model: type, name: str) -> Callable[[Connection], None]:
    """Create one of ``model``'s indexes (a fresh database made it with its table)."""

    def run(conn: Connection) -> None:
        for index in model.__table__.indexes:  # type: ignore[attr-defined]
            if index.name == name:
                index.create(conn, checkfirst=True)
                return
        raise AssertionError(f"{model.__name__} has no index {name}")

    return run


STEPS.append(
    Step(
        21,
        "registrations: an index by partner object in id order (write-back pages)",
        _create_index(tables.Registration, "ix_registration_object"),
    )
)

# steps apply in version order, whatever order branches appended them in
STEPS.sort(key=lambda step: step.version)
LATEST = STEPS[-1].version


def applied_versions(conn: Connection) -> set[int]:
    if not inspect(conn).has_table("schema_version"):
        return set()
    return {row[0] for row in conn.execute(text("SELECT version FROM schema_version"))}


def migrate(engine_: object) -> list[int]:
    """Apply every missing step; returns the versions applied now.

    Two processes opening a fresh store at once (two ``dealsync sync``) race on the
    same steps; the loser's ``CREATE TABLE`` or version row fails — it then retries
    from what the winner applied (``checkfirst`` skips the tables that exist)."""
    import time

    from sqlalchemy.exc import DBAPIError

    for attempt in range(6):
        try:
            return _migrate_once(engine_)
        except DBAPIError:
            if attempt == 5:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _migrate_once(engine_: object) -> list[int]:
    from sqlalchemy.engine import Engine

    assert isinstance(engine_, Engine)
    with engine_.begin() as conn:
        tables.SchemaVersion.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    done: list[int] = []
    for step in STEPS:
        with engine_.begin() as conn:
            if step.version in applied_versions(conn):
                continue
            step.apply(conn)
            conn.execute(
                text(
                    "INSERT INTO schema_version (version, applied_at, description) "
                    "VALUES (:v, CURRENT_TIMESTAMP, :d)"
                ),
                {"v": step.version, "d": step.description},
            )
            done.append(step.version)
    return done
