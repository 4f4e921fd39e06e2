"""The consent rules, pure (DESIGN §2.2, issue 16): which privacy regime a lead is
under (its country, else its company's), when the EU notice is due, and whether an
opt-in or an engagement counts (by *when* it happened, not by the state at the pass)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    """DACH, EU (including unknown), or outside the EU. With ``treat_eea_as_eu``
    (default) Iceland, Liechtenstein and Norway count as EU, with ``treat_uk_as_eu``
    (default) the UK: GDPR applies in the EEA, the UK GDPR puts the same duty on the
    vendor."""
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


@dataclass(frozen=True)
class Whereabouts:
    """Where a lead is, and what said so: ``contact`` (its own country), ``company``
    (its company's, when the contact has none) or ``unknown`` (neither: the EU rule)."""

    country: str | None
    source: Literal["contact", "company", "unknown"]


def lead_country(contact_country: str | None, company_country: str | None) -> Whereabouts:
    """The contact's country when it is a recognisable one, else the company's, else
    unknown. A contact country no one can read (``"Mars"``) does not hide a known
    company country."""
    if country_code(contact_country) is not None:
        return Whereabouts(contact_country, "contact")
    if country_code(company_country) is not None:
        return Whereabouts(company_country, "company")
    return Whereabouts(None, "unknown")


def add_month(moment: datetime) -> datetime:
    """The same date and time of day one calendar month later; when that month has no
    such date, its last day (Jan 31 → Feb 28, or Feb 29 in a leap year; Mar 31 →
    Apr 30). Regulation 1182/71 lets a one-month period run to the end of that day:
    this is within it."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def notice_due(registered: datetime, rules: ConsentRules) -> datetime:
    """When the EU notice is due, and the end of the window in which an opt-in or an
    engagement makes it unnecessary: ``notice_after_days`` after ``registered``, or
    one calendar month after it with ``notice_period: 1 month``."""
    if rules.notice_period == "1 month":
        return add_month(registered)
    return registered + timedelta(days=rules.notice_after_days)


def opted_in_by(subscribed_since: datetime | None, limit: datetime) -> bool:
    """Whether an opt-in (the time the address became subscribed, None: not
    subscribed) counts: it happened no later than ``limit`` — the decision's time for
    a consent request, the window's end for the EU notice. An opt-in on day 40 does
    not suppress the day-30 notice, even when the pass deciding it runs on day 45."""
    return subscribed_since is not None and subscribed_since <= limit
