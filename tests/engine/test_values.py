"""Canonical values: the merge compares meaning, not text."""

from __future__ import annotations

import pytest

from connector.config.models import FieldMapping
from connector.engine.values import ValueError_, ValueMapper, canonical


@pytest.mark.parametrize(
    ("transform", "raw", "expected"),
    [
        pytest.param("string", "  Acme  ", "  Acme  ", id="string-kept-byte-for-byte"),
        pytest.param("string", "", None, id="empty-is-no-value"),
        pytest.param("string", None, None, id="none-is-no-value"),
        pytest.param("enum", "closedwon", "closedwon", id="enum"),
        pytest.param("decimal", "1500.00", "1500", id="decimal-trailing-zeros"),
        pytest.param("decimal", "1500", "1500", id="decimal-integer"),
        pytest.param("decimal", "1,500.50", "1500.5", id="decimal-thousands-separator"),
        pytest.param("decimal", "1E+3", "1000", id="decimal-exponent"),
        pytest.param("decimal", "-0.00", "0", id="decimal-negative-zero"),
        pytest.param("decimal", " 7300.50 ", "7300.5", id="decimal-whitespace"),
        pytest.param("integer", "10.0", "10", id="integer-from-10.0"),
        pytest.param("integer", "-3", "-3", id="integer-negative"),
        pytest.param("bool", "Yes", "true", id="bool-yes"),
        pytest.param("bool", "0", "false", id="bool-0"),
        pytest.param("bool", "TRUE", "true", id="bool-upper"),
        pytest.param("date", "2027-03-31", "2027-03-31", id="date-iso"),
        pytest.param("date", "2027-03-31T00:00:00.000Z", "2027-03-31", id="date-utc-midnight"),
        pytest.param("date", "1806451200000", "2027-03-31", id="date-epoch-millis"),
        pytest.param(
            "datetime", "2027-03-31T12:00:00+02:00", "2027-03-31T10:00:00.000Z", id="dt-offset"
        ),
        pytest.param("datetime", "2027-03-31T10:00:00", "2027-03-31T10:00:00.000Z", id="dt-naive"),
        pytest.param("datetime", "1806451200000", "2027-03-31T00:00:00.000Z", id="dt-millis"),
    ],
)
def test_canonical(transform: str, raw: str | None, expected: str | None) -> None:
    assert canonical(transform, raw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("transform", "raw"),
    [
        ("decimal", "abc"),
        ("decimal", "NaN"),
        ("decimal", "Infinity"),
        ("integer", "1.5"),
        ("integer", "ten"),
        ("bool", "maybe"),
        ("date", "2027-02-30"),
        ("date", "31/03/2027"),
        ("datetime", "yesterday"),
    ],
)
def test_invalid_values_raise_with_the_value_named(transform: str, raw: str) -> None:
    with pytest.raises(ValueError_) as info:
        canonical(transform, raw)  # type: ignore[arg-type]
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    ("transform", "raw"),
    [
        ("decimal", "1500.00"),
        ("date", "2027-03-31T00:00:00Z"),
        ("datetime", "2027-03-31T01:02:03"),
        ("bool", "on"),
        ("integer", "42.000"),
    ],
)
def test_canonical_is_idempotent(transform: str, raw: str) -> None:
    once = canonical(transform, raw)  # type: ignore[arg-type]
    assert canonical(transform, once) == once  # type: ignore[arg-type]


def test_value_mapper_both_ways_and_unmapped() -> None:
    field = FieldMapping(
        partner="stage",
        vendor="dealstage",
        transform="enum",
        value_map={"p_open": "v_open", "p_won": "v_won"},
    )
    mapper = ValueMapper(field)
    assert mapper.to_vendor("p_won") == "v_won"
    assert mapper.to_partner("v_open") == "p_open"
    assert mapper.to_vendor(None) is None and mapper.to_partner(None) is None
    with pytest.raises(ValueError_, match=r"partner value 'nope'.*stage → dealstage"):
        mapper.to_vendor("nope")
    with pytest.raises(ValueError_, match="vendor value 'nope'"):
        mapper.to_partner("nope")


def test_value_mapper_without_a_map_passes_values_through() -> None:
    mapper = ValueMapper(FieldMapping(partner="a", vendor="b"))
    assert mapper.to_vendor("x") == "x" and mapper.to_partner("y") == "y"
