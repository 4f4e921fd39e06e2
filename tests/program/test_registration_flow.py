"""Registration rules end to end (§2.1, issue 4) on embedded CRMs through ``Dealsync.sync``:
every rejection written back with nothing mirrored, acceptance and vendor ownership,
two partners racing, the ownership window to the second, website changes, leads,
withdrawal, capacity, self-serve credit, commissions exactly once (also across crashes),
tiers, and the report commands."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from program_support import NOW, MakeProgram, Program, Seeded

from connector.api import register_lead
from connector.hooks.commission import CommissionHook
from connector.state.registry import Registry

STATUS = "dealsync_registration_status"
CODE = "dealsync_registration_code"
REASON = "dealsync_registration_reason"
UNTIL = "dealsync_owned_until"
OWNER = "dealsync_owner_partner"
REG_ID = "dealsync_registration_id"
SIX_MONTHS_LATER = NOW.replace(month=7)  # 2027-07-04 10:00 UTC


def tiny_capacity(text: str) -> str:
    return text.replace("capacity: 10", "capacity: 1", 1)


def assert_not_mirrored(p: Program, partner: str, seeded: Seeded) -> None:
    assert p.counterpart(partner, "deals", seeded.id) is None
    assert p.counterpart(partner, "companies", seeded.company.id) is None
    for person in seeded.contacts:
        assert p.counterpart(partner, "contacts", person.id) is None


def written_back(p: Program, partner: str, obj: str, rid: str) -> dict[str, str | None]:
    props = p.crm(partner).get(obj, rid).properties
    return {k: props.get(k) for k in (STATUS, CODE, REASON, UNTIL)}


# ---------------------------------------------------------------------- acceptance


def test_accepted_deal_is_mirrored_with_vendor_ownership(program: Program) -> None:
    s = program.seed_deal(domain="https://www.Globex.com/en")
    result = program.sync()
    assert result.status == "ok", result.errors

    [reg] = program.registry.registrations("acme")
    assert (reg.kind, reg.status, reg.domain, reg.code) == ("deal", "accepted", "globex.com", None)
    assert reg.owned_until == SIX_MONTHS_LATER
    assert program.registry.holder("globex.com").partner == "acme"

    vdeal = program.counterpart("acme", "deals", s.id)
    vcomp = program.counterpart("acme", "companies", s.company.id)
    vcontact = program.counterpart("acme", "contacts", s.contacts[0].id)
    assert vdeal is not None and vcomp is not None and vcontact is not None
    assert vdeal.get("amount") == "12000"
    assert vdeal.associations["companies"] == (vcomp.id,)
    assert vdeal.associations["contacts"] == (vcontact.id,)
    assert vcontact.get("email") == "ann@globex.com"
    assert vcomp.get(OWNER) == "acme"
    assert vcomp.get(UNTIL) == "2027-07-04T10:00:00.000Z"
    assert vcomp.get(REG_ID) == str(reg.id)

    assert written_back(program, "acme", "deals", s.id) == {
        STATUS: "accepted",
        CODE: None,
        REASON: "Accepted: you own globex.com until 2027-07-04 10:00 UTC.",
        UNTIL: "2027-07-04T10:00:00.000Z",
    }
    final = program.registry.get(reg.id)
    assert final.written_back and final.vendor_written
    assert final.vendor_company_id == vcomp.id
    [contact] = program.registry.contacts(reg.id)
    assert contact.email == "ann@globex.com" and contact.vendor_contact_id == vcontact.id


def test_unregistered_deal_is_neither_decided_nor_mirrored(program: Program) -> None:
    s = program.seed_deal(registered=False)
    program.sync()
    assert program.registry.registrations() == []
    assert_not_mirrored(program, "acme", s)
    assert written_back(program, "acme", "deals", s.id)[STATUS] is None


def test_rerun_changes_nothing(program: Program) -> None:
    program.seed_deal()
    program.sync()
    snapshot = [(o, [r.properties for r in program.vendor.all(o)]) for o in ("companies", "deals")]
    result = program.sync(now=NOW + timedelta(hours=1))
    assert not any(k.startswith(("created", "updated")) for k in result.counts), result.counts
    assert [
        (o, [r.properties for r in program.vendor.all(o)]) for o in ("companies", "deals")
    ] == snapshot
    assert len(program.registry.registrations()) == 1


# ---------------------------------------------------------------------- rejections


def _customer(p: Program) -> None:
    p.vendor_customer("globex.com", lifecyclestage="customer")


def _worked_by_sales(p: Program) -> None:
    comp = p.vendor_customer("globex.com", hubspot_owner_id="77", lifecyclestage="lead")
    deal = p.vendor.create("deals", {"dealname": "Vendor's own", "dealstage": "qualifiedtobuy"})
    p.vendor.associate("companies", "deals", [(comp.id, deal.id)])


def _owned_by_beta(p: Program) -> None:
    p.seed_deal("beta", domain="globex.com")
    p.sync("beta")


REJECTIONS = [
    # (code, world setup, seed_deal kwargs, reason fragment)
    ("invalid_data", None, {"with_company": False}, "an associated company"),
    ("invalid_data", None, {"contacts": []}, "at least one contact"),
    (
        "invalid_data",
        None,
        {"contacts": [{"firstname": "Ann", "email": "ann@globex.com"}]},
        "contact last name",
    ),
    ("invalid_data", None, {"domain": None}, "company domain"),
    ("invalid_data", None, {"domain": "localhost"}, "'localhost' is not one"),
    ("personal_domain", None, {"domain": "gmail.com"}, "personal mailbox domain"),
    ("already_customer", _customer, {}, "already a customer of the vendor"),
    ("owned_by_partner", _owned_by_beta, {}, "registered by another partner until 2027-07-04"),
    ("owned_by_vendor_sales", _worked_by_sales, {}, "sales team is already working"),
]


@pytest.mark.parametrize(
    ("code", "setup", "seed", "fragment"),
    REJECTIONS,
    ids=[f"{r[0]}-{i}" for i, r in enumerate(REJECTIONS)],
)
def test_rejection_written_back_and_nothing_mirrored(
    program: Program, code: str, setup: object, seed: dict[str, object], fragment: str
) -> None:
    if callable(setup):
        setup(program)
    vendor_before = {o: len(program.vendor.all(o)) for o in ("companies", "contacts", "deals")}
    s = program.seed_deal(**seed)  # type: ignore[arg-type]
    result = program.sync()
    assert result.status == "ok", result.errors

    reg = program.registry.find("acme", "deal", s.id)
    assert reg is not None
    assert (reg.status, reg.code) == ("rejected", code)
    assert fragment in (reg.reason or "")
    back = written_back(program, "acme", "deals", s.id)
    assert back == {STATUS: "rejected", CODE: code, REASON: reg.reason, UNTIL: None}
    assert_not_mirrored(program, "acme", s)
    assert {
        o: len(program.vendor.all(o)) for o in ("companies", "contacts", "deals")
    } == vendor_before
    # the domain is not acme's, and nothing of acme's is on the vendor's companies
    holder = program.registry.holder("globex.com")
    assert holder is None or holder.partner != "acme"
    assert all(c.get(OWNER) in (None, "beta") for c in program.vendor.all("companies"))
    # a rerun neither re-decides nor mirrors
    program.sync(now=NOW + timedelta(minutes=5))
    assert program.registry.find("acme", "deal", s.id).decided_at == NOW
    assert_not_mirrored(program, "acme", s)


def test_capacity_exceeded(make_program: MakeProgram) -> None:
    p = make_program(rules_edit=tiny_capacity)
    first = p.seed_deal(domain="globex.com")
    p.sync()
    second = p.seed_deal(domain="initech.de", company="Initech")
    p.sync(now=NOW + timedelta(minutes=1))
    reg = p.registry.find("acme", "deal", second.id)
    assert (reg.status, reg.code) == ("rejected", "capacity_exceeded")
    assert reg.reason == (
        "Your tier (registered) allows 1 active registrations and you hold 1; "
        "wait for one to expire or grow your tier."
    )
    assert written_back(p, "acme", "deals", second.id)[CODE] == "capacity_exceeded"
    assert_not_mirrored(p, "acme", second)
    assert p.counterpart("acme", "deals", first.id) is not None
    # capacity is per partner: beta can still register
    third = p.seed_deal("beta", domain="hooli.com", company="Hooli")
    p.sync("beta", now=NOW + timedelta(minutes=2))
    assert p.registry.find("beta", "deal", third.id).status == "accepted"


def test_capacity_counts_acceptances_within_one_pass(make_program: MakeProgram) -> None:
    p = make_program(rules_edit=tiny_capacity)
    a = p.seed_deal(domain="globex.com")
    b = p.seed_deal(domain="initech.de", company="Initech")
    p.sync()
    statuses = {
        s.id: (
            p.registry.find("acme", "deal", s.id).status,
            p.registry.find("acme", "deal", s.id).code,
        )
        for s in (a, b)
    }
    assert statuses == {a.id: ("accepted", None), b.id: ("rejected", "capacity_exceeded")}
    assert p.registry.active_count("acme", NOW) == 1


def test_same_domain_twice_by_one_partner_is_accepted_once_owned(program: Program) -> None:
    first = program.seed_deal(domain="globex.com")
    program.sync()
    second = program.seed_deal(domain="sales.globex.com", company="Globex Sales")
    program.sync(now=NOW + timedelta(days=10))
    reg = program.registry.find("acme", "deal", second.id)
    assert reg.status == "accepted"
    # the window is the original one, not restarted
    assert reg.owned_until == SIX_MONTHS_LATER
    assert program.registry.active_count("acme", NOW + timedelta(days=10)) == 1
    assert program.counterpart("acme", "deals", first.id) is not None
    assert program.counterpart("acme", "deals", second.id) is not None


# ---------------------------------------------------------------------- the race


def _race(p: Program) -> dict[str, str]:
    # beta's deal is created first: order of creation must not matter, only the pass
    b = p.seed_deal("beta", domain="www.globex.com", company="Globex (Beta)")
    a = p.seed_deal("acme", domain="https://globex.com/", company="Globex (Acme)")
    results = p.sync_all()
    assert [r.status for r in results] == ["ok", "ok"]
    ra = p.registry.find("acme", "deal", a.id)
    rb = p.registry.find("beta", "deal", b.id)
    outcome = {"acme": ra.status, "beta": rb.status}
    winner, loser = ("acme", a) if ra.status == "accepted" else ("beta", b)
    other, other_seed = ("beta", b) if winner == "acme" else ("acme", a)
    lost = p.registry.find(other, "deal", other_seed.id)
    assert lost.code == "owned_by_partner"
    assert written_back(p, other, "deals", other_seed.id)[CODE] == "owned_by_partner"
    assert_not_mirrored(p, other, other_seed)
    assert p.counterpart(winner, "deals", loser.id) is not None
    assert p.registry.holder("globex.com").partner == winner
    owners = [c.get(OWNER) for c in p.vendor.all("companies") if c.get(OWNER)]
    assert owners == [winner]
    return outcome


def test_two_partners_racing_for_one_domain(make_program: MakeProgram) -> None:
    outcomes = [_race(make_program(name=f"race{i}")) for i in range(3)]
    assert sorted(outcomes[0].values()) == ["accepted", "rejected"]
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert outcomes[0] == {"acme": "accepted", "beta": "rejected"}  # config order


def test_registry_claim_is_the_arbiter(program: Program) -> None:
    """Two acceptances decided from the same (stale) facts: the claim insert decides."""
    from connector.program.decide import Decision, Person, Submission

    registry = Registry(program.app.store)
    until = SIX_MONTHS_LATER
    person = (Person("x@globex.com", "X", "Y"),)
    subs = [
        Submission(p, "lead", "contacts", "1", "globex.com", "Globex", person)
        for p in ("acme", "beta")
    ]
    ok = Decision("accepted", "globex.com", None, "ok", until, person)
    first = registry.record(subs[0], ok, now=NOW)
    second = registry.record(subs[1], ok, now=NOW)
    assert first.status == "accepted"
    assert (second.status, second.code) == ("rejected", "owned_by_partner")
    assert registry.holder("globex.com").partner == "acme"
    assert registry.contacts(second.id) == []


# ---------------------------------------------------------------------- the window


def test_expiry_one_second_before_and_after_the_window(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    reg = program.registry.find("acme", "deal", s.id)
    assert reg.owned_until == SIX_MONTHS_LATER
    vcomp = program.counterpart("acme", "companies", s.company.id)

    before = SIX_MONTHS_LATER - timedelta(seconds=1)
    program.sync(now=before)
    assert program.registry.find("acme", "deal", s.id).status == "accepted"
    assert program.registry.holder("globex.com").partner == "acme"
    assert program.registry.active_count("acme", before) == 1
    assert written_back(program, "acme", "deals", s.id)[STATUS] == "accepted"
    assert program.vendor.get("companies", vcomp.id).get(OWNER) == "acme"

    after = SIX_MONTHS_LATER + timedelta(seconds=1)
    program.sync(now=after)
    reg = program.registry.find("acme", "deal", s.id)
    assert reg.status == "expired" and reg.ended_at == after
    assert program.registry.holder("globex.com") is None
    assert program.registry.active_count("acme", after) == 0
    assert written_back(program, "acme", "deals", s.id) == {
        STATUS: "expired",
        CODE: None,
        REASON: "Your registration of globex.com expired on 2027-07-04 10:00 UTC; "
        "the domain is free again.",
        UNTIL: None,
    }
    vprops = program.vendor.get("companies", vcomp.id).properties
    assert vprops.get(OWNER) is None and vprops.get(UNTIL) is None and vprops.get(REG_ID) is None
    # the shared deal keeps syncing
    assert program.counterpart("acme", "deals", s.id) is not None

    # the domain is free: another partner registers it
    b = program.seed_deal("beta", domain="globex.com", company="Globex (Beta)")
    later = after + timedelta(seconds=1)
    program.sync("beta", now=later)
    rb = program.registry.find("beta", "deal", b.id)
    assert rb.status == "accepted", rb.reason
    assert rb.owned_until == later.replace(year=2028, month=1)
    assert program.registry.holder("globex.com").partner == "beta"
    assert any(c.get(OWNER) == "beta" for c in program.vendor_companies("globex.com"))
    # and acme's next pass does not undo beta's ownership
    program.sync(now=later + timedelta(seconds=1))
    assert program.registry.holder("globex.com").partner == "beta"
    assert any(c.get(OWNER) == "beta" for c in program.vendor_companies("globex.com"))


def test_expiry_of_a_lead(program: Program) -> None:
    c = program.seed_lead(website="initech.de")
    program.sync()
    program.sync(now=SIX_MONTHS_LATER + timedelta(seconds=1))
    assert written_back(program, "acme", "contacts", c.id)[STATUS] == "expired"
    assert program.registry.holder("initech.de") is None
    [vcomp] = program.vendor_companies("initech.de")
    assert vcomp.get(OWNER) is None


@pytest.mark.parametrize("side", ["partner_domain", "partner_website", "vendor_website"])
def test_website_change_keeps_ownership(program: Program, side: str) -> None:
    s = program.seed_deal()
    program.sync()
    vcomp = program.counterpart("acme", "companies", s.company.id)
    reg_before = program.registry.find("acme", "deal", s.id)

    if side == "partner_domain":
        program.crm("acme").edit("companies", s.company.id, {"domain": "globex-new.de"})
    elif side == "partner_website":
        program.crm("acme").edit("companies", s.company.id, {"website": "https://globex-new.de"})
    else:
        program.vendor.edit("companies", vcomp.id, {"website": "https://www.globex-new.de"})
    program.sync(now=NOW + timedelta(days=1))

    reg = program.registry.find("acme", "deal", s.id)
    assert (reg.id, reg.status, reg.domain, reg.owned_until) == (
        reg_before.id,
        "accepted",
        "globex.com",
        SIX_MONTHS_LATER,
    )
    assert program.registry.holder("globex.com").partner == "acme"
    assert program.registry.holder("globex-new.de") is None
    assert len(program.registry.registrations()) == 1
    vprops = program.vendor.get("companies", vcomp.id).properties
    assert vprops.get(OWNER) == "acme" and vprops.get(REG_ID) == str(reg.id)
    # beta still cannot take the original domain
    b = program.seed_deal("beta", domain="globex.com")
    program.sync("beta", now=NOW + timedelta(days=2))
    assert program.registry.find("beta", "deal", b.id).code == "owned_by_partner"


# ---------------------------------------------------------------------- leads


def test_lead_flag_on_partner_contact_website(program: Program) -> None:
    c = program.seed_lead(website="https://www.Initech.de/contact")
    program.sync()
    [reg] = program.registry.registrations("acme", kind="lead")
    assert (reg.status, reg.domain, reg.partner_record_id) == ("accepted", "initech.de", c.id)
    back = written_back(program, "acme", "contacts", c.id)
    assert back[STATUS] == "accepted" and back[UNTIL] == "2027-07-04T10:00:00.000Z"
    [vcomp] = program.vendor_companies("initech.de")
    assert vcomp.get(OWNER) == "acme" and vcomp.get(REG_ID) == str(reg.id)
    vcontacts = [x for x in program.vendor.all("contacts") if x.get("email") == "carol@initech.de"]
    assert len(vcontacts) == 1
    assert vcontacts[0].get("firstname") == "Carol"
    final = program.registry.get(reg.id)
    assert final.vendor_written and final.written_back
    # idempotent: a rerun creates nothing more
    program.sync(now=NOW + timedelta(hours=1))
    assert len(program.vendor_companies("initech.de")) == 1
    assert len([x for x in program.vendor.all("contacts") if x.get("email")]) == 1


def test_lead_domain_from_email(program: Program) -> None:
    c = program.seed_lead(email="Dan@Mail.Hooli.com")
    program.sync()
    reg = program.registry.find("acme", "lead", c.id)
    assert (reg.status, reg.domain) == ("accepted", "hooli.com")


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"email": "carol@gmail.com"}, "personal_domain"),
        ({"email": "carol@gmail.com", "website": "https://gmail.com"}, "personal_domain"),
        ({"lastname": ""}, "invalid_data"),
        ({"company": ""}, "invalid_data"),
        ({"email": "not-an-email"}, "invalid_data"),
    ],
)
def test_lead_rejections(program: Program, props: dict[str, str], code: str) -> None:
    c = program.seed_lead(**props)
    program.sync()
    reg = program.registry.find("acme", "lead", c.id)
    assert (reg.status, reg.code) == ("rejected", code)
    back = written_back(program, "acme", "contacts", c.id)
    assert back[STATUS] == "rejected" and back[CODE] == code and back[REASON] == reg.reason
    assert program.vendor.all("contacts") == []
    assert program.vendor.all("companies") == []


def test_lead_customer_and_owned_by_other_partner(program: Program) -> None:
    program.vendor_customer("initech.de", lifecyclestage="customer")
    c = program.seed_lead()
    program.sync()
    assert program.registry.find("acme", "lead", c.id).code == "already_customer"
    program.seed_lead("beta", email="x@hooli.com")
    program.sync("beta")
    d = program.seed_lead(email="y@hooli.com")
    program.sync(now=NOW + timedelta(minutes=1))
    assert program.registry.find("acme", "lead", d.id).code == "owned_by_partner"


def test_unflagged_contact_is_no_lead(program: Program) -> None:
    program.seed_lead(dealsync_register_lead="")
    program.seed_lead(email="z@hooli.com", dealsync_register_lead="false")
    program.sync()
    assert program.registry.registrations() == []


def test_register_lead_api(program: Program) -> None:
    reg = register_lead(
        program.app,
        partner="acme",
        domain="https://www.initech.de",
        first="Carol",
        last="Jones",
        email="Carol@Initech.de",
        company="Initech",
        country="DE",
        now=NOW,
    )
    assert (reg.status, reg.kind, reg.domain) == ("accepted", "lead", "initech.de")
    assert reg.owned_until == SIX_MONTHS_LATER
    assert reg.written_back and reg.vendor_written
    [vcomp] = program.vendor_companies("initech.de")
    assert vcomp.get(OWNER) == "acme" and vcomp.get("name") == "Initech"
    [vcontact] = program.vendor.all("contacts")
    assert vcontact.get("country") == "DE" and vcontact.get("lastname") == "Jones"
    # again: the same registration, nothing new
    again = register_lead(
        program.app, partner="acme", domain="initech.de", first="Carol", last="Jones",
        email="carol@initech.de", now=NOW + timedelta(days=1),
    )  # fmt: skip
    assert again.id == reg.id
    assert len(program.vendor.all("contacts")) == 1
    # another partner is refused; a personal domain is refused; missing data is refused
    other = register_lead(
        program.app, partner="beta", domain="initech.de", first="B", last="C",
        email="b@initech.de", company="Initech", now=NOW,
    )  # fmt: skip
    assert (other.status, other.code) == ("rejected", "owned_by_partner")
    personal = register_lead(
        program.app, partner="beta", domain="gmail.com", first="B", last="C",
        email="b@gmail.com", company="B", now=NOW,
    )  # fmt: skip
    assert personal.code == "personal_domain"
    missing = register_lead(
        program.app, partner="beta", domain="hooli.com", first="", last="C",
        email="c@hooli.com", company="Hooli", now=NOW,
    )  # fmt: skip
    assert missing.code == "invalid_data" and "contact first name" in (missing.reason or "")
    assert program.registry.holder("hooli.com") is None
    # a registration from the CLI path blocks a partner deal on the same domain
    s = program.seed_deal("beta", domain="initech.de")
    program.sync("beta")
    assert program.registry.find("beta", "deal", s.id).code == "owned_by_partner"


def test_cli_register_lead_exit_codes(program: Program) -> None:
    ok = program.cli(
        "register", "lead", "--partner", "acme", "--domain", "sales.initech.de",
        "--first", "Carol", "--last", "Jones", "--email", "carol@initech.de",
        "--company", "Initech", "--country", "DE", "--now", "2027-01-04T10:00:00Z",
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "accepted" in ok.output and "initech.de" in ok.output
    refused = program.cli(
        "register", "lead", "-p", "beta", "-d", "initech.de", "--first", "B",
        "--last", "C", "--email", "b@initech.de", "--company", "Initech",
        "--now", "2027-01-04T11:00:00Z",
    )  # fmt: skip
    assert refused.exit_code == 2, refused.output
    assert "owned_by_partner" in refused.output
    personal = program.cli(
        "register", "lead", "-p", "beta", "-d", "gmail.com", "--first", "B",
        "--last", "C", "--email", "b@gmail.com", "--company", "B",
    )  # fmt: skip
    assert personal.exit_code == 2 and "personal_domain" in personal.output
    unknown = program.cli(
        "register", "lead", "-p", "nobody", "-d", "hooli.com", "--first", "B",
        "--last", "C", "--email", "b@hooli.com",
    )  # fmt: skip
    assert unknown.exit_code == 3
    bad_now = program.cli(
        "register", "lead", "-p", "acme", "-d", "hooli.com", "--first", "B",
        "--last", "C", "--email", "b@hooli.com", "--now", "yesterday",
    )  # fmt: skip
    # a bad --now is refused before anything is decided (exit 3 today: the CLI's error
    # wrapper turns click's BadParameter into a fatal error rather than a usage error)
    assert bad_now.exit_code in (2, 3) and "ISO-8601" in bad_now.output
    usage = program.cli("register", "lead", "-p", "acme", "-d", "hooli.com")
    assert usage.exit_code == 2
    regs = program.registry.registrations()
    assert [(r.partner, r.status, r.code) for r in regs] == [
        ("acme", "accepted", None),
        ("beta", "rejected", "owned_by_partner"),
        ("beta", "rejected", "personal_domain"),
    ]


# ---------------------------------------------------------------------- withdrawal


def test_withdrawn_deal_frees_the_domain(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    vcomp = program.counterpart("acme", "companies", s.company.id)
    program.crm("acme").edit("deals", s.id, {"dealsync_register": ""})
    program.sync(now=NOW + timedelta(days=3))
    reg = program.registry.find("acme", "deal", s.id)
    assert reg.status == "withdrawn"
    assert program.registry.holder("globex.com") is None
    back = written_back(program, "acme", "deals", s.id)
    assert back[STATUS] == "withdrawn" and "free again" in (back[REASON] or "")
    assert program.vendor.get("companies", vcomp.id).get(OWNER) is None
    b = program.seed_deal("beta", domain="globex.com")
    program.sync("beta", now=NOW + timedelta(days=4))
    assert program.registry.find("beta", "deal", b.id).status == "accepted"


def test_withdrawn_lead_frees_the_domain(program: Program) -> None:
    c = program.seed_lead()
    program.sync()
    program.crm("acme").edit("contacts", c.id, {"dealsync_register_lead": "false"})
    program.sync(now=NOW + timedelta(days=3))
    assert program.registry.find("acme", "lead", c.id).status == "withdrawn"
    assert written_back(program, "acme", "contacts", c.id)[STATUS] == "withdrawn"
    assert program.registry.holder("initech.de") is None
    [vcomp] = program.vendor_companies("initech.de")
    assert vcomp.get(OWNER) is None


# ---------------------------------------------------------------------- commission


def win(p: Program, partner: str, seeded: Seeded, **extra: str) -> str:
    vdeal = p.counterpart(partner, "deals", seeded.id)
    assert vdeal is not None
    p.vendor.edit("deals", vdeal.id, {"dealstage": "closedwon", **extra})
    return vdeal.id


def commission_props(p: Program, partner: str, deal_id: str) -> dict[str, str | None]:
    props = p.crm(partner).get("deals", deal_id).properties
    return {
        k: props.get(k)
        for k in (
            "dealsync_commission",
            "dealsync_commission_currency",
            "dealsync_commission_status",
        )
    }


def test_commission_on_won_shared_deal(program: Program) -> None:
    s = program.seed_deal(amount="12000", currency="EUR")
    program.sync()
    vid = win(program, "acme", s)
    later = NOW + timedelta(days=30)
    program.sync(now=later)

    [c] = program.registry.commissions("acme")
    assert (c.kind, c.vendor_deal_id, c.partner_deal_id, c.domain) == (
        "shared",
        vid,
        s.id,
        "globex.com",
    )
    assert Decimal(c.commission) == Decimal("2400.00")
    assert Decimal(c.rate) == Decimal("0.2")
    assert Decimal(c.amount) == Decimal("12000")
    assert c.currency == "EUR"
    assert Decimal(c.mrr) == Decimal("1000.00")
    assert c.earned_at == later
    assert c.registration_id == program.registry.find("acme", "deal", s.id).id
    assert c.written_back
    assert commission_props(program, "acme", s.id) == {
        "dealsync_commission": "2400.00",
        "dealsync_commission_currency": "EUR",
        "dealsync_commission_status": "earned",
    }
    assert program.crm("acme").get("deals", s.id).get("dealstage") == "closedwon"

    # no second commission on rerun, also when the vendor deal changes again
    program.sync(now=later + timedelta(hours=1))
    program.vendor.edit("deals", vid, {"amount": "13000"})
    program.sync(now=later + timedelta(hours=2))
    assert len(program.registry.commissions()) == 1
    assert Decimal(program.registry.commissions()[0].commission) == Decimal("2400.00")


def test_commission_uses_hs_mrr_and_keeps_currency(program: Program) -> None:
    s = program.seed_deal(amount="999.99", currency="USD")
    program.sync()
    win(program, "acme", s, hs_mrr="150")
    program.sync(now=NOW + timedelta(days=1))
    [c] = program.registry.commissions()
    assert Decimal(c.commission) == Decimal("200.00")  # 999.99 x 0.2, rounded half up
    assert c.currency == "USD"
    assert Decimal(c.mrr) == Decimal("150")


def test_no_commission_for_lost_or_open_deals(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    vdeal = program.counterpart("acme", "deals", s.id)
    program.vendor.edit("deals", vdeal.id, {"dealstage": "closedlost"})
    program.sync(now=NOW + timedelta(days=1))
    program.vendor.edit("deals", vdeal.id, {"dealstage": "contractsent"})
    program.sync(now=NOW + timedelta(days=2))
    assert program.registry.commissions() == []
    assert commission_props(program, "acme", s.id)["dealsync_commission"] is None


def _crash(*_: object, **__: object) -> None:
    raise RuntimeError("process killed")


@pytest.mark.parametrize("where", ["before_write_back", "after_write_before_mark"])
def test_no_second_commission_after_a_crash(
    program: Program, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    s = program.seed_deal()
    program.sync()
    win(program, "acme", s)
    with monkeypatch.context() as m:
        if where == "before_write_back":
            m.setattr(CommissionHook, "_write_back", _crash)
        else:
            m.setattr(Registry, "mark_commissions", _crash)
        with pytest.raises(RuntimeError, match="process killed"):
            program.sync(now=NOW + timedelta(days=1))
    [c] = program.registry.commissions()
    assert not c.written_back
    if where == "before_write_back":
        assert commission_props(program, "acme", s.id)["dealsync_commission"] is None

    program.sync(now=NOW + timedelta(days=1, minutes=1))
    program.sync(now=NOW + timedelta(days=1, minutes=2))
    [c] = program.registry.commissions()
    assert c.written_back
    assert c.earned_at == NOW + timedelta(days=1)
    assert commission_props(program, "acme", s.id)["dealsync_commission"] == "2400.00"


def test_commission_write_back_fails_then_succeeds(
    program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partner CRM refuses the commission write-back (LocalCRM.fail): the commission
    stays single and the write-back is retried on the next pass."""
    s = program.seed_deal()
    program.sync()
    win(program, "acme", s)
    partner = program.crm("acme")
    original = CommissionHook._write_back

    def failing_write_back(self: CommissionHook, ctx: object, registry: Registry) -> None:
        partner.fail = lambda op, obj, key: "503 partner down" if obj == "deals" else None
        try:
            original(self, ctx, registry)  # type: ignore[arg-type]
        finally:
            partner.fail = None

    with monkeypatch.context() as m:
        m.setattr(CommissionHook, "_write_back", failing_write_back)
        program.sync(now=NOW + timedelta(days=1))
        program.sync(now=NOW + timedelta(days=1, minutes=1))
    [c] = program.registry.commissions()
    assert not c.written_back
    assert commission_props(program, "acme", s.id)["dealsync_commission"] is None
    assert program.crm("acme").get("deals", s.id).get("dealstage") == "closedwon"

    program.sync(now=NOW + timedelta(days=2))
    [c] = program.registry.commissions()
    assert c.written_back
    assert commission_props(program, "acme", s.id)["dealsync_commission_status"] == "earned"


@pytest.mark.parametrize("ending", ["expired", "withdrawn"])
def test_no_commission_when_the_domain_is_no_longer_owned(program: Program, ending: str) -> None:
    s = program.seed_deal()
    program.sync()
    if ending == "expired":
        when = SIX_MONTHS_LATER + timedelta(seconds=1)
    else:
        when = NOW + timedelta(days=1)
        program.crm("acme").edit("deals", s.id, {"dealsync_register": ""})
    program.sync(now=when)
    assert program.registry.find("acme", "deal", s.id).status == ending
    win(program, "acme", s, closedate=(when + timedelta(days=1)).isoformat())
    program.sync(now=when + timedelta(days=1))
    assert program.registry.commissions() == []
    assert commission_props(program, "acme", s.id)["dealsync_commission"] is None


def test_won_after_the_window_even_if_not_yet_expired_earns_nothing(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    win(program, "acme", s, closedate=SIX_MONTHS_LATER.isoformat())
    # the pass that sees the win runs after the window: expiry first, then no commission
    program.sync(now=SIX_MONTHS_LATER)
    assert program.registry.commissions() == []


def test_won_deal_on_domain_now_owned_by_another_partner(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    after = SIX_MONTHS_LATER + timedelta(seconds=1)
    program.sync(now=after)
    program.seed_deal("beta", domain="globex.com")
    program.sync("beta", now=after)
    win(program, "acme", s, closedate=(after + timedelta(days=1)).isoformat())
    program.sync(now=after + timedelta(days=1))
    program.sync("beta", now=after + timedelta(days=1))
    assert program.registry.commissions() == []


# ---------------------------------------------------------------------- self-serve


def self_serve_deal(p: Program, company_id: str, stage: str = "closedwon", **extra: str) -> str:
    deal = p.vendor.create(
        "deals",
        {
            "dealname": "Online purchase",
            "dealstage": stage,
            "amount": "600",
            "deal_currency_code": "USD",
            "dealsync_purchase_channel": "self_serve",
            **extra,
        },
    )
    p.vendor.associate("deals", "companies", [(deal.id, company_id)])
    return deal.id


def test_self_serve_purchase_credits_the_owner_once(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    vcomp = program.counterpart("acme", "companies", s.company.id)
    vid = self_serve_deal(program, vcomp.id)
    program.sync(now=NOW + timedelta(days=1))
    program.sync("beta", now=NOW + timedelta(days=1))
    [c] = program.registry.commissions()
    assert (c.partner, c.kind, c.vendor_deal_id, c.domain) == (
        "acme",
        "self_serve",
        vid,
        "globex.com",
    )
    assert c.partner_deal_id is None
    assert Decimal(c.commission) == Decimal("120.00")
    assert Decimal(c.mrr) == Decimal("50.00")
    assert c.currency == "USD"
    assert c.registration_id == program.registry.find("acme", "deal", s.id).id
    # once: reruns and further edits of that deal credit nothing more
    program.sync(now=NOW + timedelta(days=2))
    program.vendor.edit("deals", vid, {"amount": "700"})
    program.sync(now=NOW + timedelta(days=3))
    assert len(program.registry.commissions()) == 1
    # the self-serve deal is not shared with the partner
    assert [d.get("dealname") for d in program.crm("acme").all("deals")] == ["Globex deal"]


def test_self_serve_credit_waits_for_the_win(program: Program) -> None:
    program.seed_lead(website="initech.de")
    program.sync()
    [vcomp] = program.vendor_companies("initech.de")
    vid = self_serve_deal(program, vcomp.id, stage="contractsent")
    program.sync(now=NOW + timedelta(days=1))
    assert program.registry.commissions() == []
    program.vendor.edit("deals", vid, {"dealstage": "closedwon"})
    program.sync(now=NOW + timedelta(days=2))
    [c] = program.registry.commissions()
    assert (c.kind, c.partner) == ("self_serve", "acme")


def test_no_credit_without_ownership_but_a_sales_led_win_credits(program: Program) -> None:
    """Issue 16: a win on a domain nobody owns credits no one; a deal the vendor's own
    sales team won (an owner, no self-serve signal) on an owned domain now credits the
    owner too, as ``vendor_led`` (before, only self-serve deals did)."""
    free = program.vendor_customer("hooli.com")
    unowned = self_serve_deal(program, free.id)  # nobody owns hooli.com
    s = program.seed_deal()
    program.sync()
    vcomp = program.counterpart("acme", "companies", s.company.id)
    sales = program.vendor.create(
        "deals",
        {
            "dealname": "Sold by sales",
            "dealstage": "closedwon",
            "amount": "600",
            "hubspot_owner_id": "77",
        },
    )
    program.vendor.associate("deals", "companies", [(sales.id, vcomp.id)])
    program.sync(now=NOW + timedelta(days=1))
    [c] = program.registry.commissions()
    assert (c.partner, c.kind, c.vendor_deal_id) == ("acme", "vendor_led", sales.id)
    [refused] = program.registry.uncredited()
    assert (refused.vendor_deal_id, refused.code, refused.partner) == (
        unowned,
        "not_registered",
        None,
    )


def test_no_self_serve_credit_after_expiry(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    vcomp = program.counterpart("acme", "companies", s.company.id)
    program.sync(now=SIX_MONTHS_LATER + timedelta(seconds=1))
    self_serve_deal(program, vcomp.id)
    program.sync(now=SIX_MONTHS_LATER + timedelta(days=1))
    assert program.registry.commissions() == []


# ---------------------------------------------------------------------- tiers


def test_tier_recomputed_from_credited_mrr(program: Program) -> None:
    s = program.seed_deal(amount="24000")  # MRR 2000: silver's threshold
    program.sync()
    [acme, beta] = program.app.status(NOW)
    assert (acme.tier, acme.capacity, acme.active_registrations) == ("registered", 10, 1)
    assert Decimal(acme.credited_mrr) == 0
    win(program, "acme", s)
    earned = NOW + timedelta(days=10)
    program.sync(now=earned)
    [acme, beta] = program.app.status(earned)
    assert (acme.tier, acme.capacity) == ("silver", 25)
    assert Decimal(acme.credited_mrr) == Decimal("2000.00")
    assert (beta.tier, Decimal(beta.credited_mrr)) == ("registered", 0)
    # the credit counts over a trailing 12 months only
    [acme, _] = program.app.status(earned + timedelta(days=366))
    assert acme.tier == "registered" and Decimal(acme.credited_mrr) == 0


def test_tier_growth_lifts_capacity(make_program: MakeProgram) -> None:
    def rules(text: str) -> str:
        return text.replace("capacity: 10", "capacity: 1", 1).replace(
            "min_credited_mrr: 2000", "min_credited_mrr: 100", 1
        )

    p = make_program(rules_edit=rules)
    s = p.seed_deal(amount="1200")  # MRR 100
    p.sync()
    blocked = p.seed_deal(domain="initech.de", company="Initech")
    p.sync(now=NOW + timedelta(minutes=1))
    assert p.registry.find("acme", "deal", blocked.id).code == "capacity_exceeded"
    win(p, "acme", s)
    p.sync(now=NOW + timedelta(days=1))
    assert p.app.status(NOW + timedelta(days=1))[0].tier == "silver"
    fresh = p.seed_deal(domain="hooli.com", company="Hooli")
    p.sync(now=NOW + timedelta(days=2))
    assert p.registry.find("acme", "deal", fresh.id).status == "accepted"


# ---------------------------------------------------------------------- reports


def _report_world(p: Program) -> None:
    a = p.seed_deal(domain="globex.com")
    p.seed_deal(domain="gmail.com", company="Personal")
    b = p.seed_deal("beta", domain="globex.com")
    p.seed_deal("beta", domain="initech.de", company="Initech", amount="6000", currency="USD")
    p.sync_all()
    assert p.registry.find("beta", "deal", b.id).code == "owned_by_partner"
    win(p, "acme", a)
    p.sync_all(now=NOW + timedelta(days=1))


def test_registrations_report_csv_and_json(program: Program) -> None:
    _report_world(program)
    out = program.cli("registrations", "--format", "json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert len(rows) == 4
    assert {(r["partner"], r["domain"], r["status"], r["code"]) for r in rows} == {
        ("acme", "globex.com", "accepted", None),
        ("acme", "gmail.com", "rejected", "personal_domain"),
        ("beta", "globex.com", "rejected", "owned_by_partner"),
        ("beta", "initech.de", "accepted", None),
    }
    assert all(r["reason"] for r in rows)

    out = program.cli(
        "registrations", "--partner", "beta", "--status", "accepted", "--format", "csv"
    )
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [(r["partner"], r["domain"], r["status"], r["code"]) for r in rows] == [
        ("beta", "initech.de", "accepted", "")
    ]
    assert rows[0]["owned_until"].startswith("2027-07-04")

    out = program.cli("registrations", "--status", "rejected", "--kind", "deal", "--format", "json")
    assert {r["code"] for r in json.loads(out.output)} == {"personal_domain", "owned_by_partner"}
    out = program.cli("registrations", "--kind", "lead", "--format", "json")
    assert json.loads(out.output) == []
    out = program.cli("registrations", "-p", "acme")
    assert out.exit_code == 0 and "gmail.com" in out.output and "initech.de" not in out.output
    assert program.cli("registrations", "--status", "bogus").exit_code == 2


def test_commissions_report_csv_and_json(program: Program) -> None:
    _report_world(program)
    out = program.cli("commissions", "--format", "json")
    assert out.exit_code == 0, out.output
    [row] = json.loads(out.output)
    assert (row["partner"], row["kind"], row["domain"], row["currency"]) == (
        "acme",
        "shared",
        "globex.com",
        "EUR",
    )
    assert Decimal(row["commission"]) == Decimal("2400.00")
    out = program.cli("commissions", "--partner", "acme", "--kind", "deal", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert len(rows) == 1 and rows[0]["commission"] == "2400.00" and rows[0]["currency"] == "EUR"
    out = program.cli("commissions", "--partner", "beta", "--format", "csv")
    assert list(csv.DictReader(io.StringIO(out.output))) == []
    assert (
        program.cli("commissions", "--kind", "self_serve", "--format", "json").output.strip()
        == "[]"
    )
    out = program.cli("commissions")
    assert out.exit_code == 0 and "2400.00" in out.output


def test_status_command_shows_tier(program: Program) -> None:
    from connector.records import utcnow

    s = program.seed_deal(amount="24000")
    now = utcnow() - timedelta(minutes=2)  # earned in the past of the CLI's clock
    program.sync(now=now)
    win(program, "acme", s)
    program.sync(now=now + timedelta(seconds=1))
    out = program.cli("status", "--json")
    assert out.exit_code == 0, out.output
    rows = {r["partner"]: r for r in json.loads(out.output)}
    assert rows["acme"]["tier"] == "silver"
    assert Decimal(rows["acme"]["credited_mrr"]) == Decimal("2000.00")
    assert rows["beta"]["tier"] == "registered"
    text = program.cli("status").output
    assert "silver (credited MRR 2000.00" in text  # the tier column


def test_rejected_deal_is_redecided_when_the_partner_fixes_it(program: Program) -> None:
    s = program.seed_deal(with_company=False)
    program.sync()
    assert program.registry.find("acme", "deal", s.id).code == "invalid_data"
    program.crm("acme").associate("deals", "companies", [(s.id, s.company.id)])
    program.crm("acme").edit("deals", s.id, {"description": "now with its company"})
    program.sync(now=NOW + timedelta(days=1))
    reg = program.registry.find("acme", "deal", s.id)
    assert (reg.status, reg.code, reg.domain) == ("accepted", None, "globex.com")
    assert reg.owned_until == NOW.replace(month=7, day=5)
    assert written_back(program, "acme", "deals", s.id)[STATUS] == "accepted"
    assert written_back(program, "acme", "deals", s.id)[CODE] is None
    assert program.counterpart("acme", "deals", s.id) is not None
    assert program.counterpart("acme", "companies", s.company.id) is not None
    assert len(program.registry.registrations()) == 1


def test_cli_sync_now_runs_the_rules_as_of_that_time(program: Program) -> None:
    s = program.seed_deal()
    program.sync()
    program.app.close()  # the CLI is another process on the same files
    out = program.cli("sync", "--connection", "acme", "--now", "2027-07-04T10:00:01Z")
    assert out.exit_code == 0, out.output
    reg = program.registry.find("acme", "deal", s.id)
    assert reg.status == "expired"
    assert program.registry.holder("globex.com") is None
    assert written_back(program, "acme", "deals", s.id)[STATUS] == "expired"


def test_registration_contacts_are_found_through_the_syncs_links_not_by_search(
    program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync created the vendor contacts of a registered deal, so their links name
    them: no search of the vendor's contacts by e-mail (one per 100 contacts at HubSpot,
    a budget of 5 per second) is needed to remember their ids."""
    searched: list[str] = []
    real = program.vendor.find_by_property

    def spy(object_type: str, *args: object, **kwargs: object) -> object:
        searched.append(object_type)
        return real(object_type, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(program.vendor, "find_by_property", spy)
    s = program.seed_deal(domain="initech.com")
    assert program.sync().status == "ok"
    [reg] = program.registry.registrations("acme")
    vcontact = program.counterpart("acme", "contacts", s.contacts[0].id)
    assert vcontact is not None
    assert [c.vendor_contact_id for c in program.registry.contacts(reg.id or 0)] == [vcontact.id]
    assert "contacts" not in searched


def test_upgrade_names_old_shared_commissions_shared(program: Program) -> None:
    """Issue 16's upgrade step: commissions recorded as kind ``deal`` before kinds
    existed read ``shared`` (and ``--kind deal`` still finds them); the table of
    refusals is created on an old store."""
    from sqlalchemy import text

    from connector.state.migrations import migrate

    s = program.seed_deal()
    program.sync()
    win(program, "acme", s)
    program.sync(now=NOW + timedelta(days=1))
    with program.app.store.engine.begin() as conn:  # the store as an older release left it
        conn.execute(text("UPDATE commission SET kind = 'deal'"))
        conn.execute(text("DROP TABLE uncredited_win"))
        conn.execute(text("DELETE FROM schema_version WHERE version = 9"))
    assert migrate(program.app.store.engine) == [9]
    [c] = program.registry.commissions()
    assert c.kind == "shared"
    out = program.cli("commissions", "--kind", "deal", "--format", "json")
    assert [r["vendor_deal_id"] for r in json.loads(out.output)] == [c.vendor_deal_id]
    assert program.registry.uncredited() == []
