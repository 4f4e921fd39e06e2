"""Read ``dealsync.yaml``, its mapping files and rules file into a validated :class:`Project`.

Admins edit these files by hand, so a bad file must produce messages an admin can act
on: file, line, YAML path, what is wrong and how to fix it, for *every* problem at
once, and never a traceback or a secret. Three rooms: :mod:`connector.config.yaml_read`
reads a file safely (size, alias and depth limits) with the line of every YAML path;
:mod:`connector.config.schema_messages` turns pydantic's errors into those messages;
this module walks the files in order (config, portals, mappings, rules) and collects
every problem, with the semantic checks of :mod:`connector.config.check`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values, load_dotenv
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from connector.adapters.registry import PortalKind, kinds
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
    PortalConfig,
    RulesFile,
    VendorConfig,
    by_name,
)
from connector.config.schema_messages import (
    _EXAMPLES,
    _LOADER_KEYS,
    M,
    _allowed_keys,
    _describe,
    validate,
)
from connector.config.yaml_read import (
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    Document,
    _read,
    parse_yaml,
)

__all__ = [
    "MAX_ALIASES",
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "Document",
    "Project",
    "check_project",
    "config_path_from",
    "load_mapping_text",
    "load_project",
    "parse_yaml",
    "validate",
]

from connector.config.semantics import check_rules

log = logging.getLogger("dealsync.config")

CONFIG_ENV = "DEALSYNC_CONFIG"
STATE_URL_ENV = "DEALSYNC_STATE_URL"
DEFAULT_CONFIG = "dealsync.yaml"


# --------------------------------------------------------------------------- files


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
    """Every mapping object of the project: the project's files, then the partners'
    own (a partner's ``mappings``), each file once."""
    rules: RulesFile
    config_path: Path
    # What the checks warned about (values normalised, checks not made); never errors.
    warnings: tuple[Problem, ...] = ()
    # partner id → its connection's mappings, for a partner with its own files
    partner_mappings: Mapping[str, tuple[ObjectMapping, ...]] = field(default_factory=dict)
    # the project-level files' objects (None: all of ``mappings``)
    project_mappings: tuple[ObjectMapping, ...] | None = None

    def mappings_for(self, partner_id: str) -> list[ObjectMapping]:
        """The mappings one connection syncs: the partner's own files when it names
        some, else the project's."""
        own = self.partner_mappings.get(partner_id)
        if own is not None:
            return list(own)
        return list(self.mappings if self.project_mappings is None else self.project_mappings)

    def mapping_files(self) -> list[Path]:
        """Every mapping file the project reads (the project's, then the partners')."""
        listed = list(self.config.mappings)
        for p in self.config.partners:
            listed += p.mappings or []
        return list(dict.fromkeys(self.resolve(m) for m in listed))

    def object(self, name: str) -> ObjectMapping:
        return by_name(self.mappings, name, lambda o: o.name, f"no mapping object {name!r}")

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
    partner_env: bool = True,
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
    problems += _kind_settings(doc, raw)
    problems += check_portals(
        vendor, partners, environ, check_env=check_env, check_partner_env=partner_env
    )

    # Mapping files (the project's, then the partners' own, each file once), then
    # checks across all their objects.
    objects: list[Placed[ObjectMapping]] = []
    invalid_names: list[str] = []
    by_file: dict[Path, list[Placed[ObjectMapping]]] = {}

    def mapping_file(path: YamlPath, rel: Any) -> list[Placed[ObjectMapping]] | None:
        if not isinstance(rel, str):
            return None
        target = _existing(doc, path, base, rel, "mapping", problems, files)
        if target is None:
            return None
        key = target.resolve()
        if key not in by_file:
            result = _mapping_objects(*_read(target, str(target)))
            problems.extend(result.problems)
            objects.extend(result.objects)
            invalid_names.extend(result.invalid_names)
            by_file[key] = result.objects
        return by_file[key]

    raw_mappings = raw.get("mappings")
    for i, rel in enumerate(raw_mappings if isinstance(raw_mappings, list) else []):
        mapping_file(("mappings", i), rel)
    project_level = [p.item for p in objects]
    own: dict[str, tuple[ObjectMapping, ...]] = {}
    listed_partners = raw.get("partners")
    for i, item in enumerate(listed_partners if isinstance(listed_partners, list) else []):
        rels = item.get("mappings") if isinstance(item, dict) else None
        if not isinstance(rels, list) or not isinstance(item.get("id"), str):
            continue
        found = [mapping_file(("partners", i, "mappings", j), rel) for j, rel in enumerate(rels)]
        own[item["id"]] = tuple(p.item for f in found for p in f or [])
    problems += check_objects(objects, invalid_names)
    problems += _one_program_mapping_per_object(objects, project_level, own)

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
        partner_mappings=own,
        project_mappings=tuple(project_level) if own else None,
    )
    return project, problems


def _one_program_mapping_per_object(
    objects: list[Placed[ObjectMapping]],
    project_level: list[ObjectMapping],
    own: Mapping[str, tuple[ObjectMapping, ...]],
) -> list[Problem]:
    """The program's rules find a connection's deals, contacts and companies by the
    partner object type they sync (``Opportunity``, ``deals``...), across every mapping
    of the project. Two connections' files mapping one partner object type
    differently would leave the rules unable to tell whose is whose: refused, naming
    both, instead of one partner's rules silently reading the other's mapping."""
    sets = [{m.name for m in ms} for ms in (project_level, *own.values())]
    first: dict[str, ObjectMapping] = {}
    clash: list[tuple[ObjectMapping, ObjectMapping]] = []
    for m in (p.item for p in objects):
        seen = first.setdefault(m.partner_object, m)
        if seen is not m and not any({seen.name, m.name} <= names for names in sets):
            clash.append((seen, m))
    placed = {id(p.item): p for p in objects}
    out: list[Problem] = []
    for a, b in clash:
        where = placed[id(a)]
        at = f"{where.src.file}:{where.src.line_of((*where.path, 'partner_object'))}"
        p = placed[id(b)]
        out.append(
            problem_at(
                p.src,
                (*p.path, "partner_object"),
                f"partner object {b.partner_object!r} is also mapped by object {a.name!r} at "
                f"{at}, in another connection's mapping files",
                "partners of one CRM kind share one mapping file: list the same file in each "
                "partner's `mappings`",
            )
        )
    return out


def _kind_settings(doc: Document, raw: Mapping[str, Any]) -> list[Problem]:
    """Each portal's own keys, checked with its kind's settings model.

    The config model lets a portal's keys beyond ``adapter`` through (they belong to
    the kind); here each portal is validated as the config model and the kind's
    settings together, strictly, so a kind's key has its type and range checked and a
    typo is an unknown key with the allowed keys of both in the hint. What the config
    model already reported (its own keys, a portal that is not a mapping) is left out.
    """
    portals: list[tuple[YamlPath, Any, type[PortalConfig]]] = [
        (("vendor",), raw.get("vendor"), VendorConfig)
    ]
    listed = raw.get("partners")
    for i, item in enumerate(listed if isinstance(listed, list) else []):
        portals.append((("partners", i), item, PartnerConfig))
    problems: list[Problem] = []
    for path, item, model in portals:
        if not isinstance(item, dict):
            continue
        kind = kinds().get(item.get("adapter", PortalConfig.model_fields["adapter"].default))
        if kind is None:
            continue  # an unknown kind: the config model said so
        _, found = validate(_strict_portal(model, kind), doc, item, path)
        prefix = format_path(path) + "."
        problems += [
            p
            for p in found
            if p.path.startswith(prefix)
            and re.split(r"[.\[]", p.path[len(prefix) :])[0] not in model.model_fields
        ]
    return problems


@functools.cache
def _strict_portal(model: type[PortalConfig], kind: PortalKind) -> type[BaseModel]:
    """``model`` with ``kind``'s settings as fields and no other keys allowed."""
    strict = type(
        model.__name__,
        (model,),
        {"model_config": ConfigDict(extra="forbid", frozen=True), "__module__": model.__module__},
    )
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in kind.settings.model_fields.items()}
    return create_model(model.__name__, __base__=strict, **fields)


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
    partner_env: bool = True,
) -> Project:
    """Load and validate the config, its mapping files and rules; raise on any problem.

    ``env`` stands in for the process environment (tests); by default ``os.environ``,
    after the ``.env`` next to the config has been loaded into it without overriding
    variables already set. ``check_env=False`` skips credential variables for commands
    that never talk to a CRM. ``partner_env=False`` checks the vendor's credentials
    but not the partners': commands and ``serve`` load so, and a partner whose
    credentials are missing is one connection that cannot run
    (:meth:`connector.api.Dealsync.unusable`), not a refused project.
    """
    files: list[Path] = []
    project, problems = _load(path, env, check_env, files, partner_env)
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
