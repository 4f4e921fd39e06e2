"""``dealsync demo --partner-crm salesforce`` runs the tour to the end in-process: the
vendor on the HubSpot sandbox, partner acme on a Salesforce sandbox org, its project
left behind naming the Salesforce mapping, its state holding what the tour did."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from dotenv import dotenv_values

from connector.cli import cli
from connector.config import load_project


def test_the_salesforce_tour_runs_to_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(os.environ)
    try:
        result = CliRunner().invoke(
            cli, ["demo", "--partner-crm", "salesforce", "--dir", str(tmp_path)]
        )
    finally:  # the demo's .env must not leak into later tests of this process
        for key in dotenv_values(tmp_path / ".env"):
            if key not in before:
                os.environ.pop(key, None)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Salesforce sandbox at https://127.0.0.1:" in out
    assert "registration of wayne.com: rejected (already_customer)" in out
    assert "StageName 'Closed Won', dealsync_commission__c 9600" in out
    assert "consent_request to bill@initech.de [sent, de]" in out
    assert "data_notice to alice@umbrella.fr [sent, fr]" in out
    assert "writes in this pass: 0; new e-mails: 0" in out
    assert "acme (Salesforce): linked sf_companies 3, sf_contacts 3, sf_deals 3" in out
    # the partner's org is older than its integration (as a real one is): every delete
    # since the first cursor can be listed, so no pass warns of a recycle-bin scan
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warned if "getDeleted" in w], warned

    # the project it leaves: the partner on Salesforce with its own mapping, the CA kept
    project = load_project(tmp_path / "dealsync.yaml", env={}, check_env=False)
    acme = project.config.partner("acme")
    assert acme.adapter == "salesforce"
    assert [m.partner_object for m in project.mappings_for("acme")] == [
        "Account",
        "Contact",
        "Opportunity",
    ]
    assert (tmp_path / "salesforce-sandbox" / "sandbox-ca.pem").is_file()


def test_the_demo_refuses_an_unknown_partner_crm(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--partner-crm", "pipedrive", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "'pipedrive' is not one of 'hubspot', 'salesforce'" in result.output
