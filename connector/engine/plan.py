"""The plan: typed actions reconcile produces and apply carries out.

A plan is data. ``dealsync sync --dry-run`` prints it and stops; hooks may veto,
add or annotate actions before apply. Per-record problems are actions too
(:class:`RecordError`), never exceptions, so one bad record never stops a pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from connector.records import Side

# field key → (partner canonical value, vendor canonical value)
Base = Mapping[str, tuple[str | None, str | None]]


@dataclass(frozen=True, slots=True)
class Create:
    """Create the counterpart of ``source_id`` on ``target`` and link the two."""

    object: str
    target: Side
    source_id: str
    properties: dict[str, str]
    base: dict[str, tuple[str | None, str | None]]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Update:
    """Write field changes to one or both sides of a linked pair, then move its base.

    The base moves only when every write of the pair succeeded, so a half-applied pair
    is simply reconciled again next pass.
    """

    object: str
    link_id: int
    partner_id: str
    vendor_id: str
    partner_properties: dict[str, str]
    vendor_properties: dict[str, str]
    base: dict[str, tuple[str | None, str | None]]
    reasons: tuple[str, ...] = ()

    @property
    def writes(self) -> bool:
        return bool(self.partner_properties or self.vendor_properties)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both sides changed a ``manual`` field to different values: a human decides."""

    object: str
    link_id: int
    partner_id: str
    vendor_id: str
    field: str
    partner_value: str | None
    vendor_value: str | None
    base_partner: str | None
    base_vendor: str | None


@dataclass(frozen=True, slots=True)
class Delete:
    """One side's record is gone; apply the mapping's delete policy to the other."""

    object: str
    link_id: int
    gone_side: Side
    counterpart_id: str
    policy: Literal["archive", "unlink", "flag"]


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record that cannot be synced this pass; logged, retried next pass."""

    object: str
    side: Side
    record_id: str
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f" field {self.field}" if self.field else ""
        return f"{self.object} {self.record_id} ({self.side}){where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Associate:
    """Mirror a record's associations onto the counterpart side."""

    object: str
    target: Side
    link_id: int
    to_object: str
    source_ids: tuple[str, ...]  # associated ids on the source side (for the base)
    record_id: str = ""  # the source-side record: read again next pass if the write fails
    counterpart_id: str = ""  # its counterpart on ``target``, the association's "from"
    to_ids: tuple[str, ...] = ()  # ``target``-side ids newly associated with it
    base: dict[str, Any] = field(default_factory=dict)  # the link's base once written


Action = Create | Update | Conflict | Delete | RecordError | Associate


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)

    def extend(self, actions: Iterable[Action]) -> None:
        self.actions.extend(actions)

    def counts(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for a in self.actions:
            if isinstance(a, Create):
                c[f"create {a.target} {a.object}"] += 1
            elif isinstance(a, Update):
                if a.partner_properties:
                    c[f"update partner {a.object}"] += 1
                if a.vendor_properties:
                    c[f"update vendor {a.object}"] += 1
                if not a.writes:
                    c[f"settle {a.object}"] += 1
            elif isinstance(a, Conflict):
                c["conflict"] += 1
            elif isinstance(a, Delete):
                c[f"{a.policy} {a.object}"] += 1
            elif isinstance(a, RecordError):
                c["error"] += 1
            elif isinstance(a, Associate):
                # one per association written (a deal with two new contacts: 2)
                c[f"associate {a.target} {a.object}→{a.to_object}"] += len(a.to_ids) or 1
        return c

    def summary(self) -> str:
        counts = self.counts()
        if not counts:
            return "nothing to do"
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
