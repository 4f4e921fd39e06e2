"""Conflicts: a field both sides changed differently since the base, held open until a
person (or the two sides agreeing) settles it; one open row per link and field."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from connector.records import utcnow
from connector.state.tables import ConflictRow, Transactions, given, valid_id


class ConflictLedger(Transactions):
    """The conflicts queries of :class:`~connector.state.store.StateStore` (a mixin: callers
    keep calling them on the store)."""

    def open_conflict(self, connection: str, c: Any) -> tuple[ConflictRow, bool]:
        """Open a conflict row unless the same one is already open; returns (row, new)."""
        with self.session() as s:
            row = s.exec(
                select(ConflictRow).where(
                    ConflictRow.connection == connection,
                    ConflictRow.link_id == c.link_id,
                    ConflictRow.field == c.field,
                    ConflictRow.status == "open",
                )
            ).first()
            if row is not None:
                if (row.partner_value, row.vendor_value) != (c.partner_value, c.vendor_value):
                    row.partner_value, row.vendor_value = c.partner_value, c.vendor_value
                    s.add(row)
                    s.commit()
                return row, False
            row = ConflictRow(
                connection=connection,
                object=c.object,
                link_id=c.link_id,
                partner_id=c.partner_id,
                vendor_id=c.vendor_id,
                field=c.field,
                partner_value=c.partner_value,
                vendor_value=c.vendor_value,
                base_partner=c.base_partner,
                base_vendor=c.base_vendor,
            )
            s.add(row)
            s.commit()
            return row, True

    def conflicts(
        self, connection: str | None = None, status: str | None = "open"
    ) -> list[ConflictRow]:
        q = given(
            select(ConflictRow), (ConflictRow.connection, connection), (ConflictRow.status, status)
        )
        return self.rows(q.order_by(col(ConflictRow.id)))

    def conflict(self, conflict_id: int) -> ConflictRow | None:
        if not valid_id(conflict_id):
            return None
        with self.session() as s:
            return s.get(ConflictRow, conflict_id)

    def close_conflict(self, conflict_id: int, resolution: str) -> None:
        if not valid_id(conflict_id):
            raise KeyError(conflict_id)
        with self.session() as s:
            row = s.get(ConflictRow, conflict_id)
            if row is None:
                raise KeyError(conflict_id)
            row.status = "resolved"
            row.resolution = resolution
            row.resolved_at = utcnow()
            s.add(row)
            s.commit()

    def close_conflicts_for(
        self, connection: str, link_id: int, fields: Iterable[str] | None, resolution: str
    ) -> None:
        """Close open conflicts whose field settled by itself (e.g. both sides agreed);
        ``fields=None`` closes every open conflict of the link (its pair ended)."""
        field_list = None if fields is None else list(fields)
        if field_list == []:
            return
        with self.session() as s:
            q = update(ConflictRow).where(
                col(ConflictRow.connection) == connection,
                col(ConflictRow.link_id) == link_id,
                col(ConflictRow.status) == "open",
            )
            if field_list is not None:
                q = q.where(col(ConflictRow.field).in_(field_list))
            s.execute(q.values(status="resolved", resolution=resolution, resolved_at=utcnow()))
            s.commit()
