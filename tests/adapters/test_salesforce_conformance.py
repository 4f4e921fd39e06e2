"""The Salesforce adapter passes the adapter conformance kit
(``connector/testing/adapter_suite.py``) through ``simple-salesforce`` over the offline
Salesforce sandbox (HTTPS, its own CA), in Salesforce's vocabulary."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox
from connector.testing.adapter_suite import ADAPTER_CHECKS, Check, Subject, check_id
from connector.testing.salesforce import SALESFORCE_VOCABULARY, SalesforceBackdoor, sandbox_adapter

_ORGS = itertools.count()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SalesforceSandbox]:
    """One sandbox, one empty org per check (custom fields one check creates must not
    exist for the next)."""
    specs = [OrgSpec(f"conf{i}", f"cid{i}", "secret") for i in range(len(ADAPTER_CHECKS))]
    with SalesforceSandbox(specs, limits=False) as sf:
        yield sf


@pytest.fixture
def subject(sandbox: SalesforceSandbox) -> Subject:
    i = next(_ORGS)
    adapter = sandbox_adapter(sandbox, client_id=f"cid{i}", client_secret="secret")
    return Subject(adapter, SalesforceBackdoor(sandbox.org(f"conf{i}")), SALESFORCE_VOCABULARY)


@pytest.mark.parametrize("check", ADAPTER_CHECKS, ids=check_id)
def test_salesforce_adapter_conforms(check: Check, subject: Subject) -> None:
    check(subject)
