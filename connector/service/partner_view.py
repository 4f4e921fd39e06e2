"""What a partner may see of one of its runs (``GET /v1/runs/{id}``).

The run log is the vendor's: its errors name vendor hosts, ports, API paths and the
vendor CRM's own messages (a workflow's name, a field the vendor locked). A partner
sees the outcome of every record and, for a vendor-side failure, only a summary —
"vendor side failed: HTTP 503 (details in the vendor's run log)". Its own CRM's
errors are shown, with any address in them removed. The admin page shows all.
"""

from __future__ import annotations

import re
from typing import Any

from connector.service.health import run_view
from connector.state.tables import Run, RunRecord

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.I)
_HOST_PORT = re.compile(r"\b[\w.-]+:\d{1,5}\b")
_IP = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_STATUS = re.compile(r"\b([45]\d\d)\b")
HIDDEN = "[address hidden]"


def without_addresses(text: str) -> str:
    """``text`` with URLs, ``host:port`` pairs and IP addresses replaced."""
    for pattern in (_URL, _HOST_PORT, _IP):
        text = pattern.sub(HIDDEN, text)
    return text


def vendor_summary(text: str | None) -> str:
    """A vendor-side error as a partner sees it: the HTTP status, if one is named."""
    found = _STATUS.search(without_addresses(text or ""))
    status = f": HTTP {found.group(1)}" if found else ""
    return f"vendor side failed{status} (details in the vendor's run log)"


def partner_error(run: Run, vendor_name: str) -> str | None:
    """The run's error in the partner's terms (see the module docstring)."""
    if run.error is None:
        return None
    if run.status == "interrupted":
        return (
            "the pass was interrupted before it finished (details in the vendor's run "
            "log); the next pass continues from where it stopped"
        )
    if run.error.startswith(f"{run.connection}:"):  # raised by the partner's own portal
        return without_addresses(run.error)
    if run.error.startswith(f"{vendor_name}:"):
        return vendor_summary(run.error)
    return "the pass stopped on the vendor's side (details in the vendor's run log)"


def partner_run_view(run: Run, failed: list[RunRecord], vendor_name: str) -> dict[str, Any]:
    body = run_view(run)
    body["error"] = partner_error(run, vendor_name)
    body["failed_records"] = [
        {
            "object": r.object,
            "side": r.side,
            "record_id": r.record_id,
            "field": r.field,
            "detail": (
                without_addresses(r.detail or "") or None
                if r.side == "partner"
                else vendor_summary(r.detail)
            ),
        }
        for r in failed
    ]
    return body
