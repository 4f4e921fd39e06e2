"""The lead's rights (issue 16, item 7), through the CLI on HubSpot sandbox portals.

A partner (acme, its own sandbox portal) registers a deal whose contact is a lead in
Germany, and a second lead with ``dealsync register lead``; a sync shares the deal and
queues the consent requests. Then:

* ``privacy source --email`` names the registering partner, when and through what,
  with a text for the reply to the lead — and the request is in the audit (the
  address hashed, never in clear); an unknown address is answered "no record", audited;
* ``privacy erase --email`` leaves no trace of the lead's address or name in any
  table of the state (nor in the SQLite file's bytes), cancels its unsent e-mail,
  keeps the commission its deal earned, ends the contact's link so a later pass
  re-imports nothing, says what to do in the CRMs, and is audited.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.demo import PortalUser
from connector.sandbox import SandboxServer
from connector.testing.cli import ProjectCli
from connector.testing.world import HubSpotPortals, project_yaml, write_project

ENV = {"LR_VENDOR_TOKEN": "lr-vendor-token", "LR_ACME_TOKEN": "lr-acme-token"}
TOKEN_ENV = {"vendor": "LR_VENDOR_TOKEN", "acme": "LR_ACME_TOKEN"}

# the deal's lead and the by-command lead: names found nowhere else in the project
ZELDA = {"firstname": "Zelda", "lastname": "Quirinal", "email": "zelda@ostara-fittings.de"}
ILSE = ("Ilse", "Vantongeren", "ilse@hollowmere-optics.at")
ZELDA_TRACES = ("zelda@ostara-fittings.de", "Zelda", "Quirinal")


CLI = ProjectCli(ENV, TOKEN_ENV)
invoke, ok = CLI.invoke, CLI.ok


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    with CLI.sandbox() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, srv: SandboxServer) -> Path:
    return CLI.project(tmp_path, srv, ("acme",))


class Registered:
    """The partner's portal after it registered Zelda's deal, and the vendor's."""

    def __init__(self, srv: SandboxServer) -> None:
        self.partner = PortalUser(srv.url, ENV["LR_ACME_TOKEN"])
        self.vendor = PortalUser(srv.url, ENV["LR_VENDOR_TOKEN"])
        self.company = self.partner.create(
            "companies", {"name": "Ostara Fittings", "domain": "ostara-fittings.de"}
        )
        self.contact = self.partner.create("contacts", {**ZELDA, "country": "DE"})
        self.deal = self.partner.create(
            "deals",
            {
                "dealname": "Ostara rollout",
                "amount": "30000",
                "dealstage": "qualifiedtobuy",
                "pipeline": "default",
                "deal_currency_code": "EUR",
                "dealsync_register": "true",
            },
        )
        self.partner.associate("deals", self.deal, "companies", self.company)
        self.partner.associate("deals", self.deal, "contacts", self.contact)


@pytest.fixture
def registered(config: Path, srv: SandboxServer) -> Registered:
    """Zelda's deal registered in the partner's portal, Ilse registered by command, and
    a sync that shared the deal and queued both consent requests (DE, AT: at once)."""
    world = Registered(srv)
    first, last, email = ILSE
    ok(
        config,
        *("register", "lead", "--partner", "acme", "--domain", "hollowmere-optics.at"),
        *("--first", first, "--last", last, "--email", email),
        *("--company", "Hollowmere Optics", "--country", "AT"),
    )
    ok(config, "sync", "--connection", "acme")
    queued = json.loads(ok(config, "outbox", "--format", "json").output)
    assert {(m["kind"], m["recipient"], m["status"]) for m in queued} == {
        ("consent_request", ZELDA["email"], "queued"),
        ("consent_request", email, "queued"),
    }
    return world


def state_rows(config: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the project's state store (SQLite or PostgreSQL)."""
    from sqlalchemy import MetaData, create_engine, select

    from connector.api import Dealsync
    from connector.config import load_project

    url = Dealsync(load_project(config, env=ENV), env=ENV).state_url
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                name: [tuple(r) for r in conn.execute(select(table))]
                for name, table in meta.tables.items()
            }
    finally:
        engine.dispose()


def traces(config: Path, needles: tuple[str, ...]) -> dict[str, list[str]]:
    """Table → the needles found (case-insensitive) in any of its values."""
    found: dict[str, list[str]] = {}
    for table, rows in state_rows(config).items():
        text = "\n".join(str(v) for row in rows for v in row).casefold()
        hits = [n for n in needles if n.casefold() in text]
        if hits:
            found[table] = hits
    return found


def file_traces(config: Path, needles: tuple[str, ...]) -> list[str]:
    """The needles found in the bytes of the state's SQLite files (deleted rows too)."""
    data = b"".join(p.read_bytes() for p in config.parent.glob("state.db*"))
    return [n for n in needles if n.casefold().encode() in data.lower()]


def audit(config: Path, *args: str) -> list[dict[str, object]]:
    return list(json.loads(ok(config, "privacy", "audit", "--format", "json", *args).output))


def test_source_names_the_partner_when_and_through_what_and_is_audited(
    config: Path, registered: Registered
) -> None:
    answer = ok(config, "privacy", "source", "--email", "Zelda@Ostara-Fittings.de")
    out = answer.output
    assert "partner acme (Acme Agency)" in out
    assert "(deal, accepted)" in out
    assert f"the partner's CRM deals record {registered.deal}" in out
    assert "company Ostara Fittings (ostara-fittings.de)" in out
    assert "registered at 20" in out
    reply = out[out.index("reply to the lead:") :]
    assert "from Acme Agency, a partner in our partner program" in reply
    assert "at Ostara Fittings on " in reply

    as_json = json.loads(
        ok(
            config, "privacy", "source", "--email", ILSE[2], "--json", "--requested-by", "dpo"
        ).output
    )
    [source] = as_json["sources"]
    assert (source["partner"], source["partner_name"], source["kind"]) == (
        "acme",
        "Acme Agency",
        "lead",
    )
    assert source["through"].startswith("`dealsync register lead`")
    assert source["status"] == "accepted" and source["registered_at"]

    entries = audit(config, "--action", "source")
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("source", "answered"),
        ("source", "answered"),
    ]
    assert entries[1]["requested_by"] == "dpo"
    assert entries[0]["requested_by"]  # the OS user, or "cli"
    assert "named acme (registration #" in str(entries[0]["summary"])
    # the address is hashed: not in the audit, but the audit finds it by the address
    assert "zelda" not in json.dumps(entries).casefold()
    assert "ilse@" not in json.dumps(entries).casefold()
    assert [e["id"] for e in audit(config, "--email", ZELDA["email"])] == [entries[0]["id"]]


def test_an_unknown_address_is_answered_no_record_and_still_audited(
    config: Path, registered: Registered
) -> None:
    out = ok(config, "privacy", "source", "--email", "nobody@nowhere-known.example").output
    assert "no record of nobody@nowhere-known.example in dealsync's state" in out
    assert "Acme" not in out and "acme" not in out
    erase = ok(config, "privacy", "erase", "--email", "nobody@nowhere-known.example", "--yes")
    assert "no record of nobody@nowhere-known.example in dealsync's state" in erase.output
    assert "nothing to erase" in erase.output
    entries = audit(config, "--email", "nobody@nowhere-known.example")
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("source", "no_record"),
        ("erase", "no_record"),
    ]
    bad = invoke(config, "privacy", "source", "--email", "not-an-address")
    assert bad.exit_code == 3
    assert "--email 'not-an-address': give the lead's e-mail address" in bad.output


def test_erase_leaves_no_trace_keeps_the_commission_and_a_later_pass_reimports_nothing(
    config: Path, registered: Registered
) -> None:
    # the deal is won at the vendor: the partner earns its commission
    vendor_deal = registered.vendor.find_by(
        "deals", "dealsync_source_id", f"acme:{registered.deal}"
    )
    registered.vendor.edit("deals", vendor_deal, {"dealstage": "closedwon"})
    ok(config, "sync", "--connection", "acme")
    [commission] = json.loads(ok(config, "commissions", "--format", "json").output)
    assert commission["vendor_deal_id"] == vendor_deal

    # before: the lead is in the registrations, the outbox and the synced contact
    before = traces(config, ZELDA_TRACES)
    assert {"registration_contact", "outbox", "link"} <= set(before), before
    assert file_traces(config, ZELDA_TRACES) == list(ZELDA_TRACES)

    plan = ok(config, "privacy", "erase", "--email", ZELDA["email"], "--dry-run")
    assert "would erase zelda@ostara-fittings.de from dealsync's state" in plan.output
    assert "1 contact link(s) ended" in plan.output
    assert traces(config, ZELDA_TRACES) == before  # a dry run changes nothing
    assert audit(config, "--action", "erase") == []  # ... and is no request

    refused = invoke(config, "privacy", "erase", "--email", ZELDA["email"])  # no --yes, no "y"
    assert refused.exit_code != 0
    assert traces(config, ZELDA_TRACES) == before

    erased = ok(
        config, "privacy", "erase", "--email", ZELDA["email"], "--yes", "--requested-by", "dpo"
    )
    out = erased.output
    assert "erased zelda@ostara-fittings.de from dealsync's state" in out
    assert "request #" in out and "audited; the lead is erased-" in out
    vendor_contact = registered.vendor.find_by("contacts", "email", ZELDA["email"])
    assert (
        f"to do: vendor CRM: dealsync does not delete CRM records; delete contact {vendor_contact}"
        in out
    )
    assert f"to do: partner acme: its CRM still holds contact {registered.contact}" in out

    # no trace of the lead in any table, nor in the file's bytes
    assert traces(config, ZELDA_TRACES) == {}
    assert file_traces(config, ZELDA_TRACES) == []
    # ... while the other lead, the registration and the commission stay
    assert "registration_contact" in traces(config, (ILSE[2],))
    regs = json.loads(ok(config, "registrations", "--format", "json").output)
    assert {(r["kind"], r["domain"], r["status"]) for r in regs} == {
        ("deal", "ostara-fittings.de", "accepted"),
        ("lead", "hollowmere-optics.at", "accepted"),
    }
    assert json.loads(ok(config, "commissions", "--format", "json").output) == [commission]
    # the unsent consent request is cancelled, saying why; its row stays
    mails = {
        m["kind"] + ":" + m["status"]: m
        for m in json.loads(ok(config, "outbox", "--format", "json").output)
    }
    cancelled = mails["consent_request:cancelled"]
    assert cancelled["recipient"].startswith("erased-")
    assert "the lead's data" in cancelled["detail"] and "it was queued" in cancelled["detail"]

    [entry] = audit(config, "--action", "erase")
    assert (entry["outcome"], entry["requested_by"]) == ("erased", "dpo")
    assert "1 registration contact(s), 1 e-mail(s) (1 cancelled), 1 link(s) ended" in str(
        entry["summary"]
    )
    assert audit(config, "--email", ZELDA["email"]) == [entry]

    # asked again: dealsync holds nothing of her any more
    again = ok(config, "privacy", "source", "--email", ZELDA["email"])
    assert "no record of zelda@ostara-fittings.de" in again.output

    # the partner edits her contact and a pass runs: nothing of her comes back into
    # the state, the vendor's contact is not written, no e-mail is queued for her
    registered.partner.edit("contacts", registered.contact, {"lastname": "Quirinal-Vance"})
    ok(config, "sync", "--connection", "acme")
    assert traces(config, (*ZELDA_TRACES, "Quirinal-Vance")) == {}
    assert registered.vendor.get("contacts", vendor_contact, "lastname")["lastname"] == "Quirinal"
    statuses = [m["status"] for m in json.loads(ok(config, "outbox", "--format", "json").output)]
    assert sorted(statuses) == ["cancelled", "queued"]  # hers cancelled; Ilse's still queued


@pytest.mark.parametrize("state_backend", ["postgres"])
def test_erase_on_postgresql_leaves_no_value_behind(
    tmp_path: Path, srv: SandboxServer, state_url_factory: Callable[[str], str]
) -> None:
    """The same erasure on a PostgreSQL state store (its queries, JSON as text)."""
    hubspot = HubSpotPortals(srv.url, TOKEN_ENV)
    config = write_project(
        tmp_path, project_yaml(("acme",), state_url=state_url_factory("lr"), hubspot=hubspot)
    )
    ok(config, "setup")
    Registered(srv)
    ok(config, "sync", "--connection", "acme")
    assert {"registration_contact", "outbox", "link"} <= set(traces(config, ZELDA_TRACES))
    source = ok(config, "privacy", "source", "--email", ZELDA["email"])
    assert "partner acme (Acme Agency)" in source.output
    erased = ok(config, "privacy", "erase", "--email", ZELDA["email"], "--yes")
    assert "postgresql: deleted row versions remain until VACUUM" in erased.output
    assert traces(config, ZELDA_TRACES) == {}
    assert [e["outcome"] for e in audit(config)] == ["answered", "erased"]


def test_erase_waits_for_no_pass_a_running_pass_refuses_it_and_nothing_changes(
    config: Path, registered: Registered
) -> None:
    from connector.state import StateStore

    before = traces(config, ZELDA_TRACES)
    store = StateStore(f"sqlite:///{config.parent / 'state.db'}")
    lease = store.lease("acme")  # a pass of acme is running
    try:
        refused = invoke(config, "privacy", "erase", "--email", ZELDA["email"], "--yes")
    finally:
        lease.release()
        store.close()
    assert refused.exit_code == 3, refused.output
    assert "connection 'acme' is being synced by" in refused.output
    assert "nothing was erased: run the erasure again when it is done" in refused.output
    assert traces(config, ZELDA_TRACES) == before
    assert audit(config, "--action", "erase") == []
    done = ok(config, "privacy", "erase", "--email", ZELDA["email"], "--yes")
    assert "erased zelda@ostara-fittings.de from dealsync's state" in done.output
    assert traces(config, ZELDA_TRACES) == {}


def test_a_contact_added_to_the_shared_deal_later_is_sourced_and_erased_too(
    config: Path, registered: Registered
) -> None:
    # after the registration was decided, the partner puts another person on the deal
    yorick = registered.partner.create(
        "contacts",
        {"firstname": "Yorick", "lastname": "Penhallow", "email": "yorick@ostara-fittings.de"},
    )
    registered.partner.associate("deals", registered.deal, "contacts", yorick)
    registered.partner.edit("deals", registered.deal, {"dealname": "Ostara rollout, phase 2"})
    ok(config, "sync", "--connection", "acme")
    assert registered.vendor.find_by("contacts", "email", "yorick@ostara-fittings.de")
    assert "registration_contact" not in traces(config, ("yorick@",))  # no registration lists him

    answer = json.loads(
        ok(config, "privacy", "source", "--email", "yorick@ostara-fittings.de", "--json").output
    )
    [source] = answer["sources"]
    assert (source["partner"], source["partner_name"], source["kind"]) == (
        "acme",
        "Acme Agency",
        "synced contact",
    )
    assert source["through"].startswith(f"the partner's CRM contact record {yorick}")
    assert "from Acme Agency, a partner in our partner program" in answer["reply"]

    erased = ok(config, "privacy", "erase", "--email", "yorick@ostara-fittings.de", "--yes")
    assert "1 contact link(s) ended" in erased.output
    assert f"to do: partner acme: its CRM still holds contact {yorick}" in erased.output
    assert traces(config, ("yorick@ostara-fittings.de", "Yorick", "Penhallow")) == {}
    assert "link" in traces(config, ZELDA_TRACES)  # Zelda, not erased, is still synced


def _manual_lastname(mapping: str) -> str:
    """The contacts' last name settled by hand: a conflict row holds both values."""
    old = "      - partner: lastname\n        vendor: lastname\n        direction: both\n"
    return mapping.replace(old, old + "        conflict: manual\n", 1)


def test_an_open_conflict_on_the_leads_contact_loses_its_values_and_is_resolved(
    tmp_path: Path, srv: SandboxServer
) -> None:
    hubspot = HubSpotPortals(srv.url, TOKEN_ENV)
    config = write_project(
        tmp_path, project_yaml(("acme",), hubspot=hubspot), mapping_edit=_manual_lastname
    )
    ok(config, "setup")
    world = Registered(srv)
    ok(config, "sync", "--connection", "acme")
    vendor_contact = world.vendor.find_by("contacts", "email", ZELDA["email"])
    world.partner.edit("contacts", world.contact, {"lastname": "Quirinal-Ash"})
    world.vendor.edit("contacts", vendor_contact, {"lastname": "Quirinal-Birch"})
    synced = invoke(config, "sync", "--connection", "acme")
    assert synced.exit_code == 1, synced.output  # a conflict left open
    assert "conflict" in traces(config, ("Quirinal-Ash", "Quirinal-Birch"))

    ok(config, "privacy", "erase", "--email", ZELDA["email"], "--yes")
    assert traces(config, (*ZELDA_TRACES, "Quirinal-Ash", "Quirinal-Birch")) == {}
    with sqlite3.connect(config.parent / "state.db") as db:
        [(status, resolution)] = db.execute("SELECT status, resolution FROM conflict").fetchall()
    assert status == "resolved" and resolution.startswith("erased (erased-")
    assert "no open conflicts" in ok(config, "conflicts").output


def test_a_lead_registered_by_command_and_already_mailed_is_erased_and_pseudonymised(
    config: Path, registered: Registered, tmp_path: Path
) -> None:
    first, last, email = ILSE
    sink = tmp_path / "sent-mail"
    ok(config, "outbox", "send", env={"DEALSYNC_MAIL_SINK": str(sink)})
    sent = {m["recipient"]: m for m in json.loads(ok(config, "outbox", "--format", "json").output)}
    assert sent[email]["status"] == "sent"
    [before] = [
        r
        for r in json.loads(ok(config, "registrations", "--format", "json").output)
        if r["kind"] == "lead"
    ]
    assert before["partner_record_id"] == f"cli:{email}"

    erased = ok(config, "privacy", "erase", "--email", email, "--yes")
    assert "1 record id(s) pseudonymised" in erased.output
    assert (
        "1 e-mail(s) to the lead lose address and text (0 not sent yet: cancelled)" in erased.output
    )
    request = audit(config, "--action", "erase")[0]["id"]

    assert traces(config, (email, first, last)) == {}
    assert file_traces(config, (email, first, last)) == []
    [after] = [
        r
        for r in json.loads(ok(config, "registrations", "--format", "json").output)
        if r["kind"] == "lead"
    ]
    assert after["partner_record_id"] == f"cli:erased-{request}"
    assert (after["status"], after["domain"], after["owned_until"]) == (
        "accepted",
        "hollowmere-optics.at",
        before["owned_until"],
    )  # the partner still owns the domain
    mails = json.loads(ok(config, "outbox", "--format", "json").output)
    [was_hers] = [m for m in mails if m["recipient"] == f"erased-{request}"]
    assert was_hers["status"] == "sent" and was_hers["sent_at"]  # the record that it was sent
    assert was_hers["subject"] == "" and "the lead's data" in was_hers["detail"]
    # Zelda, not erased, keeps her e-mail (sent too)
    assert {m["recipient"]: m["status"] for m in mails}[ZELDA["email"]] == "sent"
