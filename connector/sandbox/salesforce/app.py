"""The Salesforce sandbox's ASGI application: OAuth, then REST behind the access token.

Every request under ``/services/data/vNN.N/`` passes, in this order: the access token
(401 ``INVALID_SESSION_ID`` when unknown or expired), faults (latency, dropped
connection, 5xx, a burst of concurrent-request refusals) from the HubSpot sandbox's
:mod:`connector.sandbox.faults`, the org's rolling 24-hour allocation (403
``REQUEST_LIMIT_EXCEEDED``), and then the route.  Every answer past the token carries
``Sforce-Limit-Info: api-usage=N/M``.  The token endpoint is not an API call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from connector.sandbox.app import SandboxApp
from connector.sandbox.salesforce import bulk
from connector.sandbox.salesforce.auth import (
    JWT_GRANT,
    STANDARD_AUDIENCES,
    OAuthError,
    unverified_claims,
    verify_assertion,
)
from connector.sandbox.salesforce.store import Org, SfError, not_found

log = logging.getLogger(__name__)

# Records a Collections create/update/upsert/delete takes; ids a retrieve takes.
MAX_COLLECTION = 200
MAX_RETRIEVE = 2000
# Query batch sizes (Sforce-Query-Options: batchSize=N)
DEFAULT_BATCH = 2000
MIN_BATCH = 200

API_VERSIONS = ("58.0", "59.0", "60.0", "61.0", "62.0")

Handler = Callable[["Call"], Awaitable[Response]]


@dataclass
class Call:
    """One REST request as a handler sees it."""

    request: Request
    org: Org
    version: str  # "v59.0"
    groups: tuple[str, ...]

    @property
    def base(self) -> str:
        """``/services/data/v59.0``: what record urls and nextRecordsUrl start with."""
        return f"/services/data/{self.version}"

    async def body(self) -> Any:
        """The JSON body; 400 JSON_PARSER_ERROR when it is not JSON."""
        raw = await self.request.body()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise SfError(
                400, "JSON_PARSER_ERROR", "Unexpected character: the request body is not JSON"
            ) from None


def sf_json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (Salesforce puts ``charset=UTF-8`` on its JSON)."""
    return JSONResponse(content, status_code=status, headers=headers)


def _urls(call: Call, records: list[Any]) -> list[Any]:
    for rec in records:
        if isinstance(rec, dict) and "attributes" in rec:
            rec["attributes"]["url"] = call.base + rec["attributes"]["url"]
    return records


# --------------------------------------------------------------------------- handlers


async def version_root(call: Call) -> Response:
    """``GET /services/data/vNN.N``: the resources this sandbox serves."""
    b = call.base
    return sf_json(
        {
            "sobjects": f"{b}/sobjects",
            "query": f"{b}/query",
            "queryAll": f"{b}/queryAll",
            "limits": f"{b}/limits",
            "composite": f"{b}/composite",
            "tooling": f"{b}/tooling",
            "jobs": f"{b}/jobs",
        }
    )


async def limits(call: Call) -> Response:
    """``GET /limits``: the org's allocation and what is left of it."""
    org = call.org
    used = org.api.used
    return sf_json(
        {
            "DailyApiRequests": {
                "Max": org.api.allocation,
                "Remaining": max(0, org.api.allocation - used),
            },
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - org.calls["bulk2_create"]},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
        }
    )


def _batch_size(request: Request) -> int:
    raw = request.headers.get("sforce-query-options", "")
    m = re.search(r"batchSize\s*=\s*(\d+)", raw, re.IGNORECASE)
    if not m:
        return DEFAULT_BATCH
    return max(MIN_BATCH, min(DEFAULT_BATCH, int(m.group(1))))


def _query_page(call: Call, page: dict[str, Any], nxt: str | None, endpoint: str) -> Response:
    _urls(call, page["records"])
    if nxt:
        page["nextRecordsUrl"] = f"{call.base}/{endpoint}/{nxt}"
    return sf_json(page)


def _query(include_deleted: bool) -> Handler:
    endpoint = "queryAll" if include_deleted else "query"

    async def handler(call: Call) -> Response:
        q = call.request.query_params.get("q")
        if not q:
            raise SfError(400, "MALFORMED_QUERY", "A query string has to be specified")
        page, nxt = call.org.query(q, include_deleted, _batch_size(call.request), endpoint)
        return _query_page(call, page, nxt, endpoint)

    return handler


async def query_more(call: Call) -> Response:
    """``GET /query/{locator}-{offset}`` (a nextRecordsUrl)."""
    page, nxt, endpoint = call.org.query_more(call.groups[0])
    return _query_page(call, page, nxt, endpoint)


async def describe_global(call: Call) -> Response:
    """``GET /sobjects``."""
    return sf_json(
        {
            "encoding": "UTF-8",
            "maxBatchSize": MAX_COLLECTION,
            "sobjects": [o.summary(call.base) for o in call.org.objects.values()],
        }
    )


async def sobject_info(call: Call) -> Response:
    """``GET /sobjects/{Type}``: basic information (simple-salesforce's ``metadata()``)."""
    obj = call.org.sobject(call.groups[0])
    return sf_json({"objectDescribe": obj.summary(call.base), "recentItems": []})


async def describe(call: Call) -> Response:
    """``GET /sobjects/{Type}/describe``."""
    return sf_json(call.org.sobject(call.groups[0]).describe(call.base))


async def create(call: Call) -> Response:
    """``POST /sobjects/{Type}``: 201 ``{id, success, errors}``."""
    rid = call.org.create(call.groups[0], await call.body())
    return sf_json({"id": rid, "success": True, "errors": []}, status=201)


def _fields_param(request: Request) -> list[str] | None:
    raw = request.query_params.get("fields")
    return [f for f in raw.split(",") if f.strip()] if raw else None


async def get_record(call: Call) -> Response:
    """``GET /sobjects/{Type}/{Id}[?fields=]``."""
    rec = call.org.get(call.groups[0], call.groups[1], _fields_param(call.request))
    return sf_json(_urls(call, [rec])[0])


async def update_record(call: Call) -> Response:
    """``PATCH /sobjects/{Type}/{Id}``: 204."""
    call.org.update(call.groups[0], call.groups[1], await call.body())
    return Response(status_code=204)


async def delete_record(call: Call) -> Response:
    """``DELETE /sobjects/{Type}/{Id}``: 204 (to the recycle bin)."""
    call.org.delete(call.groups[0], call.groups[1])
    return Response(status_code=204)


def _multiple(call: Call, type_name: str, ids: list[str]) -> Response:
    return sf_json([f"{call.base}/sobjects/{type_name}/{i}" for i in ids], status=300)


async def upsert_record(call: Call) -> Response:
    """``PATCH /sobjects/{Type}/{ExtIdField}/{value}``: 201 created, 200 updated."""
    type_name, ext_field, value = call.groups
    org = call.org
    obj = org.sobject(type_name)
    f = obj.field(ext_field)
    if f is not None and f.external_id:
        matches = org.find_by(obj.name, f.name, value)
        if len(matches) > 1:
            return _multiple(call, obj.name, matches)
    rid, created = org.upsert(type_name, ext_field, value, await call.body())
    return sf_json(
        {"id": rid, "success": True, "errors": [], "created": created},
        status=201 if created else 200,
    )


async def get_by_external_id(call: Call) -> Response:
    """``GET /sobjects/{Type}/{ExtIdField}/{value}``."""
    type_name, ext_field, value = call.groups
    org = call.org
    obj = org.sobject(type_name)
    f = obj.field(ext_field)
    if f is None or not (f.external_id or f.type == "id"):
        raise SfError(
            404,
            "NOT_FOUND",
            f"Provided external ID field does not exist or is not accessible: {ext_field}",
        )
    matches = org.find_by(obj.name, f.name, value)
    if not matches:
        raise not_found()
    if len(matches) > 1:
        return _multiple(call, obj.name, matches)
    return sf_json(_urls(call, [org.get(obj.name, matches[0], _fields_param(call.request))])[0])


async def deleted(call: Call) -> Response:
    """``GET /sobjects/{Type}/deleted/?start=&end=`` (getDeleted)."""
    q = call.request.query_params
    return sf_json(call.org.get_deleted(call.groups[0], q.get("start", ""), q.get("end", "")))


async def updated(call: Call) -> Response:
    """``GET /sobjects/{Type}/updated/?start=&end=`` (getUpdated)."""
    q = call.request.query_params
    return sf_json(call.org.get_updated(call.groups[0], q.get("start", ""), q.get("end", "")))


# --------------------------------------------------------------------------- collections


def _too_many(limit: int) -> SfError:
    return SfError(
        400,
        "EXCEEDED_ID_LIMIT",
        f"record limit reached. cannot submit more than {limit} records into this call",
    )


async def _collection_body(call: Call) -> tuple[list[Any], bool]:
    body = await call.body()
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SfError(
            400, "JSON_PARSER_ERROR", 'The body must be {"allOrNone": ..., "records": [...]}'
        )
    records: list[Any] = body["records"]
    if len(records) > MAX_COLLECTION:
        raise _too_many(MAX_COLLECTION)
    return records, bool(body.get("allOrNone", False))


def _record_type(record: Any) -> str:
    attrs = record.get("attributes") if isinstance(record, dict) else None
    type_name = attrs.get("type") if isinstance(attrs, dict) else None
    if not type_name:
        raise SfError(
            400,
            "INVALID_TYPE",
            'Must specify a type in the attributes of each record: {"attributes": {"type": "Account"}}',
        )
    return str(type_name)


_ROLLED_BACK = SfError(
    400,
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


def _run_collection(
    org: Org, items: list[Any], all_or_none: bool, op: Callable[[Any], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Apply ``op`` to each item, one result each; with allOrNone a failure rolls every
    change of the call back."""
    with org.transaction(snapshot=all_or_none) as tx:
        results: list[dict[str, Any]] = []
        failed = False
        for item in items:
            try:
                results.append({**op(item), "success": True, "errors": []})
            except SfError as exc:
                failed = True
                results.append({"id": None, "success": False, "errors": [exc.entry()]})
        if all_or_none and failed:
            tx.rollback()
            results = [
                r
                if not r["success"]
                else {
                    "id": None,
                    "success": False,
                    "errors": [_ROLLED_BACK.entry()],
                    **({"created": False} if "created" in r else {}),
                }
                for r in results
            ]
            for r in results:
                r["id"] = None
        return results


async def composite_create(call: Call) -> Response:
    """``POST /composite/sobjects``: create up to 200 records, one result each."""
    records, all_or_none = await _collection_body(call)
    org = call.org

    def op(record: Any) -> dict[str, Any]:
        return {"id": org.create(_record_type(record), record)}

    return sf_json(_run_collection(org, records, all_or_none, op))


async def composite_update(call: Call) -> Response:
    """``PATCH /composite/sobjects``: update up to 200 records by id."""
    records, all_or_none = await _collection_body(call)
    org = call.org

    def op(record: Any) -> dict[str, Any]:
        type_name = _record_type(record)
        rid = record.get("id") or record.get("Id")
        if not rid:
            raise SfError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        fields = {k: v for k, v in record.items() if k not in ("id", "Id")}
        try:
            org.update(type_name, str(rid), fields)
        except SfError as exc:
            if exc.status == 404 and exc.code == "NOT_FOUND":
                raise SfError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"
                ) from None
            raise
        return {"id": org.record(type_name, str(rid))["Id"]}  # type: ignore[index]

    return sf_json(_run_collection(org, records, all_or_none, op))


async def composite_upsert(call: Call) -> Response:
    """``PATCH /composite/sobjects/{Type}/{ExtIdField}``: upsert up to 200 records."""
    type_name, ext_field = call.groups
    records, all_or_none = await _collection_body(call)
    org = call.org
    obj = org.sobject(type_name)
    f = obj.field(ext_field)
    if f is None or not (f.external_id or f.type == "id"):
        raise SfError(
            400,
            "INVALID_FIELD",
            f"Field name provided, {ext_field} is not an External ID or indexed field for {obj.name}",
        )
    seen: dict[str, int] = {}
    for record in records:
        value = next((v for k, v in (record or {}).items() if k.lower() == f.name.lower()), None)
        if value is not None:
            key = str(value).casefold()
            seen[key] = seen.get(key, 0) + 1

    def op(record: Any) -> dict[str, Any]:
        if _record_type(record).lower() != obj.name.lower():
            raise SfError(400, "INVALID_TYPE", f"each record must be of type {obj.name}")
        value = next((v for k, v in record.items() if k.lower() == f.name.lower()), None)
        if value in (None, ""):
            raise SfError(400, "MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
        if seen.get(str(value).casefold(), 0) > 1:
            raise SfError(
                400, "DUPLICATE_EXTERNAL_ID", f"Duplicate external id specified: {value}", [f.name]
            )
        matches = org.find_by(obj.name, f.name, value)
        if len(matches) > 1:
            raise SfError(
                300,
                "DUPLICATE_EXTERNAL_ID",
                f"{f.name}: more than one record found for external id field: {matches}",
                [f.name],
            )
        rid, created = org.upsert(obj.name, f.name, str(value), record)
        return {"id": rid, "created": created}

    return sf_json(_run_collection(org, records, all_or_none, op))


async def composite_delete(call: Call) -> Response:
    """``DELETE /composite/sobjects?ids=a,b&allOrNone=false``."""
    q = call.request.query_params
    ids = [i for i in (q.get("ids") or "").split(",") if i.strip()]
    if not ids:
        raise SfError(400, "MISSING_ARGUMENT", "ids parameter is required", ["ids"])
    if len(ids) > MAX_COLLECTION:
        raise _too_many(MAX_COLLECTION)
    all_or_none = (q.get("allOrNone") or "false").lower() == "true"
    org = call.org

    def op(raw: Any) -> dict[str, Any]:
        from connector.sandbox.salesforce.schema import to_id18

        rid = to_id18(str(raw).strip())
        type_name = org.type_of(rid) if rid else None
        if rid is None or type_name is None:
            raise SfError(400, "MALFORMED_ID", f"malformed id {raw}")
        try:
            org.delete(type_name, rid)
        except SfError as exc:
            if exc.code == "NOT_FOUND":
                raise SfError(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"
                ) from None
            raise
        return {"id": rid}

    return sf_json(_run_collection(org, ids, all_or_none, op))


async def composite_retrieve(call: Call) -> Response:
    """``GET|POST /composite/sobjects/{Type}`` with ids and fields: records, null where
    unknown."""
    if call.request.method == "POST":
        body = await call.body() or {}
        ids = list(body.get("ids") or [])
        fields = list(body.get("fields") or [])
    else:
        q = call.request.query_params
        ids = [i for i in (q.get("ids") or "").split(",") if i.strip()]
        fields = [f for f in (q.get("fields") or "").split(",") if f.strip()]
    if not ids or not fields:
        raise SfError(400, "MISSING_ARGUMENT", "ids and fields are both required")
    if len(ids) > MAX_RETRIEVE:
        raise _too_many(MAX_RETRIEVE)
    out = call.org.retrieve_many(call.groups[0], [str(i) for i in ids], [str(f) for f in fields])
    return sf_json(_urls(call, out))


async def tooling_custom_field(call: Call) -> Response:
    """``POST /tooling/sobjects/CustomField``: install a custom field."""
    body = await call.body()
    if not isinstance(body, dict):
        raise SfError(400, "JSON_PARSER_ERROR", "The body must be {FullName, Metadata}")
    fid = call.org.add_custom_field(body.get("FullName"), body.get("Metadata"))
    return sf_json(
        {"id": fid, "success": True, "errors": [], "warnings": [], "infos": []}, status=201
    )


# --------------------------------------------------------------------------- admin


async def admin_stats(call: Call) -> Response:
    """``GET /_sandbox/stats``: the org's counters (not an API call)."""
    org = call.org
    return sf_json(
        {
            "org": org.name,
            "now": org.now().isoformat(),
            "api_usage": {"used": org.api.used, "allocation": org.api.allocation},
            "refused": org.api.refused,
            "calls": dict(org.calls),
            "records": {t: org.count(t) for t in org.objects},
            "recycle_bin": len(org.deleted_at),
        }
    )


async def admin_clock(call: Call) -> Response:
    """``POST /_sandbox/clock`` with ``{"days": 16}`` (any ``timedelta`` keyword) or
    ``{"set": "2026-12-01T10:00:00Z"}``: move the org's clock."""
    from connector.sandbox.salesforce.schema import parse_datetime

    body = await call.body()
    if not isinstance(body, dict) or not body:
        raise SfError(400, "JSON_PARSER_ERROR", 'Body must be like {"days": 16} or {"set": ISO}')
    if "set" in body:
        moment = parse_datetime(str(body["set"]))
        if moment is None:
            raise SfError(400, "JSON_PARSER_ERROR", f"set: {body['set']!r} is not an ISO dateTime")
        call.org.set_clock(moment)
    else:
        allowed = {"weeks", "days", "hours", "minutes", "seconds"}
        unknown = sorted(set(body) - allowed)
        if unknown or not all(isinstance(v, int | float) for v in body.values()):
            raise SfError(
                400,
                "JSON_PARSER_ERROR",
                f"clock keys are {', '.join(sorted(allowed))} with numbers (got {sorted(body)})",
            )
        call.org.advance(**body)
    return sf_json({"now": call.org.now().isoformat()})


async def admin_purge(call: Call) -> Response:
    """``POST /_sandbox/purge-recycle-bin``: empty the recycle bin now."""
    return sf_json({"purged": call.org.purge_recycle_bin()})


async def admin_faults(call: Call) -> Response:
    """``GET|POST /_sandbox/faults``: read or set the org's FaultSpec."""
    from connector.sandbox.faults import FaultSpec

    if call.request.method == "POST":
        body = await call.body() or {}
        if not isinstance(body, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "Body must be an object of FaultSpec fields")
        try:
            call.org.faults.set_spec(FaultSpec.from_dict(body))
        except (TypeError, ValueError) as exc:
            raise SfError(400, "JSON_PARSER_ERROR", str(exc)) from None
    return sf_json(call.org.faults.spec.to_dict())


ADMIN_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/_sandbox/stats", admin_stats),
    ("POST", "/_sandbox/clock", admin_clock),
    ("POST", "/_sandbox/purge-recycle-bin", admin_purge),
    ("GET", "/_sandbox/faults", admin_faults),
    ("POST", "/_sandbox/faults", admin_faults),
]


# --------------------------------------------------------------------------- routing

_TYPE = r"([A-Za-z][A-Za-z0-9_]*)"
_SEG = r"([^/]+)"

ROUTES: list[tuple[str, str, Handler, str]] = [
    ("GET", r"", version_root, "version"),
    ("GET", r"/limits", limits, "limits"),
    ("GET", r"/query", _query(False), "query"),
    ("GET", r"/queryAll", _query(True), "query_all"),
    ("GET", rf"/query/{_SEG}", query_more, "query_more"),
    ("GET", rf"/queryAll/{_SEG}", query_more, "query_more"),
    ("GET", r"/sobjects", describe_global, "describe_global"),
    ("GET", rf"/sobjects/{_TYPE}", sobject_info, "sobject_info"),
    ("POST", rf"/sobjects/{_TYPE}", create, "create"),
    ("GET", rf"/sobjects/{_TYPE}/describe", describe, "describe"),
    ("GET", rf"/sobjects/{_TYPE}/deleted", deleted, "deleted"),
    ("GET", rf"/sobjects/{_TYPE}/updated", updated, "updated"),
    ("GET", rf"/sobjects/{_TYPE}/{_SEG}", get_record, "get"),
    ("PATCH", rf"/sobjects/{_TYPE}/{_SEG}", update_record, "update"),
    ("DELETE", rf"/sobjects/{_TYPE}/{_SEG}", delete_record, "delete"),
    ("GET", rf"/sobjects/{_TYPE}/{_SEG}/{_SEG}", get_by_external_id, "get_by_external_id"),
    ("PATCH", rf"/sobjects/{_TYPE}/{_SEG}/{_SEG}", upsert_record, "upsert"),
    ("POST", r"/composite/sobjects", composite_create, "composite_create"),
    ("PATCH", r"/composite/sobjects", composite_update, "composite_update"),
    ("DELETE", r"/composite/sobjects", composite_delete, "composite_delete"),
    ("GET", rf"/composite/sobjects/{_TYPE}", composite_retrieve, "composite_retrieve"),
    ("POST", rf"/composite/sobjects/{_TYPE}", composite_retrieve, "composite_retrieve"),
    ("PATCH", rf"/composite/sobjects/{_TYPE}/{_SEG}", composite_upsert, "composite_upsert"),
    ("POST", r"/tooling/sobjects/CustomField", tooling_custom_field, "tooling_custom_field"),
    ("POST", r"/jobs/query", bulk.create_job, "bulk2_create"),
    ("GET", r"/jobs/query", bulk.list_jobs, "bulk2_list"),
    ("GET", rf"/jobs/query/{_SEG}", bulk.get_job, "bulk2_get"),
    ("PATCH", rf"/jobs/query/{_SEG}", bulk.abort_job, "bulk2_abort"),
    ("DELETE", rf"/jobs/query/{_SEG}", bulk.delete_job, "bulk2_delete"),
    ("GET", rf"/jobs/query/{_SEG}/results", bulk.job_results, "bulk2_results"),
]
_COMPILED = [(m, re.compile(f"^{p}$"), h, k) for m, p, h, k in ROUTES]
_DATA_RE = re.compile(r"^/services/data/(v\d+\.\d)(/.*)?$")


def route(method: str, rest: str) -> tuple[Handler, str, tuple[str, ...]] | bool | None:
    """The handler for a path under the version: (handler, kind, groups); False when
    the path exists for another method; None when it does not exist."""
    other_method = False
    for m, rx, handler, kind in _COMPILED:
        match = rx.match(rest)
        if match:
            if m == method:
                return handler, kind, match.groups()
            other_method = True
    return False if other_method else None


def _error(exc: SfError, headers: dict[str, str] | None = None) -> Response:
    return sf_json(exc.body(), status=exc.status, headers=headers)


class SalesforceApp:
    """Top-level ASGI app: the token endpoint, then token → org, faults, limits, routes."""

    def __init__(self, orgs: list[Org], limits: bool = True) -> None:
        self.orgs = orgs
        self.by_client: dict[str, Org] = {o.spec.client_id: o for o in orgs}
        self.limits = limits
        # the serving thread's event loop, so the server can abort connections on stop
        self.loop: asyncio.AbstractEventLoop | None = None

    def org_for_token(self, token: str) -> Org | None:
        """The org whose live session this access token is."""
        for org in self.orgs:
            if org.session_valid(token):
                return org
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await SandboxApp._lifespan(receive, send)
            return
        self.loop = asyncio.get_running_loop()
        path: str = scope["path"]
        if len(path) > 1:
            path = path.rstrip("/")
        request = Request(scope, receive)
        if path == "/services/oauth2/token":
            response = await self.token(request)
            await response(scope, receive, send)
            return
        if path == "/services/data":
            versions = [
                {"label": "Sandbox", "url": f"/services/data/v{v}", "version": v}
                for v in API_VERSIONS
            ]
            await sf_json(versions)(scope, receive, send)
            return
        if path.startswith("/_sandbox/"):
            await self._admin(scope, receive, send, request, path)
            return
        m = _DATA_RE.match(path)
        if not m:
            await _error(not_found())(scope, receive, send)
            return
        org = self._authorize(scope)
        if org is None:
            body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            await sf_json(body, status=401)(scope, receive, send)
            return
        found = route(scope["method"], m.group(2) or "")
        kind = found[1] if isinstance(found, tuple) else "unknown"
        org.record_call(kind)
        enforce = self.limits and org.limits_enabled
        ticket = org.begin_request(enforce)
        if ticket is None:
            exc = SfError(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            )
            await _error(exc, {"Sforce-Limit-Info": org.api.header()})(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send, request, org, m.group(1), found)
        finally:
            org.end_request(ticket)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: Request,
        org: Org,
        version: str,
        found: tuple[Handler, str, tuple[str, ...]] | bool | None,
    ) -> None:
        """Faults, the allocation, then the route (the request is in flight)."""
        spec = org.faults.spec
        if spec.latency_ms:
            await asyncio.sleep(spec.latency_ms / 1000.0)
        action, status = org.faults.decide()
        if action == "drop":
            await SandboxApp._drop(send)
            return
        if action == "error":
            code = "SERVER_UNAVAILABLE" if status == 503 else "UNKNOWN_EXCEPTION"
            await _error(SfError(status, code, f"Injected fault: HTTP {status}"))(
                scope, receive, send
            )
            return
        if action == "storm":
            exc = SfError(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            )
            await _error(exc, {"Sforce-Limit-Info": org.api.header()})(scope, receive, send)
            return

        if not org.api.admit(self.limits and org.limits_enabled):
            exc = SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            await _error(exc, {"Sforce-Limit-Info": org.api.header()})(scope, receive, send)
            return
        response = await self._dispatch(request, org, version, found, scope["method"])
        response.headers["Sforce-Limit-Info"] = org.api.header()
        await response(scope, receive, send)

    async def _dispatch(
        self,
        request: Request,
        org: Org,
        version: str,
        found: tuple[Handler, str, tuple[str, ...]] | bool | None,
        method: str,
    ) -> Response:
        if found is None:
            return _error(not_found())
        if found is False:
            return _error(
                SfError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{method}' not allowed for this resource",
                )
            )
        assert isinstance(found, tuple)
        handler, _kind, groups = found
        try:
            return await handler(Call(request, org, version, groups))
        except SfError as exc:
            return _error(exc)
        except Exception:  # a sandbox bug must still look like a Salesforce 500
            log.exception("salesforce sandbox handler failed")
            return _error(
                SfError(
                    500,
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred (sandbox bug, see server log)",
                )
            )

    async def _admin(
        self, scope: Scope, receive: Receive, send: Send, request: Request, path: str
    ) -> None:
        """The backdoor over HTTP for a sandbox run from the CLI: the org of the access
        token; no faults, not counted against the allocation."""
        org = self._authorize(scope)
        if org is None:
            body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            await sf_json(body, status=401)(scope, receive, send)
            return
        handler = next((h for m, p, h in ADMIN_ROUTES if p == path and m == scope["method"]), None)
        if handler is None:
            response = _error(not_found())
        else:
            try:
                response = await handler(Call(request, org, "v59.0", ()))
            except SfError as exc:
                response = _error(exc)
        await response(scope, receive, send)

    def _authorize(self, scope: Scope) -> Org | None:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                text = value.decode("latin-1").strip()
                scheme, _, token = text.partition(" ")
                if scheme.lower() in ("bearer", "oauth") and token.strip():
                    return self.org_for_token(token.strip())
                return None
        return None

    # ------------------------------------------------------------------ OAuth

    async def token(self, request: Request) -> Response:
        """``POST /services/oauth2/token``: client credentials or JWT bearer."""
        if request.method != "POST":
            return sf_json(
                {"error": "invalid_request", "error_description": "must use HTTP POST"}, 400
            )
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        for k, v in request.query_params.items():
            form.setdefault(k, v)
        try:
            org, username = self._grant(form, request)
        except OAuthError as exc:
            return sf_json(exc.body(), 400)
        session = org.new_session(username)
        host = request.headers.get("host", "127.0.0.1")
        instance = f"https://{host}"
        identity = f"{instance}/id/{org.org_id}/{org.user_id}"
        issued_at = str(int(time.time() * 1000))
        org.record_call("token")
        return sf_json(
            {
                "access_token": session.token,
                "instance_url": instance,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": org.signature(identity, issued_at),
                "scope": "api",
            }
        )

    def _grant(self, form: dict[str, str], request: Request) -> tuple[Org, str | None]:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            org = self.by_client.get(form.get("client_id", ""))
            if org is None or form.get("client_secret") != org.spec.client_secret:
                raise OAuthError("invalid_client", "invalid client credentials")
            return org, None
        if grant == JWT_GRANT:
            assertion = form.get("assertion", "")
            claims = unverified_claims(assertion)
            org = self.by_client.get(str(claims.get("iss", "")))
            if org is None:
                raise OAuthError(
                    "invalid_grant", "invalid assertion: client identifier invalid (iss)"
                )
            if not org.spec.jwt_public_key_pem:
                raise OAuthError(
                    "invalid_grant",
                    f"the connected app of org {org.name!r} has no certificate for the JWT flow",
                )
            host = request.headers.get("host", "127.0.0.1")
            verify_assertion(
                assertion, org.spec.jwt_public_key_pem, (*STANDARD_AUDIENCES, f"https://{host}")
            )
            sub = str(claims.get("sub", ""))
            if sub.lower() != org.username.lower():
                raise OAuthError("invalid_grant", f"user hasn't approved this consumer: {sub!r}")
            return org, sub
        raise OAuthError("unsupported_grant_type", f"grant type not supported: {grant!r}")


__all__ = ["Message", "SalesforceApp"]
