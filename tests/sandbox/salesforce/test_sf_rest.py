"""The REST surface's edges answer in Salesforce's JSON error shape, never a plain-text
page or a 500: an unknown resource, a wrong method, a body that is not JSON."""

from __future__ import annotations

from connector.sandbox.salesforce import SalesforceSandbox


def test_unknown_resource_wrong_method_and_bad_json(sandbox: SalesforceSandbox) -> None:
    s = sandbox.session()
    s.headers["Authorization"] = f"Bearer {sandbox.login('acme')}"
    base = f"{sandbox.url}/services/data/v59.0"
    unknown = s.get(f"{base}/search", params={"q": "FIND {x}"}, timeout=30)
    assert unknown.status_code == 404
    assert unknown.json()[0]["errorCode"] == "NOT_FOUND"
    assert unknown.headers["Sforce-Limit-Info"].startswith("api-usage=")
    wrong = s.put(f"{base}/sobjects/Account", json={}, timeout=30)
    assert wrong.status_code == 405 and wrong.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    bad = s.post(
        f"{base}/sobjects/Account",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    no_type = s.get(f"{base}/sobjects/Widget/describe", timeout=30)
    assert no_type.status_code == 404 and "Widget" in no_type.json()[0]["message"]
    versions = s.get(f"{sandbox.url}/services/data", timeout=30).json()
    assert {"label", "url", "version"} <= set(versions[0])
    assert s.get(f"{base}/sobjects/Account/not-an-id", timeout=30).status_code == 404


def test_admin_endpoints_move_the_clock_purge_and_count_without_spending(
    sandbox: SalesforceSandbox,
) -> None:
    org = sandbox.org("acme")
    gone = org.seed("Account", {"Name": "Gone"})
    org.remove("Account", gone)
    s = sandbox.session()
    s.headers["Authorization"] = f"Bearer {sandbox.login('acme')}"
    admin = f"{sandbox.url}/_sandbox"
    before = org.now()
    moved = s.post(f"{admin}/clock", json={"days": 2}, timeout=30)
    assert moved.status_code == 200
    assert (org.now() - before).days == 2
    # two days without a request: the session lapsed, as an org's would
    assert s.get(f"{admin}/stats", timeout=30).status_code == 401
    s.headers["Authorization"] = f"Bearer {sandbox.login('acme')}"
    assert s.post(f"{admin}/clock", json={"fortnights": 1}, timeout=30).status_code == 400
    assert s.post(f"{admin}/purge-recycle-bin", timeout=30).json() == {"purged": 1}
    assert org.record("Account", gone) is None
    faults = s.post(f"{admin}/faults", json={"error_rate": 0.5, "seed": 3}, timeout=30)
    assert faults.json()["error_rate"] == 0.5 and org.faults.spec.error_rate == 0.5
    stats = s.get(f"{admin}/stats", timeout=30).json()
    assert stats["org"] == "acme" and stats["records"]["Account"] == 0
    assert stats["api_usage"]["used"] == 0  # admin calls are not API calls
    assert s.get(f"{admin}/nope", timeout=30).status_code == 404
    assert sandbox.session().get(f"{admin}/stats", timeout=30).status_code == 401
