"""What can be wrong with a configuration, and the checks the schema cannot express.

The pydantic models in :mod:`connector.config.models` say what each file may contain;
this module holds the rules that span fields, objects, files and the environment (a
two-way value map must be reversible, a ``via`` must name a shared object, a portal
has what its kind needs, e.g. a HubSpot token variable that is set...). Every finding
is a :class:`Problem` value carrying file, line, YAML path and a fix, so an admin sees
*all* of them in one go instead of fixing one error per run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import ValidationError

from connector.adapters.registry import CheckContext, kind_of
from connector.config.models import (
    Direction,
    FieldMapping,
    ObjectMapping,
    PartnerConfig,
    PortalConfig,
    VendorConfig,
)
from connector.records import Side

YamlPath = tuple[str | int, ...]
"""A location inside one YAML document: mapping keys and list indexes, root first."""

T = TypeVar("T")

_TYPED_TRANSFORMS = frozenset({"decimal", "integer", "date", "datetime", "bool"})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, located precisely enough to fix it.

    ``line`` is 1-based and ``None`` only when there is no line to point at (a file
    that cannot be read, an environment variable). ``severity`` is ``"error"`` (the
    configuration is refused) or ``"warning"`` (it runs, but maybe not as meant: a
    value dealsync normalised, a check it could not make); warnings are shown by
    ``dealsync check`` and logged on load, and never fail either.
    """

    file: str
    line: int | None
    path: str
    message: str
    hint: str
    severity: Literal["error", "warning", "note"] = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def is_note(self) -> bool:
        """A fact ``check`` shows but loading does not log: nothing is wrong (plain
        http to the local sandbox), so repeating it on every command would be noise."""
        return self.severity == "note"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.path}: {self.message}" if self.path else self.message
        if not self.is_error:
            what = f"{self.severity}: {what}"
        return f"{where}: {what} (hint: {self.hint})"


def errors_of(problems: Iterable[Problem]) -> list[Problem]:
    """The problems that refuse a configuration (warnings left out)."""
    return [p for p in problems if p.is_error]


def warnings_of(problems: Iterable[Problem]) -> list[Problem]:
    """The problems that are only warnings."""
    return [p for p in problems if not p.is_error]


MAX_SHOWN_PROBLEMS = 50
"""Most problems printed or shown at once. A file of 60,000 misspelt keys must not print
60,000 lines (the CLI, the service's /healthz and admin page): the first ones in reading
order are enough to see the pattern, and the rest are counted."""


def shown(problems: Sequence[Problem], limit: int = MAX_SHOWN_PROBLEMS) -> list[str]:
    """The first ``limit`` problems as text, then one line counting the rest per file."""
    lines = [str(p) for p in problems[:limit]]
    rest = problems[limit:]
    if rest:
        per_file: dict[str, int] = {}
        for p in rest:
            per_file[p.file] = per_file.get(p.file, 0) + 1
        where = ", ".join(f"{n:,} in {f}" for f, n in per_file.items())
        lines.append(
            f"... and {len(rest):,} more problem(s) not shown ({where}); fix the ones "
            "above and run `dealsync check` again"
        )
    return lines


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every problem found, not the first.

    ``files`` are the files the loader read or tried to read: the service watches them
    while an edit is refused, so fixing a newly referenced mapping file is noticed too.
    """

    def __init__(self, problems: Iterable[Problem], files: Iterable[Path] = ()) -> None:
        self.problems: list[Problem] = list(problems)
        self.files: list[Path] = list(files)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems):,} configuration problems:"]
        lines += [f"  {line}" for line in shown(self.problems)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._render()


class Source(Protocol):
    """A parsed YAML document that can tell the line of any path inside it."""

    @property
    def file(self) -> str: ...

    def line_of(self, path: Sequence[str | int]) -> int | None: ...


def format_path(path: Sequence[str | int]) -> str:
    """``("objects", 2, "fields", 0, "direction")`` → ``objects[2].fields[0].direction``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for "the key itself, not its value"
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def problem_at(src: Source, path: YamlPath, message: str, hint: str) -> Problem:
    return Problem(src.file, src.line_of(path), format_path(path), message, hint)


def warning_at(src: Source, path: YamlPath, message: str, hint: str) -> Problem:
    """A :class:`Problem` that does not refuse the configuration."""
    return Problem(src.file, src.line_of(path), format_path(path), message, hint, "warning")


def note_at(src: Source, path: YamlPath, message: str, hint: str) -> Problem:
    """A :class:`Problem` that is only information: ``check`` shows it, loads stay quiet."""
    return Problem(src.file, src.line_of(path), format_path(path), message, hint, "note")


@dataclass(frozen=True)
class Placed(Generic[T]):
    """A validated model together with where it was written, so checks can point at it."""

    item: T
    src: Source
    path: YamlPath


# --------------------------------------------------------------------------- mappings


def writes(direction: Direction) -> tuple[Side, ...]:
    """The sides a field may write. ``create_only`` writes whichever side gets the copy."""
    if direction == "to_vendor":
        return ("vendor",)
    if direction == "to_partner":
        return ("partner",)
    return ("partner", "vendor")


def check_object(placed: Placed[ObjectMapping]) -> list[Problem]:
    """Checks that need one object only: its fields and its share rule."""
    problems: list[Problem] = []
    obj, src, path = placed.item, placed.src, placed.path
    written: dict[tuple[Side, str], int] = {}
    for j, field in enumerate(obj.fields):
        fpath = (*path, "fields", j)
        problems += _check_field(field, src, fpath)
        for side in writes(field.direction):
            prop = getattr(field, side)
            first = written.setdefault((side, prop), j)
            if first != j:
                keep_side = "partner" if side == "vendor" else "vendor"
                problems.append(
                    problem_at(
                        src,
                        (*fpath, side),
                        f"{side} property {prop!r} is written by two fields "
                        f"(fields[{first}] and fields[{j}])",
                        f"remove one of them, or set `direction: to_{keep_side}` on one "
                        f"so it no longer writes the {side} side",
                    )
                )
    problems += _check_share(placed)
    return problems


def _check_field(field: FieldMapping, src: Source, fpath: YamlPath) -> list[Problem]:
    problems: list[Problem] = []
    vmap = field.value_map
    if vmap is not None and field.transform in _TYPED_TRANSFORMS:
        problems.append(
            problem_at(
                src,
                (*fpath, "value_map"),
                f"value_map is not allowed with transform {field.transform}",
                "remove value_map, or use `transform: enum` (or string) if the values "
                "really are labels to translate",
            )
        )
    elif vmap and field.direction == "both":
        first_key_for: dict[str, str] = {}
        for key, value in vmap.items():
            other = first_key_for.setdefault(value, key)
            if other != key:
                problems.append(
                    problem_at(
                        src,
                        (*fpath, "value_map", key),
                        f"value_map is not one-to-one: {other!r} and {key!r} both map to "
                        f"{value!r}, so a vendor value {value!r} cannot be mapped back",
                        "give each partner value its own vendor value, or make the field "
                        "one-way with `direction: to_vendor`",
                    )
                )
    if field.default is not None:
        error = default_error(field)
        if error is not None:
            message, hint = error
            problems.append(problem_at(src, (*fpath, "default"), message, hint))
    return problems


def default_error(field: FieldMapping) -> tuple[str, str] | None:
    """Why ``field.default`` cannot be written through ``field.transform``, if it cannot."""
    value = field.default
    assert value is not None
    bad = f"default {value!r} is not a valid {field.transform}"
    try:
        if field.transform == "decimal":
            if not Decimal(value.strip()).is_finite():
                raise InvalidOperation
        elif field.transform == "integer":
            int(value.strip())
        elif field.transform == "date":
            date.fromisoformat(value.strip())
        elif field.transform == "datetime":
            if datetime.fromisoformat(value.strip()).tzinfo is None:
                return (
                    f"default {value!r} has no timezone",
                    'add one, e.g. "2024-12-31T00:00:00Z"',
                )
        elif field.transform == "bool":
            if value.strip().lower() not in {"true", "false"}:
                raise ValueError(value)
        elif field.transform == "enum" and field.value_map:
            allowed = sorted(set(field.value_map) | set(field.value_map.values()))
            if value not in allowed:
                return (
                    f"default {value!r} is not a value of this field's value_map",
                    "use one of: " + ", ".join(allowed),
                )
    except (ValueError, InvalidOperation):
        examples = {
            "decimal": 'use a number, e.g. "0" or "1500.00"',
            "integer": 'use a whole number, e.g. "0"',
            "date": 'use an ISO date, e.g. "2024-12-31"',
            "datetime": 'use an ISO datetime with timezone, e.g. "2024-12-31T00:00:00Z"',
            "bool": 'use "true" or "false"',
        }
        return bad, examples[field.transform]
    return None


def _check_share(placed: Placed[ObjectMapping]) -> list[Problem]:
    problems: list[Problem] = []
    share, src = placed.item.share, placed.src
    spath = (*placed.path, "share")
    has_conditions = share.partner is not None or share.vendor is not None
    if share.via is None and not has_conditions:
        problems.append(
            problem_at(
                src,
                spath,
                "share has neither conditions nor via, so no record would ever be shared",
                "add `partner:`/`vendor:` conditions that select the records to share, or "
                "`via: <object>` to share records associated with a shared <object>",
            )
        )
    elif share.via is not None and has_conditions:
        problems.append(
            problem_at(
                src,
                (*spath, "via"),
                "share has both via and partner/vendor conditions",
                "use one: conditions select records directly, via shares what is "
                "associated with a shared record",
            )
        )
    for side in ("partner", "vendor"):
        conditions = getattr(share, side)
        if conditions == []:
            problems.append(
                problem_at(
                    src,
                    (*spath, side),
                    "empty condition list would share every record",
                    "list at least one condition, e.g. "
                    '`- {property: dealsync_register, equals: "true"}`, or remove the key',
                )
            )
        for k, cond in enumerate(conditions or []):
            tests = [cond.equals, cond.is_in, cond.present]
            if sum(t is not None for t in tests) != 1:
                problems.append(
                    problem_at(
                        src,
                        (*spath, side, k),
                        f"condition on {cond.property!r} needs exactly one of equals, in, present",
                        'e.g. `{property: dealsync_register, equals: "true"}`',
                    )
                )
    return problems


def check_objects(
    objects: Sequence[Placed[ObjectMapping]], unvalidated_names: Iterable[str] = ()
) -> list[Problem]:
    """Checks across all mapping objects of a project: unique names, via, associations.

    ``unvalidated_names`` are names of objects that failed schema validation; they
    exist (their own problems are already reported), so references to them are not
    flagged a second time.
    """
    problems: list[Problem] = []
    by_name: dict[str, Placed[ObjectMapping]] = {}
    for placed in objects:
        name = placed.item.name
        first = by_name.setdefault(name, placed)
        if first is not placed:
            where = f"{first.src.file}:{first.src.line_of((*first.path, 'name'))}"
            problems.append(
                problem_at(
                    placed.src,
                    (*placed.path, "name"),
                    f"object name {name!r} is already used at {where}",
                    "object names must be unique across all mapping files; rename one",
                )
            )
    known = set(by_name) | set(unvalidated_names)
    listing = ", ".join(sorted(known)) or "none"
    for placed in objects:
        obj, src = placed.item, placed.src
        via = obj.share.via
        vpath = (*placed.path, "share", "via")
        if via is not None:
            target = by_name.get(via)
            if via == obj.name:
                problems.append(
                    problem_at(
                        src,
                        vpath,
                        f"object {obj.name!r} cannot be shared via itself",
                        f"name the object whose shared records carry these (known: {listing})",
                    )
                )
            elif via not in known:
                problems.append(
                    problem_at(
                        src,
                        vpath,
                        f"via names unknown object {via!r}",
                        _unknown_name_hint(via, known),
                    )
                )
            elif target is not None and (
                target.item.share.partner is None and target.item.share.vendor is None
            ):
                problems.append(
                    problem_at(
                        src,
                        vpath,
                        f"via object {via!r} is not shared by conditions itself",
                        f"give {via!r} partner/vendor conditions, or point via at an "
                        "object that has them",
                    )
                )
        seen: set[str] = set()
        for k, assoc in enumerate(obj.associations):
            apath = (*placed.path, "associations", k)
            if assoc == obj.name:
                problems.append(
                    problem_at(
                        src,
                        apath,
                        f"object {obj.name!r} cannot be associated with itself",
                        "list other mapping objects",
                    )
                )
            elif assoc not in known:
                problems.append(
                    problem_at(
                        src,
                        apath,
                        f"association names unknown object {assoc!r}",
                        _unknown_name_hint(assoc, known),
                    )
                )
            elif assoc in seen:
                problems.append(
                    problem_at(src, apath, f"association {assoc!r} is listed twice", "remove one")
                )
            seen.add(assoc)
    return problems


def _unknown_name_hint(name: str, known: set[str]) -> str:
    hint = f"use the name of another mapping object (known: {', '.join(sorted(known))})"
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean {close[0]!r}? {hint}" if close else hint


# --------------------------------------------------------------------------- config


def check_portals(
    vendor: Placed[VendorConfig] | None,
    partners: Sequence[Placed[PartnerConfig]],
    env: Mapping[str, str],
    *,
    check_env: bool = True,
    check_partner_env: bool = True,
) -> list[Problem]:
    """Partner ids unique, and every portal has what its adapter needs to connect.

    ``check_partner_env=False``: a partner's credentials (what its kind requires of the
    environment) do not refuse the configuration; that connection alone cannot run,
    and :func:`missing_credentials` says why (commands and ``serve`` report it)."""
    problems: list[Problem] = []
    if vendor is not None:
        problems += _check_portal(vendor, "DEALSYNC_VENDOR_TOKEN", env, check_env)
    first_at: dict[str, Placed[PartnerConfig]] = {}
    for placed in partners:
        pid = placed.item.id
        first = first_at.setdefault(pid, placed)
        if first is not placed:
            problems.append(
                problem_at(
                    placed.src,
                    (*placed.path, "id"),
                    f"partner id {pid!r} is already used by {format_path(first.path)}",
                    "give each partner a unique id (it keys the sync state, so never "
                    "rename one that has synced)",
                )
            )
        suggested = partner_token_env(pid)
        problems += _check_portal(placed, suggested, env, check_env and check_partner_env)
    from connector.config.semantics import check_portal_values

    problems += check_portal_values(vendor, partners, env)
    return problems


def _check_portal(
    placed: Placed[VendorConfig] | Placed[PartnerConfig],
    suggested_env: str,
    env: Mapping[str, str],
    check_env: bool,
) -> list[Problem]:
    """What the portal's kind says is missing (its settings' schema was checked by the
    loader)."""
    portal: PortalConfig = placed.item
    kind = kind_of(portal.adapter)
    try:
        settings = portal.settings
    except ValidationError:
        return []  # the loader reported each of them at its key
    ctx = CheckContext(env, check_env, suggested_env, format_path(placed.path))
    out = []
    for s in kind.check(settings, ctx):
        path = (*placed.path, s.key) if s.key else placed.path
        out.append(
            Problem(
                placed.src.file,
                placed.src.line_of(path),
                format_path(path),
                s.message,
                s.hint,
                s.severity,
            )
        )
    return out


def partner_token_env(partner_id: str) -> str:
    """A good name for a partner's token variable (hints only)."""
    return f"DEALSYNC_PARTNER_{partner_id.upper().replace('-', '_')}_TOKEN"


def missing_credentials(
    portal: PortalConfig, env: Mapping[str, str], *, at: str, suggested_env: str
) -> list[str]:
    """Why ``portal`` cannot connect with this environment, one line each naming the
    variable (e.g. ``missing env var X for partners[1].token_env; set it in the
    environment or .env``); empty when nothing its kind needs is missing.

    These are the findings of the kind's check that appear only when the environment
    is checked, so any kind's secrets count without this module knowing the kind."""
    kind = kind_of(portal.adapter)
    try:
        settings = portal.settings
    except ValidationError:
        return []  # the loader refused the file already
    offline = set(kind.check(settings, CheckContext(env, False, suggested_env, at)))
    return [
        f"{s.message}; {s.hint}"
        for s in kind.check(settings, CheckContext(env, True, suggested_env, at))
        if s not in offline and s.severity == "error"
    ]


# a file (or in-memory) SQLite URL: SQLite ships with Python and SQLAlchemy accepts any
# path here, so such a URL is usable without asking SQLAlchemy (tests/cli/test_check_light.py)
PLAIN_SQLITE = re.compile(r"sqlite(\+pysqlite)?://(/[^?#]*)?")


def state_url_error(url: str) -> tuple[str, str] | None:
    """Why ``url`` is not a usable SQLAlchemy URL, without ever echoing it (passwords)."""
    if PLAIN_SQLITE.fullmatch(url):
        return None  # the default state store's URL: no need to load SQLAlchemy
    # here, not at the top: SQLAlchemy is a fifth of a second to import, which a
    # check of a project with a plain SQLite state_url need not pay
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return (
            "state_url is not a valid database URL",
            "use an SQLAlchemy URL such as sqlite:///.dealsync/state.db or "
            "postgresql://user@host/dealsync",
        )
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        hint = "use sqlite:///path/to/state.db or postgresql://user@host/dbname"
        if parsed.drivername.startswith("postgres") and not parsed.drivername.startswith(
            "postgresql"
        ):
            hint = "write postgresql://… (SQLAlchemy does not accept postgres://)"
        return f"state_url names unknown database kind {parsed.drivername!r}", hint
    return None
