"""SOQL for the Salesforce adapter: the objects and field names dealsync speaks in,
literals quoted the way SOQL wants, and the few statement shapes the adapter sends.

One place builds every statement, so the SOQL subset the adapter relies on (and the
offline sandbox must understand) reads in one module: ``SELECT <fields> FROM <object>
WHERE <a> AND <b> ORDER BY SystemModstamp, Id`` with ``=``, ``>=``, ``<=``, ``IN``
and ``IsDeleted = true`` conditions, and ``SELECT COUNT() ...``. Nothing here does I/O,
so it is table-tested (``tests/adapters/test_salesforce_units.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

# dealsync's object types ↔ Salesforce's objects (either name is accepted)
OBJECTS = {"deals": "Opportunity", "companies": "Account", "contacts": "Contact"}
MODSTAMP = "SystemModstamp"
# read with every record: the id and the modification time detection pages by
ALWAYS = ("Id", MODSTAMP)
# ids in one `Id IN (...)` (keeps a GET's URL far below Salesforce's 16 KB limit)
IN_BATCH = 200


def sobject(object_type: str) -> str:
    """The Salesforce object of a dealsync object type (``deals`` → ``Opportunity``);
    a Salesforce name is taken as it is."""
    return OBJECTS.get(object_type, object_type)


def api_name(name: str) -> str:
    """The Salesforce field of a property name: dealsync's own properties
    (``dealsync_source_id``) are custom fields, ``dealsync_source_id__c``; every other
    name is the field's API name already (``StageName``, ``Amount``)."""
    if name.startswith("dealsync_") and not name.endswith("__c"):
        return f"{name}__c"
    return name


def quote(value: str) -> str:
    """A SOQL string literal: backslash and single quote escaped, as SOQL requires
    (newlines too, so a value cannot end the statement's line)."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace('"', '\\"')
    )
    return f"'{escaped}'"


def literal(moment: datetime) -> str:
    """A SOQL dateTime literal in UTC with milliseconds (``SystemModstamp`` keeps
    them), e.g. ``2026-12-01T09:30:00.125Z``; unquoted, as SOQL wants dates."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_datetime(value: object) -> datetime | None:
    """Salesforce's dateTime values (``2026-12-01T09:30:00.125+0000``, or with ``Z``
    or ``+00:00``) as aware datetimes; None for no value."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 → +00:00
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def field_list(properties: Iterable[str], *extra: str) -> list[str]:
    """The fields to SELECT: ``Id`` and ``SystemModstamp`` first, then the rest once
    each, in API names."""
    out = list(ALWAYS)
    for name in (*extra, *properties):
        field = api_name(name)
        if field not in out:
            out.append(field)
    return out


NUMBER_TYPES = frozenset({"double", "currency", "percent", "int", "long"})
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def value(text: str, field_type: str | None = None) -> str:
    """A value as a SOQL literal of the field's type (its describe ``type``): booleans,
    numbers, dates and dateTimes unquoted, as SOQL requires; anything else, or a value
    that is not of the type, a quoted string."""
    if field_type == "boolean" and text.lower() in ("true", "false"):
        return text.lower()
    if field_type in NUMBER_TYPES and _NUMBER.match(text):
        return text
    if field_type == "date" and _DATE.match(text):
        return text
    if field_type == "datetime" and (moment := _try_datetime(text)) is not None:
        return literal(moment)
    return quote(text)


def _try_datetime(text: str) -> datetime | None:
    try:
        return parse_datetime(text)
    except ValueError:
        return None


def equals(where: Mapping[str, str] | None, types: Mapping[str, str] | None = None) -> list[str]:
    """``where`` as conditions (``StageName = 'Prospecting'``, ``IsWon = true``), in
    key order; ``types``: field → describe type (a field not in it is text)."""
    types = types or {}
    return [
        f"{api_name(k)} = {value(str(v), types.get(api_name(k)))}" for k, v in (where or {}).items()
    ]


def one_of(field: str, values: Sequence[str]) -> str:
    """``field IN ('a','b')``."""
    return f"{api_name(field)} IN ({','.join(quote(v) for v in values)})"


def window(since: datetime | None, until: datetime | None) -> list[str]:
    """The change window's bounds, both inclusive (the engine's overlap window
    re-reads the record at the cursor's instant)."""
    out = []
    if since is not None:
        out.append(f"{MODSTAMP} >= {literal(since)}")
    if until is not None:
        out.append(f"{MODSTAMP} <= {literal(until)}")
    return out


def select(
    object_type: str,
    fields: Sequence[str],
    conditions: Sequence[str] = (),
    *,
    order_by: Sequence[str] = (),
    limit: int | None = None,
) -> str:
    """One SELECT statement."""
    soql = f"SELECT {', '.join(fields)} FROM {sobject(object_type)}"
    if conditions:
        soql += " WHERE " + " AND ".join(conditions)
    if order_by:
        soql += " ORDER BY " + ", ".join(order_by)
    if limit is not None:
        soql += f" LIMIT {int(limit)}"
    return soql


def changes(
    object_type: str,
    properties: Iterable[str],
    since: datetime | None,
    until: datetime | None,
    where: Mapping[str, str] | None = None,
    *,
    extra: Sequence[str] = (),
    deleted: bool = False,
    ordered: bool = True,
    types: Mapping[str, str] | None = None,
) -> str:
    """Records modified in the window, oldest first with ties broken by id (a stable
    order: a page boundary never splits one instant differently on a retry).
    ``deleted``: only the recycle bin's (sent to ``queryAll``); ``ordered=False`` for
    Bulk API 2.0, which does not sort."""
    conditions = [*window(since, until), *equals(where, types)]
    if deleted:
        conditions.insert(0, "IsDeleted = true")
    return select(
        object_type,
        field_list(properties, *extra),
        conditions,
        order_by=(MODSTAMP, "Id") if ordered else (),
    )


def count(
    object_type: str,
    since: datetime | None,
    until: datetime | None,
    where: Mapping[str, str] | None,
    types: Mapping[str, str] | None = None,
) -> str:
    """How many records a window holds (``SELECT COUNT()``: one call, whatever the
    number), to choose between the REST query and Bulk API 2.0."""
    conditions = [*window(since, until), *equals(where, types)]
    soql = f"SELECT COUNT() FROM {sobject(object_type)}"
    if conditions:
        soql += " WHERE " + " AND ".join(conditions)
    return soql


def chunks(values: Sequence[str], size: int = IN_BATCH) -> Iterable[list[str]]:
    """``values`` (deduplicated, order kept) in lists of at most ``size``."""
    unique = list(dict.fromkeys(values))
    for i in range(0, len(unique), size):
        yield unique[i : i + size]
