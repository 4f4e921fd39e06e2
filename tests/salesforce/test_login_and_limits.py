"""Logging in to a Salesforce org and living within its API allocation: client
credentials and JWT bearer, a session expired mid-pass renewed once, refused
credentials and a host that is down told in one line naming what to check, the
reserve for the partner's other integrations kept, and REQUEST_LIMIT_EXCEEDED a
retriable error, never a crash."""

from __future__ import annotations

import pytest

from connector.adapters.base import AdapterError, PortalAuthRefused, PortalUnreachable
from connector.adapters.salesforce import SalesforceAdapter
from connector.adapters.salesforce_auth import Credentials
from connector.adapters.salesforce_limits import BudgetExhausted
from connector.sandbox.salesforce import OrgSpec
from connector.testing.dead_hosts import closed_port_url
from connector.testing.salesforce import (
    CLIENT_ID,
    CLIENT_SECRET,
    SalesforceBackdoor,
    sandbox_adapter,
)
from tests.salesforce.conftest import MakeSandbox

DEAL = {"Name": "Initech renewal", "StageName": "Prospecting", "CloseDate": "2027-01-31"}


def test_an_expired_session_logs_in_again_once_and_the_call_goes_through(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox()
    org = sf.org("initech")
    rid = SalesforceBackdoor(org).seed("deals", DEAL)
    adapter = sandbox_adapter(sf)
    assert set(adapter.read("deals", [rid], ["Name"])) == {rid}
    org.expire_sessions()  # an admin revoked the sessions, or the token timed out
    got = adapter.read("deals", [rid], ["Name"])
    assert got[rid].get("Name") == "Initech renewal"
    calls = adapter.api_calls()
    assert calls["login"] == 2 and calls["read"] == 3  # refused once, repeated once


def test_a_session_refused_again_after_a_fresh_login_is_an_auth_failure(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox(session_ttl_seconds=0)  # every token is expired at once
    with pytest.raises(PortalAuthRefused) as refused:
        sandbox_adapter(sf).read("deals", ["006000000000001AAA"], ["Name"])
    assert "refused again after a fresh login" in str(refused.value)
    assert "DEALSYNC_PARTNER_INITECH_SF_CLIENT_ID" in str(refused.value)


def test_wrong_credentials_name_the_variables_they_come_from(make_sandbox: MakeSandbox) -> None:
    sf = make_sandbox()
    adapter = sandbox_adapter(sf, client_secret="not-the-secret")
    with pytest.raises(PortalAuthRefused) as refused:
        adapter.read("deals", ["006000000000001AAA"], ["Name"])
    line = str(refused.value)
    assert "\n" not in line and sf.url in line and "partner initech" in line
    assert (
        "DEALSYNC_PARTNER_INITECH_SF_CLIENT_ID and DEALSYNC_PARTNER_INITECH_SF_CLIENT_SECRET"
        in line
    )
    assert "not-the-secret" not in line and refused.value.retriable is False


def test_a_host_that_is_down_is_one_line_with_what_to_try() -> None:
    url = closed_port_url().replace("http://", "https://")
    adapter = SalesforceAdapter(
        Credentials(url, "cid", "secret"), name="initech", portal="partner initech"
    )
    with pytest.raises(PortalUnreachable) as down:
        adapter.read("deals", ["006000000000001AAA"], ["Name"])
    line = str(down.value)
    assert "\n" not in line and line.startswith(f"could not connect to {url} (partner initech)")
    assert "connection refused" in line and "is the Salesforce sandbox running?" in line


def test_jwt_bearer_logs_in_with_the_apps_certificate(make_sandbox: MakeSandbox) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    user = "sync@initech.example"
    sf = make_sandbox(
        OrgSpec("initech", CLIENT_ID, CLIENT_SECRET, jwt_public_key_pem=public, username=user)
    )
    rid = SalesforceBackdoor(sf.org("initech")).seed("deals", DEAL)
    creds = Credentials(sf.url, CLIENT_ID, username=user, private_key=pem, sources=("KEY_ENV",))
    adapter = SalesforceAdapter(creds, name="initech", ca_bundle=sf.ca_file)
    assert set(adapter.read("deals", [rid], ["Name"])) == {rid}
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    impostor = SalesforceAdapter(
        Credentials(sf.url, CLIENT_ID, username=user, private_key=wrong, sources=("KEY_ENV",)),
        name="initech",
        ca_bundle=sf.ca_file,
    )
    with pytest.raises(PortalAuthRefused, match="KEY_ENV"):
        impostor.read("deals", [rid], ["Name"])


def test_the_reserve_for_the_partners_other_integrations_is_kept(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox(OrgSpec("initech", CLIENT_ID, CLIENT_SECRET, api_allocation=100), limits=True)
    org = sf.org("initech")
    rid = SalesforceBackdoor(org).seed("deals", DEAL)
    org.api.spend(70)  # the partner's ERP and marketing tool
    adapter = sandbox_adapter(sf, api_reserve_percent=20, clock=org.now)
    reads = 0
    with pytest.raises(BudgetExhausted) as stopped:
        while reads < 50:
            adapter.read("deals", [rid], ["Name"])
            reads += 1
    assert org.api.used <= 80, "dealsync ate into the reserve"
    assert reads >= 8
    message = str(stopped.value)
    assert stopped.value.retriable is True
    assert "used 80 of its 100" in message and "20%" in message and "stops at 80" in message
    assert "free up as those of the last 24 h age out" in message
    calls = adapter.api_calls()
    assert calls["budget_refused"] == 1 and calls["api_usage_used"] == 80
    from prometheus_client import CollectorRegistry, generate_latest

    from connector.service.metrics import _salesforce_allocations

    class Allocations:
        def collect(self) -> object:
            return _salesforce_allocations()

    registry = CollectorRegistry()
    registry.register(Allocations())  # type: ignore[arg-type]
    scraped = generate_latest(registry).decode()
    for line in (
        'dealsync_salesforce_api_allocation{portal="initech"} 100.0',
        'dealsync_salesforce_api_used{portal="initech"} 80.0',
        'dealsync_salesforce_api_ceiling{portal="initech"} 80.0',
        'dealsync_salesforce_api_refused{portal="initech"} 1.0',
    ):
        assert line in scraped, scraped
    org.advance(hours=24)  # the window rolled on: the same adapter (the service's) resumes
    assert set(adapter.read("deals", [rid], ["Name"])) == {rid}
    assert adapter.api_calls()["api_usage_used"] < 10


def test_request_limit_exceeded_is_a_retriable_error_not_a_crash(
    make_sandbox: MakeSandbox,
) -> None:
    sf = make_sandbox(OrgSpec("initech", CLIENT_ID, CLIENT_SECRET, api_allocation=50), limits=True)
    org = sf.org("initech")
    rid = SalesforceBackdoor(org).seed("deals", DEAL)
    adapter = sandbox_adapter(sf, api_reserve_percent=0)
    adapter.read("deals", [rid], ["Name"])  # usage now known
    org.api.spend(50 - org.api.used)  # other integrations spend the rest behind dealsync's back
    with pytest.raises(AdapterError) as refused:
        adapter.read("deals", [rid], ["Name"])
    assert refused.value.retriable is True
    assert "REQUEST_LIMIT_EXCEEDED" in str(refused.value) and "24-hour" in str(refused.value)
    assert adapter.api_calls()["limit_exceeded"] == 1
    assert adapter.api_calls()["read"] == 2, "a spent allocation was hammered"
