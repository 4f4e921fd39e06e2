"""A Salesforce partner in ``dealsync.yaml``: its keys loaded and checked with their
lines, its adapter built through the API from the environment's secrets, and
``dealsync setup`` creating dealsync's fields in the org the Salesforce way (``__c``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.adapters.salesforce import SalesforceAdapter
from connector.api import Dealsync, DealsyncError
from connector.config import check_project, load_project
from connector.testing.salesforce import CLIENT_ID, CLIENT_SECRET, SalesforceBackdoor
from connector.testing.world import project_yaml, write_project
from tests.salesforce.conftest import MakeSandbox

ENV = {
    "DEALSYNC_PARTNER_ACME_SF_CLIENT_ID": CLIENT_ID,
    "DEALSYNC_PARTNER_ACME_SF_CLIENT_SECRET": CLIENT_SECRET,
}


def _config(tmp_path: Path, url: str, ca_file: str, extra: str = "") -> Path:
    keys = (
        "    adapter: salesforce\n"
        f"    login_url: {url}\n"
        "    client_id_env: DEALSYNC_PARTNER_ACME_SF_CLIENT_ID\n"
        "    client_secret_env: DEALSYNC_PARTNER_ACME_SF_CLIENT_SECRET\n"
        f"    ca_bundle: {ca_file}\n"
        '    api_version: "61.0"\n'
        f"    api_reserve_percent: 25\n{extra}"
    )
    text = project_yaml().replace("    adapter: local\n    path: partner-acme.db\n", keys)
    assert "adapter: salesforce" in text
    return write_project(tmp_path, text)


def test_a_salesforce_partner_is_loaded_built_and_set_up(
    tmp_path: Path, make_sandbox: MakeSandbox
) -> None:
    sf = make_sandbox()
    config = _config(tmp_path, sf.url, sf.ca_file)
    assert [p for p in check_project(config, env=ENV) if p.severity == "error"] == []
    ds = Dealsync(load_project(config, env=ENV), env=ENV)
    try:
        crm = ds.partner_crm("acme")
        assert isinstance(crm, SalesforceAdapter)
        assert crm.governor.reserve_percent == 25 and crm.portal == "partner acme"
        installed = ds.setup()["acme"]
        # the markers under the adapter's names, the program's fields named its way
        assert "deals.dealsync_source_id__c" in installed
        assert any(i.startswith("Opportunity.dealsync_registration_status") for i in installed)
        fields = SalesforceBackdoor(sf.org("initech")).property_names("deals")
        assert {"dealsync_source_id__c", "dealsync_registration_status__c"} <= fields
        assert ds.setup()["acme"] == []  # set up already
    finally:
        ds.close()


def test_missing_secrets_and_typos_are_reported_at_their_lines(tmp_path: Path) -> None:
    config = _config(
        tmp_path, "https://acme.my.salesforce.com", "ca.pem", "    api_reserve_percnt: 10\n"
    )
    problems = check_project(config, env={"DEALSYNC_PARTNER_ACME_SF_CLIENT_ID": "x"})
    found = {(p.path, p.message) for p in problems}
    assert ("partners[0].api_reserve_percnt", "unknown key 'api_reserve_percnt'") in found
    config = _config(tmp_path, "https://acme.my.salesforce.com", "ca.pem")
    problems = check_project(config, env={"DEALSYNC_PARTNER_ACME_SF_CLIENT_ID": "x"})
    (missing,) = [p for p in problems if p.severity == "error"]
    assert missing.path == "partners[0].client_secret_env" and missing.line is not None
    assert missing.message == (
        "missing env var DEALSYNC_PARTNER_ACME_SF_CLIENT_SECRET for partners[0].client_secret_env"
    )


def test_a_ca_bundle_that_is_not_there_is_named_when_the_adapter_is_built(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "https://acme.my.salesforce.com", "certs/sandbox-ca.pem")
    ds = Dealsync(load_project(config, env=ENV), env=ENV)
    try:
        with pytest.raises(DealsyncError) as unusable:
            ds.partner_crm("acme")
        assert "ca_bundle 'certs/sandbox-ca.pem' is not a file" in str(unusable.value)
    finally:
        ds.close()
