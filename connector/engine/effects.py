"""The program's effects: what the partner program's hooks would have the pass do.

Reconcile's plan (:mod:`connector.engine.plan`) says what the *sync* writes; the
program adds its own effects — registration decisions and endings, ownership and
status writes, commissions, e-mails, lead activity. They are data too, so the engine,
not each hook, decides whether they happen: hooks hand them to
:meth:`PassContext.apply <connector.engine.hooks.PassContext.apply>`, which carries
them out (:func:`apply_effects`) or, in a dry run, only records them. Either way every
effect lands in the pass's effect log, which ``sync --dry-run`` prints and the ``sync``
summary counts (:func:`counts`, :func:`summary`).

Why hooks hand effects over one batch at a time rather than returning them all at the
end: a pass's effects depend on the outcomes of earlier ones — a withdrawal frees a
domain before the next decision reads its holder, a decision's *recorded* status (the
claim rows arbitrate) is what the veto of creates uses, a commission's row is what its
write-back marks. Handing each batch over at the point it is due keeps today's order
and durability (decisions durable before any CRM write; e-mails and commissions only
after the pass's state is committed) while no hook checks ``dry_run``.

What a dry run cannot know it does not invent: an effect that follows from another
effect's outcome (the ownership write of a registration this pass would accept, its
consent e-mail) shows on the pass that records the first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from connector.records import Side, WriteResult

if TYPE_CHECKING:
    from connector.engine.hooks import PassContext
    from connector.mail.render import Rendered
    from connector.program.decide import Decision, Submission
    from connector.state.tables import Commission, LeadActivity, UncreditedWin


@dataclass(frozen=True, slots=True)
class Decide:
    """Record a registration decision (the registry's claim rows may still turn an
    acceptance into ``owned_by_partner`` if another partner took the domain first)."""

    submission: Submission
    decision: Decision

    @property
    def status(self) -> str:
        return self.decision.status


@dataclass(frozen=True, slots=True)
class EndRegistrations:
    """End registrations (their window is over, or the partner withdrew them) and free
    their domains."""

    registration_ids: tuple[int, ...]
    status: Literal["expired", "withdrawn"]


WritePurpose = Literal["ownership", "lead", "registration status", "commission"]


@dataclass(frozen=True, slots=True)
class WriteProperties:
    """Write properties to one CRM record: by id, or by upsert on ``upsert_on`` (then
    ``record_id`` is that property's value). ``purpose`` says which program write it is:
    the vendor company's ownership, a lead's company or contact at the vendor, a
    registration's status on the partner's record, or a commission's write-back."""

    side: Side
    object: str
    record_id: str
    properties: dict[str, str]
    purpose: WritePurpose
    upsert_on: str | None = None


@dataclass(frozen=True, slots=True)
class EarnCommission:
    """Insert a commission row (unique per vendor deal: the exactly-once guard)."""

    row: Commission


@dataclass(frozen=True, slots=True)
class NotCredited:
    """Keep why a won vendor deal credits no one (one row per deal; reported once:
    a rerun or another partner's pass that reaches the same verdict shows nothing).
    ``why`` is the short phrase the pass summary counts by."""

    row: UncreditedWin
    why: str


@dataclass(frozen=True, slots=True)
class QueueEmail:
    """Put one e-mail decision in the outbox: ``queued`` to be sent, ``suppressed`` with
    its reason, or ``held`` for an admin. Keyed by ``dedupe_key`` (at most once)."""

    dedupe_key: str
    kind: str
    recipient: str
    rendered: Rendered | None
    partner: str
    registration_id: int | None
    status: str
    detail: str | None

    def __repr__(self) -> str:  # the recipient's address stays out of logs (issue 12)
        return f"QueueEmail({self.kind} {self.status}, registration {self.registration_id})"


@dataclass(frozen=True, slots=True)
class Notify:
    """Record one high-value web action at a domain the partner owns (deduplicated per
    partner, company, day and action); the pass's digests e-mail it to the partner."""

    activity: LeadActivity


@dataclass(frozen=True, slots=True)
class Keep:
    """The program's own bookkeeping after effects were carried out (registry marks,
    its cursors): state, not an effect anyone sees, so never counted; skipped in a dry
    run like every other effect."""

    what: str
    write: Callable[[], object]


Effect = (
    Decide
    | EndRegistrations
    | WriteProperties
    | EarnCommission
    | NotCredited
    | QueueEmail
    | Notify
    | Keep
)


@dataclass(frozen=True, slots=True)
class Done:
    """One effect of a pass and what became of it: ``outcome`` is None when it was not
    carried out (a dry run), else what the store or CRM answered."""

    effect: Effect
    outcome: Any
    applied: bool


# ---------------------------------------------------------------------- carrying out


def dry_outcome(effect: Effect) -> object:
    """What a hook is told in a dry run: a decision counts as made (the veto of creates
    then matches the real pass's), everything else as not carried out."""
    return effect.status if isinstance(effect, Decide) else None


def _group(effect: Effect) -> tuple[object, ...]:
    if isinstance(effect, WriteProperties):
        return (WriteProperties, effect.side, effect.object, effect.upsert_on)
    if isinstance(effect, Decide):
        return (Decide,)
    return (id(effect),)  # applied one by one


def apply_effects(ctx: PassContext, effects: Sequence[Effect]) -> list[object]:
    """Carry out effects in order, batching runs of alike ones (decisions in one
    ``record_many``, writes to one object in one CRM call); returns each one's outcome."""
    out: list[object] = []
    i = 0
    while i < len(effects):
        j = i + 1
        while j < len(effects) and _group(effects[j]) == _group(effects[i]):
            j += 1
        out.extend(_apply_run(ctx, effects[i:j]))
        i = j
    return out


def _apply_run(ctx: PassContext, run: Sequence[Effect]) -> list[object]:
    first = run[0]
    if isinstance(first, Decide):
        decides = [e for e in run if isinstance(e, Decide)]
        return list(
            ctx.store.registry.record_many(
                [(d.submission, d.decision) for d in decides], now=ctx.now
            )
        )
    if isinstance(first, WriteProperties):
        writes = [e for e in run if isinstance(e, WriteProperties)]
        items = [(w.record_id, w.properties) for w in writes]
        crm = ctx.crm(first.side)
        if first.upsert_on is not None:
            return list(crm.upsert(first.object, first.upsert_on, items))
        by_key: dict[str, list[object]] = {}
        for res in crm.update(first.object, items):
            by_key.setdefault(res.key, []).append(res)
        # a record the CRM gave no answer for failed (None means "not carried out")
        return [
            by_key[w.record_id].pop(0)
            if by_key.get(w.record_id)
            else WriteResult(w.record_id, error="no answer from the CRM for this record")
            for w in writes
        ]
    return [_apply_one(ctx, e) for e in run]


def _apply_one(ctx: PassContext, effect: Effect) -> object:
    from connector.state.leads import add_activity

    if isinstance(effect, EndRegistrations):
        ctx.store.registry.end(list(effect.registration_ids), effect.status, ctx.now)
        return True
    if isinstance(effect, EarnCommission):
        return ctx.store.registry.add_commission(effect.row)
    if isinstance(effect, NotCredited):
        return ctx.store.registry.record_uncredited(effect.row)
    if isinstance(effect, QueueEmail):  # its fields are the outbox row's, by name
        row = {f.name: getattr(effect, f.name) for f in fields(effect)}
        return ctx.store.outbox.queue(**row, now=ctx.now)
    if isinstance(effect, Notify):
        return add_activity(ctx.store, effect.activity)
    if isinstance(effect, Keep):
        effect.write()
        return True
    raise TypeError(f"not an effect: {effect!r}")  # pragma: no cover


# ---------------------------------------------------------------------- showing


def _label(done: Done) -> str | None:
    """The summary's ``"section: detail"`` for one effect, or None when there is nothing
    to show (the program's bookkeeping; an effect the store found already done)."""
    e, outcome = done.effect, done.outcome
    if isinstance(e, Decide):
        status, code = _decided(done, e)
        return f"registrations: {status}" + ("" if code is None else f" ({code})")
    if isinstance(e, EndRegistrations):
        return f"registrations: {e.status}"
    if isinstance(e, Keep):
        return None
    if done.applied and not outcome:
        return None  # already there (a commission, an outbox row, a lead activity)
    failed = " failed" if done.applied and getattr(outcome, "ok", True) is False else ""
    if isinstance(e, WriteProperties):
        return {
            "ownership": f"ownership writes: {e.side} {e.object}{failed}",
            "lead": f"lead records at the vendor: {e.object}{failed}",
            "registration status": f"write-backs: registration status{failed}",
            "commission": f"write-backs: commission{failed}",
        }[e.purpose]
    if isinstance(e, EarnCommission):
        return "commissions: earned"
    if isinstance(e, NotCredited):
        return f"commissions: not credited ({e.why})"
    if isinstance(e, QueueEmail):
        return f"e-mails: {e.kind} {e.status}"
    if isinstance(e, Notify):
        return "lead activity: recorded"
    return None  # pragma: no cover


def _decided(done: Done, e: Decide) -> tuple[str, str | None]:
    """A decision's recorded status and its code (None for an acceptance): the claim
    rows arbitrate, so a rejection the store turned into a hold by another partner
    reads ``owned_by_partner``."""
    status = done.outcome if isinstance(done.outcome, str) else e.status
    if status == "accepted":
        return status, None
    code = e.decision.code if status == e.status else "owned_by_partner"
    return status, code or "no code"


def pass_summary(log: Sequence[Done]) -> dict[str, Any]:
    """The program's part of a pass as data (``sync --json``'s ``summary``): the
    registrations decided, by status and code (``{"accepted": 3, "rejected":
    {"domain_owned": 1}}``) and ended; the e-mails put in the outbox by status and
    kind; the commissions earned, with their total per currency, and the won deals
    credited to no one, by why. Counted as :func:`counts` counts (an effect the store
    found already done is not)."""
    registrations: dict[str, Any] = {}
    emails: dict[str, dict[str, int]] = {}
    totals: dict[str, Decimal] = {}
    earned = 0
    not_credited: Counter[str] = Counter()
    for done in log:
        e, outcome = done.effect, done.outcome
        if isinstance(e, Decide):
            status, code = _decided(done, e)
            if code is None:
                registrations[status] = registrations.get(status, 0) + 1
            else:
                by_code = registrations.setdefault(status, {})
                by_code[code] = by_code.get(code, 0) + 1
            continue
        if isinstance(e, EndRegistrations):
            ended = registrations.setdefault("ended", {})
            ended[e.status] = ended.get(e.status, 0) + len(e.registration_ids)
            continue
        if done.applied and not outcome:
            continue  # already there
        if isinstance(e, QueueEmail):
            by_kind = emails.setdefault(e.status, {})
            by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
        elif isinstance(e, EarnCommission):
            earned += 1
            currency = e.row.currency or ""
            totals[currency] = totals.get(currency, Decimal(0)) + Decimal(e.row.commission)
        elif isinstance(e, NotCredited):
            not_credited[e.why] += 1
    return {
        "registrations": registrations,
        "emails": emails,
        "commissions": {
            "earned": earned,
            "total": {c: f"{t:.2f}" for c, t in sorted(totals.items())},
            "not_credited": dict(not_credited),
        },
    }


def counts(log: Sequence[Done]) -> Counter[str]:
    """How many effects of each kind the pass carried out (or, dry, would carry out),
    keyed ``"section: detail"``. An ending counts once per registration."""
    c: Counter[str] = Counter()
    for done in log:
        label = _label(done)
        if label is None:
            continue
        e = done.effect
        c[label] += len(e.registration_ids) if isinstance(e, EndRegistrations) else 1
    return c


SECTIONS = (
    "registrations",
    "e-mails",
    "commissions",
    "ownership writes",
    "lead records at the vendor",
    "write-backs",
    "lead activity",
)


def summary(counted: Counter[str]) -> list[str]:
    """Lines such as ``registrations: 3 accepted, 250 rejected (domain_owned)`` and
    ``e-mails: 2 consent_request queued``, in a fixed order; empty when nothing."""
    sections: dict[str, list[str]] = {}
    for label, n in sorted(counted.items()):
        section, _, detail = label.partition(": ")
        sections.setdefault(section, []).append(f"{n} {detail}")
    order = [*SECTIONS, *sorted(set(sections) - set(SECTIONS))]
    return [f"{t}: {', '.join(sections[t])}" for t in order if t in sections]
