"""The pass summary tells the whole pass (issue 19, item 3): the registrations decided
(accepted, rejected with the code), the e-mails queued, held and sent after the pass,
the commissions earned with their total, and the conflicts the pass opened — in
``sync --json``'s ``summary`` and in the text the operator reads.

Partner acme registers a deal on initech.de (contact in Germany: a consent request is
due at once, and the file sink sends it) and one on gmail.com (a free-mail domain:
rejected). Then the vendor wins Initech while both sides rewrite its description (a
``manual`` field): the second pass earns the commission and opens a conflict.
"""

from __future__ import annotations

import json
from pathlib import Path

from connector.adapters.local import LocalCRM
from connector.testing.world import FileCRMWorld, ann, project_yaml, seed_deal, write_project


def test_the_sync_summary_tells_decisions_emails_commissions_and_conflicts(
    tmp_path: Path,
) -> None:
    world = FileCRMWorld.open(write_project(tmp_path, project_yaml()))
    env = {"DEALSYNC_MAIL_SINK": str(tmp_path / "mail")}
    partner = LocalCRM(tmp_path / "partner-acme.db")
    initech = seed_deal(
        partner,
        company="Initech",
        domain="initech.de",
        country="DE",
        contacts=[ann("initech.de", "Initech", country="DE")],
        dealname="Initech rollout",
        amount="10000",
        currency="EUR",
    )
    seed_deal(partner, company="Solo", domain="gmail.com", dealname="Solo deal")

    first = world.cli("sync", "--json", env=env)
    assert first.exit_code == 0, first.output
    [result] = json.loads(first.stdout)
    summary = result["summary"]
    assert summary["registrations"] == {"accepted": 1, "rejected": {"invalid_data": 1}}
    assert summary["emails"] == {"queued": {"consent_request": 1}, "sent": 1, "send_failed": 0}
    assert summary["commissions"] == {"earned": 0, "total": {}, "not_credited": {}}
    assert summary["conflicts"] == {"opened": 0, "open": 0}
    assert summary["records"]["failed"] == 0 and summary["records"]["written"] > 0
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1  # really sent

    vendor = LocalCRM(tmp_path / "vendor.db")
    [won] = [d for d in vendor.all("deals") if d.get("dealsync_source_id")]
    vendor.edit("deals", won.id, {"dealstage": "closedwon", "description": "vendor text"})
    partner.edit("deals", initech.deal.id, {"description": "partner text"})

    second = world.cli("sync", env=env)
    assert second.exit_code == 1, second.output  # a conflict left open
    text = second.output
    assert "program: commissions: 1 earned" in text
    assert "  commissions earned: 2000.00 EUR (1)\n" in text  # the shipped 20 %
    assert "  conflicts opened: 1\n" in text
    assert "e-mails sent after the pass" not in text  # nothing was due

    third = world.cli("sync", "--json", env=env)
    [result] = json.loads(third.stdout)
    # the conflict is still open, not opened again; nothing earned twice
    assert result["summary"]["conflicts"] == {"opened": 0, "open": 1}
    assert result["summary"]["commissions"]["earned"] == 0


def test_the_first_passes_text_names_the_rejection_code_and_the_sent_email(
    tmp_path: Path,
) -> None:
    world = FileCRMWorld.open(write_project(tmp_path, project_yaml()))
    env = {"DEALSYNC_MAIL_SINK": str(tmp_path / "mail")}
    partner = LocalCRM(tmp_path / "partner-acme.db")
    seed_deal(
        partner,
        company="Initech",
        domain="initech.de",
        country="DE",
        contacts=[ann("initech.de", "Initech", country="DE")],
    )
    seed_deal(partner, company="Solo", domain="gmail.com", dealname="Solo deal")
    out = world.cli("sync", env=env)
    assert out.exit_code == 0, out.output
    assert "program: registrations: 1 accepted, 1 rejected (invalid_data)" in out.output
    assert "e-mails: 1 consent_request queued" in out.output
    assert "  e-mails sent after the pass: 1\n" in out.output
