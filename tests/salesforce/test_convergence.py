"""Property over a Salesforce partner: whatever edits both sides make between passes,
and wherever a pass is cut short, a few passes converge — the shared deals agree
field by field (through the stage value map and decimal amounts), no record is
duplicated, and a pass after convergence writes nothing to either side."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.config import load_project
from connector.engine.sync import PassAborted
from connector.sandbox.salesforce import OrgSpec, SalesforceSandbox
from connector.testing.salesforce import SalesforceBackdoor
from connector.testing.world import project_yaml, write_project

EXAMPLES = 10
STAGES = {
    "Prospecting": "appointmentscheduled",
    "Qualification": "qualifiedtobuy",
    "Closed Won": "closedwon",
}
MAPPING = f"""\
version: 1
objects:
  - name: deals
    partner_object: Opportunity
    vendor_object: deals
    share:
      partner:
        - property: LeadSource
          equals: "Partner Referral"
    on_delete: archive
    fields:
      - {{partner: Name, vendor: dealname, direction: create_only}}
      - {{partner: Amount, vendor: amount, direction: both, transform: decimal, conflict: newest}}
      - {{partner: Description, vendor: description, direction: both, conflict: partner_wins}}
      - partner: StageName
        vendor: dealstage
        direction: both
        transform: enum
        conflict: vendor_wins
        value_map: {{{", ".join(f'"{k}": {v}' for k, v in STAGES.items())}}}
"""
# (partner field, vendor field, values on the partner side)
FIELDS = {
    "amount": ("Amount", "amount", ["100", "250.5", "999"]),
    "stage": ("StageName", "dealstage", list(STAGES)),
    "description": ("Description", "description", ["alpha", "beta", "gamma"]),
}
ORGS = itertools.count()

step = st.one_of(
    st.tuples(
        st.just("edit"),
        st.integers(min_value=0, max_value=1),
        st.sampled_from(["partner", "vendor"]),
        st.sampled_from(sorted(FIELDS)),
        st.integers(min_value=0, max_value=2),
    ),
    st.tuples(st.just("pass")),
    st.tuples(
        st.just("cut"), st.sampled_from(["after_detect", "after_plan:deals", "after_write:deals"])
    ),
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SalesforceSandbox]:
    specs = [OrgSpec(f"org{i}", f"cid{i}", "secret") for i in range(EXAMPLES * 20)]
    with SalesforceSandbox(specs, limits=False) as sf:
        yield sf


def _project(root: Path, sf: SalesforceSandbox, i: int) -> Dealsync:
    env = {"SF_ID": f"cid{i}", "SF_SECRET": "secret"}
    keys = (
        f"    adapter: salesforce\n    login_url: {sf.url}\n    client_id_env: SF_ID\n"
        f"    client_secret_env: SF_SECRET\n    ca_bundle: {sf.ca_file}\n"
    )
    text = project_yaml().replace("    adapter: local\n    path: partner-acme.db\n", keys)
    text = text.replace("mappings: [mappings/shared_deals.yaml]", "mappings: [mappings/sf.yaml]")
    config = write_project(root, text)
    (root / "mappings" / "sf.yaml").write_text(MAPPING)
    return Dealsync(load_project(config, env=env), env=env, hooks=[])


def _cut(point: str) -> Any:
    def at(p: str) -> None:
        if p == point:
            raise PassAborted(p)

    return at


def _same(field: str, partner_value: str | None, vendor_value: str | None) -> bool:
    if field == "amount":
        return (Decimal(partner_value) if partner_value else None) == (
            Decimal(vendor_value) if vendor_value else None
        )
    if field == "stage":
        return STAGES.get(partner_value or "") == vendor_value
    return (partner_value or None) == (vendor_value or None)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_histories_over_a_salesforce_partner_converge(
    sandbox: SalesforceSandbox, steps: list[tuple[Any, ...]]
) -> None:
    i = next(ORGS)
    crm = SalesforceBackdoor(sandbox.org(f"org{i}"))
    with tempfile.TemporaryDirectory() as tmp:
        ds = _project(Path(tmp), sandbox, i)
        try:
            ds.setup()
            opps = [
                crm.seed(
                    "deals",
                    {
                        "Name": f"Deal {n}",
                        "StageName": "Prospecting",
                        "CloseDate": "2027-01-31",
                        "Amount": "50",
                        "LeadSource": "Partner Referral",
                    },
                )
                for n in range(2)
            ]
            assert ds.sync("acme").status == "ok"
            vendor = ds.vendor()
            assert isinstance(vendor, LocalCRM)
            by_source = {str(d.get("dealsync_source_id")): d.id for d in vendor.all("deals")}
            pairs = [(opp, by_source[f"acme:{opp}"]) for opp in opps]
            for action in steps:
                if action[0] == "edit":
                    _, n, where, field, k = action
                    p_field, v_field, values = FIELDS[field]
                    opp, deal = pairs[n]
                    if where == "partner":
                        crm.edit("deals", opp, {p_field: values[k]})
                    else:
                        value = STAGES[values[k]] if field == "stage" else values[k]
                        vendor.edit("deals", deal, {v_field: value})
                elif action[0] == "pass":
                    ds.sync("acme")
                else:
                    with contextlib.suppress(PassAborted):
                        ds.sync("acme", crash_at=_cut(action[1]))

            for _ in range(4):
                result = ds.sync("acme")
                if not result.plan.counts() and result.status == "ok":
                    break
            else:
                raise AssertionError(f"no quiet pass after 4: {result.plan.summary()}")

            assert len(crm.live_ids("deals")) == 2 and len(vendor.all("deals")) == 2
            for opp, deal in pairs:
                partner = crm.properties("deals", opp) or {}
                vendor_rec = vendor.get("deals", deal)
                for field, (p_field, v_field, _) in FIELDS.items():
                    assert _same(field, partner.get(p_field), vendor_rec.get(v_field)), (
                        field,
                        partner.get(p_field),
                        vendor_rec.get(v_field),
                    )
            quiet = ds.sync("acme")
            assert quiet.status == "ok" and not quiet.plan.counts(), quiet.plan.summary()
            assert not [k for k in quiet.api_calls if "collection_" in k], quiet.api_calls
        finally:
            ds.close()
