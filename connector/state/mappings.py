"""The mapping versions a connection synced with (issue 15, mapping migrations).

Each row holds a mapping's fingerprint — per object the share condition's hash and
per field key the hash of the field's effective definition — and what changed from
the row before. The engine (:mod:`connector.engine.migrate`) compares the newest row
with the mapping it runs, and records a new row only after the migration's writes
committed, so a pass that crashed mid-migration plans the same migration again. The
queries that drop a removed field's base keys and open conflicts live here too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from connector.records import utcnow
from connector.state.tables import ConflictRow, Link, MappingVersion, Transactions


class MappingVersions(Transactions):
    """Mapping-version queries of :class:`~connector.state.store.StateStore` (a mixin)."""

    def mapping_version(self, connection: str) -> MappingVersion | None:
        """The newest recorded version of ``connection``'s mapping (none: never synced)."""
        with self.session() as s:
            return s.exec(
                select(MappingVersion)
                .where(MappingVersion.connection == connection)
                .order_by(col(MappingVersion.id).desc())
                .limit(1)
            ).first()

    def mapping_versions(self, connection: str | None = None) -> list[MappingVersion]:
        """Every recorded version, oldest first (``dealsync mapping history``)."""
        query = select(MappingVersion).order_by(col(MappingVersion.id))
        if connection:
            query = query.where(MappingVersion.connection == connection)
        return self.rows(query)

    def record_mapping_version(
        self,
        connection: str,
        fingerprint: dict[str, Any],
        changes: list[str],
        run_id: int | None = None,
    ) -> MappingVersion:
        with self.session() as s:
            row = MappingVersion(
                connection=connection, fingerprint=fingerprint, changes=changes, run_id=run_id
            )
            s.add(row)
            s.commit()
            return row

    def count_linked_pairs(self, connection: str, obj: str) -> int:
        """How many active links of ``connection``/``obj`` have both ids: what a
        migration reports before it pages through them (``linked_pairs``), without
        holding them."""
        with self.session() as s:
            return int(
                s.exec(
                    select(func.count())
                    .select_from(Link)
                    .where(
                        Link.connection == connection,
                        Link.object == obj,
                        Link.status == "active",
                        col(Link.partner_id).is_not(None),
                        col(Link.vendor_id).is_not(None),
                    )
                ).one()
            )

    def drop_field_bases(self, connection: str, obj: str, keys: Collection[str]) -> int:
        """Remove ``keys`` from the base of every link of ``connection``/``obj`` and resolve
        those fields' open conflicts ("field removed from mapping"): a field removed from the mapping leaves nothing
        behind that a later re-added field would mistake for its base. Returns the
        number of links whose base changed."""
        if not keys:
            return 0
        keys = set(keys)
        changed = 0
        with self.session() as s:
            links = s.exec(
                select(Link).where(Link.connection == connection, Link.object == obj)
            ).all()
            for link in links:
                if keys & set(link.base):
                    link.base = {k: v for k, v in link.base.items() if k not in keys}
                    s.add(link)
                    changed += 1
            s.execute(
                update(ConflictRow)
                .where(
                    col(ConflictRow.connection) == connection,
                    col(ConflictRow.object) == obj,
                    col(ConflictRow.field).in_(sorted(keys)),
                    col(ConflictRow.status) == "open",
                )
                .values(
                    status="resolved", resolution="field removed from mapping", resolved_at=utcnow()
                )
            )
            s.commit()
        return changed
