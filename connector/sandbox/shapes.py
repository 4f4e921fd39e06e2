"""Request-body shapes, checked before a handler touches the body.

HubSpot deserialises every JSON body into a typed model (Jackson) before any business
rule runs, so a body of the wrong *shape* (``properties`` sent as a list, ``inputs``
not a list, an id that is an object, a body that is not JSON) is refused whole with
``400 VALIDATION_ERROR`` and a message of the form ``Invalid input JSON on line 1,
column N: Cannot deserialize value of type ...``. It is never a 5xx: a 5xx tells a
client to retry something that can only fail again.

Jackson's default coercions are mirrored: a JSON number or boolean is accepted where a
string is expected (``"id": 5`` reads as ``"5"``), a numeric string where an integer
is, ``null`` anywhere, and unknown fields are ignored. Objects and arrays are never
coerced into scalars, and scalars never into objects or arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.sandbox.errors import ApiError, validation


@dataclass(frozen=True)
class Shape:
    """One node of a body schema: ``kind`` is str, int, bool, any, list, map or object."""

    kind: str
    java: str
    item: Shape | None = None
    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    alternatives: tuple[Shape, ...] = ()


STR = Shape("str", "java.lang.String")
INT = Shape("int", "int")
BOOL = Shape("bool", "boolean")
ANY = Shape("any", "java.lang.Object")


def LIST(item: Shape) -> Shape:
    return Shape("list", f"java.util.ArrayList<{item.java}>", item=item)


def MAP(item: Shape) -> Shape:
    return Shape("map", f"java.util.HashMap<java.lang.String,{item.java}>", item=item)


def OBJ(name: str, fields: Mapping[str, Shape], required: tuple[str, ...] = ()) -> Shape:
    return Shape("object", f"com.hubspot.{name}", fields=dict(fields), required=required)


def EITHER(*alternatives: Shape) -> Shape:
    return Shape("either", alternatives[0].java, alternatives=alternatives)


def _token(value: Any) -> str:
    """How HubSpot's JSON binder names a value it could not bind, in its error text."""
    if isinstance(value, dict | list):
        kind = "Object" if isinstance(value, dict) else "Array"
        return f"{kind} value (token `JsonToken.START_{kind.upper()}`)"
    if isinstance(value, bool):
        return f"Boolean value ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"Number value ({value})"
    return f"String value ({value!r})"


def _fits(value: Any, shape: Shape) -> bool:
    """Whether a scalar-level check passes (containers are walked by :func:`check`)."""
    if value is None or shape.kind == "any":
        return True
    if shape.kind == "str":
        return isinstance(value, (str, int, float, bool))
    if shape.kind == "int":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, str) and value.strip().lstrip("-").isdigit()
    if shape.kind == "bool":
        return isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in ("true", "false")
        )
    if shape.kind == "list":
        return isinstance(value, list)
    if shape.kind in ("map", "object"):
        return isinstance(value, dict)
    return False


def check(value: Any, shape: Shape, where: str = "") -> None:
    """Raise 400 VALIDATION_ERROR naming the first place ``value`` does not fit ``shape``."""
    if shape.kind == "either":
        for alt in shape.alternatives:
            try:
                check(value, alt, where)
                return
            except ApiError:  # try the next alternative
                continue
        _refuse(value, shape, where)
    if not _fits(value, shape):
        _refuse(value, shape, where)
    if value is None:
        return
    if shape.kind == "list" and shape.item is not None:
        for i, item in enumerate(value):
            check(item, shape.item, f"{where}[{i}]")
    elif shape.kind == "map" and shape.item is not None:
        for key, item in value.items():
            check(item, shape.item, f"{where}.{key}" if where else str(key))
    elif shape.kind == "object":
        for name in shape.required:
            if value.get(name) is None:
                path = f"{where}.{name}" if where else name
                raise validation(
                    f"Invalid input JSON: missing required field {path!r}",
                    context={"field": [path]},
                )
        for name, sub in shape.fields.items():
            if name in value:
                check(value[name], sub, f"{where}.{name}" if where else name)


def _refuse(value: Any, shape: Shape, where: str) -> None:
    path = where or "(body)"
    raise validation(
        f"Invalid input JSON on line 1: Cannot deserialize value of type `{shape.java}` "
        f"from {_token(value)} at {path}",
        context={"field": [path]},
    )


# ---------------------------------------------------------------------------- bodies

PROPERTY_VALUES = MAP(STR)
ASSOC_SPEC = OBJ("AssociationSpec", {"associationCategory": STR, "associationTypeId": INT})
OBJECT_ID = OBJ("PublicObjectId", {"id": STR})
INLINE_ASSOCIATION = OBJ(
    "PublicAssociationsForObject", {"to": OBJECT_ID, "types": LIST(ASSOC_SPEC)}
)
CREATE = OBJ(
    "SimplePublicObjectInputForCreate",
    {
        "properties": PROPERTY_VALUES,
        "associations": LIST(INLINE_ASSOCIATION),
        "objectWriteTraceId": STR,
    },
)
UPDATE = OBJ("SimplePublicObjectInput", {"properties": PROPERTY_VALUES, "objectWriteTraceId": STR})
BATCH_READ = OBJ(
    "BatchReadInputSimplePublicObjectId",
    {
        "inputs": LIST(OBJ("SimplePublicObjectId", {"id": STR})),
        "properties": LIST(STR),
        "propertiesWithHistory": LIST(STR),
        "idProperty": STR,
    },
    required=("inputs",),
)
BATCH_CREATE = OBJ(
    "BatchInputSimplePublicObjectInputForCreate", {"inputs": LIST(CREATE)}, ("inputs",)
)
BATCH_UPDATE = OBJ(
    "BatchInputSimplePublicObjectBatchInput",
    {
        "inputs": LIST(
            OBJ(
                "SimplePublicObjectBatchInput",
                {
                    "id": STR,
                    "idProperty": STR,
                    "properties": PROPERTY_VALUES,
                    "objectWriteTraceId": STR,
                },
            )
        )
    },
    ("inputs",),
)
BATCH_ARCHIVE = OBJ("BatchInputSimplePublicObjectId", {"inputs": LIST(OBJECT_ID)}, ("inputs",))
BATCH = {
    "read": BATCH_READ,
    "create": BATCH_CREATE,
    "update": BATCH_UPDATE,
    "upsert": BATCH_UPDATE,
    "archive": BATCH_ARCHIVE,
}
_FILTER = OBJ(
    "Filter",
    {"propertyName": STR, "operator": STR, "value": STR, "highValue": STR, "values": LIST(STR)},
)
SEARCH = OBJ(
    "PublicObjectSearchRequest",
    {
        "filterGroups": LIST(OBJ("FilterGroup", {"filters": LIST(_FILTER)})),
        "sorts": LIST(EITHER(STR, OBJ("Sort", {"propertyName": STR, "direction": STR}))),
        "query": STR,
        "properties": LIST(STR),
        "limit": INT,
        "after": STR,
    },
)
ASSOC_SPECS = LIST(ASSOC_SPEC)
ASSOC_BATCH = {
    "read": OBJ(
        "BatchInputPublicFetchAssociationsBatchRequest",
        {"inputs": LIST(OBJ("PublicFetchAssociationsBatchRequest", {"id": STR, "after": STR}))},
        ("inputs",),
    ),
    "create": OBJ(
        "BatchInputPublicAssociationMultiPost",
        {
            "inputs": LIST(
                OBJ(
                    "PublicAssociationMultiPost",
                    {"from": OBJECT_ID, "to": OBJECT_ID, "types": ASSOC_SPECS},
                )
            )
        },
        ("inputs",),
    ),
    "archive": OBJ(
        "BatchInputPublicAssociationMultiArchive",
        {
            "inputs": LIST(
                OBJ("PublicAssociationMultiArchive", {"from": OBJECT_ID, "to": LIST(OBJECT_ID)})
            )
        },
        ("inputs",),
    ),
    "default": OBJ(
        "BatchInputPublicDefaultAssociationMultiPost",
        {
            "inputs": LIST(
                OBJ("PublicDefaultAssociationMultiPost", {"from": OBJECT_ID, "to": OBJECT_ID})
            )
        },
        ("inputs",),
    ),
}
_OPTION = OBJ(
    "OptionInput",
    {"label": STR, "value": STR, "displayOrder": INT, "hidden": BOOL, "description": STR},
)
_PROPERTY_FIELDS = {
    "name": STR,
    "label": STR,
    "type": STR,
    "fieldType": STR,
    "groupName": STR,
    "description": STR,
    "options": LIST(_OPTION),
    "displayOrder": INT,
    "hasUniqueValue": BOOL,
    "hidden": BOOL,
    "formField": BOOL,
    "calculationFormula": STR,
    "externalOptions": BOOL,
    "referencedObjectType": STR,
}
PROPERTY_CREATE = OBJ("PropertyCreate", _PROPERTY_FIELDS)
PROPERTY_UPDATE = OBJ("PropertyUpdate", {k: v for k, v in _PROPERTY_FIELDS.items() if k != "name"})
EVENT = OBJ(
    "BehavioralEventHttpCompletionRequest",
    {
        "eventName": STR,
        "email": STR,
        "objectId": STR,
        "utk": STR,
        "uuid": STR,
        "occurredAt": STR,
        "properties": MAP(STR),
    },
)
EVENT_BATCH = OBJ(
    "BatchedBehavioralEventHttpCompletionRequest", {"inputs": LIST(EVENT)}, ("inputs",)
)
STATUS_BATCH_READ = OBJ("BatchInputString", {"inputs": LIST(STR)}, ("inputs",))
SUBSCRIPTION = OBJ(
    "PublicUpdateSubscriptionStatusRequest",
    {"emailAddress": STR, "subscriptionId": STR, "legalBasis": STR, "legalBasisExplanation": STR},
)
