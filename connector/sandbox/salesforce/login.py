"""Client-side helpers for tests and the demo: sign a JWT assertion, fetch a token, and
build the real simple-salesforce client on the sandbox.

simple-salesforce's own login posts to ``https://{domain}.salesforce.com``, so against
the sandbox the token is fetched here and handed to
``Salesforce(instance_url=..., session_id=..., session=...)``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connector.sandbox.salesforce.auth import JWT_GRANT

if TYPE_CHECKING:
    import requests

    from connector.sandbox.salesforce.server import SalesforceSandbox


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key_pair() -> tuple[rsa.RSAPrivateKey, str]:
    """A connected app's RSA key and its public key PEM (for ``OrgSpec``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, pem


def private_pem(key: rsa.RSAPrivateKey) -> str:
    """The private key as PKCS#8 PEM (what a client's config would hold)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def sign_jwt(claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    """An RS256 JWT as a connected app's client signs it."""
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(sig)}"


def jwt_claims(client_id: str, username: str, **over: Any) -> dict[str, Any]:
    """The claims Salesforce expects: iss the consumer key, sub the user, aud the login
    host, exp a few minutes ahead."""
    return {
        "iss": client_id,
        "sub": username,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
    } | over


def token_request(sb: SalesforceSandbox, data: dict[str, str]) -> requests.Response:
    """POST the sandbox's OAuth token endpoint."""
    return sb.session().post(sb.token_url, data=data, timeout=30)


def client_credentials_token(sb: SalesforceSandbox, client_id: str, secret: str) -> dict[str, Any]:
    """The token answer of a client-credentials login; RuntimeError if refused."""
    resp = token_request(
        sb, {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    if resp.status_code != 200:
        raise RuntimeError(f"sandbox refused the login: {resp.status_code} {resp.text}")
    body: dict[str, Any] = resp.json()
    return body


def jwt_token(
    sb: SalesforceSandbox, client_id: str, username: str, key: rsa.RSAPrivateKey
) -> dict[str, Any]:
    """The token answer of a JWT bearer login; RuntimeError if refused."""
    assertion = sign_jwt(jwt_claims(client_id, username), key)
    resp = token_request(sb, {"grant_type": JWT_GRANT, "assertion": assertion})
    if resp.status_code != 200:
        raise RuntimeError(f"sandbox refused the login: {resp.status_code} {resp.text}")
    body: dict[str, Any] = resp.json()
    return body


def simple_salesforce(sb: SalesforceSandbox, token: dict[str, Any]) -> Any:
    """The real simple-salesforce client on a token answer, trusting the sandbox's CA."""
    from simple_salesforce import Salesforce

    return Salesforce(
        instance_url=token["instance_url"], session_id=token["access_token"], session=sb.session()
    )
