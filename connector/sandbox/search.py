"""Evaluation of HubSpot search requests: filters, sorting, paging limits.

A request is validated and *compiled* once into plain Python predicates, then run over
the portal's records.  Values are stored canonically (see ``schema``), so datetime and
date comparisons are string comparisons and only numbers need parsing; a search over
20k records takes a few milliseconds.

Semantics chosen where HubSpot leaves room (documented so tests can rely on them):

* EQ/NEQ/IN/NOT_IN compare strings case-insensitively; numbers numerically; datetime
  properties accept epoch-ms or ISO values.
* A record without a value never matches EQ, LT, LTE, GT, GTE, BETWEEN, IN or
  CONTAINS_TOKEN, and always matches NEQ, NOT_IN and NOT_CONTAINS_TOKEN.
* Results are sorted by the requested property and then by id, so paging is stable;
  records without the sort property come last.  Without a sort, results are by id.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.sandbox.errors import ApiError, validation
from connector.sandbox.schema import PropertyDef, canonical_date, canonical_datetime

MAX_LIMIT = 200
MAX_RESULTS = 10_000
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
MAX_IN_VALUES = 100  # values in one IN / NOT_IN filter

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)

Props = Mapping[str, str]
Predicate = Callable[[Props], bool]


@dataclass
class CompiledSearch:
    """A validated search request, ready to run."""

    groups: list[list[Predicate]]
    sort_prop: str | None
    descending: bool
    limit: int
    offset: int
    properties: list[str] | None
    query: str | None


def _bad(message: str, **kwargs: Any) -> ApiError:
    return validation(message, **kwargs)


def _conv(prop: PropertyDef) -> Callable[[str], Any]:
    """Converter from a wire value to a comparable key for this property's type."""
    if prop.type == "number":
        return float
    if prop.type == "datetime":
        return canonical_datetime
    if prop.type == "date":
        return canonical_date
    if prop.type == "bool":
        return lambda v: v.strip().lower()
    return lambda v: v.lower()


def _stored_key(prop: PropertyDef) -> Callable[[str], Any]:
    """Converter for *stored* values: they are canonical already, so this is cheap."""
    if prop.type == "number":
        return float
    if prop.type in ("datetime", "date"):
        return lambda v: v
    return lambda v: v.lower()


def _tokens(text: str) -> list[str]:
    low = text.lower()
    parts = [t for t in re.split(r"[^\w@.\-]+", low) if t]
    extra: list[str] = []
    for part in parts:
        extra.extend(t for t in re.split(r"[.\-@]+", part) if t)
    return parts + extra


def _compile_filter(raw: Any, defs: Mapping[str, PropertyDef]) -> Predicate:
    if not isinstance(raw, dict):
        raise _bad("Each filter must be an object with propertyName and operator")
    name = raw.get("propertyName")
    op = str(raw.get("operator", "EQ")).upper()
    if not isinstance(name, str) or not name:
        raise _bad("Filter is missing propertyName")
    if op not in OPERATORS:
        raise _bad(f"Unknown filter operator {op!r}; allowed: {', '.join(sorted(OPERATORS))}")
    prop = defs.get(name)
    if prop is None:
        raise _bad(f'Property "{name}" does not exist', context={"propertyName": [name]})
    if op == "HAS_PROPERTY":
        return lambda p: bool(p.get(name))
    if op == "NOT_HAS_PROPERTY":
        return lambda p: not p.get(name)
    conv = _conv(prop)
    key = _stored_key(prop)

    def want(field: str) -> Any:
        value = raw.get(field)
        if value is None:
            raise _bad(f"Operator {op} on {name} requires {field}")
        try:
            return conv(str(value).lower() if isinstance(value, bool) else str(value))
        except (ValueError, OverflowError):
            raise _bad(
                f'{value} is not a valid {prop.type} value for "{name}" in a {op} filter'
            ) from None

    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        raw_value = raw.get("value")
        if raw_value is None:
            raise _bad(f"Operator {op} on {name} requires value")
        needle = str(raw_value).lower().strip()

        def contains(p: Props) -> bool:
            v = p.get(name)
            if not v:
                return False
            low = v.lower()
            if "*" in needle:
                if fnmatch.fnmatchcase(low, needle):
                    return True
                return any(fnmatch.fnmatchcase(t, needle) for t in _tokens(v))
            return needle == low or needle in _tokens(v) or (" " in needle and needle in low)

        if op == "CONTAINS_TOKEN":
            return contains
        return lambda p: not contains(p)

    if op in ("IN", "NOT_IN"):
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise _bad(f"Operator {op} on {name} requires a non-empty values list")
        if len(values) > MAX_IN_VALUES:
            raise _bad(
                f"Too many values in the {op} filter on {name}: {len(values)} "
                f"(maximum {MAX_IN_VALUES}); split them over filter groups or searches"
            )
        try:
            wanted = {conv(str(v)) for v in values}
        except (ValueError, OverflowError):
            raise _bad(
                f'values of the {op} filter on "{name}" are not valid {prop.type} values'
            ) from None

        def is_in(p: Props) -> bool:
            v = p.get(name)
            if not v:
                return False
            try:
                return key(v) in wanted
            except ValueError:
                return False

        if op == "IN":
            return is_in
        return lambda p: not is_in(p)

    if op == "BETWEEN":
        low_v, high_v = want("value"), want("highValue")

        def between(p: Props) -> bool:
            v = p.get(name)
            if not v:
                return False
            try:
                k = key(v)
            except ValueError:
                return False
            return bool(low_v <= k <= high_v)

        return between

    target = want("value")

    def compare(p: Props) -> bool:
        v = p.get(name)
        if not v:
            return op == "NEQ"
        try:
            k = key(v)
        except ValueError:
            return op == "NEQ"
        if op == "EQ":
            return bool(k == target)
        if op == "NEQ":
            return bool(k != target)
        if op == "LT":
            return bool(k < target)
        if op == "LTE":
            return bool(k <= target)
        if op == "GT":
            return bool(k > target)
        return bool(k >= target)  # GTE

    return compare


def compile_search(body: Any, defs: Mapping[str, PropertyDef]) -> CompiledSearch:
    """Validate a search body against HubSpot's limits and compile it."""
    if not isinstance(body, dict):
        raise _bad("Search body must be a JSON object")
    groups_raw = body.get("filterGroups") or []
    if not isinstance(groups_raw, list):
        raise _bad("filterGroups must be a list")
    if len(groups_raw) > MAX_GROUPS:
        raise _bad(f"Too many filter groups: {len(groups_raw)} (maximum {MAX_GROUPS})")
    groups: list[list[Predicate]] = []
    total = 0
    for group in groups_raw:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise _bad("Each filterGroup needs a filters list")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise _bad(
                f"Too many filters in a group: {len(filters)} (maximum {MAX_FILTERS_PER_GROUP})"
            )
        total += len(filters)
        groups.append([_compile_filter(f, defs) for f in filters])
    if total > MAX_FILTERS_TOTAL:
        raise _bad(f"Too many filters: {total} (maximum {MAX_FILTERS_TOTAL} across all groups)")

    sorts = body.get("sorts") or []
    if not isinstance(sorts, list):
        raise _bad("sorts must be a list")
    if len(sorts) > 1:
        raise _bad("Only one sort is supported")
    sort_prop: str | None = None
    descending = False
    if sorts:
        s = sorts[0]
        if isinstance(s, str):
            sort_prop = s[1:] if s.startswith("-") else s
            descending = s.startswith("-")
        elif isinstance(s, dict):
            sort_prop = s.get("propertyName")
            descending = str(s.get("direction", "ASCENDING")).upper() == "DESCENDING"
        if not isinstance(sort_prop, str) or sort_prop not in defs:
            raise _bad(f'Cannot sort by unknown property "{sort_prop}"')

    try:
        limit = int(body.get("limit", 10) if body.get("limit") is not None else 10)
        offset = int(body.get("after") or 0)
    except (TypeError, ValueError):
        raise _bad("limit and after must be integers") from None
    if limit < 1 or limit > MAX_LIMIT:
        raise _bad(f"Page size must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise _bad("after must be a non-negative offset")
    if offset + limit > MAX_RESULTS:
        raise _bad(
            f"Paging past {MAX_RESULTS} results is not supported (after={offset}, limit={limit}); "
            "narrow the query, e.g. split it into time windows",
            context={"after": [str(offset)]},
        )
    props = body.get("properties")
    if props is not None and not isinstance(props, list):
        raise _bad("properties must be a list")
    query = body.get("query")
    return CompiledSearch(
        groups=groups,
        sort_prop=sort_prop,
        descending=descending,
        limit=limit,
        offset=offset,
        properties=[str(p) for p in props] if props else None,
        query=str(query).lower().strip() if query else None,
    )


def matches(search: CompiledSearch, props: Props, query_props: tuple[str, ...]) -> bool:
    """Does one record (its visible property values) match: any group, all its filters."""
    if search.groups and not any(all(f(props) for f in g) for g in search.groups):
        return False
    if search.query:
        q = search.query
        return any(q in (props.get(n) or "").lower() for n in query_props)
    return True


def sort_key(prop: PropertyDef | None) -> Callable[[str | None], tuple[int, Any]]:
    """Sort key for a property's stored values; missing values sort last either way."""
    if prop is None:
        return lambda v: (0, 0)
    if prop.type == "number":

        def num(v: str | None) -> tuple[int, Any]:
            if not v:
                return (1, 0.0)
            try:
                return (0, float(v))
            except ValueError:
                return (1, 0.0)

        return num
    lower = prop.type not in ("datetime", "date", "number")
    return lambda v: (1, "") if not v else (0, v.lower() if lower else v)
