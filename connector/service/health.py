"""What the sync-health page and the metrics say about a connection: failing records
grouped by what to do about them, recent runs, open conflicts.

Record errors carry a message, not a class, so the category is read from it: the
categories follow what an operator does next (wait for the rate limit, look at the
CRM's validation rule, fix the data, re-link a record that vanished).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from connector.state.tables import RetryItem, Run

CATEGORIES = ("rate_limited", "server", "refused", "not_found", "association", "data", "other")
_SERVER = re.compile(r"\b5\d\d\b|timed? ?out|connection|unavailable", re.I)


def categorize(message: str, has_field: bool = False) -> str:
    """The failure category of a record error message (see :data:`CATEGORIES`)."""
    text = message or ""
    low = text.lower()
    if "429" in text or "rate limit" in low:
        return "rate_limited"
    if "association" in low:
        return "association"
    if "404" in text or "not found" in low or "no longer exists" in low:
        return "not_found"
    if _SERVER.search(text):
        return "server"
    if "refused" in low or re.search(r"\b4\d\d\b", text):
        return "refused"
    if has_field or "invalid" in low or "not a" in low:
        return "data"
    return "other"


@dataclass
class ErrorGroup:
    category: str
    records: list[RetryItem] = field(default_factory=list)


def grouped(items: list[RetryItem]) -> list[ErrorGroup]:
    groups: dict[str, ErrorGroup] = defaultdict(lambda: ErrorGroup(""))
    for item in items:
        cat = categorize(item.last_error, " field " in item.last_error)
        groups[cat].category = cat
        groups[cat].records.append(item)
    return [groups[c] for c in CATEGORIES if c in groups]


def run_view(run: Run) -> dict[str, Any]:
    """A run as the API and the page show it (no api details beyond counts)."""
    return {
        "run_id": run.id,
        "connection": run.connection,
        "status": run.status,
        "trigger": run.trigger,
        "dry_run": run.dry_run,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "counts": {k: v for k, v in (run.counts or {}).items() if k != "plan"},
        "error": run.error,
    }
