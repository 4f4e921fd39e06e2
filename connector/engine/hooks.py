"""The hook contract: what the engine calls, and when.

Hooks are plain objects the engine calls at fixed points of a pass:

* ``after_detect`` — once per pass, before any reconcile, with every object's detected
  records: the place to make decisions that several objects depend on. (A first sync
  reads the streamed object's children with its chunks instead of detecting them,
  ``SyncPass.read_with_stream``: ``seen`` then holds of them only what a hook's
  ``detect_anyway`` asked for, and each chunk's children join it before the chunk is
  decided, leaving once applied.) With hooks the pass *streams* one object, the one
  others are shared via (deals: their companies and contacts hang on them;
  ``SyncPass.streamed``). Its partner records are not in
  ``seen`` (its entry holds its changed vendor records only): they come chunk by chunk
  to ``decide_chunk``, after ``after_detect``, while detection searches on;
* ``decide_chunk`` — per chunk of the streamed object's partner records (about 1,000,
  with the changed vendor records linked to them), before that chunk is reconciled and
  applied, with ``seen`` as ``after_detect`` had it (the objects shared via it, held
  whole): the decisions on the chunk's records (a deal's registration, from its company
  and contacts in ``seen``). ``resync`` detects nothing: it calls it once with the
  records it read of that object. Mappings no other is shared via stream nothing:
  every object's records are then in ``seen`` and this is never called;
* ``after_stream`` — once per pass, after the streamed object's last chunk was decided
  and applied (at once after ``after_detect`` when nothing streams): decisions that
  must follow the streamed object's (leads after the deals of the same pass, which may
  register their domains first). The objects shared via the streamed one are then
  partly applied already: after each chunk but the last, the held records its applied
  records share (a chunk's deals' companies and contacts) were reconciled and went
  through ``before_apply``, with the decisions made so far; every other record of
  theirs, and every other object, is reconciled after this;
* ``before_apply`` — after reconcile, per set of one object's records (a chunk of the
  streamed object, the records a chunk shares, the rest): it sees the planned actions
  and the records they came from, and returns the actions to apply. It may veto (drop)
  an action, add actions, or replace one with an annotated copy;
* ``after_pass`` — once the pass's writes and state are committed: for effects that
  must only follow durable state (e-mails, commissions, ownership writes).

CRM writes that need not hold the pass up (the partner's registration statuses, once the
deals were streamed) may be set going with :meth:`PassContext.apply_soon`: they
go out from the pass's one background writer while the pass goes on, and the hook takes
their outcomes (and does its follow-up, its marks in the state store) in the pass's
thread. The engine ends the writer with the pass (:meth:`PassContext.close`).

Every point runs in a dry run too, so the printed plan is what would really happen.
A hook never writes and never asks whether the pass is dry: it hands the program's
effects (:mod:`connector.engine.effects`: decisions, ownership writes, commissions,
e-mails) to :meth:`PassContext.apply`, and the engine carries them out — or, in a dry
run, only records them — and logs them for the printed plan and the run's summary.

Two more points: ``properties`` (extra properties to fetch) and
``required_properties`` for ``dealsync setup``. Neither has a pass at hand, so each is
given the CRMs' :class:`~connector.adapters.naming.Naming`: a hook names objects, markers
and the language property as the side's adapter spells them, never HubSpot's by rote.

A hook that raises :class:`~connector.adapters.base.AdapterError` stops the pass
(fatal); a hook that wants one record skipped returns a
:class:`~connector.engine.plan.RecordError` action for it instead.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from connector.adapters.base import CRMAdapter
from connector.adapters.naming import Naming
from connector.adapters.ratelimit import Reserve, background
from connector.config.models import ObjectMapping, PartnerConfig
from connector.engine.effects import (
    Decide,
    Done,
    Effect,
    Keep,
    WriteProperties,
    apply_effects,
    dry_outcome,
)
from connector.engine.plan import Action
from connector.records import PropertySpec, Record, Side, WriteResult

if TYPE_CHECKING:
    from connector.engine.cycle import ProgramCycle
    from connector.state import StateStore

T = TypeVar("T")


@dataclass
class PassContext:
    """What a hook may know about the pass it runs in."""

    partner: PartnerConfig
    partner_crm: CRMAdapter
    vendor_crm: CRMAdapter
    store: StateStore
    now: datetime
    # the engine's switch (see :meth:`apply`); hooks never read it
    dry_run: bool
    run_id: int | None
    # what hooks learned at one point of this pass for a later one: one object per class
    # (see :meth:`note`), so each hook's pass state is typed, not a dict of string keys
    notes: dict[type, Any] = field(default_factory=dict)
    # a test's crash hook, called with a named point (see ``run_pass(crash_at=)``)
    crash_at: Callable[[str], None] | None = None
    # every program effect handed to :meth:`apply` this pass, in order, with its outcome
    effects: list[Done] = field(default_factory=list)
    # the program-wide vendor reads shared by the passes of one ``sync --all`` or
    # service cycle (:mod:`connector.engine.cycle`); None: this pass reads its own
    cycle: ProgramCycle | None = None
    # a real pass's log entries by what the counts read (:func:`logged`): the same
    # entry stands for every effect of that kind and outcome
    _shapes: dict[tuple[object, ...], Done] = field(default_factory=dict, repr=False)
    # the pass's one background writer (:meth:`apply_soon`), made on first use
    _writer: ThreadPoolExecutor | None = field(default=None, repr=False)
    # the share of the portal's window the background writer leaves the pass, until
    # the pass waits for its writes (:meth:`Soon.outcomes`, :meth:`close`)
    _reserve: Reserve = field(default_factory=Reserve, repr=False)

    def apply(self, effects: Sequence[Effect]) -> list[Any]:
        """Carry out the program's effects now, in order, and log them; in a dry run only
        log them. Returns each effect's outcome: what the store or CRM answered (a
        decision's recorded status, a write's result, whether a row was inserted), or
        in a dry run the decision's own status and None for everything else — so a hook
        does its follow-up (marks, logs) only for what really happened."""
        if not effects:
            return []
        if self.dry_run:
            outcomes = [dry_outcome(e) for e in effects]
            # a dry run prints what it would do: its log keeps every effect whole
            self.effects.extend(Done(e, o, False) for e, o in zip(effects, outcomes, strict=True))
            return outcomes
        outcomes = apply_effects(self, effects)
        self._log(effects, outcomes)
        return outcomes

    def _log(self, effects: Sequence[Effect], outcomes: Sequence[Any]) -> None:
        """A real pass's log of effects it carried out (:func:`logged`)."""
        self.effects.extend(
            logged(e, o, self._shapes)
            for e, o in zip(effects, outcomes, strict=True)
            if not isinstance(e, Keep)  # bookkeeping: never counted nor shown
        )

    def apply_soon(self, effects: Sequence[WriteProperties]) -> Soon:
        """Set CRM writes of one side going while the pass goes on; their outcomes come
        later, from :meth:`Soon.outcomes`, in the caller's thread (which logs them then,
        as :meth:`apply` does, so every follow-up — a mark in the state store — stays in
        the pass's thread: its database sessions are not shared between threads).

        They go out from the pass's one background writer thread (in order, one batch
        after the other) when the side's adapter may be called from several threads
        (``thread_safe``: HubSpot, see :func:`connector.engine.detect.lock_for`);
        with any other adapter they are carried out at once, in this thread, as
        :meth:`apply` would. In a dry run nothing is carried out (outcomes None). An
        outcome says whether the write went through, not what the CRM answered (no
        record: :func:`_answered`)."""
        writes = list(effects)
        assert all(isinstance(e, WriteProperties) for e in writes), writes
        if not writes:
            return Soon(self, writes, [])
        if self.dry_run:
            return Soon(self, writes, [dry_outcome(e) for e in writes])
        crm = self.crm(writes[0].side)
        assert all(e.side == writes[0].side for e in writes), writes
        if getattr(type(crm), "thread_safe", False) is not True:
            try:
                return Soon(self, writes, _answered(apply_effects(self, writes)))
            except Exception as exc:  # raised where its outcomes are taken, as a thread's
                failed: Future[list[Any]] = Future()
                failed.set_exception(exc)
                return Soon(self, writes, None, failed)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dealsync-write")
        # in the pass's logging context (connection, run id: connector/logs.py)
        context = contextvars.copy_context()
        return Soon(
            self, writes, None, self._writer.submit(context.run, _in_background, self, writes)
        )

    def streamed(self) -> None:
        """The streamed object's chunks are all read and applied: the reads the
        background writer left a share of the budget for are over, its writes may
        take it all."""
        self._reserve.divisor = 0

    def close(self) -> None:
        """The pass is over: its background writer ends, once the write it is in is
        done (writes not yet begun are dropped: nobody would take their outcomes, and
        what they were for stays to do, as after a crash)."""
        writer, self._writer = self._writer, None
        self._reserve.divisor = 0
        if writer is not None:
            writer.shutdown(wait=True, cancel_futures=True)

    def crash_point(self, point: str) -> None:
        """Give a test the chance to kill the process here; does nothing otherwise."""
        if self.crash_at is not None:
            self.crash_at(point)

    def note(self, kind: type[T]) -> T:
        """This pass's one ``kind`` object, made by ``kind()`` on first ask."""
        if kind not in self.notes:
            self.notes[kind] = kind()
        return cast(T, self.notes[kind])

    def noted(self, kind: type[T]) -> T | None:
        """This pass's ``kind`` object if a hook point made one, else None."""
        return cast(T | None, self.notes.get(kind))

    @property
    def connection(self) -> str:
        return self.partner.id

    def crm(self, side: Side) -> CRMAdapter:
        return self.partner_crm if side == "partner" else self.vendor_crm


class Soon:
    """Writes :meth:`PassContext.apply_soon` set going. :meth:`outcomes` waits for
    them, logs them in the pass's effect log and returns each one's outcome (None: not
    carried out — a dry run); an error that stopped them (the portal unreachable) is
    raised there, in the caller's thread, as :meth:`PassContext.apply` would raise it."""

    def __init__(
        self,
        ctx: PassContext,
        effects: list[WriteProperties],
        outcomes: list[Any] | None,
        future: Future[list[Any]] | None = None,
    ) -> None:
        self._ctx = ctx
        self.effects = effects
        self._outcomes = outcomes
        self._future = future
        self._taken = False

    def done(self) -> bool:
        """Whether the outcomes are in (:meth:`outcomes` would not wait)."""
        return self._future is None or self._future.done()

    def outcomes(self) -> list[Any]:
        if self._outcomes is None:
            assert self._future is not None
            if not self._future.done():  # the pass waits: the writes take all the budget
                self._ctx._reserve.divisor = 0
            self._outcomes = self._future.result()
        if not self._taken:
            self._taken = True
            ctx = self._ctx
            if ctx.dry_run:
                ctx.effects.extend(
                    Done(e, o, False) for e, o in zip(self.effects, self._outcomes, strict=True)
                )
            else:
                ctx._log(self.effects, self._outcomes)
        return self._outcomes


def logged(
    effect: Effect, outcome: Any, shapes: dict[tuple[object, ...], Done] | None = None
) -> Done:
    """What a real pass keeps in its log of an effect it carried out: what the summary
    and the counts read (:func:`connector.engine.effects.pass_summary`, ``counts``) —
    a write's purpose, record and whether it went through, a decision's status and
    code — not the written properties, the CRM's answer with its record, or a
    decision's contacts. A first sync that decides and writes back N registrations
    then holds N small entries, not N records twice (issue 17).

    ``shapes`` (the pass's): a write that went through and a decision are kept as one
    shared entry per kind and outcome, without the record they were for (its id is
    blanked) — the counts read nothing else of them — so N of them cost the log N
    references, not N entries. A failed write keeps its own entry, with its error."""
    if shapes is not None and (shape := _shape(effect, outcome)) is not None:
        entry = shapes.get(shape)
        if entry is None:
            entry = shapes[shape] = _bare(effect, outcome)
        return entry
    if isinstance(effect, WriteProperties):
        effect = replace(effect, properties={})
        if isinstance(outcome, WriteResult):
            outcome = WriteResult(outcome.key, error=outcome.error, created=outcome.created)
    elif isinstance(effect, Decide):
        effect = Decide(
            replace(effect.submission, contacts=()), replace(effect.decision, contacts=())
        )
    return Done(effect, outcome, True)


def _shape(effect: Effect, outcome: Any) -> tuple[object, ...] | None:
    """What the counts read of a logged effect, for :func:`logged`'s shared entries;
    None: the effect keeps an entry of its own."""
    if isinstance(effect, WriteProperties):
        if outcome is None:
            return (WriteProperties, effect.side, effect.object, effect.purpose, None)
        if isinstance(outcome, WriteResult) and outcome.error is None:
            return (WriteProperties, effect.side, effect.object, effect.purpose, outcome.created)
        return None
    if isinstance(effect, Decide) and isinstance(outcome, str):
        return (Decide, effect.status, effect.decision.code, outcome)
    return None


def _bare(effect: Effect, outcome: Any) -> Done:
    """The shared log entry of :func:`_shape`: the effect without its record."""
    if isinstance(effect, WriteProperties):
        if isinstance(outcome, WriteResult):
            outcome = WriteResult("", created=outcome.created)
        return Done(replace(effect, record_id="", properties={}), outcome, True)
    assert isinstance(effect, Decide)
    sub, decision = effect.submission, effect.decision
    bare = Decide(
        replace(sub, partner_record_id="", domain_text=None, company_name="", contacts=()),
        replace(decision, domain="", reason="", owned_until=None, contacts=(), note=None),
    )
    return Done(bare, outcome, True)


@dataclass(frozen=True)
class ObjectRecords:
    """The records of one object seen in this pass, by side and id."""

    partner: Mapping[str, Record]
    vendor: Mapping[str, Record]


@dataclass(frozen=True)
class Chunk:
    """A chunk of the streamed object's detected records, as ``decide_chunk`` sees it:
    its partner records and the changed vendor records linked to them.

    ``detected_all``: every page of the object's partner records had been read when
    this chunk was handed over. Until then a write to the partner's records of this
    object may shift the pages still to read (HubSpot's searches page by offset
    within the pass's window, and a record written drops out of it; the adapter
    then reads the page again, a search more), so a hook that writes to them waits
    for a chunk that says so, or for ``after_stream``."""

    mapping: ObjectMapping
    records: ObjectRecords
    detected_all: bool


@dataclass(frozen=True)
class Planned:
    """What reconcile planned for one object of the pass, as ``before_apply`` sees it:
    the mapping, its actions, and the records they came from."""

    mapping: ObjectMapping
    actions: list[Action]
    records: ObjectRecords


def _in_background(ctx: PassContext, writes: Sequence[WriteProperties]) -> list[Any]:
    """The background writer's writes, as background calls: each leaves the pass its
    share of the portal's window (:func:`connector.adapters.ratelimit.background`)
    while the pass has reads to make."""
    with background(ctx._reserve):
        return _answered(apply_effects(ctx, writes))


def _answered(outcomes: list[Any]) -> list[Any]:
    """Outcomes of writes set going (:meth:`PassContext.apply_soon`) without the CRM's
    answer records: they wait until taken, and a first sync's N status write-backs
    held N answered records at once (the pass's peak of memory at N = 50,000, issue
    17); the caller reads whether each went through, not what the CRM answered."""
    return [
        replace(o, record=None) if isinstance(o, WriteResult) and o.record is not None else o
        for o in outcomes
    ]


class Hook(Protocol):
    name: str

    def properties(self, mapping: ObjectMapping, side: Side, naming: Naming) -> Sequence[str]:
        """Extra properties the hook needs on records of ``mapping`` from ``side``, whose
        CRM names things as ``naming`` says."""
        ...

    def required_properties(
        self, names: Mapping[Side, Naming]
    ) -> Sequence[tuple[Side, PropertySpec]]:
        """Custom properties the hook writes or reads (installed by ``dealsync setup``)
        between one partner CRM and the vendor's, named as ``names`` (each side's CRM)
        say."""
        ...

    def detect_anyway(self, mapping: ObjectMapping, naming: Naming) -> Mapping[str, str] | None:
        """When a first sync reads ``mapping``'s partner records with the chunks of the
        streamed object that share them (``SyncPass.read_with_stream``) instead of
        detecting them whole, those this hook needs all the same, as the property
        values they have (the registration hook: the contacts flagged as leads, whom
        no deal shares); ``None``: none. ``naming``: the partner CRM's."""
        ...

    def after_detect(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        """Called once per pass with every object's detected records (the streamed
        object's vendor records only), before any reconcile: the place to make
        decisions that several objects depend on."""
        ...

    def decide_chunk(
        self, ctx: PassContext, chunk: Chunk, seen: Mapping[str, ObjectRecords]
    ) -> None:
        """Called per chunk of the streamed object's detected records, after
        ``after_detect`` and before the chunk is reconciled: the decisions on those
        records, with ``seen`` the picture ``after_detect`` had."""
        ...

    def after_stream(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        """Called once per pass after every chunk of the streamed object was decided and
        applied (at once after ``after_detect`` when nothing streams), before the rest
        of the other objects is reconciled (the records an earlier chunk shares were
        applied after that chunk)."""
        ...

    def before_apply(self, ctx: PassContext, planned: Planned) -> list[Action]:
        """Called per object after reconcile: the actions to apply instead of
        ``planned.actions`` (vetoed, added to or annotated)."""
        ...

    def after_pass(self, ctx: PassContext) -> None:
        """Called once the pass's writes and state are committed (dry runs too): hand
        the effects that must follow durable state to ``ctx.apply``."""
        ...


class BaseHook:
    """No-op implementations of every hook point; subclass and override a few."""

    name = "base"

    def properties(self, mapping: ObjectMapping, side: Side, naming: Naming) -> Sequence[str]:
        return ()

    def required_properties(
        self, names: Mapping[Side, Naming]
    ) -> Sequence[tuple[Side, PropertySpec]]:
        return ()

    def detect_anyway(self, mapping: ObjectMapping, naming: Naming) -> Mapping[str, str] | None:
        return None

    def after_detect(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        return None

    def decide_chunk(
        self, ctx: PassContext, chunk: Chunk, seen: Mapping[str, ObjectRecords]
    ) -> None:
        return None

    def after_stream(self, ctx: PassContext, seen: Mapping[str, ObjectRecords]) -> None:
        return None

    def before_apply(self, ctx: PassContext, planned: Planned) -> list[Action]:
        return planned.actions

    def after_pass(self, ctx: PassContext) -> None:
        return None
