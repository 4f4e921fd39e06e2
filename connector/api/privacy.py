"""The API's data-subject requests (issue 16, item 7, the lead's rights), mixed into
:class:`connector.api.Dealsync`.

The program tells the vendor never to name, in anything sent to a lead, the partner
that registered it — "unless the lead expressly asks". :meth:`PrivacyCommands.source_of`
answers that request: the only place dealsync names the partner to be passed on to a
lead, and every call is audited. :meth:`PrivacyCommands.erase_person` removes the
person from the state and the outbox (:mod:`connector.state.privacy` says exactly
what changes), also audited. dealsync never deletes CRM records: the answer names the
vendor and partner CRM records the admin deals with in the CRMs themselves.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.api.errors import DealsyncError
from connector.api.host import Host
from connector.mail.outbox import DELIVERY_LOCK
from connector.records import utcnow
from connector.state.privacy import Erasure, PrivacyRows, Source, normalised
from connector.state.runs import LockHeld
from connector.state.tables import PrivacyAudit


def default_requester() -> str:
    """Who asked, when ``--requested-by`` is not given: the OS user, else ``cli``."""
    try:
        return getpass.getuser() or "cli"
    except (KeyError, OSError):  # no passwd entry, no login name (a container)
        return "cli"


@dataclass(frozen=True)
class SourceEntry:
    """One registration that gave the vendor the lead's data, as told to the lead."""

    registration_id: int | None
    """None for a contact the sync shared without a registration listing it."""
    kind: str
    partner: str
    partner_name: str
    status: str
    registered_at: datetime
    decided_at: datetime | None
    owned_until: datetime | None
    company: str
    domain: str
    through: str
    """By which record or command the partner registered it."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "registration_id": self.registration_id,
            "kind": self.kind,
            "partner": self.partner,
            "partner_name": self.partner_name,
            "status": self.status,
            "registered_at": _iso(self.registered_at),
            "decided_at": _iso(self.decided_at),
            "owned_until": _iso(self.owned_until),
            "company": self.company,
            "domain": self.domain,
            "through": self.through,
        }


@dataclass(frozen=True)
class SourceAnswer:
    """The answer to "where did you get my data", with the audit row that records it."""

    email: str
    request: PrivacyAudit
    sources: list[SourceEntry]
    reply: str
    """A text for the reply to the lead ("" when dealsync holds nothing of them)."""

    @property
    def found(self) -> bool:
        return bool(self.sources)

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "request": self.request.id,
            "found": self.found,
            "sources": [e.as_dict() for e in self.sources],
            "reply": self.reply,
        }


@dataclass(frozen=True)
class ErasureAnswer:
    """What an erasure changed (or, a dry run, would change)."""

    email: str
    erasure: Erasure
    request: PrivacyAudit | None  # None: a dry run (nothing changed, nothing audited)
    compacted: str = ""
    crm: list[str] = field(default_factory=list)
    """What the admin does in the CRMs, which dealsync does not touch."""

    @property
    def found(self) -> bool:
        return self.erasure.total > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "request": self.request.id if self.request else None,
            "dry_run": self.request is None,
            "found": self.found,
            **self.erasure.as_dict(),
            "compacted": self.compacted,
            "crm": list(self.crm),
        }


def no_record(email: str) -> str:
    return (
        f"no record of {normalised(email)} in dealsync's state "
        "(registrations, their contacts, the e-mail outbox, synced records)"
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment.strftime('%B %Y')}"


class PrivacyCommands(Host):
    """The lead's rights: which partner gave its data, erasure, and their audit."""

    @property
    def privacy(self) -> PrivacyRows:
        return PrivacyRows(self.store)

    def _partner_name(self, partner: str) -> str:
        found = next((p for p in self.project.config.partners if p.id == partner), None)
        return found.name if found is not None else f"{partner} (no longer configured)"

    @staticmethod
    def _through(source: Source) -> str:
        reg = source.registration
        if reg.partner_object == "cli":
            return "`dealsync register lead` (submitted on the partner's behalf)"
        if reg.kind == "lead":
            return (
                f"the partner's CRM {reg.partner_object} record {reg.partner_record_id}, "
                "flagged as a lead"
            )
        return (
            f"the partner's CRM {reg.partner_object} record {reg.partner_record_id}, "
            "registered as a shared deal with the lead as one of its contacts"
        )

    def source_of(
        self, email: str, *, requested_by: str, now: datetime | None = None
    ) -> SourceAnswer:
        """Which partner registered this person, and when: answered and audited (an
        unknown address too: the request was made)."""
        address = _checked(email)
        entries = [
            SourceEntry(
                registration_id=s.registration.id or 0,
                kind=s.registration.kind,
                partner=s.registration.partner,
                partner_name=self._partner_name(s.registration.partner),
                status=s.registration.status,
                registered_at=s.registration.submitted_at,
                decided_at=s.registration.decided_at,
                owned_until=s.registration.owned_until,
                company=s.registration.company_name or s.registration.domain,
                domain=s.registration.domain,
                through=self._through(s),
            )
            for s in self.privacy.sources(address)
        ]
        entries += self._synced_sources(address, {e.partner for e in entries})
        reply = self._reply(entries)
        audit = self.privacy.record_request(
            "source",
            address,
            requested_by=requested_by,
            outcome="answered" if entries else "no_record",
            answer={"sources": [e.as_dict() for e in entries]},
            now=now or utcnow(),
        )
        return SourceAnswer(address, audit, entries, reply)

    def _synced_sources(self, address: str, registered_by: set[str]) -> list[SourceEntry]:
        """Contacts a partner shared with a registered deal that no registration lists
        (added to the deal after its registration was decided): the partner is their
        source too. One entry per partner and record, unless a registration of that
        partner already answers."""
        out: list[SourceEntry] = []
        for link in self.privacy.synced_contacts(address, self._contact_objects()):
            if link.connection in registered_by:
                continue
            out.append(
                SourceEntry(
                    registration_id=None,
                    kind="synced contact",
                    partner=link.connection,
                    partner_name=self._partner_name(link.connection),
                    status=link.status,
                    registered_at=link.created_at,
                    decided_at=None,
                    owned_until=None,
                    company="",
                    domain="",
                    through=(
                        f"the partner's CRM contact record {link.partner_id}, shared as a "
                        "contact of a registered deal"
                    ),
                )
            )
        return out

    def _reply(self, entries: list[SourceEntry]) -> str:
        if not entries:
            return ""
        vendor = self.project.rules.consent.vendor_name or "We"
        lines = [
            "You asked us where we obtained your personal data.",
            "",
        ]
        for e in entries:
            at = f" at {e.company}" if e.company else ""
            lines.append(
                f"{vendor} received your name and e-mail address from {e.partner_name}, a "
                f"partner in our partner program, which registered you as a contact{at} "
                f"on {_day(e.registered_at)}."
            )
        lines += [
            "",
            "You may ask us to erase your personal data at any time by replying to this e-mail.",
        ]
        return "\n".join(lines)

    def erase_person(
        self,
        email: str,
        *,
        requested_by: str,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> ErasureAnswer:
        """Remove the person from the state and the outbox (or, ``dry_run``, say what
        would go), audited; the answer also says what to do in the CRMs."""
        address = _checked(email)
        with self._quiet(dry_run):
            erasure, audit = self.privacy.erase(
                address,
                contact_objects=self._contact_objects(),
                requested_by=requested_by,
                apply=not dry_run,
                now=now or utcnow(),
            )
        compacted = self.privacy.compact() if audit is not None and erasure.total else ""
        return ErasureAnswer(address, erasure, audit, compacted, _crm_steps(erasure))

    @contextmanager
    def _quiet(self, dry_run: bool) -> Iterator[None]:
        """Hold every connection's pass lock and the outbox's delivery lock while an
        erasure runs: a pass holding the person's records in memory would write them
        back into the state after it, a delivery could send the message it cancels."""
        with ExitStack() as held:
            if not dry_run:
                for name in [p.id for p in self.project.config.partners] + [DELIVERY_LOCK]:
                    try:
                        lease = self.store.lease(name)
                    except LockHeld as exc:
                        raise DealsyncError(
                            f"{exc}; nothing was erased: run the erasure again when it is done"
                        ) from None
                    held.callback(lease.release)
            yield

    def privacy_audit(
        self, action: str | None = None, email: str | None = None
    ) -> list[PrivacyAudit]:
        """The audit of source and erasure requests (one address's: by its hash)."""
        return self.privacy.audit_entries(action, _checked(email) if email else None)

    def privacy_audit_rows(
        self, action: str | None = None, email: str | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`privacy_audit` as rows for a listing, each with a one-line summary."""
        return [
            {**row.model_dump(), "summary": audit_summary(row)}
            for row in self.privacy_audit(action, email)
        ]

    def _contact_objects(self) -> list[str]:
        """The mappings whose records are people (their links are the person's)."""
        contacts = self.vendor().naming.contacts
        return [m.name for m in self.project.mappings if m.vendor_object == contacts]


def audit_summary(row: PrivacyAudit) -> str:
    """One line of what a request was answered with."""
    answer = row.answer or {}
    if row.outcome == "no_record":
        return "no record of the address"
    if row.action == "source":
        named = [
            f"{s.get('partner')} (registration #{s.get('registration_id')})"
            if s.get("registration_id")
            else f"{s.get('partner')} ({s.get('kind')})"
            for s in answer.get("sources", [])
        ]
        return "named " + ", ".join(named)
    texts = sum((answer.get("texts_scrubbed") or {}).values())
    return (
        f"{answer.get('pseudonym')}: {answer.get('contacts_deleted', 0)} registration "
        f"contact(s), {answer.get('emails_erased', 0)} e-mail(s) "
        f"({answer.get('emails_cancelled', 0)} cancelled), {answer.get('links_ended', 0)} "
        f"link(s) ended, {texts} text(s) scrubbed"
    )


def _crm_steps(erasure: Erasure) -> list[str]:
    """What the admin does in the CRMs with the person's records dealsync knew of:
    dealsync itself deletes no CRM record."""
    out: list[str] = []
    if erasure.vendor_records:
        out.append(
            "vendor CRM: dealsync does not delete CRM records; delete contact "
            f"{', '.join(erasure.vendor_records)} in the vendor's portal yourself (HubSpot: "
            "open the contact, Actions > Delete, and choose the permanent delete)"
        )
    partners: dict[str, list[str]] = {}
    for partner, record in erasure.partner_records:
        partners.setdefault(partner, []).append(record)
    for partner, ids in sorted(partners.items()):
        out.append(
            f"partner {partner}: its CRM still holds contact {', '.join(ids)}; dealsync no "
            "longer shares it (its link ended): tell the partner the lead asked for erasure"
        )
    return out


def _checked(email: str) -> str:
    address = normalised(email)
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise DealsyncError(f"--email {email!r}: give the lead's e-mail address, e.g. ann@acme.com")
    return address
