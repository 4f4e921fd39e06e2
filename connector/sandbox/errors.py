"""HubSpot-shaped errors.

Every failure the sandbox reports, in a single answer or inside a batch, goes through
:class:`ApiError`, so bodies always carry ``status``, ``message``, ``correlationId`` and
``category`` like HubSpot's, and the client's ``StandardError``/``Error`` models
deserialise them.
"""

from __future__ import annotations

import uuid
from typing import Any


def correlation_id() -> str:
    """A fresh correlation id, as HubSpot puts on every error."""
    return str(uuid.uuid4())


class ApiError(Exception):
    """An error answer: HTTP status, HubSpot category, message and optional details."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, list[str]] | None = None,
        sub_category: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors or []
        self.context = context or {}
        self.sub_category = sub_category

    def body(self) -> dict[str, Any]:
        """The JSON body of a single (non-batch) error response."""
        out: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id(),
            "category": self.category,
        }
        if self.sub_category:
            out["subCategory"] = self.sub_category
        if self.errors:
            out["errors"] = self.errors
        if self.context:
            out["context"] = self.context
        return out

    def batch_entry(self, context: dict[str, list[str]]) -> dict[str, Any]:
        """This error as one element of a batch response's ``errors`` (``StandardError``)."""
        merged = dict(self.context)
        merged.update(context)
        out: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": merged,
            "errors": self.errors,
            "links": {},
        }
        if self.sub_category:
            out["subCategory"] = self.sub_category
        return out


def validation(message: str, **kwargs: Any) -> ApiError:
    """400 VALIDATION_ERROR, the most common rejection."""
    return ApiError(400, "VALIDATION_ERROR", message, **kwargs)


def not_found(message: str, **kwargs: Any) -> ApiError:
    """404 OBJECT_NOT_FOUND."""
    return ApiError(404, "OBJECT_NOT_FOUND", message, **kwargs)
