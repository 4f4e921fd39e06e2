"""Consent regions: which privacy regime a contact's country puts it under (pure)."""

from __future__ import annotations

from typing import Literal

from connector.config.models import ConsentRules
from connector.program.countries import country_code

Region = Literal["dach", "eu", "outside"]
EEA_EXTRA = ("IS", "LI", "NO")
LANGUAGE_BY_COUNTRY = {
    "DE": "de",
    "AT": "de",
    "CH": "de",
    "LI": "de",
    "LU": "fr",
    "FR": "fr",
    "BE": "fr",
}


def region(country: str | None, rules: ConsentRules) -> Region:
    """DACH, EU (including unknown), or outside the EU."""
    code = country_code(country)
    if code is None:
        return "eu"
    if code in rules.dach:
        return "dach"
    eu = set(rules.eu)
    if rules.treat_eea_as_eu:
        eu |= set(EEA_EXTRA)
    if rules.treat_uk_as_eu:
        eu.add("GB")
    return "eu" if code in eu else "outside"
