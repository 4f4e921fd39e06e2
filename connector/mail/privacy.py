"""The privacy checks every e-mail passes before it is queued, and log redaction."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from connector.mail.render import Rendered


class PrivacyViolation(Exception):
    """A rendered e-mail contains something it must never contain. ``what`` names the
    kind of thing (safe to log); ``item`` is the text found (not for logs: it may be
    the contact's name)."""

    def __init__(self, what: str, item: str) -> None:
        super().__init__(f"the message would reveal {what} ({item!r})")
        self.what = what
        self.item = item


_TOKEN = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text)]


def _occurrences(haystack: Sequence[str], needle: Sequence[str]) -> Iterable[range]:
    n = len(needle)
    for i in range(len(haystack) - n + 1):
        if list(haystack[i : i + n]) == list(needle):
            yield range(i, i + n)


def assert_clean(
    message: Rendered,
    forbidden: Iterable[str],
    what: str,
    *,
    partial: Iterable[str] = (),
    named: Iterable[str] = (),
) -> None:
    """Refuse a message whose subject or body contains a forbidden item as whole words.

    Items and text are compared as sequences of words (case-insensitive; any run of
    punctuation or space separates words), so partner ``orbit`` is found in "Orbit's"
    or "orbit-partners.example" but not in "Orbital Kitchens", and "Acme Agency" also
    in "ACME-AGENCY". ``forbidden`` items identify on their own (a full name, an
    e-mail address) and count anywhere. ``partial`` items (a surname, an e-mail's local
    part) count only outside the ``named`` phrases — the company the message is
    legitimately about: "Baker Logistics" does not name Tom Baker, "Baker visited"
    does. Items shorter than three characters are ignored."""
    words = _tokens(f"{message.subject}\n{message.body}")
    legit: set[int] = set()
    for phrase in named:
        needle = _tokens(phrase or "")
        if needle:
            for span in _occurrences(words, needle):
                legit.update(span)
    for items, anywhere in ((forbidden, True), (partial, False)):
        for item in items:
            needle = _tokens(item or "")
            if len("".join(needle)) < 3:
                continue
            for span in _occurrences(words, needle):
                if anywhere or not legit.issuperset(span):
                    raise PrivacyViolation(what, (item or "").strip())


_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact_addresses(text: str) -> str:
    """A server's error often quotes the recipient ("550 <ann@x.com>: rejected"): logs
    get ``<address>`` instead; the outbox row keeps the full answer."""
    return _ADDRESS.sub("<address>", text)
