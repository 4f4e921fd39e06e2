"""HubSpot's own behaviour a sync connector must survive, through the real client:
search lags behind writes (on by default), merges, the properties HubSpot computes.

The lag is measured on the portal's clock, which these tests move by hand: no sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchReadInputSimplePublicObjectId,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import ApiException

from connector.sandbox import PortalSpec, SandboxServer
from connector.sandbox.store import DEFAULT_SEARCH_LAG, parse_search_lag

TOKEN = "consistency-token"


class Clock:
    """The portal's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def lagged() -> Iterator[tuple[SandboxServer, HubSpot, Clock]]:
    """A portal with the sandbox's default search lag (no ``search_lag`` given)."""
    with SandboxServer([PortalSpec("lagged", TOKEN)], limits=False) as srv:
        clock = Clock()
        srv.portal("lagged").clock = clock
        yield srv, HubSpot(access_token=TOKEN, host=srv.url), clock


def _names(client: HubSpot) -> list[str]:
    res = client.crm.contacts.search_api.do_search(
        PublicObjectSearchRequest(filter_groups=[], properties=["firstname"], limit=100)
    )
    return sorted(r.properties["firstname"] for r in res.results)


def _create(client: HubSpot, **props: str) -> str:
    return str(
        client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties=props)).id
    )


def test_search_lags_by_default_reads_do_not(lagged: tuple[SandboxServer, HubSpot, Clock]) -> None:
    srv, client, clock = lagged
    assert srv.portal("lagged").search_lag == DEFAULT_SEARCH_LAG == (1.0, 3.0)
    rid = _create(client, firstname="Ann", email="ann@lag.example")
    assert _names(client) == []  # not searchable yet
    # reads by id, batch reads and the list are immediate, as HubSpot's
    assert client.crm.contacts.basic_api.get_by_id(rid).properties["firstname"] == "Ann"
    batch = client.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=rid)],
            properties=["firstname"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in batch.results] == [rid]
    assert [r.id for r in client.crm.contacts.basic_api.get_page().results] == [rid]
    clock.advance(0.99)
    assert _names(client) == []  # under the range's minimum
    clock.advance(2.02)
    assert _names(client) == ["Ann"]  # past its maximum
    client.crm.contacts.basic_api.update(
        rid, SimplePublicObjectInput(properties={"firstname": "Bea"})
    )
    assert _names(client) == ["Ann"]  # search shows the version it has indexed
    assert client.crm.contacts.basic_api.get_by_id(rid).properties["firstname"] == "Bea"
    clock.advance(3.01)
    assert _names(client) == ["Bea"]


def test_each_write_draws_its_own_lag_within_the_range(
    lagged: tuple[SandboxServer, HubSpot, Clock],
) -> None:
    srv, client, clock = lagged
    for i in range(40):
        _create(client, firstname=f"N{i:02d}")
    seen: list[int] = []
    for _ in range(30):  # 0.1 s steps over the 1-3 s range
        clock.advance(0.1)
        seen.append(len(_names(client)))
    assert seen[8] == 0 and seen[-1] == 40  # none before 1 s, all by 3 s
    assert any(0 < n < 40 for n in seen)  # some in between: lags differ per write
    assert srv.portal("lagged").pending_index() == 0


def test_index_now_and_the_admin_endpoint(lagged: tuple[SandboxServer, HubSpot, Clock]) -> None:
    import json
    import urllib.request

    srv, client, _ = lagged
    _create(client, firstname="Cy")
    assert srv.portal("lagged").pending_index() == 1
    req = urllib.request.Request(
        f"{srv.url}/_sandbox/index-now",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(req) as resp:
        assert json.loads(resp.read()) == {"indexed": True}
    assert _names(client) == ["Cy"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1-3", (1.0, 3.0)), ("0", (0.0, 0.0)), ("0.2-0.5", (0.2, 0.5)), (2, (2.0, 2.0))],
)
def test_search_lag_option(text: object, expected: tuple[float, float]) -> None:
    assert parse_search_lag(text) == expected


@pytest.mark.parametrize("text", ["soon", "3-1", "-1", "1-x"])
def test_a_bad_search_lag_is_refused_with_the_form_to_use(text: str) -> None:
    with pytest.raises(ValueError, match="search lag"):
        parse_search_lag(text)


def test_the_cli_takes_search_lag() -> None:
    from click.testing import CliRunner

    from connector.cli import cli

    out = CliRunner().invoke(cli, ["sandbox", "--search-lag", "later", "--port", "0"])
    assert out.exit_code != 0 and "MIN-MAX" in out.output


# ---------------------------------------------------------------------------- merges


@pytest.fixture
def instant() -> Iterator[tuple[SandboxServer, HubSpot]]:
    with SandboxServer([PortalSpec("m", "merge-token")], limits=False, search_lag=0) as srv:
        yield srv, HubSpot(access_token="merge-token", host=srv.url)


def test_a_merge_makes_a_new_record_both_old_ids_answer_with_it(
    instant: tuple[SandboxServer, HubSpot],
) -> None:
    srv, client = instant
    keep = _create(client, firstname="Keep", email="keep@merge.example")
    gone = _create(client, firstname="Gone", lastname="Lee", email="gone@merge.example")
    portal = srv.portal("m")
    company = portal.create("companies", {"name": "Acme", "domain": "acme.example"})["id"]
    portal.associate("contacts", gone, "companies", company)
    before = client.crm.contacts.basic_api.get_by_id(keep).properties["lastmodifieddate"]

    out = client.crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=keep, object_id_to_merge=gone)
    )

    new = out.id
    assert new not in (keep, gone)  # HubSpot merges into a new record with a new id
    props = client.crm.contacts.basic_api.get_by_id(
        new, properties=["hs_merged_object_ids", "lastname", "email", "lastmodifieddate"]
    ).properties
    assert props["hs_merged_object_ids"] == f"{keep};{gone}"  # the primary first
    assert props["lastname"] == "Lee"  # blanks filled from the merged record
    assert props["email"] == "keep@merge.example"  # the survivor's values win
    assert props["lastmodifieddate"] >= before
    # both old ids read as the merged record, alone and in a batch
    assert client.crm.contacts.basic_api.get_by_id(gone).id == new
    assert client.crm.contacts.basic_api.get_by_id(keep).id == new
    batch = client.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=gone)],
            properties=["email"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in batch.results] == [new]
    # search and the list no longer know the old ids
    res = client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(limit=100))
    assert sorted(r.id for r in res.results) == [new]
    assert [r.id for r in client.crm.contacts.basic_api.get_page().results] == [new]
    # associations follow the merged record; both e-mails stay taken by it
    assert [a["toObjectId"] for a in portal.associations_of("contacts", new, "companies")] == [
        int(company)
    ]
    for email in ("gone@merge.example", "keep@merge.example"):
        with pytest.raises(ApiException) as info:
            _create(client, email=email)
        assert info.value.status == 409 and f"Existing ID: {new}" in str(info.value.body)


def test_merges_that_cannot_be(instant: tuple[SandboxServer, HubSpot]) -> None:
    _, client = instant
    a = _create(client, firstname="A")
    with pytest.raises(ApiException) as info:
        client.crm.contacts.basic_api.merge(
            PublicMergeInput(primary_object_id=a, object_id_to_merge="99999999")
        )
    assert info.value.status == 404
    with pytest.raises(ApiException) as info:
        client.crm.contacts.basic_api.merge(
            PublicMergeInput(primary_object_id=a, object_id_to_merge=a)
        )
    assert info.value.status == 400


# ---------------------------------------------------------------------------- computed


def test_properties_hubspot_computes(instant: tuple[SandboxServer, HubSpot]) -> None:
    srv, client = instant
    portal = srv.portal("m")
    company = portal.create("companies", {"name": "Counted", "domain": "counted.example"})
    assert company["properties"]["hs_object_id"] == company["id"]
    assert company["properties"]["createdate"]
    assert company["properties"]["num_associated_contacts"] == "0"
    people = [_create(client, firstname=f"P{i}") for i in range(3)]
    for p in people:
        portal.associate("contacts", p, "companies", company["id"])
    got = client.crm.companies.basic_api.get_by_id(
        company["id"], properties=["num_associated_contacts"]
    )
    assert got.properties["num_associated_contacts"] == "3"
    portal.archive("contacts", people[0])
    assert portal.get("companies", company["id"])["properties"]["num_associated_contacts"] == "2"  # type: ignore[index]
    # hs_lastmodifieddate moves on every write that changes a value
    stamps = []
    for name in ("Counted 2", "Counted 3"):
        stamps.append(
            client.crm.companies.basic_api.update(
                company["id"], SimplePublicObjectInput(properties={"name": name})
            ).properties["hs_lastmodifieddate"]
        )
    assert stamps[0] >= company["properties"]["hs_lastmodifieddate"] and stamps[1] >= stamps[0]
    from hubspot.crm.companies.exceptions import ApiException as CompanyApiException

    with pytest.raises(CompanyApiException) as refused:  # computed: read-only
        client.crm.companies.basic_api.update(
            company["id"], SimplePublicObjectInput(properties={"num_associated_contacts": "9"})
        )
    assert refused.value.status == 400
