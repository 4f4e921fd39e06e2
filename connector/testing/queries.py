"""Counting what a piece of code asks of the state store: SQL statements (by the
tables they read) and ORM rows loaded (by table). For tests that say "a quiet pass
reads no registration beyond the due ones" by counting, never by timing, and for
``scripts/quiet_pass.py``'s figures."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from connector.state.tables import Database

_TABLES = re.compile(r"\b(?:FROM|JOIN)\s+\"?(\w+)\"?", re.IGNORECASE)


@dataclass
class Counted:
    """What the store was asked while counting."""

    statements: int = 0
    by_table: Counter[str] = field(default_factory=Counter)  # statements reading each table
    loaded: Counter[str] = field(default_factory=Counter)  # ORM rows loaded, by table
    reads: list[str] = field(default_factory=list)  # the SELECT statements, in order

    def rows(self, table: str) -> int:
        """ORM rows of ``table`` loaded."""
        return self.loaded[table]


@contextmanager
def count_queries(store: Database) -> Iterator[Counted]:
    """Count the statements run on ``store``'s engine and the ORM rows loaded (any
    session) inside the block."""
    counted = Counted()
    engine = store.engine

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counted.statements += 1
        if statement.lstrip().upper().startswith("SELECT"):
            counted.reads.append(statement)
            for table in set(_TABLES.findall(statement)):
                counted.by_table[table] += 1

    def on_load(session: Session, instance: Any) -> None:
        counted.loaded[getattr(instance, "__tablename__", type(instance).__name__)] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(Session, "loaded_as_persistent", on_load)
    try:
        yield counted
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(Session, "loaded_as_persistent", on_load)
