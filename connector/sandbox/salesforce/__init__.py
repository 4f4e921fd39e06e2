"""A local, stateful fake Salesforce (partner side) for tests, demos and benchmarks.

It hosts several orgs (one per connected app), serves OAuth (client credentials and
JWT bearer), SOQL query/queryAll with ``nextRecordsUrl`` paging, sObject CRUD, upsert
by external id, sObject Collections, describe, getDeleted/getUpdated with the recycle
bin's 15 days and the 30-day replication window, Tooling API custom fields, Bulk API
2.0 query jobs, and the org's rolling 24-hour API allocation (``Sforce-Limit-Info``,
``REQUEST_LIMIT_EXCEEDED``), over HTTPS with its own CA.  The real
``simple-salesforce`` client works against it unmodified::

    with SalesforceSandbox([OrgSpec("acme", "cid", "secret")]) as sf:
        session = requests.Session()
        session.verify = sf.ca_file
        token = requests.post(sf.token_url, data={"grant_type": "client_credentials",
                              "client_id": "cid", "client_secret": "secret"},
                              verify=sf.ca_file).json()["access_token"]
        client = Salesforce(instance_url=sf.url, session_id=token, session=session)
"""

from __future__ import annotations

from connector.sandbox.salesforce.server import (
    SalesforceSandbox,
    org_specs,
    parse_org,
    run_salesforce_sandbox,
    salesforce_sandbox_command,
)
from connector.sandbox.salesforce.store import ORG_AGE, Org, OrgSpec, SfError

__all__ = [
    "ORG_AGE",
    "Org",
    "OrgSpec",
    "SalesforceSandbox",
    "SfError",
    "org_specs",
    "parse_org",
    "run_salesforce_sandbox",
    "salesforce_sandbox_command",
]
