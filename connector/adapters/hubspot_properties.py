"""A HubSpot portal's property schema: the custom properties ``dealsync setup``
installs, and the properties and pipelines ``dealsync check --online`` reads.

Installing reads an object type's properties once and creates the missing ones, each
in its object's information group, a 409 (created meanwhile) counting as done. Reading
the schema takes two reads per object type: ``GET /crm/v3/properties/{object}`` (every property with
its type, options and ``modificationMetadata.readOnlyValue``) and, for deals,
``GET /crm/v3/pipelines/{object}`` (pipelines and their stages, whose ids are what
``dealstage`` holds). Both go through the adapter's ``_call`` so the portal's limiter
and retry policy apply, and the answers are parsed from the raw JSON (``raw=True``)
into :mod:`connector.adapters.base` values: no SDK model leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connector.adapters.base import AdapterError, ObjectSchema, PipelineInfo, PropertyInfo
from connector.adapters.hubspot_errors import RequestRefused
from connector.records import PropertySpec

if TYPE_CHECKING:
    from connector.adapters.hubspot import HubSpotAdapter

# Object types that have pipelines (HubSpot: deals and tickets).
PIPELINE_OBJECTS = frozenset({"deals", "0-3", "tickets", "0-5"})

# the property group a new property is filed in (other object types: deal information)
GROUPS = {
    "deals": "dealinformation",
    "companies": "companyinformation",
    "contacts": "contactinformation",
}
# a PropertySpec's type → HubSpot's (type, fieldType); the field type is the input
# widget, named like the type but for these
_WIDGETS = {
    "string": "text",
    "datetime": "date",
    "enumeration": "select",
    "bool": "booleancheckbox",
}
FIELD_TYPES = {
    kind: (kind, _WIDGETS.get(kind, kind))
    for kind in ("string", "number", "date", "datetime", "enumeration", "bool")
}


def ensure_properties(adapter: HubSpotAdapter, specs: Sequence[PropertySpec]) -> list[str]:
    """Create the properties of ``specs`` the portal lacks; returns them as
    ``object.name``. An existing property is left as it is (setup is idempotent)."""
    created: list[str] = []
    existing: dict[str, set[str]] = {}
    for spec in specs:
        if spec.object_type not in existing:
            resp = adapter._call(
                "properties_read", adapter._props.get_all_with_http_info, spec.object_type
            )
            existing[spec.object_type] = {p.name for p in resp.results or []}
        if spec.name in existing[spec.object_type]:
            continue
        kind, field_type = FIELD_TYPES.get(spec.type, ("string", "text"))
        body: dict[str, Any] = {
            "name": spec.name,
            "label": spec.label,
            "type": kind,
            "fieldType": field_type,
            "groupName": GROUPS.get(spec.object_type, "dealinformation"),
            "hasUniqueValue": spec.unique,
        }
        if spec.options:
            body["options"] = [
                {"label": o, "value": o, "displayOrder": n, "hidden": False}
                for n, o in enumerate(spec.options)
            ]
        try:
            adapter._call(
                "properties_create", adapter._props.create_with_http_info, spec.object_type, body
            )
        except RequestRefused as exc:
            if exc.status != 409:  # 409: created meanwhile by someone else — fine
                raise AdapterError(
                    f"{adapter.name}: creating property {spec.object_type}.{spec.name}: {exc}"
                ) from None
        existing[spec.object_type].add(spec.name)
        created.append(f"{spec.object_type}.{spec.name}")
    return created


def read_object_schema(adapter: HubSpotAdapter, object_type: str) -> ObjectSchema:
    """The portal's properties (and pipelines, for deals) of ``object_type``."""
    props = adapter._props
    answer = adapter._call("properties_read", props.get_all_with_http_info, object_type, raw=True)
    properties = {
        info.name: info for info in (_property(p) for p in _results(answer)) if info is not None
    }
    pipelines: tuple[PipelineInfo, ...] = ()
    if object_type in PIPELINE_OBJECTS:
        api = adapter._client.crm.pipelines.pipelines_api
        answer = adapter._call("pipelines_read", api.get_all_with_http_info, object_type, raw=True)
        pipelines = tuple(_pipeline(p) for p in _results(answer) if isinstance(p, dict))
    return ObjectSchema(object_type, properties, pipelines)


def _results(answer: Any) -> list[Any]:
    results = answer.get("results") if isinstance(answer, dict) else None
    return results if isinstance(results, list) else []


def _property(raw: Any) -> PropertyInfo | None:
    if not isinstance(raw, dict) or not raw.get("name"):
        return None
    meta = raw.get("modificationMetadata") or {}
    options = tuple(
        (str(o.get("value")), str(o.get("label") or ""))
        for o in raw.get("options") or []
        if isinstance(o, dict) and o.get("value") is not None
    )
    return PropertyInfo(
        name=str(raw["name"]),
        label=str(raw.get("label") or ""),
        type=str(raw.get("type") or "string"),
        options=options,
        read_only=bool(meta.get("readOnlyValue")) or bool(raw.get("calculated")),
    )


def _pipeline(raw: dict[str, Any]) -> PipelineInfo:
    stages = tuple(
        (str(s.get("id")), str(s.get("label") or ""))
        for s in raw.get("stages") or []
        if isinstance(s, dict) and s.get("id") is not None
    )
    return PipelineInfo(str(raw.get("id")), str(raw.get("label") or ""), stages)
