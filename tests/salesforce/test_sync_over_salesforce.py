"""The engine's scenarios with the partner on a Salesforce org: records entered the way
the partner's users enter them (the sandbox org's backdoor), passes through the real
adapter and simple-salesforce, the vendor the embedded local CRM; each scenario checks
both sides and the connector's state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connector.adapters.local import LocalCRM
from connector.api import Dealsync
from connector.engine.run import PassResult
from connector.sandbox.salesforce import ORG_AGE, OrgSpec, SalesforceSandbox
from connector.state.tables import Link
from connector.testing.crash import in_child, kill_me
from connector.testing.salesforce import (
    CLIENT_ID,
    CLIENT_SECRET,
    SalesforceBackdoor,
    sf_mapping,
    sf_project,
)
from tests.salesforce.conftest import MakeSandbox

PARTNER = "acme"
SRC = "dealsync_source_id"


@dataclass
class Deal:
    """An Opportunity the partner registered, with its Account and one contact role."""

    opp: str
    account: str
    contact: str


@dataclass
class SfWorld:
    tmp_path: Path
    sandbox: SalesforceSandbox
    crm: SalesforceBackdoor
    ds: Dealsync

    @property
    def vendor(self) -> LocalCRM:
        vendor = self.ds.vendor()
        assert isinstance(vendor, LocalCRM)
        return vendor

    def sync(self) -> PassResult:
        return self.ds.sync(PARTNER)

    def seed_deal(self, name: str = "Initech renewal", n: int = 1) -> Deal:
        account = self.crm.seed(
            "companies", {"Name": f"Initech {n}", "Website": f"https://www.initech{n}.example/"}
        )
        contact = self.crm.seed(
            "contacts",
            {
                "FirstName": "Peter",
                "LastName": f"Gibbons {n}",
                "Email": f"peter{n}@initech.example",
            },
        )
        opp = self.seed_opp(name, account)
        self.crm.org.seed("OpportunityContactRole", {"OpportunityId": opp, "ContactId": contact})
        return Deal(opp, account, contact)

    def seed_opp(self, name: str, account: str | None = None) -> str:
        fields = {
            "Name": name,
            "StageName": "Prospecting",
            "CloseDate": "2027-01-31",
            "Amount": "2500",
            "LeadSource": "Partner Referral",
        }
        if account:
            fields["AccountId"] = account
        return self.crm.seed("deals", fields)

    def opp(self, rid: str) -> dict[str, str | None]:
        found = self.crm.properties("deals", rid)
        assert found is not None, f"Opportunity {rid} is not live"
        return found

    def links(self, obj: str, statuses: tuple[str, ...] = ("active",)) -> list[Link]:
        return self.ds.store.links(PARTNER, obj, statuses)

    def counterpart(self, obj: str, partner_id: str) -> str | None:
        found = [lk.vendor_id for lk in self.links(obj) if lk.partner_id == partner_id]
        return found[0] if found else None

    def vendor_deal(self, opp: str) -> str:
        found = self.counterpart("deals", opp)
        assert found is not None, f"Opportunity {opp} has no live link"
        return found

    def quiet(self) -> PassResult:
        """A pass right after: nothing written on either side, no conflict, no error."""
        result = self.sync()
        assert result.status == "ok", result.errors
        writes = {k: n for k, n in result.counts.items() if n and k in _WRITES}
        assert writes == {}, writes
        assert not [k for k in result.api_calls if k.startswith("partner.collection_")]
        return result


MakeWorld = Callable[..., SfWorld]

_WRITES = ("created", "updated", "archived", "associated", "unlinked", "relinked")


@pytest.fixture
def make_world(tmp_path: Path, make_sandbox: MakeSandbox) -> Iterator[MakeWorld]:
    opened: list[Dealsync] = []

    def make(mapping: str | None = None) -> SfWorld:
        # an org older than its integration, as a partner's is: getDeleted covers the
        # cursor, no recycle-bin scan
        sf = make_sandbox(OrgSpec("initech", CLIENT_ID, CLIENT_SECRET, existed_for=ORG_AGE))
        ds = sf_project(tmp_path, sf, mapping)
        opened.append(ds)
        ds.setup()
        return SfWorld(tmp_path, sf, SalesforceBackdoor(sf.org("initech")), ds)

    try:
        yield make
    finally:
        for ds in opened:
            ds.close()


# ------------------------------------------------------------------ share and edits


def test_registered_opportunity_is_shared_with_its_account_and_contact(
    make_world: MakeWorld,
) -> None:
    w = make_world()
    d = w.seed_deal()
    w.crm.seed(
        "deals", {"Name": "Not registered", "StageName": "Prospecting", "CloseDate": "2027-01-31"}
    )
    first = w.sync()
    assert first.status == "ok", first.errors
    (deal,) = w.vendor.all("deals")
    assert (deal.get("dealname"), deal.get("dealstage")) == (
        "Initech renewal",
        "appointmentscheduled",
    )
    assert (deal.get("amount"), deal.get("closedate")) == ("2500", "2027-01-31")
    assert deal.get(SRC) == f"{PARTNER}:{d.opp}"
    (company,) = w.vendor.all("companies")
    (contact,) = w.vendor.all("contacts")
    assert company.get("domain") == "initech1.example" and company.get("name") == "Initech 1"
    assert contact.get("email") == "peter1@initech.example"
    assert deal.associations.get("companies") == (company.id,)
    assert deal.associations.get("contacts") == (contact.id,)
    assert w.counterpart("companies", d.account) == company.id
    assert w.counterpart("contacts", d.contact) == contact.id
    # setup made dealsync's source-id field and no custom twin of the standard
    # LeadSource the share condition reads
    fields = w.crm.property_names("deals")
    assert "dealsync_source_id__c" in fields and "LeadSource__c" not in fields
    # the partner's records carry nothing of the vendor's (no source id on them)
    assert w.opp(d.opp).get("dealsync_source_id") is None
    w.quiet()


# ------------------------------------------------------------------ deletes


def test_opportunity_deleted_and_entered_again_is_relinked_not_duplicated(
    make_world: MakeWorld,
) -> None:
    """Under ``on_delete: unlink`` the vendor's deal stays when the partner deletes the
    Opportunity; entered again with the same Name, it is recognised as the same deal
    (engine/recreated.py, identity through Salesforce's naming) and adopts the vendor's
    deal instead of a second one."""
    w = make_world(sf_mapping(on_delete="unlink"))
    d = w.seed_deal(name="Big Renewal")
    assert w.sync().status == "ok"
    vendor_deal = w.vendor_deal(d.opp)

    w.crm.remove("deals", d.opp)
    gone = w.sync()
    assert gone.status == "ok", gone.errors
    assert [x.id for x in w.vendor.all("deals")] == [vendor_deal]  # unlinked, kept
    assert [lk.vendor_id for lk in w.links("deals", ("unlinked",))] == [vendor_deal]

    again = w.seed_opp("Big Renewal", d.account)
    w.crm.edit("deals", again, {"Amount": "4000"})
    result = w.sync()
    assert result.status == "ok", result.errors
    (only,) = w.vendor.all("deals")
    assert only.id == vendor_deal
    assert only.get(SRC) == f"{PARTNER}:{again}" and only.get("amount") == "4000"
    assert w.vendor_deal(again) == vendor_deal
    adopt = [r for r in w.ds.store.run_records(result.run_id or 0) if r.action == "adopt"]
    assert adopt and "same dealname" in (adopt[0].detail or ""), adopt
    w.quiet()


def test_opportunity_deleted_and_entered_again_before_one_pass_is_relinked(
    make_world: MakeWorld,
) -> None:
    """The delete and the new Opportunity fall in the same window (getDeleted and the
    SystemModstamp query in one pass): the delete unlinks, and the new Opportunity
    adopts the vendor's deal it left, still one deal."""
    w = make_world(sf_mapping(on_delete="unlink"))
    d = w.seed_deal(name="Big Renewal")
    assert w.sync().status == "ok"
    vendor_deal = w.vendor_deal(d.opp)
    w.crm.remove("deals", d.opp)
    again = w.seed_opp("Big Renewal", d.account)
    result = w.sync()
    assert result.status == "ok", result.errors
    (only,) = w.vendor.all("deals")
    assert only.id == vendor_deal and only.get(SRC) == f"{PARTNER}:{again}"
    assert w.vendor_deal(again) == vendor_deal
    assert [lk.partner_id for lk in w.links("deals", ("relinked",))] == [d.opp]
    w.quiet()


def test_deal_the_vendor_deletes_and_enters_again_adopts_the_surviving_opportunity(
    make_world: MakeWorld,
) -> None:
    """The other way round, recognised on the Salesforce side: under ``on_delete:
    unlink`` the partner's Opportunity outlives the vendor's deleted deal; the vendor
    enters the deal again (same name, shared with the partner), and the pass adopts
    the Opportunity the ended link left — matched by its ``Name``, the partner-side
    identity of a deal — instead of creating a second one in Salesforce."""
    w = make_world(sf_mapping(on_delete="unlink"))
    d = w.seed_deal(name="Big Renewal")
    assert w.sync().status == "ok"
    w.vendor.remove("deals", w.vendor_deal(d.opp))
    gone = w.sync()
    assert gone.status == "ok", gone.errors
    assert w.opp(d.opp)["Name"] == "Big Renewal"  # unlinked: the Opportunity stays
    assert w.links("deals", ("unlinked",))

    again = w.vendor.create(
        "deals",
        {
            "dealname": "Big Renewal",
            "dealstage": "qualifiedtobuy",
            "amount": "2500",
            "closedate": "2027-01-31",
            "dealsync_partner_id": PARTNER,
        },
    )
    result = w.sync()
    assert result.status == "ok", result.errors
    assert [r["Id"] for r in w.crm.org.rows("Opportunity")] == [d.opp]  # no second one
    assert w.counterpart("deals", d.opp) == again.id
    assert w.opp(d.opp)["StageName"] == "Qualification"
    adopt = [r for r in w.ds.store.run_records(result.run_id or 0) if r.action == "adopt"]
    assert adopt and "same Name" in (adopt[0].detail or ""), adopt
    w.quiet()


def test_vendor_edit_flows_back_in_salesforce_words(make_world: MakeWorld) -> None:
    w = make_world()
    d = w.seed_deal()
    assert w.sync().status == "ok"
    w.vendor.edit(
        "deals",
        w.vendor_deal(d.opp),
        {"dealstage": "closedwon", "amount": "3100.50", "closedate": "2027-02-28"},
    )
    result = w.sync()
    assert result.status == "ok", result.errors
    opp = w.opp(d.opp)
    assert (opp["StageName"], opp["Amount"], opp["CloseDate"]) == (
        "Closed Won",
        "3100.5",
        "2027-02-28",
    )
    (link,) = w.links("deals")
    assert link.base["Amount>amount"] == ["3100.5", "3100.5"], link.base
    w.quiet()


def test_edits_on_both_sides_newest_wins(make_world: MakeWorld) -> None:
    """``conflict: newest`` on Amount: the vendor edits it, then the partner does: Salesforce's (newer) value wins on both sides
    (a tie would go to the vendor, so this is the newer edit winning, not the vendor);
    a field edited on one side only (CloseDate at the vendor) merges as well."""
    w = make_world()
    d = w.seed_deal()
    assert w.sync().status == "ok"
    vendor_deal = w.vendor_deal(d.opp)
    edited = w.vendor.edit("deals", vendor_deal, {"amount": "2222", "closedate": "2027-04-30"})
    while w.crm.org.now() <= edited.updated_at:  # the partner's edit comes strictly later
        time.sleep(0.001)
    w.crm.edit("deals", d.opp, {"Amount": "1111"})
    result = w.sync()
    assert result.status == "ok", result.errors
    assert w.opp(d.opp)["Amount"] == "1111" and w.opp(d.opp)["CloseDate"] == "2027-04-30"
    deal = w.vendor.get("deals", vendor_deal)
    assert deal.get("amount") == "1111" and deal.get("closedate") == "2027-04-30"
    assert w.ds.conflicts(PARTNER) == []
    (link,) = w.links("deals")
    assert link.base["Amount>amount"] == ["1111", "1111"], link.base
    w.quiet()


def test_edits_on_both_sides_manual_conflict_opened_then_resolved(make_world: MakeWorld) -> None:
    w = make_world(sf_mapping(amount_conflict="manual"))
    d = w.seed_deal()
    assert w.sync().status == "ok"
    vendor_deal = w.vendor_deal(d.opp)
    w.crm.edit("deals", d.opp, {"Amount": "1111"})
    w.vendor.edit("deals", vendor_deal, {"amount": "2222"})
    result = w.sync()
    assert result.status == "conflicts" and result.open_conflicts == 1, result.errors
    (conflict,) = w.ds.conflicts(PARTNER)
    assert conflict.field == "Amount>amount" and conflict.partner_id == d.opp
    # neither side was overwritten while the conflict is open
    assert w.opp(d.opp)["Amount"] == "1111"
    assert w.vendor.get("deals", vendor_deal).get("amount") == "2222"
    assert w.sync().status == "conflicts"  # still open, still nothing written

    w.ds.resolve_conflict(conflict.id or 0, take="partner")
    assert w.vendor.get("deals", vendor_deal).get("amount") == "1111"
    assert w.opp(d.opp)["Amount"] == "1111"
    assert w.ds.conflicts(PARTNER) == []
    w.quiet()


def test_opportunity_deleted_archives_the_vendor_deal_and_undelete_does_not_reshare(
    make_world: MakeWorld,
) -> None:
    """Deleted in Salesforce (to the recycle bin): getDeleted lists it, the vendor's
    deal is archived (``on_delete: archive``) and the link ends ``deleted``; the
    Account and Contact stay linked. Restored from the recycle bin (undelete), the
    Opportunity is live again, but its link ended: by the engine's rule a record
    whose link ended is not shared again (``engine/gather.py``), so no second vendor
    deal appears and the archived one stays archived."""
    w = make_world()
    d = w.seed_deal()
    assert w.sync().status == "ok"
    first_deal = w.vendor_deal(d.opp)

    w.crm.remove("deals", d.opp)
    gone = w.sync()
    assert gone.status == "ok", gone.errors
    assert gone.api_calls.get("partner.get_deleted", 0) >= 1
    assert w.vendor.all("deals") == []
    assert [x.id for x in w.vendor.all("deals", archived=True)] == [first_deal]
    assert [lk.partner_id for lk in w.links("deals", ("deleted",))] == [d.opp]
    assert w.counterpart("companies", d.account) and w.counterpart("contacts", d.contact)
    w.quiet()

    w.crm.org.undelete("Opportunity", d.opp)
    back = w.sync()
    assert back.status == "ok", back.errors
    assert w.opp(d.opp)["Name"] == "Initech renewal"  # live in Salesforce again
    assert w.vendor.all("deals") == []
    assert [x.id for x in w.vendor.all("deals", archived=True)] == [first_deal]
    assert w.counterpart("deals", d.opp) is None
    assert [lk.partner_id for lk in w.links("deals", ("deleted",))] == [d.opp]
    # never silent: the run says the restored Opportunity is not shared again, and why
    assert back.counts["not shared again (link ended)"] == 1, back.counts
    [told] = [r for r in w.ds.store.run_records(back.run_id or 0) if r.outcome == "skipped"]
    assert told.record_id == d.opp and "link to the vendor's record ended" in (told.detail or "")
    w.quiet()


# ------------------------------------------------------------------ associations


def test_account_and_contact_role_changes_are_mirrored(make_world: MakeWorld) -> None:
    """The deal moves to another Account (AccountId) and its contact roles change
    (one removed, one added): the new Account and Contact are shared and associated
    with the vendor's deal. The engine mirrors associations its base does not list yet
    and removes none (``docs/sync.md``, step 5), so the old company and contact stay
    associated at the vendor, linked as before."""
    w = make_world()
    d = w.seed_deal()
    assert w.sync().status == "ok"
    vendor_deal = w.vendor_deal(d.opp)
    other = w.crm.seed("companies", {"Name": "Initrode", "Website": "https://initrode.example"})
    newcomer = w.crm.seed(
        "contacts", {"FirstName": "Samir", "LastName": "N.", "Email": "samir@initrode.example"}
    )
    w.crm.edit("deals", d.opp, {"AccountId": other})
    (role,) = [r for r in w.crm.org.rows("OpportunityContactRole") if r["OpportunityId"] == d.opp]
    w.crm.org.remove("OpportunityContactRole", str(role["Id"]))
    w.crm.org.seed("OpportunityContactRole", {"OpportunityId": d.opp, "ContactId": newcomer})

    result = w.sync()
    assert result.status == "ok", result.errors
    deal = w.vendor.get("deals", vendor_deal)
    new_company, new_contact = (
        w.counterpart("companies", other),
        w.counterpart("contacts", newcomer),
    )
    assert new_company and new_contact
    old_company, old_contact = (
        w.counterpart("companies", d.account),
        w.counterpart("contacts", d.contact),
    )
    assert set(deal.associations.get("companies", ())) == {old_company, new_company}
    assert set(deal.associations.get("contacts", ())) == {old_contact, new_contact}
    (link,) = w.links("deals")
    assert set(link.base["@assoc:companies"]) >= {other} and set(link.base["@assoc:contacts"]) >= {
        newcomer
    }
    assert w.vendor.get("companies", new_company).get("domain") == "initrode.example"
    w.quiet()


# ------------------------------------------------------------------ failures


def test_pass_killed_mid_apply_then_retried_converges_with_no_duplicate(
    make_world: MakeWorld,
) -> None:
    """Killed right after the vendor wrote the deals (before the links were
    committed): the next pass finds them by their source ids and creates none again."""
    w = make_world()
    deals = [w.seed_deal(name=f"Deal {n}", n=n) for n in range(3)]
    tmp_path, sandbox = w.tmp_path, w.sandbox
    w.ds.close()

    def killed_pass() -> None:
        sf_project(tmp_path, sandbox).sync(PARTNER, crash_at=kill_me("after_write:deals"))

    assert in_child(killed_pass) == 9, "the pass never reached the write"
    w.ds = sf_project(tmp_path, sandbox)
    # the vendor wrote the three deals; the killed pass recorded no link for them
    assert len(w.vendor.all("deals")) == 3
    assert w.links("deals") == []
    result = w.sync()
    assert result.status == "ok", result.errors
    vendor_deals = w.vendor.all("deals")
    assert sorted(str(x.get(SRC)) for x in vendor_deals) == sorted(
        f"{PARTNER}:{d.opp}" for d in deals
    )
    assert {w.vendor_deal(d.opp) for d in deals} == {x.id for x in vendor_deals}
    assert len(w.vendor.all("companies")) == 3 and len(w.vendor.all("contacts")) == 3
    assert len(w.crm.org.rows("Opportunity")) == 3
    w.quiet()


def test_quiet_pass_writes_nothing_and_makes_the_minimum_calls(make_world: MakeWorld) -> None:
    """Right after a pass, nothing changed on either side: no write, and on the
    Salesforce side only the detection queries (one per object) and the delete
    listings — no read by id, no collection call."""
    w = make_world()
    w.seed_deal()
    assert w.sync().status == "ok"
    result = w.quiet()
    partner_calls = {k: n for k, n in result.api_calls.items() if k.startswith("partner.")}
    # one SystemModstamp query and one getDeleted per object, one read of the contact
    # roles changed (none); api_usage_used is the org's allocation gauge, not a call
    calls = {k: n for k, n in partner_calls.items() if k != "partner.api_usage_used"}
    assert calls == {"partner.query": 3, "partner.get_deleted": 3, "partner.assoc_read": 1}


def test_value_salesforce_refuses_is_a_record_error_and_the_pass_goes_on(
    make_world: MakeWorld,
) -> None:
    """The vendor sets a stage the mapping passes through that is not in
    Salesforce's restricted StageName picklist: that Opportunity's update is refused
    (a per-record error naming the field and Salesforce's reason); the other deal's
    update is written in the same pass."""
    mapping = sf_mapping().replace(
        "          Closed Lost: closedlost\n",
        "          Closed Lost: closedlost\n          Negotiation Frozen: frozen\n",
    )
    w = make_world(mapping)
    bad, good = w.seed_deal(name="Bad", n=1), w.seed_deal(name="Good", n=2)
    assert w.sync().status == "ok"
    w.vendor.edit("deals", w.vendor_deal(bad.opp), {"dealstage": "frozen"})
    w.vendor.edit("deals", w.vendor_deal(good.opp), {"dealstage": "closedwon"})
    result = w.sync()
    assert result.status == "failed", result.status
    (err,) = result.errors
    assert (err.object, err.side, err.record_id) == ("deals", "partner", bad.opp)
    assert "StageName" in str(err) and "picklist" in str(err).lower(), str(err)
    assert w.opp(good.opp)["StageName"] == "Closed Won"
    assert w.opp(bad.opp)["StageName"] == "Prospecting"
    logged = [r for r in w.ds.store.run_records(result.run_id or 0) if r.outcome != "ok"]
    assert [r.record_id for r in logged] == [bad.opp], logged
    # the run log names the field and Salesforce's reason (the write refusal's field
    # is in its message: the engine's record errors of a write carry no field of their own)
    assert "StageName" in (logged[0].detail or "") and "restricted picklist" in (
        logged[0].detail or ""
    ), logged[0]
