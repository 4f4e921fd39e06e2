"""Registrable-domain keys: every way of writing a company's domain maps to one key.

``https://Sales.Acme.co.uk/x``, ``acme.co.uk``, ``www.ACME.co.uk`` and
``bob@acme.co.uk`` are all ``acme.co.uk``: the Public Suffix List decides where the
registrable part starts (``co.uk`` is a suffix, so ``acme`` is the name). The list is
the snapshot bundled with ``tldextract``: no network fetch, ever. Internationalised
names are keyed in their Unicode form, so ``xn--mnchen-3ya.de`` and ``münchen.de``
collide as they should.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

import idna
import tldextract

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class DomainError(ValueError):
    """The text has no registrable domain (empty, an IP address, a bare suffix…)."""


def _host(text: str) -> str:
    raw = text.strip()
    if "@" in raw and "://" not in raw:
        raw = raw.rsplit("@", 1)[1]
    if "://" not in raw:
        raw = "//" + raw
    host = urlsplit(raw).hostname or ""
    return host.strip(".").lower()


def _unicode(host: str) -> str:
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = idna.decode(label)
            except idna.IDNAError as exc:
                raise DomainError(f"{label!r} is not a valid internationalised name") from exc
        labels.append(unicodedata.normalize("NFC", label.lower()))
    return ".".join(labels)


@lru_cache(maxsize=16384)
def registrable_domain(text: str) -> str:
    """The registrable domain of a URL, host, or e-mail address; raises DomainError.

    Cached for the lookups of one chunk and its neighbours (a deal's, its company's
    and its contacts' domains): 16,384 entries, about 4 MB; at 65,536 a first sync of
    50,000 deals kept 15 MB of them to its end (issue 17)."""
    if not text or not text.strip():
        raise DomainError("no domain given")
    host = _unicode(_host(text))
    if not host:
        raise DomainError(f"{text!r} has no host name")
    parts = _EXTRACT(host)
    if not parts.suffix or not parts.domain:
        raise DomainError(
            f"{text!r} is not a registrable domain (use the company's web domain, e.g. acme.com)"
        )
    return f"{parts.domain}.{parts.suffix}"


def email_domain(email: str) -> str:
    if "@" not in email:
        raise DomainError(f"{email!r} is not an e-mail address")
    return registrable_domain(email)
