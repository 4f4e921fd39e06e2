"""Read ``dealsync.yaml``, its mapping files and rules file into a validated :class:`Project`.

Admins edit these files by hand, so a bad file must produce messages an admin can act
on: file, line, YAML path, what is wrong and how to fix it, for *every* problem at
once, and never a traceback or a secret. To get lines, YAML is composed into PyYAML's
node tree (which keeps marks) and every path in the document is indexed to its line;
pydantic's error locations are then looked up in that index.

A file is also refused, with one problem naming the limit, before it can make the
loader hang or exhaust memory: files larger than :data:`MAX_FILE_BYTES`, aliases that
would expand past :data:`MAX_ALIAS_NODES` values or number more than
:data:`MAX_ALIASES` (a "billion laughs" is 300 bytes on disk and 10^9 values once
walked), recursive aliases and nesting deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import difflib
import logging
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from dotenv import dotenv_values, load_dotenv
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from connector.config.check import (
    ConfigError,
    Placed,
    Problem,
    YamlPath,
    check_object,
    check_objects,
    check_portals,
    errors_of,
    format_path,
    problem_at,
    state_url_error,
)
from connector.config.models import (
    AppConfig,
    MappingFile,
    ObjectMapping,
    PartnerConfig,
    RulesFile,
    VendorConfig,
)
from connector.config.semantics import check_rules

log = logging.getLogger("dealsync.config")

CONFIG_ENV = "DEALSYNC_CONFIG"
STATE_URL_ENV = "DEALSYNC_STATE_URL"
DEFAULT_CONFIG = "dealsync.yaml"

M = TypeVar("M", bound=BaseModel)

# Keys the loader sets itself; written in a file they are as unknown as a typo.
_LOADER_KEYS: dict[type[BaseModel], frozenset[str]] = {AppConfig: frozenset({"base_dir"})}

# What to write when a required key is missing, keyed by (model, key).
_MISSING_HINTS: dict[tuple[str, str], str] = {
    ("AppConfig", "vendor"): "add `vendor:` with the vendor portal, e.g. "
    "`vendor: {adapter: hubspot, token_env: DEALSYNC_VENDOR_TOKEN}`",
    ("AppConfig", "partners"): "add `partners:`, a list of partner connections, each with "
    "id, name and adapter",
    ("AppConfig", "mappings"): "add `mappings: [mappings/shared_deals.yaml]`, the mapping "
    "files to sync",
    ("PartnerConfig", "id"): "add `id:`, a short stable name such as acme (lowercase "
    "letters, digits, - and _)",
    ("PartnerConfig", "name"): "add `name:`, the partner's display name",
    ("MappingFile", "objects"): "add `objects:`, the list of shared objects",
    ("ObjectMapping", "name"): "add `name:`, the object's name in this connector, e.g. deals",
    ("ObjectMapping", "partner_object"): "add `partner_object:`, the CRM object type on "
    "the partner side, e.g. deals",
    ("ObjectMapping", "vendor_object"): "add `vendor_object:`, the CRM object type on the "
    "vendor side, e.g. deals",
    ("ObjectMapping", "share"): "add `share:` with partner/vendor conditions or `via: <object>`",
    ("ObjectMapping", "fields"): "add `fields:`, the list of properties to sync",
    ("FieldMapping", "partner"): "add `partner:`, the property name in the partner CRM",
    ("FieldMapping", "vendor"): "add `vendor:`, the property name in the vendor CRM",
    ("Condition", "property"): "add `property:`, the CRM property the condition tests",
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
    "transform": "string, decimal (amounts), integer, bool, date, datetime, or enum "
    "(labels, optionally translated with value_map)",
    "on_delete": "archive the counterpart, unlink it (keep it, stop syncing) or flag it "
    "for a human",
    "adapter": "hubspot for a HubSpot portal, local for the embedded demo CRM",
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


# --------------------------------------------------------------------------- limits

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Largest file read. Real configs and mappings are a few KB; anything near this is a
wrong file or a generated accident, and pure-Python YAML parses ~1 MB a second."""

MAX_ALIASES = 200
"""Most alias uses (``*name``, including ``<<: *name`` merges) in one file."""

MAX_ALIAS_NODES = 10_000
"""Most values all aliases of one file may stand for, counted expanded. PyYAML composes
an alias as a shared reference, so the cost only appears later, when every check walks
the value once per path to it; this bound keeps those walks small."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (real files nest about six levels)."""

_MB = 1024 * 1024


def _alias_hint() -> str:
    return (
        "write the values out instead of repeating them through aliases; dealsync allows "
        f"at most {MAX_ALIASES:,} aliases per file, standing for at most "
        f"{MAX_ALIAS_NODES:,} values in all"
    )


class _Refused(yaml.YAMLError):
    """A document over one of the limits, with where it went over and the fix."""

    def __init__(self, mark: Any, path: YamlPath, message: str, hint: str) -> None:
        super().__init__(message)
        self.line: int | None = mark.line + 1 if mark is not None else None
        self.path = path
        self.message = message
        self.hint = hint


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting while it composes so a hostile file stops early.

    Every composed value counts one, every alias counts the full expanded size of its
    anchor's value; the size of an anchored value is known once it is complete, and an
    alias to an anchor still being composed is a recursive (infinite) value.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._values = 0  # values composed so far, aliases counted expanded
        self._alias_uses = 0
        self._alias_values = 0
        self._sizes: dict[str, int] = {}  # anchor -> expanded size of its finished value
        self._path: list[str | int] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if parent is None:
            part: str | int | None = None
        elif isinstance(index, int):
            part = index
        elif isinstance(index, yaml.ScalarNode):
            part = str(index.value)
        else:
            part = "[key]"  # a mapping key itself
        if part is not None:
            self._path.append(part)
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            node = super().compose_node(parent, index)
        else:
            if len(self._path) >= MAX_DEPTH:
                raise _Refused(
                    event.start_mark,
                    tuple(self._path[:8]),  # where it starts; the rest is just [0][0]...
                    f"values nested more than {MAX_DEPTH} levels deep",
                    "dealsync files nest a few levels (objects, fields, value_map); "
                    "check the brackets and indentation on this line",
                )
            anchor = getattr(event, "anchor", None)
            before = self._values
            self._values += 1
            node = super().compose_node(parent, index)
            if anchor is not None:
                self._sizes[anchor] = self._values - before
        if part is not None:
            self._path.pop()
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        anchor = str(event.anchor)
        target = self.anchors.get(anchor)
        if target is None:
            return  # PyYAML reports the undefined alias itself
        where = f"anchor &{anchor} at line {target.start_mark.line + 1}"
        path = tuple(self._path)
        size = self._sizes.get(anchor)
        if size is None:
            raise _Refused(
                event.start_mark,
                path,
                f"alias *{anchor} is inside its own anchor &{anchor} (line "
                f"{target.start_mark.line + 1}), which makes an endlessly deep value",
                "write the value out; an alias may only repeat a value that is complete before it",
            )
        self._alias_uses += 1
        self._alias_values += size
        self._values += size
        if self._alias_uses > MAX_ALIASES:
            raise _Refused(
                event.start_mark,
                path,
                f"more than {MAX_ALIASES:,} aliases in this file (this is alias *{anchor}, "
                f"{where})",
                _alias_hint(),
            )
        if self._alias_values > MAX_ALIAS_NODES:
            raise _Refused(
                event.start_mark,
                path,
                f"alias *{anchor} ({where}) would expand this file past "
                f"{MAX_ALIAS_NODES:,} values ({self._alias_values:,} so far)",
                _alias_hint(),
            )


def _too_large(file: str, size: int) -> Problem:
    return Problem(
        file,
        None,
        "",
        f"file is {size / _MB:.1f} MB; dealsync reads files of at most {MAX_FILE_BYTES // _MB} MB",
        "a config, mapping or rules file is a few KB: check the path names the right "
        "file, or split the objects across several mapping files",
    )


# --------------------------------------------------------------------------- YAML


@dataclass
class Document:
    """A YAML file's data plus the line of every key and list item in it."""

    file: str
    data: Any
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path``, or of its nearest enclosing key/item when it is not written."""
        key = tuple(str(p) for p in path if p != "[key]")
        while True:
            if key in self.lines:
                return self.lines[key]
            if not key:
                return None
            key = key[:-1]


def parse_yaml(text: str, file: str) -> tuple[Document | None, list[Problem]]:
    """Parse one YAML document keeping line numbers; syntax errors and files over the
    limits (size, aliases, depth) become problems."""
    if len(text) > MAX_FILE_BYTES:
        return None, [_too_large(file, len(text.encode("utf-8")))]
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [
                Problem(file, 1, "", "file is empty", "write the settings as key: value lines")
            ]
        problems = _duplicate_keys(node, file, (), set())
        data = loader.construct_document(node)
    except _Refused as exc:
        return None, [Problem(file, exc.line, format_path(exc.path), exc.message, exc.hint)]
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(exc, file)]
    finally:
        loader.dispose()
    doc = Document(file, data)
    doc.lines[()] = node.start_mark.line + 1
    _index_lines(node, (), doc.lines, set())
    return doc, problems


def _yaml_problem(exc: yaml.YAMLError, file: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or "invalid YAML"
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    if "'\\t'" in problem or "\t" in problem:
        hint = "YAML does not allow tabs for indentation; indent with spaces"
    elif isinstance(exc, yaml.constructor.ConstructorError):
        hint = "dealsync files are plain YAML; remove the '!!' tag"
    elif "expected a single document" in (context or ""):
        hint = "keep one document per file (remove the extra '---')"
    else:
        hint = (
            "check indentation and quoting on this line and the one before; "
            "values containing ': ' or starting with special characters need quotes"
        )
    return Problem(file, line, "", message, hint)


def _duplicate_keys(node: yaml.Node, file: str, path: YamlPath, active: set[int]) -> list[Problem]:
    """PyYAML silently keeps the last of two equal keys; an admin's typo deserves an error."""
    if id(node) in active:  # recursive alias
        return []
    active = active | {id(node)}
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_line:
                problems.append(
                    Problem(
                        file,
                        line,
                        format_path((*path, key)),
                        f"duplicate key {key!r} (first at line {first_line[key]})",
                        "YAML would silently keep only the last one; remove or rename one",
                    )
                )
            else:
                first_line[key] = line
            problems += _duplicate_keys(value_node, file, (*path, key), active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicate_keys(item, file, (*path, i), active)
    return problems


def _index_lines(
    node: yaml.Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int], active: set[int]
) -> None:
    if id(node) in active:
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            sub = (*path, key)
            lines[sub] = key_node.start_mark.line + 1
            _index_lines(value_node, sub, lines, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, str(i))
            lines[sub] = item.start_mark.line + 1
            _index_lines(item, sub, lines, active)


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
        hint = _MISSING_HINTS.get((owner_name, key), f"add `{key}:` to this mapping")
        return problem_at(doc, loc, f"missing required key {key!r}", hint)

    if kind == "literal_error":
        allowed_values = [str(a) for a in _literal_values(root, rel)]
        if key == "version":
            return problem_at(doc, loc, f"version {value!r} is not supported", "write `version: 1`")
        close = difflib.get_close_matches(str(value), allowed_values, n=1, cutoff=0.7)
        hint = _LITERAL_HINTS.get(key, "use one of the listed values")
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
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
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


# --------------------------------------------------------------------------- files


def _read(path: Path, file: str) -> tuple[Document | None, list[Problem]]:
    """Read at most one byte over the limit, so a huge file is refused without loading it."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                return None, [_too_large(file, max(os.fstat(f.fileno()).st_size, len(raw)))]
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, [Problem(file, None, "", "file is not UTF-8 text", "save it as UTF-8")]
    except OSError as exc:
        return None, [
            Problem(file, None, "", f"cannot read file: {exc.strerror}", "check the path")
        ]
    return parse_yaml(text, file)


@dataclass
class _MappingResult:
    objects: list[Placed[ObjectMapping]] = field(default_factory=list)
    invalid_names: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _mapping_objects(doc: Document | None, problems: list[Problem]) -> _MappingResult:
    """Schema- and per-object checks of one mapping file.

    When the file as a whole is invalid, objects are validated one by one so that
    the valid ones still get their semantic checks: every problem is reported at once.
    """
    result = _MappingResult(problems=list(problems))
    if doc is None:
        return result
    parsed, schema_problems = validate(MappingFile, doc)
    result.problems += schema_problems
    if parsed is not None:
        placed = [Placed(o, doc, ("objects", i)) for i, o in enumerate(parsed.objects)]
    else:
        placed = []
        raw = doc.data.get("objects") if isinstance(doc.data, dict) else None
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            try:
                placed.append(Placed(ObjectMapping.model_validate(item), doc, ("objects", i)))
            except ValidationError:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    result.invalid_names.append(item["name"])
    for p in placed:
        result.problems += check_object(p)
    result.objects = placed
    return result


def load_mapping_text(text: str, filename: str = "<mapping>") -> list[ObjectMapping]:
    """Validate one mapping file's text on its own (tests, the service's hot reload)."""
    doc, problems = parse_yaml(text, filename)
    result = _mapping_objects(doc, problems)
    result.problems += check_objects(result.objects, result.invalid_names)
    if result.problems:
        raise ConfigError(_in_reading_order(result.problems))
    return [p.item for p in result.objects]


# --------------------------------------------------------------------------- project


@dataclass(frozen=True)
class Project:
    """Everything one dealsync installation is configured with, validated together."""

    config: AppConfig
    mappings: list[ObjectMapping]
    rules: RulesFile
    config_path: Path
    # What the checks warned about (values normalised, checks not made); never errors.
    warnings: tuple[Problem, ...] = ()

    def object(self, name: str) -> ObjectMapping:
        for obj in self.mappings:
            if obj.name == name:
                return obj
        known = ", ".join(o.name for o in self.mappings)
        raise KeyError(f"no mapping object {name!r} (known: {known})")

    def resolve(self, p: str | Path) -> Path:
        """Paths in config files are relative to the config file, not the working dir."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.config_path.parent / path


def config_path_from(path: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """Which config file to use: the argument, else ``$DEALSYNC_CONFIG``, else ./dealsync.yaml."""
    if path is not None:
        return Path(path)
    source = os.environ if env is None else env
    return Path(source.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _environment(folder: Path, env: Mapping[str, str] | None) -> Mapping[str, str]:
    """Real env vars win over ``.env``; with no explicit env, ``.env`` fills os.environ."""
    dotenv = folder / ".env"
    if env is None:
        if dotenv.is_file():
            load_dotenv(dotenv, override=False)
        return os.environ
    values = dotenv_values(dotenv) if dotenv.is_file() else {}
    return {**{k: v for k, v in values.items() if v is not None}, **env}


def _load(
    path: str | Path | None,
    env: Mapping[str, str] | None,
    check_env: bool,
    files: list[Path] | None = None,
) -> tuple[Project | None, list[Problem]]:
    """Load and check everything; ``files`` collects every file read or looked for."""
    files = [] if files is None else files
    config_path = config_path_from(path, env)
    files.append(config_path.absolute())
    file = str(config_path)
    if not config_path.is_file():
        return None, [
            Problem(
                file,
                None,
                "",
                "config file not found",
                f"create it (start from the shipped {DEFAULT_CONFIG}), pass its path, "
                f"or set {CONFIG_ENV}",
            )
        ]
    base = config_path.parent
    environ = _environment(base, env)
    doc, problems = _read(config_path, file)
    if doc is None:
        return None, problems
    if not isinstance(doc.data, dict):
        problems.append(
            problem_at(
                doc,
                (),
                f"expected a mapping of settings, got {_describe(doc.data, '')}",
                _EXAMPLES[AppConfig],
            )
        )
        return None, problems

    raw = dict(doc.data)
    for key in _LOADER_KEYS[AppConfig] & raw.keys():
        del raw[key]
        problems.append(
            problem_at(
                doc,
                (key,),
                f"unknown key {key!r}",
                "it is set by dealsync, not the file; allowed keys here: "
                + ", ".join(_allowed_keys(AppConfig)),
            )
        )
    config, schema_problems = validate(AppConfig, doc, {**raw, "base_dir": base.absolute()})
    problems += schema_problems

    # State store URL: the environment overrides the file.
    env_url = environ.get(STATE_URL_ENV)
    if env_url:
        error = state_url_error(env_url)
        if error:
            problems.append(Problem("<environment>", None, STATE_URL_ENV, *error))
    elif isinstance(raw.get("state_url"), str):
        error = state_url_error(raw["state_url"])
        if error:
            problems.append(problem_at(doc, ("state_url",), *error))

    # Portals: from the valid model, or item by item when the file has errors elsewhere.
    vendor: Placed[VendorConfig] | None = None
    partners: list[Placed[PartnerConfig]] = []
    if config is not None:
        vendor = Placed(config.vendor, doc, ("vendor",))
        partners = [Placed(p, doc, ("partners", i)) for i, p in enumerate(config.partners)]
    else:
        vendor_model = _quietly(VendorConfig, raw.get("vendor"))
        vendor = Placed(vendor_model, doc, ("vendor",)) if vendor_model else None
        raw_partners = raw.get("partners")
        for i, item in enumerate(raw_partners if isinstance(raw_partners, list) else []):
            partner = _quietly(PartnerConfig, item)
            if partner is not None:
                partners.append(Placed(partner, doc, ("partners", i)))
    problems += check_portals(vendor, partners, environ, check_env=check_env)

    # Mapping files, then checks across all their objects.
    objects: list[Placed[ObjectMapping]] = []
    invalid_names: list[str] = []
    raw_mappings = raw.get("mappings")
    for i, rel in enumerate(raw_mappings if isinstance(raw_mappings, list) else []):
        if not isinstance(rel, str):
            continue
        target = _existing(doc, ("mappings", i), base, rel, "mapping", problems, files)
        if target is None:
            continue
        result = _mapping_objects(*_read(target, str(target)))
        problems += result.problems
        objects += result.objects
        invalid_names += result.invalid_names
    problems += check_objects(objects, invalid_names)

    rules: RulesFile | None = RulesFile()
    raw_rules = raw.get("rules")
    if isinstance(raw_rules, str):
        target = _existing(doc, ("rules",), base, raw_rules, "rules", problems, files)
        rules = None
        if target is not None:
            rules_doc, rules_problems = _read(target, str(target))
            problems += rules_problems
            if rules_doc is not None:
                rules, schema_problems = validate(RulesFile, rules_doc)
                problems += schema_problems
                if rules is not None:  # normalised values, warnings and errors
                    rules, rule_problems = check_rules(
                        Placed(rules, rules_doc, ()), [o.item for o in objects]
                    )
                    problems += rule_problems

    if errors_of(problems) or config is None or rules is None:
        return None, problems
    if env_url:
        config = config.model_copy(update={"state_url": env_url})
    project = Project(
        config=config,
        mappings=[p.item for p in objects],
        rules=rules,
        config_path=config_path.absolute(),
        warnings=tuple(_in_reading_order(problems)),
    )
    return project, problems


def _quietly(model: type[M], data: Any) -> M | None:
    """Validate for follow-up checks only; the errors were already reported."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _existing(
    doc: Document,
    path: YamlPath,
    base: Path,
    rel: str,
    kind: str,
    problems: list[Problem],
    files: list[Path],
) -> Path | None:
    target = Path(rel).expanduser()
    target = target if target.is_absolute() else base / target
    files.append(target.absolute())
    if target.is_file():
        return target
    problems.append(
        problem_at(
            doc,
            path,
            f"{kind} file {rel!r} not found (looked for {target})",
            "fix the path (relative to the folder of the config file) or create the file",
        )
    )
    return None


def _in_reading_order(problems: list[Problem]) -> list[Problem]:
    """Group by file (in the order files were read), then by line, as an editor shows them."""
    file_rank: dict[str, int] = {}
    for p in problems:
        file_rank.setdefault(p.file, len(file_rank))
    return sorted(problems, key=lambda p: (file_rank[p.file], p.line or 0))


def load_project(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    check_env: bool = True,
) -> Project:
    """Load and validate the config, its mapping files and rules; raise on any problem.

    ``env`` stands in for the process environment (tests); by default ``os.environ``,
    after the ``.env`` next to the config has been loaded into it without overriding
    variables already set. ``check_env=False`` skips credential variables for commands
    that never talk to a CRM.
    """
    files: list[Path] = []
    project, problems = _load(path, env, check_env, files)
    if project is None:
        raise ConfigError(_in_reading_order(errors_of(problems)), files)
    for warning in project.warnings:  # the service's log, the CLI's stderr
        if not warning.is_note:
            log.warning("%s", warning)
    return project


def check_project(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    check_env: bool = True,
) -> list[Problem]:
    """The problems :func:`load_project` would raise, and its warnings; no errors
    (:attr:`Problem.is_error`) means valid."""
    return _in_reading_order(_load(path, env, check_env)[1])
