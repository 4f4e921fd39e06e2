"""Pydantic's validation errors as messages an admin can act on.

Each error becomes a :class:`Problem` at its file, line and YAML path, saying what is
wrong in the file's own words (never echoing a secret) and how to fix it: the allowed
keys and a close match for an unknown key, the choices of an enumerated one and what
they mean, what a missing key is for.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from datetime import date
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from connector.config.check import Problem, YamlPath, problem_at
from connector.config.models import AppConfig, MappingFile, RulesFile
from connector.config.yaml_read import Document

M = TypeVar("M", bound=BaseModel)

# Keys the loader sets itself; written in a file they are as unknown as a typo.
_LOADER_KEYS: dict[type[BaseModel], frozenset[str]] = {AppConfig: frozenset({"base_dir"})}

# What to write when a required key is missing, by model and key.
_MISSING_HINTS: dict[str, dict[str, str]] = {
    "AppConfig": {
        "vendor": "add `vendor:` with the vendor portal, e.g. "
        "`vendor: {adapter: hubspot, token_env: DEALSYNC_VENDOR_TOKEN}`",
        "partners": "add `partners:`, a list of partner connections, each with id, name "
        "and adapter",
        "mappings": "add `mappings: [mappings/shared_deals.yaml]`, the mapping files to sync",
    },
    "PartnerConfig": {
        "id": "add `id:`, a short stable name such as acme (lowercase letters, digits, - and _)",
        "name": "add `name:`, the partner's display name",
    },
    "MappingFile": {"objects": "add `objects:`, the list of shared objects"},
    "ObjectMapping": {
        "name": "add `name:`, the object's name in this connector, e.g. deals",
        "partner_object": "add `partner_object:`, the CRM object type on the partner side, "
        "e.g. deals",
        "vendor_object": "add `vendor_object:`, the CRM object type on the vendor side, e.g. deals",
        "share": "add `share:` with partner/vendor conditions or `via: <object>`",
        "fields": "add `fields:`, the list of properties to sync",
    },
    "FieldMapping": {
        "partner": "add `partner:`, the property name in the partner CRM",
        "vendor": "add `vendor:`, the property name in the vendor CRM",
    },
    "Condition": {"property": "add `property:`, the CRM property the condition tests"},
}

_RANGE_HINTS: dict[str, str] = {
    "batch_size": "HubSpot batch endpoints take at most 100 records per call",
    "commission_rate": "a rate is a fraction: 0.20 means 20%",
}

# What the choices of an enumerated key mean, keyed by key name.
_LITERAL_HINTS: dict[str, str] = {
    "direction": "both syncs both ways, to_vendor/to_partner one way, create_only only "
    "when the counterpart record is created",
    "conflict": "when both sides changed: vendor_wins, partner_wins, newest (latest "
    "change wins) or manual (a human decides)",
    "transform": "string, decimal (amounts), integer, bool, date, datetime, enum "
    "(labels, optionally translated with value_map), or domain (a website as its host)",
    "on_delete": "archive the counterpart, unlink it (keep it, stop syncing) or flag it "
    "for a human",
}

_TYPE_WORDS: dict[str, str] = {
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "dict_type": "a mapping (key: value lines)",
    "list_type": "a list ('- ' items)",
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}

_EXAMPLES: dict[type[BaseModel], str] = {
    AppConfig: "see the commented dealsync.yaml shipped with dealsync",
    MappingFile: "see the commented mappings/shared_deals.yaml shipped with dealsync",
    RulesFile: "see the commented mappings/rules.yaml shipped with dealsync",
}


# --------------------------------------------------------------------------- schema


def validate(
    model: type[M], doc: Document, data: Any = None, path: YamlPath = ()
) -> tuple[M | None, list[Problem]]:
    """Validate ``data`` (default: the whole document) and translate every error."""
    data = doc.data if data is None else data
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [_schema_problem(model, doc, error, path) for error in exc.errors()]


def _schema_problem(
    root: type[BaseModel],
    doc: Document,
    error: ErrorDetails,
    prefix: YamlPath,
) -> Problem:
    loc: YamlPath = (*prefix, *error["loc"])
    rel = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    key = str(rel[-1]) if rel else ""
    fallback_hint = _EXAMPLES.get(root, "see the shipped example files")

    if kind == "extra_forbidden":
        owner = _model_at(root, rel[:-1])
        allowed = _allowed_keys(owner) if owner is not None else []
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else "remove it or fix its spelling; "
        hint += "allowed keys here: " + ", ".join(allowed)
        return problem_at(doc, loc, f"unknown key {key!r}", hint)

    if kind == "missing":
        owner = _model_at(root, rel[:-1])
        owner_name = owner.__name__ if owner is not None else ""
        hint = _MISSING_HINTS.get(owner_name, {}).get(key, f"add `{key}:` to this mapping")
        return problem_at(doc, loc, f"missing required key {key!r}", hint)

    if kind in ("literal_error", "unknown_kind"):
        # unknown_kind: a name looked up in a registry (adapter: the portal kinds), whose
        # choices and their meaning come with the error
        choices = ctx.get("known") if kind == "unknown_kind" else _literal_values(root, rel)
        allowed_values = [str(a) for a in choices or ()]
        if key == "version":
            return problem_at(doc, loc, f"version {value!r} is not supported", "write `version: 1`")
        close = difflib.get_close_matches(str(value), allowed_values, n=1, cutoff=0.7)
        hint = ctx.get("meaning") or _LITERAL_HINTS.get(key, "use one of the listed values")
        if close:
            hint = f"did you mean {close[0]!r}? {hint}"
        return problem_at(
            doc, loc, f"{_show(value, key)} is not one of {', '.join(allowed_values)}", hint
        )

    if kind in _TYPE_WORDS:
        wanted = _TYPE_WORDS[kind]
        return problem_at(
            doc, loc, f"expected {wanted}, got {_describe(value, key)}", _type_hint(kind, value)
        )

    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bound = {
            "greater_than": f"more than {ctx.get('gt')}",
            "greater_than_equal": f"at least {ctx.get('ge')}",
            "less_than": f"less than {ctx.get('lt')}",
            "less_than_equal": f"at most {ctx.get('le')}",
        }[kind]
        hint = f"use a value {bound}"
        if key in _RANGE_HINTS:
            hint = f"{_RANGE_HINTS[key]}; {hint}"
        return problem_at(doc, loc, f"{_show(value, key)} is out of range: must be {bound}", hint)

    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return problem_at(
            doc,
            loc,
            f"{key or 'this list'} needs at least {least} entr{'y' if least == 1 else 'ies'}",
            fallback_hint,
        )

    if kind == "string_pattern_mismatch":
        if key == "id":
            return problem_at(
                doc,
                loc,
                f"{_show(value, key)} is not a valid partner id",
                "use lowercase letters, digits, '-' and '_', starting with a letter or "
                "digit, at most 63 characters (e.g. acme or acme-uk)",
            )
        return problem_at(
            doc,
            loc,
            f"{_show(value, key)} does not match the pattern {ctx.get('pattern')}",
            fallback_hint,
        )

    return problem_at(doc, loc, str(error["msg"]), fallback_hint)


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _type_at(root: type[BaseModel], loc: Sequence[str | int]) -> Any:
    """The annotation a location in the data is validated against (None if unknown)."""
    tp: Any = root
    for part in loc:
        tp = _strip_optional(tp)
        if part == "[key]":
            return str
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = next((f for n, f in tp.model_fields.items() if part in (n, f.alias)), None)
            if info is None:
                return None
            tp = info.annotation
        elif get_origin(tp) is list:
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _strip_optional(tp)


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    tp = _type_at(root, loc)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _literal_values(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[Any, ...]:
    tp = _type_at(root, loc)
    return get_args(tp) if get_origin(tp) is Literal else ()


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    hidden = _LOADER_KEYS.get(model, frozenset())
    return [f.alias or n for n, f in model.model_fields.items() if n not in hidden]


def _secret_key(key: str) -> bool:
    return any(word in key.lower() for word in ("token", "secret", "password", "url"))


def _show(value: Any, key: str) -> str:
    """A value for a message: short, and never one that may be a secret."""
    if _secret_key(key) and key != "token_env":
        return "the value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any, key: str) -> str:
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, bool | int | float):
        # bool first: True is an int too
        return (
            f"the boolean {str(value).lower()}"
            if isinstance(value, bool)
            else f"the number {value}"
        )
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    return _show(value, key)


def _type_hint(kind: str, value: Any) -> str:
    if kind == "string_type" and isinstance(value, bool | int | float | date):
        return (
            "YAML reads unquoted true/false, numbers and dates as non-strings; "
            'put the value in quotes, e.g. "true"'
        )
    if kind in {"model_type", "dict_type", "model_attributes_type"} and isinstance(value, list):
        return "write key: value lines under this key, not '- ' items"
    if kind == "list_type" and isinstance(value, dict):
        return "write each entry on its own line starting with '- '"
    if value is None:
        return "give the key a value (or remove it, if it is optional)"
    return f"make this value {_TYPE_WORDS[kind]}"
