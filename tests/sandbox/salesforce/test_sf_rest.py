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
