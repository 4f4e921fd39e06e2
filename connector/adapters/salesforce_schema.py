"""A Salesforce org's schema: the describe ``dealsync check --online`` reads, and the
custom fields ``dealsync setup`` creates through the Tooling API.

Custom fields are named the Salesforce way: dealsync's ``dealsync_source_id`` is the
field ``dealsync_source_id__c`` (:func:`~connector.adapters.salesforce_soql.api_name`),
and a unique property is a unique **External ID** text field, which is what an upsert
by ``PATCH /composite/sobjects/{Object}/{field}`` needs. Describe types are told in
dealsync's (HubSpot's) vocabulary: ``double``/``currency``/``percent``/``int`` are
``number``, ``picklist`` an ``enumeration`` with its values, ``boolean`` a ``bool``;
Opportunity's ``StageName`` values are its one pipeline's stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connector.adapters.base import AdapterError, ObjectSchema, PipelineInfo, PropertyInfo
from connector.adapters.salesforce_errors import RequestRefused
from connector.adapters.salesforce_soql import api_name, sobject
from connector.records import PropertySpec

if TYPE_CHECKING:
    from connector.adapters.salesforce import SalesforceAdapter

NUMBER = frozenset({"double", "currency", "percent", "int", "long"})
_TYPES = {"date": "date", "datetime": "datetime", "boolean": "bool", "picklist": "enumeration"}
LABEL_MAX = 40  # a custom field's label, at most 40 characters


def describe(adapter: SalesforceAdapter, object_type: str) -> dict[str, Any]:
    """``GET /sobjects/{Object}/describe``."""
    answer = adapter._rest("describe", f"sobjects/{sobject(object_type)}/describe")
    return answer if isinstance(answer, dict) else {}


def property_info(raw: Mapping[str, Any]) -> PropertyInfo:
    kind = str(raw.get("type") or "string")
    options = tuple(
        (str(p.get("value")), str(p.get("label") or p.get("value")))
        for p in raw.get("picklistValues") or []
        if isinstance(p, Mapping) and p.get("active", True) and p.get("value") is not None
    )
    return PropertyInfo(
        name=str(raw["name"]),
        label=str(raw.get("label") or ""),
        type="number" if kind in NUMBER else _TYPES.get(kind, "string"),
        options=options if kind == "picklist" else (),
        read_only=not (raw.get("createable") or raw.get("updateable")),
    )


def read_object_schema(adapter: SalesforceAdapter, object_type: str) -> ObjectSchema:
    """The object's fields (and, for Opportunity, its stages as one pipeline)."""
    fields = [f for f in describe(adapter, object_type).get("fields") or [] if f.get("name")]
    properties = {str(f["name"]): property_info(f) for f in fields}
    pipelines: tuple[PipelineInfo, ...] = ()
    stage = properties.get("StageName")
    if sobject(object_type) == "Opportunity" and stage is not None:
        pipelines = (PipelineInfo("default", "Opportunity stages", stage.options),)
    return ObjectSchema(object_type, properties, pipelines)


def field_metadata(spec: PropertySpec) -> dict[str, Any]:
    """The Tooling API ``CustomField`` metadata of a property."""
    meta: dict[str, Any] = {"label": (spec.label or spec.name)[:LABEL_MAX]}
    if (
        spec.unique
        or spec.type == "string"
        or spec.type
        not in (
            "number",
            "date",
            "datetime",
            "bool",
            "enumeration",
        )
    ):
        meta |= {"type": "Text", "length": 255}
        if spec.unique:
            meta |= {"unique": True, "externalId": True, "caseSensitive": False}
    elif spec.type == "number":
        meta |= {"type": "Number", "precision": 18, "scale": 2}
    elif spec.type == "date":
        meta["type"] = "Date"
    elif spec.type == "datetime":
        meta["type"] = "DateTime"
    elif spec.type == "bool":
        meta |= {"type": "Checkbox", "defaultValue": "false"}
    else:
        meta |= {
            "type": "Picklist",
            "valueSet": {
                "restricted": False,
                "valueSetDefinition": {
                    "sorted": False,
                    "value": [{"fullName": o, "label": o, "default": False} for o in spec.options],
                },
            },
        }
    return meta


def _create_field(body: dict[str, Any], timeout: tuple[float, float]) -> Callable[[Any], Any]:
    def create(sf: Any) -> Any:
        return sf.toolingexecute("sobjects/CustomField", method="POST", data=body, timeout=timeout)

    return create


def ensure_properties(adapter: SalesforceAdapter, specs: Sequence[PropertySpec]) -> list[str]:
    """Create the custom fields of ``specs`` the org lacks (``object.name`` as the spec
    names them); one that exists already, or was created meanwhile, is left as it is.
    A name the object already has as it is (a standard field such as ``LeadSource``,
    which a share condition reads) is that field: no ``LeadSource__c`` twin."""
    created: list[str] = []
    existing: dict[str, set[str]] = {}
    for spec in specs:
        name = sobject(spec.object_type)
        if name not in existing:
            existing[name] = {
                str(f.get("name")) for f in describe(adapter, name).get("fields") or []
            }
        field = api_name(spec.name)
        if field in existing[name]:
            continue  # a standard field (a share condition's LeadSource) or one named in full
        if not field.endswith("__c"):
            field = f"{field}__c"
        if field in existing[name]:
            continue
        body = {"FullName": f"{name}.{field}", "Metadata": field_metadata(spec)}
        try:
            adapter._call("field_create", _create_field(body, adapter.timeout))
        except RequestRefused as exc:
            if exc.code != "DUPLICATE_DEVELOPER_NAME":
                raise AdapterError(
                    f"{adapter.portal}: creating the custom field {name}.{field}: {exc} — "
                    "the run-as user needs Customize Application (or create it in Setup → "
                    "Object Manager)"
                ) from None
        existing[name].add(field)
        created.append(f"{spec.object_type}.{spec.name}")
    return created
