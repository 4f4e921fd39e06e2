"""A HubSpot portal's property schema and pipelines, for ``dealsync check --online``.

Two reads per object type: ``GET /crm/v3/properties/{object}`` (every property with
its type, options and ``modificationMetadata.readOnlyValue``) and, for deals,
``GET /crm/v3/pipelines/{object}`` (pipelines and their stages, whose ids are what
``dealstage`` holds). Both go through the adapter's ``_call`` so the portal's limiter
and retry policy apply, and the answers are parsed from the raw JSON (``raw=True``)
into :mod:`connector.adapters.base` values: no SDK model leaves this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connector.adapters.base import ObjectSchema, PipelineInfo, PropertyInfo

if TYPE_CHECKING:
    from connector.adapters.hubspot import HubSpotAdapter

# Object types that have pipelines (HubSpot: deals and tickets).
PIPELINE_OBJECTS = frozenset({"deals", "0-3", "tickets", "0-5"})


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
