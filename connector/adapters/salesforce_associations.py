"""Associations the Salesforce way: a lookup field or a junction object.

dealsync's associations map onto Salesforce's relationships:

- a deal's company is ``Opportunity.AccountId``, a contact's company ``Contact.AccountId``
  (one each: associating another replaces it; a company's deals and contacts are read
  back through the same field);
- a deal's contacts are ``OpportunityContactRole`` rows (``OpportunityId``,
  ``ContactId``): many, created only when the pair is not there yet (idempotent).

Writes go through sObject Collections (:mod:`connector.adapters.salesforce_writes`),
each pair with its own result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from connector.adapters.salesforce_soql import OBJECTS, chunks, one_of, select, sobject
from connector.adapters.salesforce_writes import SalesforceWrites
from connector.records import Record, WriteResult

JUNCTION = "OpportunityContactRole"
_CANON = {v: k for k, v in OBJECTS.items()}


def canon(object_type: str) -> str:
    """dealsync's name of an object type (``Opportunity`` → ``deals``)."""
    return _CANON.get(object_type, object_type)


@dataclass(frozen=True)
class Lookup:
    """``child.field`` points at the parent: from the child it is to-one."""

    child: str  # dealsync type holding the field
    field: str
    parent: str


@dataclass(frozen=True)
class Junction:
    """Rows of ``sobject`` pair ``left_field`` with ``right_field``."""

    sobject: str
    left: str
    left_field: str
    right: str
    right_field: str


LOOKUPS = (
    Lookup("deals", "AccountId", "companies"),
    Lookup("contacts", "AccountId", "companies"),
)
JUNCTIONS = (Junction(JUNCTION, "deals", "OpportunityId", "contacts", "ContactId"),)


def relation(from_type: str, to_type: str) -> tuple[str, Lookup | Junction] | None:
    """How two types are related, and from which end: ``("child", lookup)`` (the from
    record holds the field), ``("parent", lookup)``, ``("left"|"right", junction)``."""
    a, b = canon(from_type), canon(to_type)
    for lk in LOOKUPS:
        if (a, b) == (lk.child, lk.parent):
            return "child", lk
        if (a, b) == (lk.parent, lk.child):
            return "parent", lk
    for j in JUNCTIONS:
        if (a, b) == (j.left, j.right):
            return "left", j
        if (a, b) == (j.right, j.left):
            return "right", j
    return None


class SalesforceAssociations(SalesforceWrites):
    """Reading and creating associations of one org."""

    def _inline(self, object_type: str, associations: Sequence[str]) -> dict[str, str]:
        """The associations a record holds itself (its lookup fields, ``AccountId``),
        by target type: read with the record, they cost no query of their own."""
        out = {}
        for t in associations:
            rel = relation(object_type, t)
            if rel is not None and rel[0] == "child" and isinstance(rel[1], Lookup):
                out[t] = rel[1].field
        return out

    def _with_associations(
        self,
        object_type: str,
        records: list[Record],
        associations: Sequence[str],
        *,
        inline: Mapping[str, str] | None = None,
        asked: Sequence[str] = (),
    ) -> list[Record]:
        """``records`` with their associated ids. ``inline``: target type → lookup
        field each record was read with (:meth:`_inline`); such a field is taken from
        the record and dropped from its properties unless ``asked`` for."""
        inline = inline or {}
        live = [r.id for r in records if not r.archived]
        if not associations or not live:
            return records
        found = {t: self._associated(object_type, live, t) for t in associations if t not in inline}
        hidden = set(inline.values()) - set(asked)
        out = []
        for r in records:
            if r.archived:
                out.append(r)
                continue
            links = {t: tuple(sorted(found[t].get(r.id, ()))) for t in found}
            for t, field_name in inline.items():
                value = r.properties.get(field_name)
                links[t] = (value,) if value else ()
            props = {k: v for k, v in r.properties.items() if k not in hidden}
            out.append(
                Record(
                    r.object_type,
                    r.id,
                    props,
                    r.updated_at,
                    r.archived,
                    {t: links[t] for t in associations},
                )
            )
        return out

    def _associated(self, from_type: str, ids: Sequence[str], to_type: str) -> dict[str, set[str]]:
        """Live associated ids of ``to_type`` per record id."""
        out: dict[str, set[str]] = {i: set() for i in ids}
        rel = relation(from_type, to_type)
        if rel is None:
            return out
        end, how = rel
        for chunk in chunks(ids):
            if isinstance(how, Lookup):
                if end == "child":
                    soql = select(how.child, ["Id", how.field], [one_of("Id", chunk)])
                    for row in self._rows("assoc_read", soql):
                        if row.get(how.field):
                            out[str(row["Id"])].add(str(row[how.field]))
                else:
                    soql = select(how.child, ["Id", how.field], [one_of(how.field, chunk)])
                    for row in self._rows("assoc_read", soql):
                        out.setdefault(str(row[how.field]), set()).add(str(row["Id"]))
            else:
                mine, theirs = (
                    (how.left_field, how.right_field)
                    if end == "left"
                    else (how.right_field, how.left_field)
                )
                soql = select(how.sobject, ["Id", mine, theirs], [one_of(mine, chunk)])
                for row in self._rows("assoc_read", soql):
                    out.setdefault(str(row[mine]), set()).add(str(row[theirs]))
        return out

    def associate(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, str]]
    ) -> list[WriteResult]:
        pair_list = list(pairs)
        rel = relation(from_type, to_type)
        if rel is None:
            return [
                WriteResult(a, error=f"Salesforce has no association of {from_type} with {to_type}")
                for a, _ in pair_list
            ]
        end, how = rel
        if isinstance(how, Lookup):
            return self._set_lookups(how, pair_list, child_first=end == "child")
        return self._add_junctions(how, pair_list, left_first=end == "left")

    def _set_lookups(
        self, how: Lookup, pairs: list[tuple[str, str]], *, child_first: bool
    ) -> list[WriteResult]:
        """Set the child's lookup field to the parent, one round per time a child
        recurs (a collection may not name a record twice), each pair its result."""
        results: list[WriteResult | None] = [None] * len(pairs)
        rounds: list[list[int]] = []
        for i, (a, b) in enumerate(pairs):
            child = a if child_first else b
            for r in rounds:
                if all((pairs[j][0] if child_first else pairs[j][1]) != child for j in r):
                    r.append(i)
                    break
            else:
                rounds.append([i])
        for r in rounds:
            items = []
            for j in r:
                a, b = pairs[j]
                child, parent = (a, b) if child_first else (b, a)
                items.append((child, {how.field: parent}))
            written = self._update_raw(how.child, items)
            for j, res in zip(r, written, strict=True):
                results[j] = WriteResult(
                    pairs[j][0],
                    error=None if res.ok else f"association refused: {res.error}",
                )
        return [r for r in results if r is not None]

    def _add_junctions(
        self, how: Junction, pairs: list[tuple[str, str]], *, left_first: bool
    ) -> list[WriteResult]:
        """Create the junction rows that are missing; a pair already there is done."""
        ordered = [(a, b) if left_first else (b, a) for a, b in pairs]
        existing: set[tuple[str, str]] = set()
        for chunk in chunks([lft for lft, _ in ordered]):
            soql = select(
                how.sobject,
                ["Id", how.left_field, how.right_field],
                [one_of(how.left_field, chunk)],
            )
            for row in self._rows("assoc_read", soql):
                existing.add((str(row[how.left_field]), str(row[how.right_field])))
        todo = [(i, p) for i, p in enumerate(ordered) if p not in existing and p not in ordered[:i]]
        created = self._create_raw(
            how.sobject, [{how.left_field: lft, how.right_field: rgt} for _, (lft, rgt) in todo]
        )
        errors = {i: err for (i, _), err in zip(todo, created, strict=True) if err}
        out = []
        for i, (a, _) in enumerate(pairs):
            err = errors.get(i)
            out.append(WriteResult(a, error=f"association refused: {err}" if err else None))
        return out


__all__ = ["JUNCTION", "SalesforceAssociations", "canon", "relation", "sobject"]
