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


def count_action(c: Counter[str], a: Action) -> None:
    """Add one action to a plan's counts (what the summary and the run log show)."""
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


@dataclass
class Plan:
    """The actions of a pass and their counts.

    ``keep``: how many actions the plan holds on to (``None``: all of them). A real
    pass applies each chunk's actions as it goes, so holding every action of a pass
    over 50,000 deals would make its memory grow with N (issue 17); it keeps the
    first ``keep`` and counts them all — the counts, which the summary, the run log
    and the CLI show, always cover the whole pass. ``omitted`` says how many actions
    were counted but not kept. A dry run and a resync keep all (they print them)."""

    actions: list[Action] = field(default_factory=list)
    keep: int | None = None
    omitted: int = 0
    _counts: Counter[str] = field(default_factory=Counter, repr=False, compare=False)
    _counted: int = field(default=0, repr=False, compare=False)

    def extend(self, actions: Iterable[Action]) -> None:
        self._catch_up()
        for a in actions:
            count_action(self._counts, a)
            if self.keep is None or len(self.actions) < self.keep:
                self.actions.append(a)
            else:
                self.omitted += 1
        self._counted = len(self.actions)

    def _catch_up(self) -> None:
        # actions appended to ``actions`` directly (tests, older callers) are counted too
        for a in self.actions[self._counted :]:
            count_action(self._counts, a)
        self._counted = len(self.actions)

    def counts(self) -> Counter[str]:
        self._catch_up()
        return Counter(self._counts)

    def summary(self) -> str:
        counts = self.counts()
        if not counts:
            return "nothing to do"
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
