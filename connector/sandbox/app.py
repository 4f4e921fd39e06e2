"""The sandbox's ASGI application: HubSpot routes behind auth, faults and rate limits.

Requests pass through :class:`SandboxApp` first, which picks the portal from the bearer
token, injects faults, enforces limits and counts the request, and only then reach the
Starlette routes that call into :class:`~connector.sandbox.store.Portal`.  Doing this in
a plain ASGI wrapper (not Starlette middleware) gives access to uvicorn's transport, so
a "dropped" request really closes the TCP connection without an answer.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from connector.sandbox import shapes
from connector.sandbox.errors import ApiError, correlation_id, validation
from connector.sandbox.faults import FaultSpec
from connector.sandbox.limits import INTERVAL_MS, LimitDecision
from connector.sandbox.schema import SINGULAR, normalize_object_type, to_iso
from connector.sandbox.store import ASSOC_DEFAULT, MAX_LIST_LIMIT, Portal, Record

log = logging.getLogger(__name__)

Handler = Callable[[Request, Portal], Awaitable[Response]]

# A batch read asking for property histories takes at most 50 inputs (HubSpot's 400
# message, quoted in docs/sandbox.md); without histories the cap is the usual 100.
MAX_HISTORY_BATCH = 50
# Addresses per communication-preferences v4 batch read.
MAX_STATUS_BATCH = 100
# Inline associations per type on an object read (HubSpot pages them past 100).
INLINE_ASSOC_PAGE = 100

# ---------------------------------------------------------------------------- classification

# The stats kind of each request: method, path pattern, kind (``{0}``: the pattern's
# first group). The first row that matches wins.
_KIND_TABLE = r"""
POST   ^/crm/v3/objects/[^/]+/search/?$                                     search
POST   ^/crm/v3/objects/[^/]+/batch/(read|create|update|upsert|archive)/?$  batch_{0}
POST   ^/crm/v3/objects/[^/]+/merge/?$                                      merge
GET    ^/crm/v3/objects/[^/]+/?$                                            list
POST   ^/crm/v3/objects/[^/]+/?$                                            create
GET    ^/crm/v3/objects/[^/]+/[^/]+/?$                                      get
GET    ^/crm/v3/objects/[^/]+/[^/]+/associations/[^/]+/?$                   assoc_get_v3
PATCH  ^/crm/v3/objects/[^/]+/[^/]+/?$                                      update
DELETE ^/crm/v3/objects/[^/]+/[^/]+/?$                                      archive
PUT    ^/crm/v4/objects/[^/]+/[^/]+/associations/default/[^/]+/[^/]+/?$     assoc_create_default
PUT    ^/crm/v4/objects/[^/]+/[^/]+/associations/[^/]+/[^/]+/?$             assoc_create
DELETE ^/crm/v4/objects/[^/]+/[^/]+/associations/[^/]+/[^/]+/?$             assoc_archive
GET    ^/crm/v4/objects/[^/]+/[^/]+/associations/[^/]+/?$                   assoc_get
POST   ^/crm/v4/associations/[^/]+/[^/]+/batch/(read|create|archive)/?$     assoc_batch_{0}
POST   ^/crm/v4/associations/[^/]+/[^/]+/batch/associate/default/?$         assoc_batch_create_default
GET    ^/crm/v3/properties/[^/]+/groups(/[^/]+)?/?$                         properties_groups
GET    ^/crm/v3/properties/[^/]+/?$                                         properties_list
POST   ^/crm/v3/properties/[^/]+/?$                                         properties_create
GET    ^/crm/v3/properties/[^/]+/[^/]+/?$                                   properties_get
PATCH  ^/crm/v3/properties/[^/]+/[^/]+/?$                                   properties_update
DELETE ^/crm/v3/properties/[^/]+/[^/]+/?$                                   properties_archive
GET    ^/crm/v3/pipelines/.*$                                               pipelines
GET    ^/properties/v2/[^/]+/properties/?$                                  properties_v2
GET    ^/(crm/v3|crm-object-schemas/v3)/schemas/?$                          schemas
GET    ^/crm/v3/owners(/[^/]*)?$                                            owners
GET    ^/events/v3/events/event-types/?$                                    events_types
GET    ^/events/v3/events/?$                                                events_read
POST   ^/events/v3/send/batch/?$                                            events_send_batch
POST   ^/events/v3/send/?$                                                  events_send
GET    ^/communication-preferences/v3/status/.*$                            commprefs_status
GET    ^/communication-preferences/v3/definitions/?$                        commprefs_definitions
POST   ^/communication-preferences/v4/statuses/batch/read/?$                commprefs_batch_read
POST   ^/communication-preferences/v3/subscribe/?$                          commprefs_subscribe
POST   ^/communication-preferences/v3/unsubscribe/?$                        commprefs_unsubscribe
"""
_KINDS: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(pattern), kind)
    for method, pattern, kind in (line.split() for line in _KIND_TABLE.strip().splitlines())
]


def classify(method: str, path: str) -> str:
    """The stats kind of a request, e.g. ``batch_read`` or ``search``; ``other`` if unknown."""
    for m, pattern, kind in _KINDS:
        if m == method:
            match = pattern.match(path)
            if match:
                return kind.format(*match.groups())
    return "other"


# ---------------------------------------------------------------------------- helpers


def error_response(exc: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    """A HubSpot-shaped error answer."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def read_json(request: Request) -> Any:
    """The request body as JSON; 400 VALIDATION_ERROR when it is not JSON."""
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise validation(
            "Invalid input JSON on line 1: the request body is not valid JSON"
        ) from None


async def read_body(request: Request, shape: shapes.Shape) -> Any:
    """The request body as JSON, checked against the endpoint's ``shape`` (400 if not).

    An empty body reads as ``{}`` for object-shaped endpoints (so a batch without a body
    is refused for its missing ``inputs``) and as ``None`` otherwise."""
    body = await read_json(request)
    if body is None and shape.kind == "object":
        body = {}
    shapes.check(body, shape)
    return body


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _list_param(request: Request, name: str) -> list[str] | None:
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values or None


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise validation(f"{name} must be an integer, got {raw!r}") from None


def _type(raw: str) -> str:
    t = normalize_object_type(raw)
    if t is None:
        raise validation(f"Unable to infer object type from: {raw}")
    return t


def _now_iso() -> str:
    return to_iso(datetime.now(UTC))


def batch_response(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], ok_status: int, started: str
) -> JSONResponse:
    """A batch answer: ``ok_status`` when all inputs worked, else 207 with ``errors``."""
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": _now_iso(),
    }
    if errors:
        body["errors"] = errors
        body["numErrors"] = len(errors)
        return JSONResponse(body, status_code=207)
    return JSONResponse(body, status_code=ok_status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _next_link(request: Request, after: str) -> str:
    """The request's own URL with ``after`` moved on: HubSpot's ``paging.next.link``
    keeps every other parameter (``limit``, ``properties``, ``associations``,
    ``archived``, ``propertiesWithHistory``), so a client that just follows links (dlt's
    HubSpot source does) keeps reading the same columns at the same page size."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    params.append(("after", after))
    return f"{_base(request)}{request.url.path}?{urlencode(params)}"


# ---------------------------------------------------------------------------- CRM objects


def _associated_ids(portal: Portal, t: str, rid: str, tt: str) -> list[dict[str, str]]:
    """A record's associations to one type in the v3 shape ``[{id, type}]``."""
    results = []
    for link in portal.associations_of(t, rid, tt):
        for spec in link["associationTypes"]:
            suffix = (
                ""
                if spec["label"] == "Primary"
                or tt == "deals"
                or (t == "deals" and tt == "contacts")
                else "_unlabeled"
            )
            results.append(
                {"id": str(link["toObjectId"]), "type": f"{SINGULAR[t]}_to_{SINGULAR[tt]}{suffix}"}
            )
    return results


def _with_associations(
    request: Request, portal: Portal, t: str, obj: dict[str, Any], to_types: list[str] | None
) -> dict[str, Any]:
    """Inline ``associations``: at most :data:`INLINE_ASSOC_PAGE` per type, the rest
    behind ``paging.next.link`` (the v3 associations read), as HubSpot pages them."""
    if not to_types:
        return obj
    assoc: dict[str, Any] = {}
    for raw in to_types:
        tt = normalize_object_type(raw)
        if tt is None:
            continue
        results = _associated_ids(portal, t, obj["id"], tt)
        if results:
            entry: dict[str, Any] = {"results": results[:INLINE_ASSOC_PAGE]}
            if len(results) > INLINE_ASSOC_PAGE:
                nxt = str(INLINE_ASSOC_PAGE)
                link = f"{_base(request)}/crm/v3/objects/{t}/{obj['id']}/associations/{tt}"
                entry["paging"] = {"next": {"after": nxt, "link": f"{link}?after={nxt}"}}
            assoc[tt] = entry
    if assoc:
        obj["associations"] = assoc
    return obj


async def assoc_get_v3(request: Request, portal: Portal) -> Response:
    """``GET /crm/v3/objects/{type}/{id}/associations/{toType}``: where the inline
    associations' ``paging.next.link`` leads (dlt's HubSpot source follows it)."""
    p = request.path_params
    t, tt = _type(p["type"]), _type(p["to"])
    with portal.lock:
        portal._require(t, p["id"])
        results = _associated_ids(portal, t, p["id"], tt)
    limit = _int_param(request, "limit", 500)
    if limit < 1 or limit > 500:
        raise validation(f"limit must be between 1 and 500, got {limit}")
    start = _int_param(request, "after", 0)
    if start < 0:
        raise validation(f"Invalid after cursor: {start}")
    body: dict[str, Any] = {"results": results[start : start + limit]}
    if start + limit < len(results):
        nxt = str(start + limit)
        body["paging"] = {"next": {"after": nxt, "link": _next_link(request, nxt)}}
    return JSONResponse(body)


async def list_objects(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    limit = _int_param(request, "limit", 10)
    if limit < 1 or limit > MAX_LIST_LIMIT:
        raise validation(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    props = _list_param(request, "properties")
    assoc = _list_param(request, "associations")
    history = _list_param(request, "propertiesWithHistory")
    page, nxt = portal.list_page(
        t, limit, request.query_params.get("after"), _bool(request.query_params.get("archived"))
    )
    with portal.lock:
        names = portal.returned_names(t, props)
        results = [
            _with_history(
                portal,
                t,
                r,
                _with_associations(request, portal, t, portal.to_json(t, r, names=names), assoc),
                history,
            )
            for r in page
        ]
    body: dict[str, Any] = {"results": results}
    if nxt:
        body["paging"] = {"next": {"after": nxt, "link": _next_link(request, nxt)}}
    return JSONResponse(body)


def _with_history(
    portal: Portal, t: str, rec: Record, obj: dict[str, Any], requested: list[str] | None
) -> dict[str, Any]:
    """Add ``propertiesWithHistory`` when the request asked for it."""
    history = portal.history_json(t, rec, requested)
    if history is not None:
        obj["propertiesWithHistory"] = history
    return obj


async def create_object(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    body = await read_body(request, shapes.CREATE)
    obj = portal.create(t, body.get("properties") or {})
    for assoc in body.get("associations") or []:
        to = (assoc or {}).get("to") or {}
        specs = (assoc or {}).get("types")
        to_type = _guess_type(portal, str(to.get("id", "")))
        if to_type:
            portal.associate(t, obj["id"], to_type, str(to["id"]), specs)
    return JSONResponse(obj, status_code=201)


def _guess_type(portal: Portal, rid: str) -> str | None:
    """Inline associations on create name only the target id; find its type."""
    with portal.lock:
        for t, recs in portal.records.items():
            if rid in recs:
                return t
    return None


async def get_object(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    archived = _bool(request.query_params.get("archived"))
    with portal.lock:
        rec = portal._require(
            t, request.path_params["id"], request.query_params.get("idProperty"), archived=archived
        )
        obj = portal.to_json(t, rec, _list_param(request, "properties"))
        obj = _with_associations(request, portal, t, obj, _list_param(request, "associations"))
        obj = _with_history(portal, t, rec, obj, _list_param(request, "propertiesWithHistory"))
    return JSONResponse(obj)


async def update_object(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    body = await read_body(request, shapes.UPDATE)
    obj = portal.update(
        t,
        request.path_params["id"],
        body.get("properties") or {},
        request.query_params.get("idProperty"),
    )
    return JSONResponse(obj)


async def archive_object(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    portal.archive(t, request.path_params["id"])
    return Response(status_code=204)


async def merge_objects(request: Request, portal: Portal) -> Response:
    """``POST /crm/v3/objects/{type}/merge`` ``{primaryObjectId, objectIdToMerge}``:
    answers the survivor (200)."""
    t = _type(request.path_params["type"])
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation(
            "Invalid input JSON: expected {primaryObjectId, objectIdToMerge}",
            context={"body": [type(body).__name__]},
        )
    for name in ("primaryObjectId", "objectIdToMerge"):
        if not isinstance(body.get(name), str | int) or isinstance(body.get(name), bool):
            raise validation(
                f"{name} is required (a record id)", context={name: [str(body.get(name))]}
            )
    return JSONResponse(portal.merge(t, body["primaryObjectId"], body["objectIdToMerge"]))


async def search_objects(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    body = await read_body(request, shapes.SEARCH)
    return JSONResponse(portal.search(t, body))


async def _batch_body(
    request: Request, known: Mapping[str, shapes.Shape], what: str
) -> tuple[str, Any]:
    """The path's batch operation and its checked body; HubSpot's 404 for an operation
    the endpoint does not have."""
    op = request.path_params["op"]
    if op not in known:
        raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown {what} operation {op}")
    return op, await read_body(request, known[op])


async def batch(request: Request, portal: Portal) -> Response:
    t = _type(request.path_params["type"])
    started = _now_iso()
    op, body = await _batch_body(request, shapes.BATCH, "batch")
    inputs = body.get("inputs")
    if op == "read":
        if body.get("propertiesWithHistory") and len(inputs) > MAX_HISTORY_BATCH:
            raise validation(
                "The maximum number of inputs supported in a batch request for property "
                f"histories is {MAX_HISTORY_BATCH}. Please reduce the number of items and "
                "try again",
                context={"inputs": [str(len(inputs))]},
            )
        results, errors = portal.batch_read(
            t,
            inputs,
            body.get("properties"),
            body.get("idProperty"),
            _bool(request.query_params.get("archived")),
        )
        requested = [str(n) for n in body.get("propertiesWithHistory") or []]
        if requested:
            with portal.lock:
                for obj in results:
                    _with_history(portal, t, portal.records[t][obj["id"]], obj, requested)
        return batch_response(results, errors, 200, started)
    if op == "create":
        results, errors = portal.batch_create(t, inputs)
        return batch_response(results, errors, 201, started)
    if op == "update":
        results, errors = portal.batch_update(t, inputs)
        return batch_response(results, errors, 200, started)
    if op == "upsert":
        results, errors = portal.batch_upsert(t, inputs)
        return batch_response(results, errors, 200, started)
    if op == "archive":
        portal.batch_archive(t, inputs)
        return Response(status_code=204)
    raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown batch operation {op}")


# ---------------------------------------------------------------------------- associations v4


async def assoc_create(request: Request, portal: Portal) -> Response:
    p = request.path_params
    specs = await read_body(request, shapes.ASSOC_SPECS)
    out = portal.associate(
        p["from"], p["id"], p["to"], p["toId"], specs if specs is not None else []
    )
    return JSONResponse(out, status_code=201)


def _default_link(from_id: Any, to_id: Any, type_id: int) -> dict[str, Any]:
    """One default (unlabelled) association as the v4 "default" endpoints answer it."""
    return {
        "from": {"id": str(from_id)},
        "to": {"id": str(to_id)},
        "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
    }


async def assoc_create_default(request: Request, portal: Portal) -> Response:
    p = request.path_params
    started = _now_iso()
    portal.associate(p["from"], p["id"], p["to"], p["toId"], None)
    ft, tt = _type(p["from"]), _type(p["to"])
    results = [
        _default_link(p["id"], p["toId"], ASSOC_DEFAULT[(ft, tt)]),
        _default_link(p["toId"], p["id"], ASSOC_DEFAULT[(tt, ft)]),
    ]
    return batch_response(results, [], 200, started)


async def assoc_archive(request: Request, portal: Portal) -> Response:
    p = request.path_params
    portal.unassociate(p["from"], p["id"], p["to"], p["toId"])
    return Response(status_code=204)


async def assoc_get(request: Request, portal: Portal) -> Response:
    p = request.path_params
    with portal.lock:
        portal._require(_type(p["from"]), p["id"])
        links = portal.associations_of(p["from"], p["id"], p["to"])
    limit = _int_param(request, "limit", 500)
    start = _int_param(request, "after", 0)
    page = links[start : start + limit]
    body: dict[str, Any] = {"results": page}
    if start + limit < len(links):
        nxt = str(start + limit)
        body["paging"] = {"next": {"after": nxt, "link": _next_link(request, nxt)}}
    return JSONResponse(body)


async def assoc_batch(request: Request, portal: Portal) -> Response:
    p = request.path_params
    started = _now_iso()
    op, body = await _batch_body(request, shapes.ASSOC_BATCH, "association batch")
    inputs = body.get("inputs")
    if op == "read":
        results, errors = portal.assoc_batch_read(p["from"], p["to"], inputs)
        return batch_response(results, errors, 200, started)
    if op == "create":
        results, errors = portal.assoc_batch_create(p["from"], p["to"], inputs)
        return batch_response(results, errors, 201, started)
    if op == "archive":
        portal.assoc_batch_archive(p["from"], p["to"], inputs)
        return Response(status_code=204)
    raise ApiError(404, "OBJECT_NOT_FOUND", f"Unknown association batch operation {op}")


async def assoc_batch_default(request: Request, portal: Portal) -> Response:
    p = request.path_params
    started = _now_iso()
    body = await read_body(request, shapes.ASSOC_BATCH["default"])
    converted = [
        {"from": i.get("from"), "to": i.get("to"), "types": None}
        for i in body.get("inputs") or []
        if isinstance(i, dict)
    ]
    results, errors = portal.assoc_batch_create(p["from"], p["to"], converted)
    type_id = ASSOC_DEFAULT[(_type(p["from"]), _type(p["to"]))]
    out = [_default_link(r["fromObjectId"], r["toObjectId"], type_id) for r in results]
    return batch_response(out, errors, 200, started)


# ------------------------------------------------------------------ properties / pipelines


async def properties_list(request: Request, portal: Portal) -> Response:
    return JSONResponse({"results": portal.list_properties(request.path_params["type"])})


async def properties_get(request: Request, portal: Portal) -> Response:
    return JSONResponse(
        portal.get_property(request.path_params["type"], request.path_params["name"])
    )


async def properties_create(request: Request, portal: Portal) -> Response:
    body = await read_body(request, shapes.PROPERTY_CREATE)
    return JSONResponse(portal.create_property(request.path_params["type"], body), status_code=201)


async def properties_update(request: Request, portal: Portal) -> Response:
    body = await read_body(request, shapes.PROPERTY_UPDATE)
    return JSONResponse(
        portal.update_property(request.path_params["type"], request.path_params["name"], body)
    )


async def properties_archive(request: Request, portal: Portal) -> Response:
    portal.archive_property(request.path_params["type"], request.path_params["name"])
    return Response(status_code=204)


async def property_groups(request: Request, portal: Portal) -> Response:
    return JSONResponse({"results": portal.property_groups(request.path_params["type"])})


def _one(items: list[dict[str, Any]], key: str, wanted: str, missing: str) -> dict[str, Any]:
    """The item whose ``key`` is ``wanted``; HubSpot's 404 (``<missing> does not exist``)
    when there is none."""
    for item in items:
        if item[key] == wanted:
            return item
    raise ApiError(404, "OBJECT_NOT_FOUND", f"{missing} does not exist")


async def property_group(request: Request, portal: Portal) -> Response:
    group = request.path_params["group"]
    groups = portal.property_groups(request.path_params["type"])
    return JSONResponse(_one(groups, "name", group, f"Property group {group}"))


async def pipelines_list(request: Request, portal: Portal) -> Response:
    return JSONResponse({"results": portal.get_pipelines(request.path_params["type"])})


def _pipeline(request: Request, portal: Portal) -> dict[str, Any]:
    wanted = request.path_params["pipelineId"]
    pipelines = portal.get_pipelines(request.path_params["type"])
    return _one(pipelines, "id", wanted, f"Pipeline {wanted}")


async def pipeline_get(request: Request, portal: Portal) -> Response:
    return JSONResponse(_pipeline(request, portal))


async def pipeline_stages(request: Request, portal: Portal) -> Response:
    return JSONResponse({"results": _pipeline(request, portal)["stages"]})


def _epoch_ms(iso: Any) -> int | None:
    if not isinstance(iso, str) or not iso:
        return None
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def properties_v2(request: Request, portal: Portal) -> Response:
    """The legacy v2 properties list (a bare JSON array), which Airbyte's HubSpot source
    and other older tools still read to learn a portal's columns."""
    out = []
    for p in portal.list_properties(request.path_params["type"]):
        meta = p.get("modificationMetadata") or {}
        out.append(
            {
                "name": p["name"],
                "label": p["label"],
                "description": p.get("description") or "",
                "groupName": p["groupName"],
                "type": p["type"],
                "fieldType": p["fieldType"],
                "options": [
                    {
                        "label": o["label"],
                        "value": o["value"],
                        "displayOrder": o.get("displayOrder", -1),
                        "hidden": bool(o.get("hidden", False)),
                        "description": o.get("description") or "",
                        "readOnly": False,
                    }
                    for o in p.get("options") or []
                ],
                "displayOrder": p.get("displayOrder", -1),
                "hidden": bool(p.get("hidden", False)),
                "formField": bool(p.get("formField", False)),
                "readOnlyValue": bool(meta.get("readOnlyValue", False)),
                "readOnlyDefinition": bool(meta.get("readOnlyDefinition", False)),
                "mutableDefinitionNotDeletable": bool(p.get("hubspotDefined", False)),
                "calculated": bool(p.get("calculated", False)),
                "externalOptions": bool(p.get("externalOptions", False)),
                "hubspotDefined": bool(p.get("hubspotDefined", False)),
                "hasUniqueValue": bool(p.get("hasUniqueValue", False)),
                "deleted": False,
                "favorited": False,
                "favoritedOrder": -1,
                "displayMode": "current_value",
                "createdAt": _epoch_ms(p.get("createdAt")),
                "updatedAt": _epoch_ms(p.get("updatedAt")),
            }
        )
    return JSONResponse(out)


async def schemas_list(request: Request, portal: Portal) -> Response:
    """Custom object schemas: a sandbox portal has none, so HubSpot's empty answer."""
    return JSONResponse({"results": []})


def _owner(portal: Portal) -> dict[str, Any]:
    """The portal's one user, who owns what it creates (every HubSpot account has one)."""
    return {
        "id": str(portal.portal_id),
        "email": f"owner@{portal.name}.sandbox.invalid",
        "type": "PERSON",
        "firstName": "Sandbox",
        "lastName": "Owner",
        "userId": portal.portal_id,
        "userIdIncludingInactive": portal.portal_id,
        "createdAt": "2020-01-01T00:00:00.000Z",
        "updatedAt": "2020-01-01T00:00:00.000Z",
        "archived": False,
        "teams": [],
    }


async def owners_list(request: Request, portal: Portal) -> Response:
    limit = _int_param(request, "limit", 100)
    if limit < 1 or limit > 500:
        raise validation(f"limit must be between 1 and 500, got {limit}")
    archived = _bool(request.query_params.get("archived"))
    return JSONResponse({"results": [] if archived else [_owner(portal)]})


async def owner_get(request: Request, portal: Portal) -> Response:
    owner = _owner(portal)
    if request.path_params["ownerId"] != owner["id"]:
        raise ApiError(
            404, "OBJECT_NOT_FOUND", f"Owner {request.path_params['ownerId']} does not exist"
        )
    return JSONResponse(owner)


# ---------------------------------------------------------------------------- events


async def events_list(request: Request, portal: Portal) -> Response:
    q = request.query_params
    limit = _int_param(request, "limit", 100)
    if limit < 1 or limit > 1000:
        raise validation(f"limit must be between 1 and 1000, got {limit}")
    sort = ",".join(q.getlist("sort")).upper()
    descending = not ("ASC" in sort or (sort and not sort.startswith("-") and "DESC" not in sort))
    results, nxt = portal.list_events(
        object_type=q.get("objectType"),
        object_id=q.get("objectId"),
        event_type=q.get("eventType"),
        occurred_after=q.get("occurredAfter"),
        occurred_before=q.get("occurredBefore"),
        descending=descending,
        after=q.get("after"),
        limit=limit,
    )
    body: dict[str, Any] = {"results": results}
    if nxt:
        body["paging"] = {"next": {"after": nxt, "link": ""}}
    return JSONResponse(body)


async def event_types(request: Request, portal: Portal) -> Response:
    with portal.lock:
        names = sorted(portal.event_types)
    return JSONResponse({"eventTypes": names})


async def events_send(request: Request, portal: Portal) -> Response:
    body = await read_body(request, shapes.EVENT)
    portal.send_event(body)
    return Response(status_code=204)


async def events_send_batch(request: Request, portal: Portal) -> Response:
    body = await read_body(request, shapes.EVENT_BATCH)
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise validation("Body must have an inputs list")
    if len(inputs) > 500:
        raise validation(f"Batch input limit exceeded: {len(inputs)} inputs, the maximum is 500")
    with portal.lock:
        for item in inputs:
            if not isinstance(item, dict):
                raise validation("Each input must be an event object")
            portal.send_event(item)
    return Response(status_code=204)


# ------------------------------------------------------------------ communication preferences


async def commprefs_status(request: Request, portal: Portal) -> Response:
    return JSONResponse(portal.email_status(request.path_params["email"]))


async def commprefs_definitions(request: Request, portal: Portal) -> Response:
    return JSONResponse({"subscriptionDefinitions": portal.subscription_definitions()})


async def commprefs_batch_read(request: Request, portal: Portal) -> Response:
    """v4 batch read of subscription statuses (with each status's ``timestamp``)."""
    channel = request.query_params.get("channel")
    if channel != "EMAIL":
        raise validation(f"channel must be EMAIL, not {channel!r}")
    body = await read_body(request, shapes.STATUS_BATCH_READ)
    inputs = [str(i) for i in body["inputs"]]
    if len(inputs) > MAX_STATUS_BATCH:
        raise validation(f"at most {MAX_STATUS_BATCH} inputs per batch, got {len(inputs)}")
    started = portal.now_iso()
    results = portal.email_statuses_v4(inputs)
    return JSONResponse(
        {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": portal.now_iso(),
        }
    )


def _subscribe(subscribed: bool) -> Handler:
    async def handler(request: Request, portal: Portal) -> Response:
        body = await read_body(request, shapes.SUBSCRIPTION)
        out = portal.set_subscription(
            str(body.get("emailAddress") or ""),
            str(body.get("subscriptionId") or ""),
            subscribed,
            body.get("legalBasis"),
            body.get("legalBasisExplanation"),
        )
        return JSONResponse(out)

    return handler


# ---------------------------------------------------------------------------- admin


async def admin_stats(request: Request, portal: Portal) -> Response:
    return JSONResponse(portal.stats())


async def admin_reset_stats(request: Request, portal: Portal) -> Response:
    portal.reset_stats()
    return JSONResponse(portal.stats())


async def admin_faults(request: Request, portal: Portal) -> Response:
    if request.method == "POST":
        body = await read_json(request) or {}
        if not isinstance(body, dict):
            raise validation("Body must be an object of FaultSpec fields")
        try:
            portal.set_faults(FaultSpec.from_dict(body))
        except (TypeError, ValueError) as exc:
            raise validation(str(exc)) from None
    return JSONResponse(portal.faults.spec.to_dict())


async def admin_index_now(request: Request, portal: Portal) -> Response:
    """Make every write searchable at once (skips the search lag)."""
    portal.index_now()
    return JSONResponse({"indexed": True})


async def admin_seed(request: Request, portal: Portal) -> Response:
    body = await read_json(request) or {}
    if not isinstance(body, dict):
        raise validation("Body must be {objectType: [ {properties}, ... ]}")
    out: dict[str, list[str]] = {}
    for object_type, records in body.items():
        if not isinstance(records, list):
            raise validation(f"{object_type}: expected a list of property objects")
        out[object_type] = portal.seed(object_type, records)
    return JSONResponse(out)


# ---------------------------------------------------------------------------- app


def _wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        portal: Portal = request.scope["sandbox.portal"]
        try:
            return await handler(request, portal)
        except ApiError as exc:
            return error_response(exc)
        except Exception:  # a sandbox bug must still look like a HubSpot 500
            log.exception("sandbox handler failed")
            return error_response(
                ApiError(500, "INTERNAL_ERROR", "internal error (sandbox bug, see server log)")
            )

    return endpoint


def _routes() -> list[Route]:
    r: list[tuple[str, Handler, list[str]]] = [
        ("/_sandbox/stats", admin_stats, ["GET"]),
        ("/_sandbox/reset-stats", admin_reset_stats, ["POST"]),
        ("/_sandbox/faults", admin_faults, ["GET", "POST"]),
        ("/_sandbox/seed", admin_seed, ["POST"]),
        ("/_sandbox/index-now", admin_index_now, ["POST"]),
        ("/crm/v3/objects/{type}/search", search_objects, ["POST"]),
        ("/crm/v3/objects/{type}/batch/{op}", batch, ["POST"]),
        ("/crm/v3/objects/{type}/merge", merge_objects, ["POST"]),
        ("/crm/v3/objects/{type}", list_objects, ["GET"]),
        ("/crm/v3/objects/{type}", create_object, ["POST"]),
        ("/crm/v3/objects/{type}/{id}", get_object, ["GET"]),
        ("/crm/v3/objects/{type}/{id}/associations/{to}", assoc_get_v3, ["GET"]),
        ("/crm/v3/objects/{type}/{id}", update_object, ["PATCH"]),
        ("/crm/v3/objects/{type}/{id}", archive_object, ["DELETE"]),
        (
            "/crm/v4/objects/{from}/{id}/associations/default/{to}/{toId}",
            assoc_create_default,
            ["PUT"],
        ),
        ("/crm/v4/objects/{from}/{id}/associations/{to}/{toId}", assoc_create, ["PUT"]),
        ("/crm/v4/objects/{from}/{id}/associations/{to}/{toId}", assoc_archive, ["DELETE"]),
        ("/crm/v4/objects/{from}/{id}/associations/{to}", assoc_get, ["GET"]),
        ("/crm/v4/associations/{from}/{to}/batch/associate/default", assoc_batch_default, ["POST"]),
        ("/crm/v4/associations/{from}/{to}/batch/{op}", assoc_batch, ["POST"]),
        ("/crm/v3/properties/{type}/groups", property_groups, ["GET"]),
        ("/crm/v3/properties/{type}/groups/{group}", property_group, ["GET"]),
        ("/crm/v3/properties/{type}", properties_list, ["GET"]),
        ("/crm/v3/properties/{type}", properties_create, ["POST"]),
        ("/crm/v3/properties/{type}/{name}", properties_get, ["GET"]),
        ("/crm/v3/properties/{type}/{name}", properties_update, ["PATCH"]),
        ("/crm/v3/properties/{type}/{name}", properties_archive, ["DELETE"]),
        ("/properties/v2/{type}/properties", properties_v2, ["GET"]),
        ("/crm/v3/schemas", schemas_list, ["GET"]),
        ("/crm-object-schemas/v3/schemas", schemas_list, ["GET"]),
        ("/crm/v3/owners", owners_list, ["GET"]),
        ("/crm/v3/owners/", owners_list, ["GET"]),
        ("/crm/v3/owners/{ownerId}", owner_get, ["GET"]),
        ("/crm/v3/pipelines/{type}", pipelines_list, ["GET"]),
        ("/crm/v3/pipelines/{type}/{pipelineId}", pipeline_get, ["GET"]),
        ("/crm/v3/pipelines/{type}/{pipelineId}/stages", pipeline_stages, ["GET"]),
        ("/events/v3/events/event-types", event_types, ["GET"]),
        ("/events/v3/events/", events_list, ["GET"]),
        ("/events/v3/events", events_list, ["GET"]),
        ("/events/v3/send/batch", events_send_batch, ["POST"]),
        ("/events/v3/send", events_send, ["POST"]),
        ("/communication-preferences/v3/status/email/{email}", commprefs_status, ["GET"]),
        ("/communication-preferences/v3/definitions", commprefs_definitions, ["GET"]),
        ("/communication-preferences/v4/statuses/batch/read", commprefs_batch_read, ["POST"]),
        ("/communication-preferences/v3/subscribe", _subscribe(True), ["POST"]),
        ("/communication-preferences/v3/unsubscribe", _subscribe(False), ["POST"]),
    ]
    return [Route(path, _wrap(h), methods=methods) for path, h, methods in r]


async def _no_route(request: Request, exc: Exception) -> Response:
    """An unknown path: 404 with HubSpot's JSON error body, never Starlette's plain text."""
    return error_response(
        ApiError(
            404,
            "OBJECT_NOT_FOUND",
            f"No endpoint at {request.method} {request.url.path}",
        )
    )


async def _wrong_method(request: Request, exc: Exception) -> Response:
    """A known path with the wrong method: 405, an ``Allow`` header and no body, as
    HubSpot's edge answers."""
    allowed: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            allowed |= set(route.methods or ())
    return Response(status_code=405, headers={"Allow": ", ".join(sorted(allowed))})


def _rate_headers(d: LimitDecision) -> dict[str, str]:
    """The rate-limit headers HubSpot sends a private app on every non-search answer:
    the 10-second window, the daily quota and the deprecated per-second pair."""
    return {
        "X-HubSpot-RateLimit-Daily": str(d.daily),
        "X-HubSpot-RateLimit-Daily-Remaining": str(d.daily_remaining),
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(INTERVAL_MS),
        "X-HubSpot-RateLimit-Max": str(d.maximum),
        "X-HubSpot-RateLimit-Remaining": str(d.remaining),
        "X-HubSpot-RateLimit-Secondly": str(d.secondly),
        "X-HubSpot-RateLimit-Secondly-Remaining": str(d.secondly_remaining),
    }


def rate_limit_body(policy: str) -> dict[str, Any]:
    """HubSpot's documented 429 body for a policy (TEN_SECONDLY_ROLLING, SECONDLY or
    DAILY): exactly these fields, no ``category`` (see docs/sandbox.md)."""
    message = {
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        "SECONDLY": "You have reached your secondly limit.",
        "DAILY": "You have reached your daily limit.",
    }[policy]
    return {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
        "requestId": correlation_id(),
    }


class SandboxApp:
    """Top-level ASGI app: token → portal, faults, limits, stats, then the routes."""

    def __init__(self, portals: list[Portal], limits: bool = True) -> None:
        self.by_token: dict[str, Portal] = {p.token: p for p in portals}
        self.limits = limits
        # requests being served per portal, and the most at once since the last reset:
        # how tests see a client's requests overlap (a latency fault holds them open)
        self._flight_lock = threading.Lock()
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._peak: collections.Counter[str] = collections.Counter()
        self.router = Starlette(
            routes=_routes(), exception_handlers={404: _no_route, 405: _wrong_method}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        portal = self._portal(scope)
        if portal is None:
            body = {
                "status": "error",
                "message": (
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication and you can find more details at "
                    "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
                ),
                "correlationId": correlation_id(),
                "category": "INVALID_AUTHENTICATION",
            }
            await JSONResponse(body, status_code=401)(scope, receive, send)
            return
        scope["sandbox.portal"] = portal
        if path.startswith("/_sandbox/"):
            await self.router(scope, receive, send)
            return

        with self._flight_lock:
            self._in_flight[portal.name] += 1
            self._peak[portal.name] = max(self._peak[portal.name], self._in_flight[portal.name])
        try:
            await self._serve(portal, scope, receive, send)
        finally:
            with self._flight_lock:
                self._in_flight[portal.name] -= 1

    def peak_in_flight(self, portal: str) -> int:
        """The most requests of ``portal`` served at once since the last reset."""
        with self._flight_lock:
            return self._peak[portal]

    def reset_in_flight(self, portal: str) -> None:
        with self._flight_lock:
            self._peak[portal] = self._in_flight[portal]

    async def _serve(self, portal: Portal, scope: Scope, receive: Receive, send: Send) -> None:
        """One API request of ``portal``: faults, limits, stats, then the routes."""
        method: str = scope["method"]
        path: str = scope["path"]
        kind = classify(method, path)
        spec = portal.faults.spec
        if spec.latency_ms:
            await asyncio.sleep(spec.latency_ms / 1000.0)
        action, status = portal.faults.decide()
        if action == "drop":
            portal.record_call(method, path, kind, -1)
            await self._drop(send)
            return
        if action == "error":
            portal.record_call(method, path, kind, status)
            exc = ApiError(
                status,
                "INTERNAL_ERROR" if status == 500 else "SERVICE_UNAVAILABLE",
                f"Injected fault: HTTP {status}",
            )
            await error_response(exc)(scope, receive, send)
            return
        if action == "storm":
            portal.record_call(method, path, kind, 429)
            await JSONResponse(
                rate_limit_body("TEN_SECONDLY_ROLLING"),
                status_code=429,
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return

        extra: dict[str, str] = {}
        if self.limits and portal.limits_enabled:
            if kind == "search":
                # no rate-limit headers on search answers, 429s included (HubSpot sends
                # none there), but every admitted search spends the daily quota
                policy = ""
                if portal.limiter.daily_exhausted():
                    policy = "DAILY"
                elif not portal.search_limiter.check().allowed:
                    policy = "SECONDLY"
                if policy:
                    portal.record_call(method, path, kind, 429)
                    await JSONResponse(rate_limit_body(policy), status_code=429)(
                        scope, receive, send
                    )
                    return
                portal.limiter.charge_daily()
            else:
                d = portal.limiter.check()
                extra = _rate_headers(d)
                if not d.allowed:
                    portal.record_call(method, path, kind, 429)
                    await JSONResponse(rate_limit_body(d.policy), status_code=429, headers=extra)(
                        scope, receive, send
                    )
                    return

        status_box = [0]
        raw_extra = [(k.lower().encode(), v.encode()) for k, v in extra.items()]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = int(message["status"])
                # counted before the client can see the answer, so stats read right
                # after a call always include it
                portal.record_call(method, path, kind, status_box[0])
                if raw_extra:
                    message = dict(message)
                    message["headers"] = list(message.get("headers", [])) + raw_extra
            await send(message)

        try:
            await self.router(scope, receive, send_wrapper)
        finally:
            if not status_box[0]:  # no answer was started: count the failure
                portal.record_call(method, path, kind, 500)

    def _portal(self, scope: Scope) -> Portal | None:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                text = value.decode("latin-1").strip()
                if text.lower().startswith("bearer "):
                    return self.by_token.get(text[7:].strip())
                return None
        return None

    @staticmethod
    async def _drop(send: Send) -> None:
        """Close the connection without answering, so the client sees RemoteDisconnected.

        uvicorn passes its ``RequestResponseCycle.send`` bound method, whose owner holds
        the asyncio transport; aborting it and yielding lets uvicorn notice the
        disconnect and skip its own 500 answer.
        """
        owner = getattr(send, "__self__", None)
        transport = getattr(owner, "transport", None)
        if transport is None:
            raise RuntimeError("sandbox: cannot drop connection (no transport available)")
        transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
