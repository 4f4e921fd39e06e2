"""Rendering the e-mails: ``connector/templates/<kind>.<language>.txt`` (Jinja2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound

_ENV = Environment(
    loader=PackageLoader("connector", "templates"),
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    language: str


def render(kind: str, language: str | None, context: Mapping[str, Any]) -> Rendered:
    """Render ``<kind>.<language>.txt`` (falling back to English); its first line is
    ``Subject: …``."""
    lang = (language or "en").lower()[:2]
    try:
        template = _ENV.get_template(f"{kind}.{lang}.txt")
    except TemplateNotFound:
        lang = "en"
        template = _ENV.get_template(f"{kind}.en.txt")
    text = template.render(**context)
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"template {kind}.{lang}.txt must start with a 'Subject: ' line")
    return Rendered(first.removeprefix("Subject: ").strip(), rest.lstrip("\n"), lang)
