"""The Salesforce adapter's pure parts, table-tested: the SOQL it sends, how it reads
Salesforce's values, the limit header and the governor, error classification, the
JWT assertion, and the portal kind's settings checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.adapters.registry import CheckContext, kind_of
from connector.adapters.salesforce import existing_id
from connector.adapters.salesforce_associations import relation
from connector.adapters.salesforce_auth import Credentials, jwt_assertion
from connector.adapters.salesforce_errors import (
    LimitExceeded,
    RequestRefused,
    Retriable,
    SessionExpired,
    Unreachable,
    classify,
    first_error,
)
from connector.adapters.salesforce_limits import BudgetExhausted, BudgetGovernor, parse_limit_info
from connector.adapters.salesforce_records import text, to_record
from connector.adapters.salesforce_soql import (
    api_name,
    changes,
    count,
    literal,
    parse_datetime,
    quote,
    select,
    sobject,
    value,
)

T0 = datetime(2026, 12, 1, 9, 30, 0, 125000, tzinfo=UTC)


# ---------------------------------------------------------------------- SOQL


@pytest.mark.parametrize(
    ("value", "soql"),
    [
        ("Acme", "'Acme'"),
        ("O'Brien", "'O\\'Brien'"),
        ("back\\slash", "'back\\\\slash'"),
        ("two\nlines", "'two\\nlines'"),
        ("x' OR Name != '", "'x\\' OR Name != \\''"),
    ],
)
def test_string_literals_are_escaped_so_a_value_cannot_end_the_literal(
    value: str, soql: str
) -> None:
    assert quote(value) == soql


def test_datetime_literals_are_utc_with_milliseconds_and_parse_back() -> None:
    assert literal(T0) == "2026-12-01T09:30:00.125Z"
    berlin = T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert literal(berlin) == "2026-12-01T09:30:00.125Z"
    for wire in ("2026-12-01T09:30:00.125+0000", "2026-12-01T09:30:00.125Z"):
        assert parse_datetime(wire) == T0
    assert parse_datetime(None) is None and parse_datetime("") is None


def test_dealsync_properties_are_custom_fields_and_objects_salesforces() -> None:
    assert api_name("dealsync_source_id") == "dealsync_source_id__c"
    assert api_name("dealsync_source_id__c") == "dealsync_source_id__c"
    assert api_name("StageName") == "StageName"
    assert [sobject(t) for t in ("deals", "companies", "contacts", "Opportunity")] == [
        "Opportunity",
        "Account",
        "Contact",
        "Opportunity",
    ]


def test_the_change_window_is_inclusive_ordered_by_modstamp_then_id() -> None:
    soql = changes(
        "deals",
        ["StageName", "dealsync_source_id"],
        T0,
        T0 + timedelta(hours=1),
        {"StageName": "Prospecting"},
    )
    assert soql == (
        "SELECT Id, SystemModstamp, StageName, dealsync_source_id__c FROM Opportunity "
        "WHERE SystemModstamp >= 2026-12-01T09:30:00.125Z "
        "AND SystemModstamp <= 2026-12-01T10:30:00.125Z "
        "AND StageName = 'Prospecting' ORDER BY SystemModstamp, Id"
    )
    assert changes("contacts", ["Email"], None, None) == (
        "SELECT Id, SystemModstamp, Email FROM Contact ORDER BY SystemModstamp, Id"
    )
    recycle = changes("deals", ["Name"], T0, None, deleted=True)
    assert recycle.startswith(
        "SELECT Id, SystemModstamp, Name FROM Opportunity WHERE IsDeleted = true AND "
    )
    assert count("companies", None, None, None) == "SELECT COUNT() FROM Account"
    assert changes("deals", ["Name"], None, None, ordered=False) == (
        "SELECT Id, SystemModstamp, Name FROM Opportunity"
    )
    assert select("deals", ["Id"], limit=5) == "SELECT Id FROM Opportunity LIMIT 5"


@pytest.mark.parametrize(
    ("text", "field_type", "soql"),
    [
        ("true", "boolean", "true"),
        ("False", "boolean", "false"),
        ("yes", "boolean", "'yes'"),
        ("100", "currency", "100"),
        ("-2.5", "double", "-2.5"),
        ("1e9; DELETE", "double", "'1e9; DELETE'"),
        ("2027-01-31", "date", "2027-01-31"),
        ("2026-12-01T09:30:00.125+0000", "datetime", "2026-12-01T09:30:00.125Z"),
        ("soon", "datetime", "'soon'"),
        ("Prospecting", "picklist", "'Prospecting'"),
        ("100", None, "'100'"),
    ],
)
def test_where_values_are_literals_of_the_fields_type(
    text: str, field_type: str | None, soql: str
) -> None:
    assert value(text, field_type) == soql


# ---------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (100.0, "100"),
        (99.5, "99.5"),
        (1234567.25, "1234567.25"),
        (0.1, "0.1"),
        (True, "true"),
        (False, "false"),
        (None, None),
        ("Prospecting", "Prospecting"),
        ({"type": "Account"}, None),
    ],
)
def test_values_read_as_dealsyncs_strings(raw: object, expected: str | None) -> None:
    assert text(raw) == expected


def test_a_row_becomes_a_record_under_the_names_asked_for() -> None:
    row = {
        "attributes": {"type": "Opportunity"},
        "Id": "0065g00000AAAAAAA1",
        "SystemModstamp": "2026-12-01T09:30:00.125+0000",
        "Amount": 2500.0,
        "dealsync_source_id__c": "vendor:42",
        "IsDeleted": False,
    }
    rec = to_record("deals", row, ["Amount", "dealsync_source_id", "CloseDate"])
    assert (rec.object_type, rec.id, rec.updated_at, rec.archived) == (
        "deals",
        "0065g00000AAAAAAA1",
        T0,
        False,
    )
    assert rec.properties == {
        "Amount": "2500",
        "dealsync_source_id": "vendor:42",
        "CloseDate": None,
    }
    assert to_record("deals", {**row, "IsDeleted": True}, []).archived is True


def test_a_duplicate_value_refusal_names_the_record_holding_it() -> None:
    msg = (
        "DUPLICATE_VALUE: duplicate value found: dealsync_source_id__c duplicates value "
        "on record with id: 0065g00000AAAAAAA1 (dealsync_source_id__c)"
    )
    assert existing_id(msg) == "0065g00000AAAAAAA1"
    assert existing_id("FIELD_INTEGRITY_EXCEPTION: bad record with id: 0065g00000AAAAAAA1") is None
    assert existing_id(None) is None


def test_relations_map_lookups_and_the_contact_role_junction() -> None:
    assert relation("deals", "companies") == relation("Opportunity", "Account")
    end, how = relation("deals", "companies") or ("", None)
    assert end == "child" and getattr(how, "field", "") == "AccountId"
    assert (relation("companies", "contacts") or ("",))[0] == "parent"
    assert (relation("deals", "contacts") or ("",))[0] == "left"
    assert (relation("contacts", "deals") or ("",))[0] == "right"
    assert relation("deals", "tickets") is None


# ---------------------------------------------------------------------- limits


def test_the_limit_header_reads_the_org_and_the_apps_usage() -> None:
    org, app = parse_limit_info("api-usage=18/15000; per-app-api-usage=17/250(appName=dealsync)")
    assert org is not None and (org.used, org.total) == (18, 15000)
    assert app is not None and (app.used, app.total, app.app) == (17, 250, "dealsync")
    assert parse_limit_info("api-usage=5/100")[1] is None
    assert parse_limit_info(None) == (None, None)
    assert parse_limit_info("garbage") == (None, None)


def test_the_governor_keeps_the_reserve_and_says_usage_reserve_and_when() -> None:
    clock = [T0]
    gov = BudgetGovernor(20, portal="partner initech", clock=lambda: clock[0])
    gov.admit("query")  # usage unknown yet: the first answer tells it
    gov.observe("api-usage=790/1000")
    gov.admit("query", cost=10)  # 800: at the ceiling, not past it
    with pytest.raises(BudgetExhausted) as refused:
        gov.admit("collection_update", cost=11)
    message = str(refused.value)
    assert refused.value.retriable is True
    for part in ("partner initech", "790 of its 1,000", "20%", "800", "2026-12-02 09:30 UTC"):
        assert part in message, message
    gov.observe("api-usage=805/1000")
    with pytest.raises(BudgetExhausted):
        gov.admit("query")
    assert gov.counts() == {"budget_refused": 2, "limit_exceeded": 0, "api_usage_used": 805}
    clock[0] += timedelta(minutes=11)  # no answer for a while: the next call may ask
    gov.admit("query")
    gov.observe("api-usage=100/1000")  # the window rolled on
    gov.admit("query", cost=5)


def test_a_connected_apps_own_cap_is_kept_too() -> None:
    gov = BudgetGovernor(0)
    gov.observe("api-usage=10/1000; per-app-api-usage=250/250(appName=dealsync)")
    with pytest.raises(BudgetExhausted, match="connected app 'dealsync'"):
        gov.admit("query")


# ---------------------------------------------------------------------- errors


def _sf_error(status: int, body: object) -> Exception:
    from simple_salesforce.util import exception_handler

    class Answer:
        status_code = status
        url = "https://x.my.salesforce.com/services/data/v61.0/query"
        text = str(body)

        def json(self) -> object:
            return body

    try:
        exception_handler(Answer(), "query")  # type: ignore[arg-type]
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "INVALID_SESSION_ID", SessionExpired),
        (403, "REQUEST_LIMIT_EXCEEDED", LimitExceeded),
        (503, "SERVER_UNAVAILABLE", Retriable),
        (500, "UNKNOWN_EXCEPTION", Retriable),
        (400, "MALFORMED_QUERY", RequestRefused),
        (404, "NOT_FOUND", RequestRefused),
        (403, "INSUFFICIENT_ACCESS", RequestRefused),
    ],
)
def test_salesforce_refusals_are_told_apart(status: int, code: str, kind: type) -> None:
    exc = _sf_error(status, [{"errorCode": code, "message": "msg"}])
    got = classify(exc, 5, 60)
    assert isinstance(got, kind), got
    if isinstance(got, RequestRefused):
        assert (got.status, got.code) == (status, code)
    if isinstance(got, LimitExceeded):
        assert got.retriable is True


def test_the_concurrent_request_limit_is_retried_the_daily_one_is_not() -> None:
    concurrent = _sf_error(
        403,
        [
            {
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
                "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            }
        ],
    )
    assert isinstance(classify(concurrent, 5, 60), Retriable)
    daily = _sf_error(
        403, [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    )
    assert isinstance(classify(daily, 5, 60), LimitExceeded)


def test_a_failed_bulk_job_is_a_refusal_the_detection_can_fall_back_from() -> None:
    from simple_salesforce.exceptions import SalesforceOperationError

    got = classify(SalesforceOperationError("Job failure. Response content: boom"), 5, 60)
    assert isinstance(got, RequestRefused) and got.code == "BULK_JOB_FAILED"
    assert "boom" in str(got)


def test_connection_failures_are_unreachable_with_why() -> None:
    import requests

    refused = classify(requests.exceptions.ConnectionError("[Errno 111] Connection refused"), 5, 60)
    assert isinstance(refused, Unreachable) and refused.connect and "refused" in refused.reason
    slow = classify(requests.exceptions.ReadTimeout("read timed out"), 5, 60)
    assert isinstance(slow, Unreachable) and not slow.connect and "60 s" in slow.reason
    cut = classify(requests.exceptions.ChunkedEncodingError("connection broken"), 5, 60)
    assert isinstance(cut, Retriable)
    garbled = classify(ValueError("Expecting value: line 1 column 1"), 5, 60)
    assert isinstance(garbled, RequestRefused) and garbled.code == "BAD_ANSWER"


def test_error_bodies_of_every_shape_are_read() -> None:
    assert first_error([{"errorCode": "X", "message": "m", "fields": ["A"]}]) == ("X", "m", ["A"])
    assert first_error({"error": "invalid_client", "error_description": "bad"}) == (
        "invalid_client",
        "bad",
        [],
    )
    assert first_error("<html>oops</html>") == ("", "<html>oops</html>", [])


# ---------------------------------------------------------------------- auth


def test_the_jwt_assertion_is_signed_for_the_user_and_the_login_host() -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    creds = Credentials(
        "https://initech.my.salesforce.com/",
        "cid",
        username="sync@initech.example",
        private_key=pem,
    )
    token = jwt_assertion(creds, now=1_000_000)
    claims = jwt.decode(
        token,
        key.public_key(),
        algorithms=["RS256"],
        audience="https://initech.my.salesforce.com",
        options={"verify_exp": False},
    )
    assert claims == {
        "iss": "cid",
        "sub": "sync@initech.example",
        "aud": "https://initech.my.salesforce.com",
        "exp": 1_000_180,
    }
    assert creds.flow == "jwt-bearer"
    from dataclasses import replace

    prod = replace(creds, audience="https://login.salesforce.com")
    assert (
        jwt.decode(
            jwt_assertion(prod, now=1_000_000),
            key.public_key(),
            algorithms=["RS256"],
            audience="https://login.salesforce.com",
            options={"verify_exp": False},
        )["aud"]
        == "https://login.salesforce.com"
    )


# ---------------------------------------------------------------------- the portal kind


def _check(env: dict[str, str] | None = None, **keys: object) -> list[str]:
    kind = kind_of("salesforce")
    settings = kind.settings.model_validate(keys)
    ctx = CheckContext(env or {}, env is not None, "DEALSYNC_PARTNER_INITECH_TOKEN", "partners[0]")
    return [s.message for s in kind.check(settings, ctx)]


def test_the_salesforce_kind_checks_login_url_and_credentials() -> None:
    good = {
        "login_url": "https://initech.my.salesforce.com",
        "client_id_env": "SF_ID",
        "client_secret_env": "SF_SECRET",
    }
    assert _check(**good) == []
    assert _check({"SF_ID": "x", "SF_SECRET": "y"}, **good) == []
    assert _check({"SF_ID": "x"}, **good) == [
        "missing env var SF_SECRET for partners[0].client_secret_env"
    ]
    assert _check(**{**good, "login_url": "http://initech.my.salesforce.com"}) == [
        "login_url must be an https:// URL (Salesforce is reached over TLS only)"
    ]
    jwt_half = {**good, "client_secret_env": None, "username": "sync@initech.example"}
    assert "the JWT bearer login needs both username and private_key_env" in _check(**jwt_half)
    pasted = _check(**{**good, "client_secret_env": "3F0A9-secret!"})
    assert pasted == [
        "client_secret_env must be the name of an environment variable, not the consumer secret"
    ]
    assert "adapter salesforce needs login_url" in _check(client_id_env="A", client_secret_env="B")
