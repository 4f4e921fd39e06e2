"""A lead's country, from whatever a CRM holds: ISO codes or names in any common spelling.

``DE``, ``DEU``, ``Germany``, ``germany``, ``Deutschland``, ``Allemagne`` all give
``DE``. Names come from ``pycountry`` (ISO 3166) and its translations in the languages
of Europe, plus a few everyday aliases (``UK``, ``USA``, ``Holland``). Anything else
is *unknown* — which the consent rules treat like an EU country, never as "outside".
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import lru_cache

import pycountry

# Languages whose country names are accepted (those of the EU, EEA and Switzerland).
LANGUAGES = (
    "de",
    "fr",
    "it",
    "es",
    "pt",
    "nl",
    "pl",
    "sv",
    "da",
    "fi",
    "cs",
    "sk",
    "sl",
    "hu",
    "ro",
    "bg",
    "el",
    "hr",
    "et",
    "lv",
    "lt",
    "ga",
    "mt",
    "nb",
    "is",
    "rm",
)

ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "america": "US",
    "united states of america": "US",
    "holland": "NL",
    "the netherlands": "NL",
    "czechia": "CZ",
    "czech republic": "CZ",
    "russia": "RU",
    "south korea": "KR",
    "korea": "KR",
    "vietnam": "VN",
    "iran": "IR",
    "türkiye": "TR",
    "turkey": "TR",
    "ivory coast": "CI",
    "swiss": "CH",
}


def _key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).strip().casefold()
    return re.sub(r"\s+", " ", folded)


def _plain(text: str) -> str:
    """Without accents: ``osterreich`` also finds Austria."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    names: dict[str, str] = {}
    translations = []
    for lang in LANGUAGES:
        try:
            translations.append(
                gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang])
            )
        except OSError:
            continue
    for country in pycountry.countries:
        code = country.alpha_2
        spellings = {
            country.name,
            getattr(country, "official_name", None),
            getattr(country, "common_name", None),
        }
        for t in translations:
            for s in list(spellings):
                if s:
                    spellings.add(t.gettext(s))
        for s in spellings:
            if s:
                names.setdefault(_key(s), code)
                names.setdefault(_plain(_key(s)), code)
    for alias, code in ALIASES.items():
        names[_key(alias)] = code
    return names


@lru_cache(maxsize=4096)
def country_code(text: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of ``text``, or ``None`` when it is missing or unknown."""
    if text is None:
        return None
    key = _key(text)
    if not key:
        return None
    if len(key) == 2 and key.isalpha():
        found = pycountry.countries.get(alpha_2=key.upper())
        if found is not None:
            return str(found.alpha_2)
        return "GB" if key == "uk" else None
    if len(key) == 3 and key.isalpha():
        found = pycountry.countries.get(alpha_3=key.upper())
        if found is not None:
            return str(found.alpha_2)
    names = _names()
    return names.get(key) or names.get(_plain(key))
