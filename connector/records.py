"""Adapter-neutral record and write-result types.

Every adapter speaks these types to the engine, so the engine never sees an SDK object.
All property values are strings (HubSpot's wire format); ``None`` means "no value".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Side = Literal["partner", "vendor"]
SIDES: tuple[Side, Side] = ("partner", "vendor")


def other_side(side: Side) -> Side:
    return "vendor" if side == "partner" else "partner"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Record:
    """One CRM object as the engine sees it.

    ``updated_at`` is the CRM's own modification time; it drives cursors and the
    ``newest`` conflict policy. ``associations`` maps an object type to associated ids
    and is only filled when the caller asked for it.
    """

    object_type: str
    id: str
    properties: dict[str, str | None]
    updated_at: datetime
    archived: bool = False
    associations: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        value = self.properties.get(name)
        return None if value == "" else value


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of one input of a batch write: a record on success, an error otherwise.

    ``key`` is whatever identified the input (the record id for updates, the
    idempotency key for creates) so callers can match results to inputs.
    ``existing_id``: the write was refused because a record with one of its unique
    values (a contact's e-mail, a unique custom property) already exists — that
    record's id, so the engine can adopt it instead of failing on every pass.
    """

    key: str
    record: Record | None = None
    error: str | None = None
    created: bool = False
    retriable: bool = False
    existing_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A custom property the connector needs in a portal (installed by ``setup``)."""

    object_type: str
    name: str
    label: str
    type: str = "string"  # string | number | date | datetime | enumeration | bool
    unique: bool = False
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """Something a contact did on the vendor's site (page view, form fill, demo request).

    ``object_id`` is the contact's id in the CRM that recorded it.
    """

    id: str
    event_type: str
    object_id: str
    occurred_at: datetime
    properties: dict[str, str] = field(default_factory=dict)
