"""Registrable-domain keys (§2.1): every way of writing a domain maps to one key,
from the bundled Public Suffix List, with no network access."""

from __future__ import annotations

import socket

import pytest

from connector.program import domains
from connector.program.domains import DomainError, email_domain, registrable_domain


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection (e.g. tldextract fetching the PSL) fails loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    registrable_domain.cache_clear()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # URLs, with scheme, path, query, port, userinfo
        ("https://Sales.Acme.co.uk/x", "acme.co.uk"),
        ("http://acme.com", "acme.com"),
        ("https://acme.com/path/to/page?q=1#frag", "acme.com"),
        ("https://acme.com:8443/login", "acme.com"),
        ("acme.com:8080", "acme.com"),
        ("acme.com/pricing", "acme.com"),
        ("ftp://files.acme.com", "acme.com"),
        ("https://user:pw@shop.acme.com/", "acme.com"),
        # bare hosts, subdomains, www, case, whitespace, trailing dot
        ("acme.com", "acme.com"),
        ("www.acme.com", "acme.com"),
        ("WWW.ACME.COM", "acme.com"),
        ("a.b.c.deep.acme.com", "acme.com"),
        ("  acme.com  ", "acme.com"),
        ("acme.com.", "acme.com"),
        # e-mail addresses
        ("bob@acme.co.uk", "acme.co.uk"),
        ("Bob.Smith@Mail.Acme.COM", "acme.com"),
        # multi-part public suffixes
        ("acme.co.uk", "acme.co.uk"),
        ("www.acme.co.uk", "acme.co.uk"),
        ("shop.acme.com.au", "acme.com.au"),
        ("acme.com.au", "acme.com.au"),
        ("acme.co.jp", "acme.co.jp"),
        # IDNs: Unicode and punycode are the same key (Unicode form)
        ("münchen.de", "münchen.de"),
        ("xn--mnchen-3ya.de", "münchen.de"),
        ("https://www.XN--MNCHEN-3YA.de/kontakt", "münchen.de"),
        ("info@münchen.de", "münchen.de"),
        ("MÜNCHEN.DE", "münchen.de"),
    ],
)
def test_registrable_domain(text: str, key: str) -> None:
    assert registrable_domain(text) == key


def test_every_spelling_is_one_key() -> None:
    spellings = [
        "https://Sales.Acme.co.uk/x",
        "acme.co.uk",
        "www.ACME.co.uk",
        "bob@acme.co.uk",
        "http://acme.co.uk:80/",
    ]
    assert {registrable_domain(s) for s in spellings} == {"acme.co.uk"}


def test_idn_unicode_and_punycode_collide() -> None:
    assert registrable_domain("bücher.example.com") == registrable_domain(
        "xn--bcher-kva.example.com"
    )
    # NFC: a decomposed ü is the same key as a composed one
    assert registrable_domain("mu\u0308nchen.de") == registrable_domain("m\u00fcnchen.de")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "192.168.1.10",
        "http://10.0.0.1/admin",
        "localhost",
        "http://localhost:8000",
        "com",
        "co.uk",
        ".co.uk",
        "https://co.uk/",
        "not a domain",
        "bob@",
        "xn--zz.de",  # invalid punycode
    ],
)
def test_invalid_inputs_raise(text: str) -> None:
    with pytest.raises(DomainError):
        registrable_domain(text)


def test_domain_error_is_a_value_error() -> None:
    assert issubclass(DomainError, ValueError)


def test_email_domain() -> None:
    assert email_domain("Ann@Sub.Globex.com") == "globex.com"
    with pytest.raises(DomainError):
        email_domain("globex.com")


def test_suffix_list_is_bundled_and_offline() -> None:
    extractor = domains._EXTRACT
    # no remote list URLs and no on-disk cache that could be refreshed from the network
    assert not extractor.suffix_list_urls
    # private suffixes are not in play by default and a fresh name still resolves offline
    assert registrable_domain("brand-new-startup.io") == "brand-new-startup.io"
