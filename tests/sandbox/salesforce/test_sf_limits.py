"""The org's rolling 24-hour API allocation as the adapter's budget governor reads it
(Sforce-Limit-Info on every answer, /limits), REQUEST_LIMIT_EXCEEDED when spent, and
the faults borrowed from the HubSpot sandbox."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

from connector.sandbox.faults import FaultSpec
from connector.testing.wait import wait_for

if TYPE_CHECKING:
    from tests.sandbox.salesforce.conftest import Login, MakeSandbox, MakeSpec


def test_every_answer_carries_the_usage_and_limits_agrees(
    make_sandbox: MakeSandbox, acme: MakeSpec, login: Login
) -> None:
    sb = make_sandbox(acme(api_allocation=50))
    sf = login(sb)  # the token request is not an API call
    sf.query("SELECT COUNT() FROM Account")
    assert sf.api_usage["api-usage"].used == 1 and sf.api_usage["api-usage"].total == 50
    accounts = sf.Account  # simple-salesforce keeps an SFType's usage on the SFType
    accounts.create({"Name": "A"})
    assert accounts.api_usage["api-usage"].used == 2
    # errors count and carry the header too
    resp = sb.session().get(
        f"{sb.url}/services/data/v59.0/sobjects/Account/001000000000000AAA",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        timeout=30,
    )
    assert resp.status_code == 404 and resp.headers["Sforce-Limit-Info"] == "api-usage=3/50"
    assert sf.limits()["DailyApiRequests"] == {"Max": 50, "Remaining": 46}
    assert sb.org("acme").api_calls == 4
    assert sb.org("acme").calls["query"] == 1 and sb.org("acme").calls["token"] == 1


def test_spent_allocation_is_request_limit_exceeded_until_the_window_rolls(
    make_sandbox: MakeSandbox, acme: MakeSpec, login: Login
) -> None:
    sb = make_sandbox(acme(api_allocation=10))
    org = sb.org("acme")
    sf = login(sb)
    org.api.spend(9)  # the partner's other integrations
    sf.query("SELECT COUNT() FROM Contact")
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT COUNT() FROM Contact")
    assert err.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert org.api.refused == 1 and org.api_calls == 10  # the refusal is not counted
    org.advance(hours=24)
    sf = login(sb)
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    assert sf.api_usage["api-usage"].used == 1


def test_limits_off_counts_but_never_refuses(
    make_sandbox: MakeSandbox, acme: MakeSpec, login: Login
) -> None:
    sb = make_sandbox(acme(api_allocation=2), limits=False)
    sf = login(sb)
    for _ in range(4):
        sf.query("SELECT COUNT() FROM Contact")
    assert sf.api_usage["api-usage"].used == 4 and sf.api_usage["api-usage"].total == 2


def test_faults_503_and_dropped_connections(
    make_sandbox: MakeSandbox, acme: MakeSpec, login: Login
) -> None:
    sb = make_sandbox(acme(), limits=False, faults=FaultSpec(error_rate=1.0, status_choices=(503,)))
    sf = login(sb)  # OAuth is not subject to faults
    with pytest.raises(SalesforceGeneralError) as err:
        sf.query("SELECT COUNT() FROM Contact")
    assert err.value.status == 503
    assert err.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    org = sb.org("acme")
    org.faults.set_spec(FaultSpec(drop_rate=1.0))
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.query("SELECT COUNT() FROM Contact")
    org.faults.set_spec(FaultSpec())
    org.faults.throttle_next(1)  # a burst of concurrent-request refusals
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.query("SELECT COUNT() FROM Contact")
    assert "ConcurrentRequests" in refused.value.content[0]["message"]
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_concurrent_long_running_requests_beyond_the_limit_are_refused(
    make_sandbox: MakeSandbox, acme: MakeSpec, login: Login
) -> None:
    # every request counts as long-running at once; one may run, a second is refused
    spec = acme(concurrent_long_limit=1, long_request_seconds=0.0)
    sb = make_sandbox(spec, faults=FaultSpec(latency_ms=3000))
    org = sb.org("acme")
    slow, fast = login(sb), login(sb)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(slow.query("SELECT COUNT() FROM Contact")["totalSize"])
    )
    worker.start()
    wait_for(lambda: org.requests_in_flight == 1)
    with pytest.raises(SalesforceRefusedRequest) as err:
        fast.query("SELECT COUNT() FROM Contact")
    assert err.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert "ConcurrentRequests" in err.value.content[0]["message"]
    worker.join(timeout=60)
    assert outcome == [0]  # the long request itself is answered
    # the server counts the request out after its answer was sent: on a loaded machine
    # the client may read the answer first
    wait_for(lambda: org.requests_in_flight == 0)
