"""OAuth 2.0 for the sandbox: the client-credentials and JWT bearer flows.

The JWT bearer flow's assertion is an RS256 JWT (``iss`` the consumer key, ``sub`` the
username, ``aud`` the login host, ``exp``) signed with the connected app's private
key; it is checked here with the org's public key through ``cryptography`` (trustme's
own dependency), so no JWT library is needed.  Failures are Salesforce's OAuth error
bodies: ``{"error": ..., "error_description": ...}`` with status 400.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Audiences Salesforce accepts for a JWT assertion (production, sandbox); the
# sandbox's own URL is accepted too.
STANDARD_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthError(Exception):
    """A refused token request: the OAuth ``error`` code and its description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """Salesforce's OAuth error body."""
        return {"error": self.error, "error_description": self.description}


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key(pem: str) -> rsa.RSAPublicKey:
    data = pem.encode()
    key: Any
    if b"BEGIN CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise OAuthError("invalid_grant", "the org's JWT key is not an RSA key")
    return key


def unverified_claims(assertion: str) -> dict[str, Any]:
    """The claims of a JWT before its signature is checked (to find the org by ``iss``)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise OAuthError("invalid_grant", "invalid assertion: not a JWT (three parts)")
    try:
        claims = json.loads(_b64url(parts[1]))
    except ValueError:
        raise OAuthError("invalid_grant", "invalid assertion: the claims are not JSON") from None
    if not isinstance(claims, dict):
        raise OAuthError("invalid_grant", "invalid assertion: the claims are not an object")
    return claims


def verify_assertion(
    assertion: str, public_key_pem: str, audiences: tuple[str, ...], now: float | None = None
) -> dict[str, Any]:
    """Check an RS256 assertion's signature, audience and expiry; its claims."""
    header_b64, payload_b64, signature_b64 = assertion.split(".")
    try:
        header = json.loads(_b64url(header_b64))
        signature = _b64url(signature_b64)
    except ValueError:
        raise OAuthError("invalid_grant", "invalid assertion: bad header or signature") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise OAuthError("invalid_grant", "invalid assertion: the algorithm must be RS256")
    try:
        _public_key(public_key_pem).verify(
            signature, f"{header_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise OAuthError(
            "invalid_grant", "invalid assertion: the signature does not match the org's key"
        ) from None
    claims = unverified_claims(assertion)
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(str(a).rstrip("/") in audiences for a in auds):
        raise OAuthError("invalid_grant", f"audience is invalid: {aud!r}")
    try:
        exp = float(claims.get("exp", 0))
    except (TypeError, ValueError):
        exp = 0.0
    if exp <= (time.time() if now is None else now):
        raise OAuthError("invalid_grant", "expired authorization code: the assertion's exp passed")
    return claims
