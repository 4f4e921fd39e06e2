"""``sync --dry-run`` shows the program's effects, and the ``sync`` summary counts them.

Before, a dry run said "plan: nothing to do" while registrations were decided, and a
real pass's summary never mentioned the decisions, e-mails, commissions or ownership
writes it made: the hooks wrote directly and were skipped on a dry run. Now the hooks
hand their effects to the engine, which carries them out or, dry, only lists them.

The world: acme's deal at globex.com was accepted a month ago, but the vendor refused
the ownership write to its own globex.com company then (it is still pending); its vendor deal has since been won, and
its contact (country unknown) is now due a data notice. Since then acme registered one
deal at a personal mailbox domain (rejected) and one at initech.com (accepted).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from program_support import NOW, Program

from connector.cli.sync import print_result
from connector.records import Record

LATER = NOW + timedelta(days=31)  # past the 30-day window of the data notice

# the program's state and the CRMs' data; a run's own log is the only write allowed
RUN_TABLES = {"run", "run_record", "sync_lock"}


def _dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: sorted(map(tuple, con.execute(f'SELECT * FROM "{t}"')), key=repr)
            for t in sorted(tables)
            if t not in RUN_TABLES
        }


def everything(p: Program) -> dict[str, object]:
    return {db.name: _dump(db) for db in sorted(p.root.glob("*.db"))}


def _win(p: Program, partner_deal: Record) -> None:
    vdeal = p.counterpart("acme", "deals", partner_deal.id)
    assert vdeal is not None
    p.vendor.edit("deals", vdeal.id, {"dealstage": "closedwon"})


def world(p: Program) -> None:
    contact = {"firstname": "Ann", "lastname": "Lee", "email": "ann@globex.com"}
    # no country on the contact nor on its company: unknown, the EU rule (issue 16)
    globex = p.seed_deal(domain="globex.com", contacts=[contact], country=None)
    # the vendor's own company of the domain: the ownership is an update of it (a
    # company the sync creates carries its ownership in the create)
    p.vendor_customer("globex.com")
    p.vendor.fail = lambda op, obj, key: (
        "503 vendor busy" if (op, obj) == ("update", "companies") else None
    )
    try:
        first = p.sync()
    finally:
        p.vendor.fail = None
    done = first.effect_counts()
    assert done["registrations: accepted"] == 1
    assert done["ownership writes: vendor companies failed"] == 1
    _win(p, globex.deal)
    p.seed_deal(domain="gmail.com", company="Gmail")
    p.seed_deal(domain="initech.com", company="Initech")


def test_dry_run_lists_decisions_emails_commissions_and_ownership_writes(
    program: Program,
) -> None:
    world(program)
    before = everything(program)

    dry = program.sync(now=LATER, dry_run=True)

    would = dry.effect_counts()
    assert would["registrations: accepted"] == 1
    assert would["registrations: rejected (personal_domain)"] == 1
    assert would["e-mails: data_notice queued"] == 1
    assert would["commissions: earned"] == 1
    assert would["ownership writes: vendor companies"] == 1  # globex's, still pending
    assert dry.as_dict()["program"] == dict(would)
    # nothing was written, queued, earned or sent: not in the CRMs, not in the state
    assert everything(program) == before


def test_the_real_pass_counts_what_the_dry_run_listed(program: Program) -> None:
    world(program)
    program.sync(now=LATER, dry_run=True)

    real = program.sync(now=LATER)

    done = real.effect_counts()
    assert done["registrations: accepted"] == 1
    assert done["registrations: rejected (personal_domain)"] == 1
    assert done["e-mails: data_notice queued"] == 1
    assert done["commissions: earned"] == 1
    assert done["write-backs: commission"] == 1
    # globex's pending one; initech's (accepted in this pass) rode on the create of
    # its vendor company
    assert done["ownership writes: vendor companies"] == 1
    initech = program.vendor_companies("initech.com")
    assert [c.get("dealsync_owner_partner") for c in initech] == ["acme"]
    [commission] = program.registry.commissions("acme")
    assert commission.written_back
    run = program.app.store.run(real.run_id or 0)
    assert run is not None and run.counts["program"] == dict(done)
    # a rerun has nothing left to do for the program
    assert program.sync(now=LATER + timedelta(minutes=5)).effect_counts() == {}


def test_sync_prints_the_programs_effects(
    program: Program, capsys: pytest.CaptureFixture[str]
) -> None:
    """What ``dealsync sync [--dry-run]`` prints for these passes (its printer is fed the
    API's results: the CLI's own CRMs would run on the wall clock, not the test's)."""
    world(program)

    print_result(program.sync(now=LATER, dry_run=True), as_json=False)
    dry = capsys.readouterr().out

    assert "program (would): registrations: 1 accepted, 1 rejected (personal_domain)" in dry
    assert "e-mails: 1 data_notice queued" in dry
    assert "commissions: 1 earned" in dry
    assert "ownership writes: 1 vendor companies" in dry
    assert "ann@globex.com" not in dry  # recipients are never printed

    print_result(program.sync(now=LATER), as_json=False)
    real = capsys.readouterr().out

    assert "program: registrations: 1 accepted, 1 rejected (personal_domain)" in real
    assert "commissions: 1 earned" in real
    assert "ownership writes: 1 vendor companies" in real
    assert "write-backs: 1 commission, 2 registration status" in real
