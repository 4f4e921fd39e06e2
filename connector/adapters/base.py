"""The adapter interface the engine drives.

Kept deliberately small (singer-sdk streams, dlt ``Supports*`` protocols): anything a
CRM needs beyond this stays inside its adapter module, and SDK types and exceptions
never cross this boundary — failures of single records come back as ``WriteResult``
errors, failures that must stop a pass as :class:`AdapterError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypedDict, Unpack, runtime_checkable

from connector.adapters.naming import Naming
from connector.records import Event, PropertySpec, Record, WriteResult

# an opt-in whose time the CRM does not tell (see SupportsEngagement.subscribed_since)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Fields = Sequence[str]
"""Names of the properties to read."""
Ids = Sequence[str]
"""Record ids of one object type."""
ObjectTypes = Sequence[str]
"""Names of object types (``deals``, ``companies``)."""


class Scope(TypedDict, total=False):
    """What narrows a change window besides its lower bound (keywords of
    :meth:`CRMAdapter.changed_since`, one definition for every adapter)."""

    where: Mapping[str, str] | None
    """Keep only records whose properties equal these values."""
    until: datetime | None
    """The window's upper bound (inclusive); None: up to now."""
    associations: ObjectTypes
    """Target object types whose associated ids come with each record."""
    live: bool
    """True: the caller wants live records only, so an adapter whose archived records
    cost a read of their own (HubSpot's recycle bin) skips it; one that has them at
    no cost may still return them (``archived=True``) for the caller to drop."""


class Chunked(Scope, total=False):
    """:class:`Scope` plus how many records a chunk holds (about)."""

    chunk_size: int


class AdapterError(Exception):
    """The CRM could not be reached or refused the whole call; the pass must stop.

    ``retriable`` tells the caller whether trying the same pass later can help
    (network, rate limits, 5xx) or not (bad credentials, missing scopes).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class PortalUnreachable(AdapterError):
    """The portal's host could not be reached (refused, unknown name, no answer within
    the connect or read timeout): the message is one line naming the host, the portal
    and what to try. Retriable: the next pass may find it back. Kept apart from other
    failures so /healthz can say "unreachable" and ``check --online`` does not blame
    the token's scopes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class UnknownProperty(AdapterError):
    """A search filtered on a property the portal does not have (``name``): no record
    can match it. Kept apart so that a filter on a property only ``dealsync setup``
    creates (the partner's lead flag) reads as "nothing is flagged yet, run setup"
    instead of stopping a first sync; any other refused search still stops the pass."""

    name: str = ""


class PortalAuthRefused(AdapterError):
    """The portal answered but refused the credentials (HubSpot: 401, or 403 for a
    missing scope): the message names the variable the token comes from. Not
    retriable: the same token fails the same way until someone changes it."""


@dataclass(frozen=True)
class PropertyInfo:
    """One property as the CRM defines it (what ``dealsync check --online`` compares
    the mappings with). ``type`` is HubSpot's vocabulary: string, number, date,
    datetime, enumeration, bool. ``options`` are (value, label) pairs of an
    enumeration; ``read_only``: the CRM refuses writes to it."""

    name: str
    label: str = ""
    type: str = "string"
    options: tuple[tuple[str, str], ...] = ()
    read_only: bool = False


@dataclass(frozen=True)
class PipelineInfo:
    """One pipeline of an object type; ``stages`` are (id, label) pairs."""

    id: str
    label: str
    stages: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ObjectSchema:
    """What one object type of a portal looks like: its properties and pipelines."""

    object_type: str
    properties: Mapping[str, PropertyInfo] = field(default_factory=dict)
    pipelines: tuple[PipelineInfo, ...] = ()


@runtime_checkable
class CRMAdapter(Protocol):
    """What the engine needs from a CRM portal."""

    name: str
    naming: Naming
    """How this CRM spells the connector's markers and the program's objects."""

    def now(self) -> datetime:
        """The CRM's notion of current time, used to freeze a pass's high-water mark."""
        ...

    def changed_since(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Scope]
    ) -> Iterator[Record]:
        """Records modified in ``[since, until]`` (all when ``since`` is None),
        including ones archived in that window (``archived=True``). ``where`` keeps
        only records whose properties equal the given values."""
        ...

    def read(
        self, object_type: str, ids: Ids, properties: Fields, *, associations: ObjectTypes = ()
    ) -> dict[str, Record]:
        """Records by id; ids that do not exist (or are archived) are absent."""
        ...

    def find_by_property(
        self, object_type: str, name: str, values: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        """Live records whose property ``name`` has one of ``values``, keyed by value."""
        ...

    def upsert(
        self, object_type: str, id_property: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        """Create-or-update by a unique property: ``items`` are (unique value,
        properties). Idempotent: repeating it never creates a second record."""
        ...

    def update(
        self, object_type: str, items: Sequence[tuple[str, Mapping[str, str]]]
    ) -> list[WriteResult]:
        """Update records by id: ``items`` are (id, properties to set)."""
        ...

    def archive(self, object_type: str, ids: Sequence[str]) -> list[WriteResult]:
        """Archive (soft-delete) records by id."""
        ...

    def associate(
        self, from_type: str, to_type: str, pairs: Iterable[tuple[str, str]]
    ) -> list[WriteResult]:
        """Associate records (idempotent): pairs of (from id, to id)."""
        ...

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> list[str]:
        """Create the custom properties that are missing; return the names created."""
        ...

    def api_calls(self) -> dict[str, int]:
        """Calls made so far by kind, for the run log (``{}`` when not counted)."""
        ...

    def object_schema(self, object_type: str) -> ObjectSchema | None:
        """The portal's real properties and pipelines of one object type, or ``None``
        when this CRM has no schema to check against (it accepts any property)."""
        ...


@runtime_checkable
class SupportsChunkedDetection(Protocol):
    """A CRM whose change detection can hand records over in chunks while it is still
    reading, so the engine can write the first records while later ones are still
    being searched (the two portals' rate budgets are then used side by side).
    Optional: without it a side's detection is one chunk."""

    def changed_since_chunks(
        self, object_type: str, since: datetime | None, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """What :meth:`CRMAdapter.changed_since` returns, in lists of about
        ``chunk_size`` records, each record once."""
        ...


@runtime_checkable
class SupportsListing(Protocol):
    """A CRM that can read every record of a type by a listing whose calls are counted
    on a rate budget apart from its search's (HubSpot: ``GET /crm/v3/objects/{type}``,
    100 a page on the general budget, while search has its own 5 a second). A first
    sync (no cursor) can then read one object by listing while another is searched, so
    the two budgets are used side by side (engine/detect.py, :func:`plan_listing`):
    more calls (a list page holds half a search page), less wall time.

    Optional, and only worth having when the budgets are apart: without it detection
    searches (:meth:`CRMAdapter.changed_since`). Salesforce has none: an org's calls
    share one API budget, and its first-sync query already reads everything at once."""

    def listed_chunks(
        self, object_type: str, properties: Fields, **scope: Unpack[Chunked]
    ) -> Iterator[list[Record]]:
        """What ``changed_since_chunks(object_type, None, properties, **scope)`` returns
        — every live record modified up to ``until`` whose properties match ``where``
        (both applied by the adapter when the listing cannot filter), then the archived
        ones unless ``live`` — read by the listing, in lists of about ``chunk_size``
        records, each record once."""
        ...


@runtime_checkable
class SupportsSearchedReads(Protocol):
    """A CRM that can read records by id through its search, on a budget apart from
    its batch reads' and with more records a call (HubSpot: a search page of 200 by
    ``hs_object_id``, on the 5-a-second search budget, where a batch read takes 100 on
    the general one). A first hooked sync reads the companies and contacts of each
    chunk of deals so, while the deals are searched (engine/sync.py): the calls are
    the ones a whole detection of them would cost, and none is spent on a record no
    deal shares. Optional: without it those reads are batch reads."""

    def read_searched(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> dict[str, Record]:
        """What :meth:`CRMAdapter.read` returns for ``ids`` (live records only, every
        property asked for present), without associations."""
        ...


@dataclass(frozen=True)
class EventQuery:
    """Which engagement events to read: one type, occurred strictly between ``after``
    and ``before`` (None: unbounded), of one contact when ``object_id`` is set."""

    event_type: str
    after: datetime | None
    before: datetime | None = None
    object_id: str | None = None


@runtime_checkable
class SupportsPropertyHistory(Protocol):
    """A CRM that knows when a record's property took its value (HubSpot's
    ``propertiesWithHistory``). Optional: consent then dates a confirmation property
    by it (issue 16); without it a confirmation counts whenever it happened."""

    def values_since(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> dict[str, dict[str, datetime]]:
        """For each record id found: since when each of ``properties`` that has a
        value holds its current value (the oldest of the newest run of equal values)."""
        ...


@runtime_checkable
class SupportsEngagement(Protocol):
    """What a vendor CRM offers for consent signals and lead notifications: web events
    and e-mail subscription status. Optional: a CRM without it gets no notifications,
    and its contacts count as not opted in. An adapter subclasses it, implements
    :meth:`query_events` and :meth:`opted_in`, and inherits :meth:`events`."""

    def events(
        self,
        event_type: str,
        occurred_after: datetime | None,
        occurred_before: datetime | None = None,
        *,
        object_id: str | None = None,
    ) -> list[Event]:
        """Events of one type in the window (exclusive bounds), oldest first."""
        return self.query_events(EventQuery(event_type, occurred_after, occurred_before, object_id))

    def query_events(self, query: EventQuery) -> list[Event]:
        """:meth:`events`, asked as one value: what an adapter implements (it
        subclasses this protocol and inherits :meth:`events`)."""
        ...

    def opted_in(self, email: str) -> bool:
        """Whether the address is subscribed to any of the vendor's communications."""
        ...

    def subscribed_since(self, emails: Sequence[str]) -> dict[str, datetime | None]:
        """For each address (lower case): since when it is subscribed to any of the
        vendor's communications (the earliest status change to subscribed among those
        it is subscribed to now), None when it is not. What "opted in within the
        window" is decided by (issue 16). An adapter that knows the times answers for
        many addresses in a few calls; this fallback asks :meth:`opted_in` per address
        and, knowing no time, dates a subscription at the earliest moment (it counts
        like an opt-in before the registration)."""
        return {e.lower(): (EPOCH if self.opted_in(e) else None) for e in emails}
