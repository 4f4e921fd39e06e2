"""Fixtures for the Salesforce sandbox tests: an org served over HTTPS and the real
simple-salesforce client logged in to it through the OAuth endpoint.

Helpers are fixtures (``acme``, ``login``), not imports, so every test module sees the
same connected-app key pair."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce

from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox
from connector.sandbox.salesforce.login import (
    client_credentials_token,
    new_key_pair,
    simple_salesforce,
)

CLIENT_ID = "acme-client-id"
CLIENT_SECRET = "acme-secret"
USERNAME = "integration@acme.example"

_KEY, _PUBLIC_PEM = new_key_pair()

MakeSpec = Callable[..., OrgSpec]
MakeSandbox = Callable[..., SalesforceSandbox]
Login = Callable[..., Salesforce]


@pytest.fixture
def jwt_key() -> rsa.RSAPrivateKey:
    """The connected app's private key (its public half is in the ``acme`` org)."""
    return _KEY


@pytest.fixture
def acme() -> MakeSpec:
    """``acme(**overrides)``: the partner org of these tests, JWT-enabled."""

    def make(**kw: Any) -> OrgSpec:
        return OrgSpec(
            "acme",
            CLIENT_ID,
            CLIENT_SECRET,
            jwt_public_key_pem=_PUBLIC_PEM,
            username=USERNAME,
            **kw,
        )

    return make


@pytest.fixture
def login() -> Login:
    """``login(sb, token=None)``: simple-salesforce on a (client-credentials) token."""

    def make(sb: SalesforceSandbox, token: dict[str, Any] | None = None) -> Salesforce:
        sf: Salesforce = simple_salesforce(
            sb, token or client_credentials_token(sb, CLIENT_ID, CLIENT_SECRET)
        )
        return sf

    return make


@pytest.fixture
def make_sandbox(acme: MakeSpec) -> Iterator[MakeSandbox]:
    """``make_sandbox(*specs, limits=..., ...)``: a dedicated sandbox, closed after the test."""
    started: list[SalesforceSandbox] = []

    def factory(*specs: OrgSpec, **kw: Any) -> SalesforceSandbox:
        sb = SalesforceSandbox(list(specs) or [acme()], **kw).start()
        started.append(sb)
        return sb

    yield factory
    for sb in started:
        sb.close()


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> SalesforceSandbox:
    """One org, limits off (each test its own, so counts and clocks are its own)."""
    return make_sandbox(limits=False)


@pytest.fixture
def sf(sandbox: SalesforceSandbox, login: Login) -> Salesforce:
    """simple-salesforce logged in to the ``acme`` org."""
    return login(sandbox)
