"""Reading one YAML file safely, with the line of every key and list item in it.

Admins edit these files by hand and the service reloads them, so a file is refused,
with one problem naming the limit, before it can make the loader hang or exhaust
memory: files larger than :data:`MAX_FILE_BYTES`, aliases that would expand past
:data:`MAX_ALIAS_NODES` values or number more than :data:`MAX_ALIASES` (a "billion
laughs" is 300 bytes on disk and 10^9 values once walked), recursive aliases and nesting
deeper than :data:`MAX_DEPTH`. YAML is composed into PyYAML's node tree (which keeps
marks) and every path in the document is indexed to its line, so that later checks can
name the line of what they refuse.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from connector.config.check import Problem, YamlPath, format_path

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
