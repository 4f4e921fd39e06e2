"""A lead's country from whatever a CRM holds; lives in :mod:`connector.config.countries`
since ``dealsync check`` reads country names in the rules' consent regions with it too
(config sits below program, so the table moved down rather than being copied)."""

from __future__ import annotations

from connector.config.countries import ALIASES, LANGUAGES, country_code

__all__ = ["ALIASES", "LANGUAGES", "country_code"]
