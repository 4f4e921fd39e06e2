"""Logging in to the sandbox as a partner's integration does: OAuth client credentials
or the JWT bearer flow, then the access token until the session expires."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.exceptions import SalesforceExpiredSession

from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox
from connector.sandbox.salesforce.auth import JWT_GRANT
from connector.sandbox.salesforce.login import (
    client_credentials_token,
    jwt_claims,
    sign_jwt,
    token_request,
)

if TYPE_CHECKING:
    from tests.sandbox.salesforce.conftest import Login, MakeSandbox, MakeSpec

CLIENT_ID = "acme-client-id"
USERNAME = "integration@acme.example"


def claims(**over: Any) -> dict[str, Any]:
    """The test org's JWT claims, some changed."""
    return jwt_claims(CLIENT_ID, USERNAME, **over)


def test_client_credentials_token_answers_like_salesforce(
    sandbox: SalesforceSandbox, login: Login
) -> None:
    token = client_credentials_token(sandbox, CLIENT_ID, "acme-secret")
    assert token["instance_url"] == sandbox.url
    assert token["token_type"] == "Bearer"
    assert token["access_token"].startswith(sandbox.org("acme").org_id[:15] + "!")
    assert token["id"].startswith(f"{sandbox.url}/id/00D")
    assert token["issued_at"].isdigit() and token["signature"]
    sf = login(sandbox, token)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_wrong_secret_or_unknown_client_is_invalid_client(sandbox: SalesforceSandbox) -> None:
    for data in (
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"},
        {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "acme-secret"},
    ):
        resp = token_request(sandbox, data)
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_client"
    resp = token_request(sandbox, {"grant_type": "password"})
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"


def test_jwt_bearer_login_checks_signature_subject_audience_expiry(
    sandbox: SalesforceSandbox, login: Login, jwt_key: rsa.RSAPrivateKey
) -> None:
    ok = token_request(sandbox, {"grant_type": JWT_GRANT, "assertion": sign_jwt(claims(), jwt_key)})
    assert ok.status_code == 200, ok.text
    assert login(sandbox, ok.json()).query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    own = sign_jwt(claims(aud=sandbox.url), jwt_key)  # the sandbox's URL is an audience too
    assert token_request(sandbox, {"grant_type": JWT_GRANT, "assertion": own}).status_code == 200

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "signature": sign_jwt(claims(), other_key),
        "subject": sign_jwt(claims(sub="someone@else.example"), jwt_key),
        "audience": sign_jwt(claims(aud="https://evil.example"), jwt_key),
        "expired": sign_jwt(claims(exp=1), jwt_key),
        "issuer": sign_jwt(claims(iss="unknown-app"), jwt_key),
        "not a jwt": "abc",
    }
    for why, assertion in bad.items():
        resp = token_request(sandbox, {"grant_type": JWT_GRANT, "assertion": assertion})
        assert resp.status_code == 400, why
        assert resp.json()["error"] == "invalid_grant", why


def test_jwt_refused_for_an_org_without_a_certificate(
    make_sandbox: MakeSandbox, jwt_key: rsa.RSAPrivateKey
) -> None:
    sb = make_sandbox(OrgSpec("acme", CLIENT_ID, "s", username=USERNAME), limits=False)
    resp = token_request(sb, {"grant_type": JWT_GRANT, "assertion": sign_jwt(claims(), jwt_key)})
    assert resp.status_code == 400
    assert "no certificate" in resp.json()["error_description"]


def test_session_expires_after_its_ttl_then_a_new_token_works(
    make_sandbox: MakeSandbox, acme: MakeSpec, login: Login
) -> None:
    sb = make_sandbox(acme(), limits=False, session_ttl_seconds=600)
    sf = login(sb)
    sf.query("SELECT COUNT() FROM Account")
    sb.org("acme").advance(seconds=601)
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT COUNT() FROM Account")
    assert err.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    assert err.value.content[0]["message"] == "Session expired or invalid"
    login(sb).query("SELECT COUNT() FROM Account")  # a fresh login is fine


def test_unknown_or_missing_token_is_invalid_session(sandbox: SalesforceSandbox) -> None:
    s = sandbox.session()
    for headers in ({}, {"Authorization": "Bearer nope"}):
        resp = s.get(f"{sandbox.url}/services/data/v59.0/limits", headers=headers, timeout=30)
        assert resp.status_code == 401
        assert resp.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]
