"""Bulk API 2.0 query jobs: a large first sync reads a whole object as CSV pages.

A job runs its SOQL when it is created (the sandbox has no queue), reports
``JobComplete`` on its first status read, and serves the result as CSV in pages of
``maxRecords`` rows with ``Sforce-Locator`` naming the next page (``null`` after the
last) and ``Sforce-NumberOfRecords`` the rows in this one, as simple-salesforce's
``sf.bulk2`` reads them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from connector.sandbox.salesforce import soql
from connector.sandbox.salesforce.schema import format_datetime, make_id
from connector.sandbox.salesforce.store import SfError

if TYPE_CHECKING:
    from connector.sandbox.salesforce.app import Call

# Rows per results page when the client does not say (Salesforce's pages are bounded by
# size; simple-salesforce asks for 50,000 rows).
DEFAULT_MAX_RECORDS = 50_000


@dataclass
class Job:
    """One query job and its materialised result."""

    id: str
    operation: str
    object_name: str
    query: str
    created: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    state: str = "UploadComplete"

    def info(self, version: str) -> dict[str, Any]:
        """The job as ``GET /jobs/query/{id}`` describes it."""
        done = self.state in ("JobComplete", "Aborted")
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.object_name,
            "createdById": "",
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(version.lstrip("v")),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            **(
                {"numberRecordsProcessed": len(self.rows), "retries": 0, "totalProcessingTime": 0}
                if done
                else {}
            ),
        }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.endswith("+0000") and "T" in value:
        return value[:-5] + "Z"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def create_job(call: Call) -> Response:
    """``POST /jobs/query``: ``{operation: query|queryAll, query}``."""
    body = await call.body()
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise SfError(400, "INVALIDJOB", 'A query job needs {"operation": "query", "query": ...}')
    operation = body.get("operation", "query")
    if operation not in ("query", "queryAll"):
        raise SfError(400, "INVALIDJOB", f"Unsupported operation {operation!r}: query or queryAll")
    org = call.org
    text = body["query"]
    try:
        parsed = soql.parse(text)
    except soql.SoqlError as exc:
        raise SfError(400, exc.code, exc.message) from None
    if parsed.count:
        raise SfError(
            400, "INVALIDJOB", "Aggregate queries (COUNT()) are not supported by Bulk API 2.0"
        )
    page, _ = org.query(text, operation == "queryAll", batch=10**9, endpoint="query")
    header = [f for f in page["records"][0] if f != "attributes"] if page["records"] else []
    if not header:
        plan = soql.plan(parsed, org.objects)
        header = [f.name for f in plan.fields]
    rows = [[_cell(r.get(h)) for h in header] for r in page["records"]]
    with org.transaction(snapshot=False):
        job_id = make_id("750", org.pod, len(org.jobs) + 1)
        job = Job(
            job_id,
            operation,
            soql.parse(text).object_name,
            text,
            format_datetime(org.now()),
            header,
            rows,
        )
        org.jobs[job_id] = job
    return JSONResponse(job.info(call.version))


def _job(call: Call) -> Job:
    job = call.org.jobs.get(call.groups[0])
    if not isinstance(job, Job):
        raise SfError(
            404, "NOT_FOUND", f"The requested resource does not exist (job {call.groups[0]})"
        )
    return job


async def get_job(call: Call) -> Response:
    """``GET /jobs/query/{id}``: the job completes on its first status read."""
    job = _job(call)
    if job.state == "UploadComplete":
        job.state = "JobComplete"
    return JSONResponse(job.info(call.version))


async def list_jobs(call: Call) -> Response:
    """``GET /jobs/query``."""
    jobs = [j.info(call.version) for j in call.org.jobs.values() if isinstance(j, Job)]
    return JSONResponse({"done": True, "records": jobs, "nextRecordsUrl": None})


async def abort_job(call: Call) -> Response:
    """``PATCH /jobs/query/{id}`` with ``{"state": "Aborted"}``."""
    job = _job(call)
    body = await call.body()
    if not isinstance(body, dict) or body.get("state") != "Aborted":
        raise SfError(400, "INVALIDJOB", 'Only {"state": "Aborted"} can be set on a query job')
    job.state = "Aborted"
    return JSONResponse(job.info(call.version))


async def delete_job(call: Call) -> Response:
    """``DELETE /jobs/query/{id}``."""
    _job(call)
    call.org.jobs.pop(call.groups[0], None)
    return Response(status_code=204)


async def job_results(call: Call) -> Response:
    """``GET /jobs/query/{id}/results?maxRecords=&locator=``: one CSV page."""
    job = _job(call)
    if job.state != "JobComplete":
        raise SfError(
            400, "INVALIDJOB", f"The job is {job.state}; results are ready when it is JobComplete"
        )
    q = call.request.query_params
    try:
        max_records = int(q.get("maxRecords") or DEFAULT_MAX_RECORDS)
        offset = int(q.get("locator") or 0)
    except ValueError:
        raise SfError(400, "INVALIDJOB", "maxRecords and locator must be integers") from None
    if max_records < 1 or offset < 0:
        raise SfError(400, "INVALIDJOB", "maxRecords must be positive and locator not negative")
    chunk = job.rows[offset : offset + max_records]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(job.header)
    writer.writerows(chunk)
    nxt = offset + max_records
    locator = str(nxt) if nxt < len(job.rows) else "null"
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(chunk))},
    )
