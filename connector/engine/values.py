"""Canonical forms of field values, so the three-way merge compares meaning, not text.

``"1500.00"`` and ``"1500"`` are the same amount; ``"2026-03-01T00:00:00.000Z"`` and
``"2026-03-01"`` the same date. The base snapshot stores canonical values, and the
engine writes canonical values, so a value the connector wrote comes back equal to the
base (no echo). ``string`` keeps text byte for byte.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from connector.config.models import FieldMapping, Transform

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class ValueError_(ValueError):
    """A value that cannot be read as its field's type; carries a fix hint."""


def _parse_datetime(raw: str) -> datetime:
    text = raw.strip()
    if text.lstrip("-").isdigit() and len(text.lstrip("-")) >= 9:
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _host(raw: str) -> str:
    """A website or domain as the host it names: ``https://www.Acme.com/about`` and
    ``acme.com`` are both ``acme.com``. A Salesforce Account's ``Website`` is a URL,
    a HubSpot company's ``domain`` a host; compared as hosts they agree, so a partner's
    URL syncs to the vendor's domain once and never comes back as a change."""
    text = raw.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    elif text.startswith("//"):
        text = text[2:]
    host = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    if host.startswith("www."):
        host = host[4:]
    if not host or " " in host or "." not in host:
        raise ValueError_(f"{raw!r} is not a website or domain (e.g. acme.com)")
    return host


def canonical(transform: Transform, raw: str | None) -> str | None:
    """The canonical text of ``raw`` for ``transform``; ``None`` for no value.

    Raises :class:`ValueError_` when ``raw`` is not a valid value of the type.
    """
    if raw is None or raw == "":
        return None
    try:
        if transform in ("string", "enum"):
            return raw
        if transform == "decimal":
            number = Decimal(raw.strip().replace(",", "")) if raw.strip() else None
            if number is None or not number.is_finite():
                raise ValueError_(f"{raw!r} is not a number")
            text = format(number.normalize(), "f")
            return "0" if text in ("-0", "") else text
        if transform == "integer":
            number = Decimal(raw.strip())
            if number != number.to_integral_value():
                raise ValueError_(f"{raw!r} is not a whole number")
            return str(int(number))
        if transform == "bool":
            low = raw.strip().lower()
            if low in _TRUE:
                return "true"
            if low in _FALSE:
                return "false"
            raise ValueError_(f"{raw!r} is not a boolean (use true or false)")
        if transform == "date":
            text = raw.strip()
            if len(text) == 10 and text[4] == "-":
                return date.fromisoformat(text).isoformat()
            moment = _parse_datetime(text)
            return moment.date().isoformat()
        if transform == "datetime":
            moment = _parse_datetime(raw)
            return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if transform == "domain":
            return _host(raw)
    except ValueError_:
        raise
    except (InvalidOperation, ValueError, OverflowError) as exc:
        raise ValueError_(f"{raw!r} is not a valid {transform}") from exc
    raise ValueError_(f"unknown transform {transform!r}")


class ValueMapper:
    """Translates one field's canonical values between partner and vendor vocabularies.

    Built once per field so the hot loop does dict lookups only.
    """

    __slots__ = ("field", "to_partner_map", "to_vendor_map")

    def __init__(self, field: FieldMapping) -> None:
        self.field = field
        self.to_vendor_map = dict(field.value_map) if field.value_map else None
        self.to_partner_map = (
            {v: k for k, v in field.value_map.items()} if field.value_map else None
        )

    def to_vendor(self, value: str | None) -> str | None:
        return self._translate(value, self.to_vendor_map, "partner")

    def to_partner(self, value: str | None) -> str | None:
        return self._translate(value, self.to_partner_map, "vendor")

    def _translate(self, value: str | None, table: dict[str, str] | None, side: str) -> str | None:
        """``value`` (a ``side`` value) in the other side's vocabulary; a value the
        value_map does not list is an error naming the field, never passed through."""
        if value is None or table is None:
            return value
        try:
            return table[value]
        except KeyError:
            raise ValueError_(
                f"{side} value {value!r} has no entry in the value_map of "
                f"{self.field.partner} → {self.field.vendor}"
            ) from None
