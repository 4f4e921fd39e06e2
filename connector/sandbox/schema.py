"""Object types, property definitions and value validation, modelled on HubSpot.

The sandbox is only useful if it rejects what HubSpot rejects, so every write goes
through :func:`normalize_value`: unknown properties, non-numbers in number properties,
options that do not exist, non-midnight dates.  Values are stored in their canonical wire
form (ISO-8601 with milliseconds for datetimes, ``YYYY-MM-DD`` for dates) so that search
can compare datetimes and dates as plain strings, which keeps search over 20k records
fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

OBJECT_TYPES: tuple[str, ...] = ("contacts", "companies", "deals")
TYPE_IDS: dict[str, str] = {"contacts": "0-1", "companies": "0-2", "deals": "0-3"}
SINGULAR: dict[str, str] = {"contacts": "contact", "companies": "company", "deals": "deal"}

_TYPE_ALIASES: dict[str, str] = {}
for _plural, _tid in TYPE_IDS.items():
    _TYPE_ALIASES[_plural] = _plural
    _TYPE_ALIASES[_tid] = _plural
    _TYPE_ALIASES[SINGULAR[_plural]] = _plural

PROPERTY_TYPES: tuple[str, ...] = ("string", "number", "date", "datetime", "enumeration", "bool")
FIELD_TYPES: tuple[str, ...] = (
    "textarea",
    "text",
    "date",
    "file",
    "number",
    "select",
    "radio",
    "checkbox",
    "booleancheckbox",
    "calculation_equation",
    "phonenumber",
    "html",
)

# Properties the server maintains.  Writes to them are *rejected* (not silently
# ignored): a connector that copies them between portals has a bug worth seeing.
READ_ONLY: frozenset[str] = frozenset(
    {"hs_object_id", "createdate", "hs_lastmodifieddate", "lastmodifieddate"}
)

# What HubSpot returns when a request names no properties.
DEFAULT_RETURNED: dict[str, tuple[str, ...]] = {
    "deals": (
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ),
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": (
        "firstname",
        "lastname",
        "email",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    ),
}
# Always returned, even when other properties are requested.
ALWAYS_RETURNED: dict[str, tuple[str, ...]] = {
    "deals": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "companies": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": ("createdate", "lastmodifieddate", "hs_object_id"),
}
# Properties the free-text ``query`` of search looks at.
QUERY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "deals": ("dealname",),
    "companies": ("name", "domain", "website"),
    "contacts": ("firstname", "lastname", "email", "phone", "company"),
}
GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "deals": (("dealinformation", "Deal information"), ("deal_activity", "Deal activity")),
    "companies": (
        ("companyinformation", "Company information"),
        ("company_activity", "Company activity"),
    ),
    "contacts": (
        ("contactinformation", "Contact information"),
        ("contact_activity", "Contact activity"),
    ),
}

DEFAULT_STAGES: tuple[tuple[str, str, float, bool], ...] = (
    ("appointmentscheduled", "Appointment Scheduled", 0.2, False),
    ("qualifiedtobuy", "Qualified To Buy", 0.4, False),
    ("presentationscheduled", "Presentation Scheduled", 0.6, False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", 0.8, False),
    ("contractsent", "Contract Sent", 0.9, False),
    ("closedwon", "Closed Won", 1.0, True),
    ("closedlost", "Closed Lost", 0.0, True),
)

_LIFECYCLE = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK")
_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "ja", "sv")
_INDUSTRIES = (
    "COMPUTER_SOFTWARE",
    "INFORMATION_TECHNOLOGY_AND_SERVICES",
    "FINANCIAL_SERVICES",
    "RETAIL",
    "MARKETING_AND_ADVERTISING",
)
_DEAL_TYPES = ("newbusiness", "existingbusiness")


class ValidationFailure(ValueError):
    """One invalid property value; ``code`` mirrors HubSpot's per-property error codes."""

    def __init__(self, name: str, message: str, code: str = "INVALID_PROPERTY_VALUE") -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.code = code


_NOT_STORED = {"hubspot_defined", "read_only", "dynamic_options"}


@dataclass
class PropertyDef:
    """One property definition, as served by the properties API."""

    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    options: list[dict[str, Any]] = field(default_factory=list)
    has_unique_value: bool = False
    hubspot_defined: bool = True
    read_only: bool = False
    description: str = ""
    display_order: int = -1
    hidden: bool = False
    created_at: str = "2020-01-01T00:00:00.000Z"
    updated_at: str = "2020-01-01T00:00:00.000Z"
    # Pipeline-driven enumerations (``pipeline``/``dealstage``) take their options from
    # the pipelines API instead of ``options``.
    dynamic_options: bool = False

    def to_json(self, options: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Wire form, shaped like the client's ``ModelProperty``."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
            "options": options if options is not None else self.options,
            "displayOrder": self.display_order,
            "hidden": self.hidden,
            "hasUniqueValue": self.has_unique_value,
            "hubspotDefined": self.hubspot_defined,
            "calculated": False,
            "externalOptions": self.dynamic_options,
            "formField": not self.read_only,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": False,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only,
            },
        }

    def to_store(self) -> dict[str, Any]:
        """Persistence form (custom properties only are saved): every field but those a
        custom property never sets (HubSpot-defined, read-only, pipeline options)."""
        return {k: v for k, v in asdict(self).items() if k not in _NOT_STORED}


def _opts(values: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "label": v.replace("_", " ").title(),
            "value": v,
            "displayOrder": i,
            "hidden": False,
            "description": "",
        }
        for i, v in enumerate(values)
    ]


def _p(
    name: str,
    type_: str,
    group: str,
    *,
    options: tuple[str, ...] = (),
    read_only: bool = False,
    dynamic: bool = False,
) -> PropertyDef:
    field_type = {
        "string": "text",
        "number": "number",
        "date": "date",
        "datetime": "date",
        "enumeration": "select",
        "bool": "booleancheckbox",
    }[type_]
    return PropertyDef(
        name=name,
        label=name.replace("hs_", "").replace("_", " ").title(),
        type=type_,
        field_type=field_type,
        group_name=group,
        options=_opts(options) if type_ != "bool" else _opts(("true", "false")),
        read_only=read_only,
        dynamic_options=dynamic,
    )


# HubSpot's built-in properties (a realistic subset), per object type: its property group,
# then one property a line — name, type and flags: ``dynamic`` (options are the portal's
# own: pipelines, stages, owners), ``ro`` (read-only, HubSpot sets it), ``opts=NAME``
# (the options of :data:`_OPTIONS`). Every type ends with :data:`_SYSTEM_PROPERTIES`.
_DEFAULT_PROPERTIES = {
    "deals": (
        "dealinformation",
        """
        dealname                 string
        amount                   number
        closedate                datetime
        pipeline                 enumeration  dynamic
        dealstage                enumeration  dynamic
        hubspot_owner_id         enumeration  dynamic
        deal_currency_code       enumeration  opts=currencies
        description              string
        dealtype                 enumeration  opts=deal_types
        hs_priority              enumeration  opts=priorities
        hs_next_step             string
        amount_in_home_currency  number       ro
        hs_is_closed             bool         ro
        num_associated_contacts  number       ro
        """,
    ),
    "companies": (
        "companyinformation",
        """
        name                     string
        domain                   string
        website                  string
        phone                    string
        city                     string
        state                    string
        country                  string
        industry                 enumeration  opts=industries
        numberofemployees        number
        annualrevenue            number
        lifecyclestage           enumeration  opts=lifecycle
        hubspot_owner_id         enumeration  dynamic
        description              string
        num_associated_contacts  number       ro
        """,
    ),
    "contacts": (
        "contactinformation",
        """
        firstname                string
        lastname                 string
        email                    string
        phone                    string
        company                  string
        website                  string
        jobtitle                 string
        city                     string
        country                  string
        lifecyclestage           enumeration  opts=lifecycle
        hs_language              enumeration  opts=languages
        hubspot_owner_id         enumeration  dynamic
        hs_lead_status           enumeration  opts=lead_status
        lastmodifieddate         datetime     ro
        """,
    ),
}
# every object type's; hs_merged_object_ids: ids merged into this record,
# semicolon-separated (HubSpot sets it on a merge)
_SYSTEM_PROPERTIES = """
        hs_object_id             number       ro
        hs_merged_object_ids     string       ro
        createdate               datetime     ro
        hs_lastmodifieddate      datetime     ro
"""
_OPTIONS = {
    "currencies": _CURRENCIES,
    "deal_types": _DEAL_TYPES,
    "priorities": ("low", "medium", "high"),
    "industries": _INDUSTRIES,
    "lifecycle": _LIFECYCLE,
    "languages": _LANGUAGES,
    "lead_status": ("NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "CONNECTED"),
}


def _table(text: str, group: str) -> list[PropertyDef]:
    """The properties of one table of :data:`_DEFAULT_PROPERTIES`, in its order."""
    out = []
    for line in text.strip().splitlines():
        name, type_, *flags = line.split()
        options = next((_OPTIONS[f[5:]] for f in flags if f.startswith("opts=")), ())
        out.append(
            _p(
                name,
                type_,
                group,
                options=options,
                read_only="ro" in flags,
                dynamic="dynamic" in flags,
            )
        )
    return out


def default_properties(object_type: str) -> dict[str, PropertyDef]:
    """HubSpot's built-in properties for one object type (a realistic subset)."""
    if object_type not in _DEFAULT_PROPERTIES:  # pragma: no cover - callers normalise first
        raise ValueError(object_type)
    group, table = _DEFAULT_PROPERTIES[object_type]
    props = _table(table, group) + _table(_SYSTEM_PROPERTIES, group)
    defs = {p.name: p for p in props}
    for i, p in enumerate(defs.values()):
        p.display_order = i
    if object_type == "contacts":
        defs["email"].has_unique_value = True
    return defs


def normalize_object_type(raw: str) -> str | None:
    """Map ``deals``/``deal``/``0-3`` (any case) to the plural name, or None if unknown."""
    return _TYPE_ALIASES.get(raw.strip().lower())


# --------------------------------------------------------------------------- time


def to_iso(dt: datetime) -> str:
    """HubSpot's datetime wire form: UTC, milliseconds, ``Z``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def from_epoch_ms(ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


_INT_RE = re.compile(r"^-?\d+$")


def parse_datetime(value: str) -> datetime:
    """Accept epoch ms or ISO-8601 (with ``Z``, an offset, or naive = UTC, or a bare date)."""
    text = value.strip()
    if _INT_RE.match(text):
        return from_epoch_ms(int(text))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def canonical_datetime(value: str) -> str:
    """Any accepted datetime form to the stored ISO form; ValueError if unparseable."""
    return to_iso(parse_datetime(value))


def canonical_date(value: str) -> str:
    """Any accepted date form to ``YYYY-MM-DD``; ValueError unless it is UTC midnight."""
    text = value.strip()
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        return date.fromisoformat(text).isoformat()
    dt = parse_datetime(text)
    if (dt.hour, dt.minute, dt.second, dt.microsecond) != (0, 0, 0, 0):
        raise ValueError("not midnight UTC")
    return dt.date().isoformat()


# --------------------------------------------------------------------------- values


# datetime and date values: the parser, and HubSpot's words and category when it fails
_MOMENTS: dict[str, tuple[Callable[[str], str], str, str, str]] = {
    "datetime": (
        canonical_datetime,
        "was not a valid datetime",
        "use epoch milliseconds or ISO-8601",
        "INVALID_DATETIME",
    ),
    "date": (
        canonical_date,
        "is not a valid date",
        "dates must be at midnight UTC (epoch ms or YYYY-MM-DD)",
        "INVALID_DATE",
    ),
}


def normalize_value(prop: PropertyDef, value: Any, allowed: set[str] | None = None) -> str:
    """Validate one written value and return the canonical string to store.

    ``""`` is handled by the caller (it clears the property).  ``allowed`` overrides the
    option set for dynamic enumerations.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValidationFailure(
            prop.name,
            f'Property "{prop.name}" must be a string, got {type(value).__name__}',
            "INVALID_PROPERTY_VALUE",
        )
    if text == "":
        return ""
    kind = prop.type
    if kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValidationFailure(
                prop.name,
                f'{text} was not a valid number for property "{prop.name}"',
                "INVALID_DOUBLE",
            )
        return text.strip()
    if kind == "bool":
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise ValidationFailure(
                prop.name,
                f'{text} was not a valid boolean for property "{prop.name}" '
                "(expected true or false)",
                "INVALID_BOOLEAN",
            )
        return low
    if kind in _MOMENTS:
        parse, wrong, fix, category = _MOMENTS[kind]
        try:
            return parse(text)
        except (ValueError, OverflowError):
            raise ValidationFailure(
                prop.name, f'{text} {wrong} for property "{prop.name}": {fix}', category
            ) from None
    if kind == "enumeration":
        options = allowed if allowed is not None else {o["value"] for o in prop.options}
        if prop.name == "hubspot_owner_id":
            if not _INT_RE.match(text.strip()):
                raise ValidationFailure(
                    prop.name,
                    f'{text} is not a valid owner id for property "{prop.name}"',
                    "INVALID_OPTION",
                )
            return text.strip()
        parts = text.split(";") if prop.field_type == "checkbox" else [text]
        for part in parts:
            if part not in options:
                raise ValidationFailure(
                    prop.name,
                    f"{part} was not one of the allowed options for property "
                    f'"{prop.name}": {sorted(options)}',
                    "INVALID_OPTION",
                )
        return text
    return text
