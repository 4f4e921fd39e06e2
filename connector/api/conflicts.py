"""The API's conflict commands: list, show and settle a manual conflict through the
engine's own update path (mixed into :class:`connector.api.Dealsync`)."""

from __future__ import annotations

from typing import Any

from connector.api.errors import DealsyncError
from connector.api.host import Host
from connector.engine.hooks import PassContext
from connector.engine.plan import Update
from connector.engine.reconcile import FieldPlan
from connector.engine.sync import apply_update
from connector.engine.values import ValueError_, canonical
from connector.records import Side, utcnow
from connector.state.tables import ConflictRow


class ConflictCommands(Host):
    """Conflicts: listing them and settling one now."""

    def conflicts(
        self, connection: str | None = None, *, open_only: bool = True
    ) -> list[ConflictRow]:
        """The conflicts, one record's together and its fields in mapping order (the
        order the mapping file lists them, as a person reads the record); a field no
        longer mapped comes last."""
        rows = self.store.conflicts(connection, "open" if open_only else None)
        order = {
            (m.name, f.key): (i, j)
            for i, m in enumerate(self.project.mappings)
            for j, f in enumerate(m.fields)
        }
        unmapped = (len(order), 0)
        return sorted(
            rows,
            key=lambda r: (
                r.connection,
                r.link_id,
                order.get((r.object, r.field), unmapped),
                r.id or 0,
            ),
        )

    def conflict(self, conflict_id: int) -> ConflictRow:
        row = self.store.conflict(conflict_id)
        if row is None:
            raise DealsyncError(f"no conflict #{conflict_id}")
        return row

    def resolve_conflict(
        self, conflict_id: int, *, take: Side | None = None, value: str | None = None
    ) -> ConflictRow:
        """Settle a manual conflict now: write the chosen value to the side(s) that
        lack it and move the base, so the next pass sees agreement.

        ``take`` keeps one side's *current* value; ``value`` sets both sides to a
        value given in the partner's terms (mapped through the field's value_map).
        """
        if (take is None) == (value is None):
            raise DealsyncError("give exactly one of --take partner|vendor or --value VALUE")
        row = self.store.conflict(conflict_id)
        if row is None:
            raise DealsyncError(f"no conflict #{conflict_id}")
        if row.status != "open":
            raise DealsyncError(f"conflict #{conflict_id} is already {row.status}")
        mapping = self.project.object(row.object)
        compiled = FieldPlan(mapping)
        fm = next(((f, m) for f, m in compiled.fields if f.key == row.field), None)
        if fm is None:
            raise DealsyncError(f"field {row.field} is no longer in mapping {mapping.name}")
        field, mapper = fm
        partner_crm, vendor_crm = self.partner_crm(row.connection), self.vendor()
        p_rec = partner_crm.read(mapping.partner_object, [row.partner_id], [field.partner]).get(
            row.partner_id
        )
        v_rec = vendor_crm.read(mapping.vendor_object, [row.vendor_id], [field.vendor]).get(
            row.vendor_id
        )
        if p_rec is None or v_rec is None:
            raise DealsyncError("one of the two records no longer exists; run a sync first")
        try:
            p_now = canonical(field.transform, p_rec.properties.get(field.partner))
            v_now = canonical(field.transform, v_rec.properties.get(field.vendor))
            if take == "partner":
                p_val, v_val = p_now, mapper.to_vendor(p_now)
            elif take == "vendor":
                p_val, v_val = mapper.to_partner(v_now), v_now
            else:
                p_val = canonical(field.transform, value)
                v_val = mapper.to_vendor(p_val)
        except ValueError_ as exc:
            raise DealsyncError(f"cannot resolve: {exc}") from None
        link = self.store.link(row.link_id)
        base: dict[str, Any] = dict(link.base) if link is not None else {}
        base[row.field] = [p_val, v_val]
        how = f"took {take}" if take else f"set to {value!r}"
        update = Update(
            mapping.name,
            row.link_id,
            row.partner_id,
            row.vendor_id,
            {field.partner: p_val or ""} if p_val != p_now else {},
            {field.vendor: v_val or ""} if v_val != v_now else {},
            base,
            (f"conflict #{conflict_id} resolved: {how}",),
        )
        ctx = PassContext(
            partner=self.partner(row.connection),
            partner_crm=partner_crm,
            vendor_crm=vendor_crm,
            store=self.store,
            now=utcnow(),
            dry_run=False,
            run_id=None,
        )
        # the open conflicts of the pair (this one too) stay as they are: this one is
        # closed below with how it was resolved, the others wait for their own turn
        errors = apply_update(ctx, mapping, update, keep_open=base)
        if errors:
            raise DealsyncError(f"cannot resolve: {errors[0].message}")
        self.store.close_conflict(conflict_id, how)
        resolved = self.store.conflict(conflict_id)
        assert resolved is not None
        return resolved
