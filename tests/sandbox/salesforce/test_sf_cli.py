"""``dealsync sandbox --salesforce``: it serves the orgs given, prints the URL, the CA
file and how to point a partner at it, saves its data on exit, reuses its CA, and
refuses bad options by name; without --salesforce the HubSpot sandbox is unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from simple_salesforce import Salesforce

from connector.cli import cli
from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox
from connector.sandbox.salesforce.server import CASession

ROOT = Path(__file__).resolve().parents[3]


def test_cli_serves_prints_how_to_connect_and_saves_on_exit(tmp_path: Path) -> None:
    data, certs = tmp_path / "sf.json", tmp_path / "certs"
    code = (
        "import sys\n"
        "from connector.cli import main\n"
        "sys.argv = ['dealsync', 'sandbox', '--salesforce', '--org', 'acme:cid:csecret',"
        f" '--port', '0', '--data', {str(data)!r}, '--cert-dir', {str(certs)!r}]\n"
        "main()\n"
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
        url = lines[0].split("listening on ")[1].split()[0]
        ca_file = lines[1].split("CA certificate: ")[1].strip()
        assert url.startswith("https://127.0.0.1:") and ca_file == str(certs / "sandbox-ca.pem")
        assert any("REQUESTS_CA_BUNDLE" in line for line in lines)
        assert any("'cid'" in line and "'acme'" in line for line in lines)
        # a client that trusts the printed CA logs in and writes
        session = CASession(ca_file)
        token = session.post(
            f"{url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "cid",
                "client_secret": "csecret",
            },
            timeout=30,
        ).json()
        assert token["instance_url"] == url
        sf = Salesforce(instance_url=url, session_id=token["access_token"], session=session)
        assert sf.Account.create({"Name": "From the CLI"})["success"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    saved = json.loads(data.read_text())
    acme = next(o for o in saved["orgs"] if o["name"] == "acme")
    assert [r["Name"] for r in acme["records"]["Account"]] == ["From the CLI"]


def test_data_file_round_trip_keeps_records_custom_fields_and_recycle_bin(
    tmp_path: Path,
) -> None:
    data = str(tmp_path / "sf.json")
    spec = OrgSpec("acme", "cid", "csecret")
    with SalesforceSandbox([spec], data_file=data) as sb:
        org = sb.org("acme")
        org.add_custom_field("Account.erp_key__c", {"type": "Text", "externalId": True})
        keep = org.seed("Account", {"Name": "Keep", "erp_key__c": "E1"})
        gone = org.seed("Account", {"Name": "Gone"})
        org.remove("Account", gone)
    with SalesforceSandbox([spec], data_file=data) as sb:
        org = sb.org("acme")
        assert org.record("Account", keep)["erp_key__c"] == "E1"  # type: ignore[index]
        assert org.record("Account", gone)["IsDeleted"] is True  # type: ignore[index]
        assert org.sobject("Account").field("erp_key__c") is not None
        new = org.seed("Account", {"Name": "After restart"})
        assert new not in (keep, gone)


def test_bad_options_are_refused_by_name(tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["--salesforce", "--org", "only-a-name"], "NAME:CLIENT_ID:CLIENT_SECRET"),
        (["--salesforce", "--portal", "vendor:tok"], "--org"),
        (["--org", "a:b:c"], "--salesforce"),
        (["--salesforce", "--faults", "5xx=2"], "error_rate"),
        (["--salesforce", "--api-allocation", "0"], "--api-allocation"),
        (["--salesforce", "--jwt-public-key", str(tmp_path / "missing.pem")], "--jwt-public-key"),
    ]
    for args, mentions in cases:
        result = runner.invoke(cli, ["sandbox", *args, "--port", "0"])
        assert result.exit_code == 2, (args, result.output)
        assert mentions in result.output, (args, result.output)
