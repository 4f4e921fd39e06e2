"""Values that parse but cannot mean what the admin meant (issue 15, offline checks).

The schema accepts ``personal_domains: ["@gmail.com"]``, ``dach: [Germany]``, a stage
*label* in ``won_stages``, ``privacy_url: our privacy page``, ``host: api.hubapi.com``
and a partner portal that is the vendor's own; each of those then does nothing or
harm without a word (a partner owns gmail.com, German contacts get no consent
request, no commission is ever credited, the token travels over plain HTTP, a CRM is
synced with itself). This module finds them without talking to any CRM:

* a value whose meaning is certain but whose spelling is not the canonical one is
  **normalised** and reported as a *warning* (``@gmail.com`` → ``gmail.com``,
  ``Germany`` → ``DE``), so the program runs as meant and the admin sees why;
* a value that cannot be used is an *error* with the fix (``did you mean``);
* a value that only *looks* wrong offline (a stage id with spaces or capitals) is a
  warning pointing at ``dealsync check --online``, which checks it exactly.

Every finding is a :class:`~connector.config.check.Problem` with file, line, YAML path
and hint, like the schema's own.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import ValidationError

from connector.adapters.registry import kind_of
from connector.config.check import Placed, Problem, Source, YamlPath, problem_at, warning_at
from connector.config.models import (
    ObjectMapping,
    PartnerConfig,
    PortalConfig,
    RulesFile,
    VendorConfig,
)

"""Where a HubSpot portal without ``host`` is reached (the adapter's default)."""

# HubSpot's default deal pipeline: stage id by its label (what admins see in the UI).
DEFAULT_STAGES: dict[str, str] = {
    "Appointment Scheduled": "appointmentscheduled",
    "Qualified To Buy": "qualifiedtobuy",
    "Presentation Scheduled": "presentationscheduled",
    "Decision Maker Bought-In": "decisionmakerboughtin",
    "Contract Sent": "contractsent",
    "Closed Won": "closedwon",
    "Closed Lost": "closedlost",
}

# Codes people write for a country that ISO 3166-1 spells differently.
_COUNTRY_ALIASES = {"EL": "GR", "UK": "GB"}

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --------------------------------------------------------------------------- rules


def check_rules(
    placed: Placed[RulesFile], objects: Sequence[ObjectMapping] = ()
) -> tuple[RulesFile, list[Problem]]:
    """The rules with normalisable values normalised, and every problem found.

    ``objects`` are the project's mapping objects: stage ids their value maps name
    count as known stage ids for the ``won_stages`` heuristic.
    """
    rules, src = placed.item, placed.src
    problems: list[Problem] = []

    domains = _personal_domains(rules.personal_domains, placed, problems)
    dach = _countries(rules.consent.dach, placed, ("consent", "dach"), problems)
    eu = _countries(rules.consent.eu, placed, ("consent", "eu"), problems)
    for key in ("privacy_url", "consent_url"):
        problems += _link_problems(getattr(rules.consent, key), placed, ("consent", key))
    known = set(DEFAULT_STAGES.values()) | _mapped_stage_ids(objects)
    for key in ("won_stages", "closed_stages"):
        for k, stage in enumerate(getattr(rules.vendor_signals, key)):
            problem = _stage_warning(stage, known, src, (*placed.path, "vendor_signals", key, k))
            if problem is not None:
                problems.append(problem)

    consent = rules.consent.model_copy(update={"dach": dach, "eu": eu})
    normalised = rules.model_copy(update={"personal_domains": domains, "consent": consent})
    return normalised, problems


def _personal_domains(
    values: Sequence[str], placed: Placed[RulesFile], problems: list[Problem]
) -> list[str]:
    out: list[str] = []
    for i, value in enumerate(values):
        path = (*placed.path, "personal_domains", i)
        domain, error = normal_domain(value)
        if error is not None:
            message, hint = error
            problems.append(problem_at(placed.src, path, message, hint))
            out.append(value)
        elif domain != value:
            assert domain is not None
            problems.append(
                warning_at(
                    placed.src,
                    path,
                    f"{value!r} is not a bare domain; read as {domain!r}",
                    f"write `{domain}`: personal_domains are matched against the part of "
                    "an e-mail address after the @, in lower case",
                )
            )
            out.append(domain)
        else:
            out.append(value)
    return out


def normal_domain(value: str) -> tuple[str | None, tuple[str, str] | None]:
    """``value`` as the bare lower-case domain dealsync compares e-mail domains with,
    or why it cannot be one (message, hint)."""
    text = value.strip().lower()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :].split("/", 1)[0]
    text = text.lstrip("@").removeprefix("*.").lstrip(".").rstrip(".")
    text = text.removeprefix("www.")
    if "@" in text:
        domain = text.rsplit("@", 1)[1]
        return None, (
            f"{value!r} is an e-mail address, not a domain",
            f"write the domain only, e.g. `{domain}`",
        )
    if not _DOMAIN.match(text):
        return None, (
            f"{value!r} is not a domain name",
            "write a domain such as `gmail.com` (letters, digits, '-' and dots, no spaces)",
        )
    return text, None


def _countries(
    values: Sequence[str], placed: Placed[RulesFile], key: YamlPath, problems: list[Problem]
) -> list[str]:
    from connector.config.countries import country_code

    out: list[str] = []
    for i, value in enumerate(values):
        path = (*placed.path, *key, i)
        text = value.strip()
        code = _COUNTRY_ALIASES.get(text.upper()) or country_code(text)
        if code is not None and code == value:
            out.append(value)
        elif code is not None:
            problems.append(
                warning_at(
                    placed.src,
                    path,
                    f"{value!r} is not an ISO 3166-1 alpha-2 country code; read as "
                    f"{code} ({_country_name(code)})",
                    f"write `{code}`: contacts' countries are compared as two-letter ISO "
                    "codes, so a name here would never match",
                )
            )
            out.append(code)
        else:
            problems.append(
                problem_at(
                    placed.src,
                    path,
                    f"{value!r} is not a country dealsync knows",
                    _country_hint(text),
                )
            )
            out.append(value)
    return out


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    """Lower-case English names and codes → alpha-2 code, for ``did you mean``."""
    import pycountry

    names: dict[str, str] = {}
    for country in pycountry.countries:
        code = str(country.alpha_2)
        for name in (
            country.name,
            getattr(country, "common_name", None),
            getattr(country, "official_name", None),
        ):
            if name:
                names.setdefault(str(name).lower(), code)
    return names


def _country_name(code: str) -> str:
    import pycountry

    found = pycountry.countries.get(alpha_2=code)
    return str(getattr(found, "common_name", None) or found.name) if found else code


def _country_hint(text: str) -> str:
    hint = "use the two-letter ISO 3166-1 code, e.g. DE for Germany, AT for Austria"
    names = _country_names()
    close = difflib.get_close_matches(text.lower(), list(names), n=1, cutoff=0.6)
    if close:
        code = names[close[0]]
        return f"did you mean {code} ({_country_name(code)})? {hint}"
    return hint


def _link_problems(value: str, placed: Placed[RulesFile], key: YamlPath) -> list[Problem]:
    """A link pasted into e-mails must be an absolute web address."""
    path = (*placed.path, *key)
    parts = urlsplit(value.strip())
    if (
        value != value.strip()
        or any(c.isspace() for c in value)
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "." not in parts.hostname
    ):
        return [
            problem_at(
                placed.src,
                path,
                f"{key[-1]} is not a web address (it is pasted as a link into consent e-mails)",
                "write the full address starting with https://, e.g. https://example.com/privacy",
            )
        ]
    if parts.scheme == "http":
        return [
            warning_at(
                placed.src,
                path,
                f"{key[-1]} uses plain http://",
                "use https:// for links recipients open from an e-mail",
            )
        ]
    return []


def _mapped_stage_ids(objects: Sequence[ObjectMapping]) -> set[str]:
    """Vendor stage ids the mappings write (the vendor values of dealstage value maps)."""
    ids: set[str] = set()
    for obj in objects:
        for f in obj.fields:
            if f.vendor == "dealstage" and f.value_map:
                ids |= set(f.value_map.values())
    return ids


def looks_like_label(stage: str) -> bool:
    """HubSpot stage ids are lower case without spaces (``closedwon``) or numbers;
    labels are what the UI shows (``Closed Won``)."""
    return any(c.isspace() for c in stage) or any(c.isupper() for c in stage)


def _stage_warning(stage: str, known: set[str], src: Source, path: YamlPath) -> Problem | None:
    if stage in known:
        return None
    by_label = {label.casefold(): sid for label, sid in DEFAULT_STAGES.items()}
    online = "`dealsync check --online` checks stages against the vendor's pipelines"
    if looks_like_label(stage):
        guess = by_label.get(stage.strip().casefold())
        hint = (
            f"did you mean {guess!r}, the id of HubSpot's stage labelled {stage.strip()!r}? "
            if guess
            else "write the stage's internal id (HubSpot: Settings → Objects → Deals → "
            "Pipelines, or the pipelines API), not its label; "
        )
        return warning_at(
            src,
            path,
            f"{stage!r} looks like a stage label, not a stage id, so no deal would ever "
            "be in this stage",
            hint + online,
        )
    close = difflib.get_close_matches(stage, sorted(known), n=1, cutoff=0.8)
    if close:
        return warning_at(
            src,
            path,
            f"{stage!r} is not a stage id the default pipeline or the mappings use",
            f"did you mean {close[0]!r}? {online}",
        )
    return None


# --------------------------------------------------------------------------- portals


def check_portal_values(
    vendor: Placed[VendorConfig] | None,
    partners: Sequence[Placed[PartnerConfig]],
    env: Mapping[str, str],
) -> list[Problem]:
    """Portals that are the same portal, and notification addresses that are no
    addresses (a kind's own settings, such as HubSpot's host, are its check's)."""
    problems: list[Problem] = []
    portals: list[Placed[VendorConfig] | Placed[PartnerConfig]] = []
    if vendor is not None:
        portals.append(vendor)
    portals += list(partners)
    for i, placed in enumerate(partners):
        for other in portals[: (1 if vendor is not None else 0) + i]:
            why = same_portal(placed.item, other.item, env)
            if why is not None:
                problems.append(_same_portal_problem(placed, other, why))
                break
        email = placed.item.notify_email
        if email is not None and not _EMAIL.match(email.strip()):
            problems.append(
                problem_at(
                    placed.src,
                    (*placed.path, "notify_email"),
                    f"notify_email {email!r} is not an e-mail address",
                    "write one address such as sales@partner.example, or remove the key",
                )
            )
    return problems


def same_portal(a: PortalConfig, b: PortalConfig, env: Mapping[str, str]) -> str | None:
    """Why ``a`` and ``b`` are one and the same CRM portal, or ``None`` if they are not
    known to be (the portal kind says what makes two of its portals one)."""
    if a.portal_id is not None and a.portal_id == b.portal_id:
        return f"both have portal_id {a.portal_id}"
    if a.adapter != b.adapter:
        return None
    try:
        return kind_of(a.adapter).same(a.settings, b.settings, env)
    except (KeyError, ValidationError):
        return None  # the loader reported the unknown kind or the bad settings


def _same_portal_problem(
    placed: Placed[PartnerConfig], other: Placed[VendorConfig] | Placed[PartnerConfig], why: str
) -> Problem:
    what = (
        "the vendor's portal"
        if other.path == ("vendor",)
        else f"the same portal as partner {other.item.name!r}"
    )
    return problem_at(
        placed.src,
        placed.path,
        f"partner {placed.item.id!r} is {what} ({why}), so dealsync would sync a CRM with itself",
        "give the partner its own portal: a private app token of the partner's HubSpot "
        "account in its own token_env (and its own portal_id), or its own local path",
    )
