"""``dealsync check --online``: the mappings and rules against the portals' real schemas.

Offline, ``partner: dealnmae`` is a perfectly good property name; only the portal knows
it has ``dealname`` and no ``dealnmae``. This module reads every portal's properties
and pipelines through its adapter (:meth:`CRMAdapter.object_schema`) once per object
type and checks, per field and per side:

* the property exists (else ``did you mean`` from the portal's real names and labels);
* its type fits the field's transform (``decimal`` needs a number property, ...);
* a side the field writes is not read-only there;
* value-map keys (partner values) and values (vendor values) and defaults are options
  of the property; for ``dealstage``/``pipeline`` the ids of that portal's pipelines
  and stages, with a hint when a label was written instead of an id;
* share conditions name existing properties (or ones ``dealsync setup`` installs) and
  existing options;
* ``won_stages``/``closed_stages`` of the rules are stage ids of the vendor's pipelines.

Problems carry file, line and YAML path like the offline checks: the files are parsed
again here for their line index (they were valid a moment ago, so this cannot fail in
a new way). A portal without a schema (the embedded local CRM) gets one warning saying
the online check was not made for it; a portal that cannot be read gets one error
naming it and where its credentials come from, and the other portals are still
checked. ``dealsync setup`` and the service's reload run the same checks
(:meth:`connector.api.Dealsync.online_check`); the reload bounds the reads in time
(``timeout``: every portal is read in its own thread, a portal that has not answered
by then is one "did not answer" error) and lets a portal its edit did not change fail
as a warning (``tolerate``), so one partner's outage never blocks everyone's edits.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from connector.adapters.base import (
    AdapterError,
    CRMAdapter,
    ObjectSchema,
    PortalUnreachable,
    PropertyInfo,
)
from connector.config.check import Placed, Problem, Source, YamlPath, problem_at, warning_at, writes
from connector.config.loader import Document, Project, parse_yaml, validate
from connector.config.models import Condition, FieldMapping, MappingFile, ObjectMapping
from connector.records import Side

# Property types (HubSpot's vocabulary) each transform can write and read.
_FITS: dict[str, frozenset[str]] = {
    "decimal": frozenset({"number"}),
    "integer": frozenset({"number"}),
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"datetime"}),
    "bool": frozenset({"bool", "enumeration"}),
    "enum": frozenset({"enumeration", "string", "bool"}),
    "domain": frozenset({"string"}),
}
_TRANSFORM_FOR: dict[str, str] = {
    "number": "decimal (or integer)",
    "date": "date",
    "datetime": "datetime",
    "bool": "bool",
    "enumeration": "enum",
    "string": "string",
}
_SHOWN_NAMES = 12  # real names listed in a hint after the "did you mean"


@dataclass
class Portal:
    """One portal to check against: its adapter, where the config names it, and the
    object schemas read so far (``None``: this CRM has none)."""

    name: str
    side: Side
    adapter: CRMAdapter
    path: YamlPath
    schemas: dict[str, ObjectSchema | None] = field(default_factory=dict)
    failed: bool = False
    unavailable: bool = False
    key: str = ""  # "vendor" or the partner's id: how callers name this portal
    credentials: str = ""  # where its token and host come from, for the hint
    tolerated: bool = False  # a read failure is a warning (the reload: unchanged portal)
    # the bounded read's failure: what, why, and the adapter's own line when the
    # portal could not be reached (said as it is, see _Checker._unreadable)
    error: tuple[str, str, str | None] | None = None


@dataclass
class OnlineCheck:
    """What :func:`run_online_check` found: the problems, in reading order, and the
    portals (by key) that could not be read, so the reload knows to retry."""

    problems: list[Problem]
    unreadable: dict[str, str] = field(default_factory=dict)


def check_online(
    project: Project,
    vendor: CRMAdapter,
    partners: Mapping[str, CRMAdapter],
    installable: Mapping[Side, Iterable[tuple[str, str]]] | None = None,
    *,
    config_file: str | Path | None = None,
) -> list[Problem]:
    """Every problem the portals' real schemas reveal in the project's mappings and
    rules, in reading order. ``installable`` are the (object type, property) pairs
    ``dealsync setup`` creates per side: missing, they are a warning (run setup), not
    an error. ``config_file`` is the config's path as the admin named it, so files are
    named as the offline checks name them (default: the absolute path)."""
    return run_online_check(
        project, vendor, partners, installable, config_file=config_file
    ).problems


def run_online_check(
    project: Project,
    vendor: CRMAdapter | None,
    partners: Mapping[str, CRMAdapter],
    installable: Mapping[Side, Iterable[tuple[str, str]]] | None = None,
    *,
    config_file: str | Path | None = None,
    timeout: float | None = None,
    tolerate: Collection[str] = (),
    credentials: Mapping[str, str] | None = None,
) -> OnlineCheck:
    """:func:`check_online`, and which portals could not be read. ``vendor`` None:
    the vendor's portal is not checked (``setup`` could not reach it and said so).
    ``timeout``: read every portal's schemas up front, in parallel, waiting that many
    seconds at most. ``tolerate``: keys ("vendor", partner ids) of portals whose read
    failure is a warning, not an error. ``credentials``: per key, where its token and
    host come from (named in the hint when it cannot be read)."""
    shown = Path(config_file) if config_file is not None else project.config_path
    files = _Files(shown)
    creds = credentials or {}
    portals: list[Portal] = []
    if vendor is not None:
        portals.append(
            Portal(
                project.config.vendor.name,
                "vendor",
                vendor,
                ("vendor",),
                key="vendor",
                credentials=creds.get("vendor", ""),
                tolerated="vendor" in tolerate,
            )
        )
    for i, p in enumerate(project.config.partners):
        if p.id in partners:
            portals.append(
                Portal(
                    p.id,
                    "partner",
                    partners[p.id],
                    ("partners", i),
                    key=p.id,
                    credentials=creds.get(p.id, ""),
                    tolerated=p.id in tolerate,
                )
            )
    setup = {side: set(pairs) for side, pairs in (installable or {}).items()}
    problems: list[Problem] = []
    checker = _Checker(files.read(project.config_path), problems, setup)
    objects = _placed_objects(project, files)
    if timeout is not None:
        _read_up_front(project, portals, objects, timeout)
    for placed in objects:
        for portal in portals:
            if _checks(project, portal, placed.item):
                checker.object(placed, portal)
    if vendor is not None:
        checker.rules(project, portals[0], files)
    rank = {f: n for n, f in enumerate(dict.fromkeys(p.file for p in problems))}
    return OnlineCheck(
        sorted(problems, key=lambda p: (rank[p.file], p.line or 0)), dict(checker.unreadable)
    )


def _read_up_front(
    project: Project,
    portals: Sequence[Portal],
    objects: Sequence[Placed[ObjectMapping]],
    timeout: float,
) -> None:
    """Read each portal's schemas in its own daemon thread and wait ``timeout``
    seconds at most in all: a portal still reading then is marked as not answering
    (its thread finishes on its own and is never read from); one whose read failed
    keeps the adapter's message. The checks then run on what was read."""
    jobs: list[
        tuple[
            Portal,
            threading.Thread,
            dict[str, ObjectSchema | None],
            list[tuple[str, str, str | None]],
        ]
    ] = []
    for portal in portals:
        types = list(
            dict.fromkeys(
                o.item.partner_object if portal.side == "partner" else o.item.vendor_object
                for o in objects
                if _checks(project, portal, o.item)
            )
        )
        deals = portal.adapter.naming.deals
        if portal.side == "vendor" and deals not in types:
            types.append(deals)  # the rules' stage ids
        read: dict[str, ObjectSchema | None] = {}
        failure: list[tuple[str, str, str | None]] = []

        def work(
            adapter: CRMAdapter = portal.adapter,
            types: list[str] = types,
            read: dict[str, ObjectSchema | None] = read,
            failure: list[tuple[str, str, str | None]] = failure,
        ) -> None:
            for object_type in types:
                try:
                    read[object_type] = adapter.object_schema(object_type)
                except AdapterError as exc:
                    line = str(exc) if isinstance(exc, PortalUnreachable) else None
                    what = f"could not read the properties of {object_type}"
                    failure.append((what, str(exc), line))
                    return
                except Exception as exc:  # reported by type only: /healthz is public
                    failure.append(
                        (
                            f"could not read the properties of {object_type}",
                            f"{type(exc).__name__} (the log has the details)",
                            None,
                        )
                    )
                    return

        thread = threading.Thread(target=work, name="dealsync-online-check", daemon=True)
        thread.start()
        jobs.append((portal, thread, read, failure))
    deadline = time.monotonic() + timeout
    for portal, thread, read, failure in jobs:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            portal.error = (
                "could not read its properties",
                f"did not answer within {timeout:g} s",
                None,
            )
        elif failure:
            portal.error = failure[0]
        else:
            portal.schemas.update(read)


def config_problem(
    project: Project,
    path: YamlPath,
    message: str,
    hint: str,
    *,
    config_file: str | Path | None = None,
    warning: bool = False,
) -> Problem:
    """A problem at ``path`` of ``dealsync.yaml`` with its line, named as the online
    check names it (a partner that could not be checked, say)."""
    shown = Path(config_file) if config_file is not None else project.config_path
    doc = _Files(shown).read(project.config_path)
    return (warning_at if warning else problem_at)(doc, path, message, hint)


# --------------------------------------------------------------------------- files


@dataclass
class _Files:
    """Re-reads the project's files for their line index, naming each as the loader
    does: the config as given, the others relative to its folder."""

    config: Path

    def name(self, path: Path) -> str:
        if path.absolute() == self.config.absolute():
            return str(self.config)
        try:
            rel = path.absolute().relative_to(self.config.absolute().parent)
        except ValueError:
            return str(path)
        return str(self.config.parent / rel)

    def read(self, path: Path) -> Document:
        name = self.name(path)
        doc, _ = parse_yaml(path.read_text(encoding="utf-8"), name)
        return doc if doc is not None else Document(name, {})


def _checks(project: Project, portal: Portal, mapping: ObjectMapping) -> bool:
    """Whether ``mapping`` is checked against ``portal``: the vendor's portal against
    every mapping, a partner's against its connection's (its own files, if any)."""
    if portal.side == "vendor":
        return True
    return any(m is mapping or m == mapping for m in project.mappings_for(portal.key))


def _placed_objects(project: Project, files: _Files) -> list[Placed[ObjectMapping]]:
    out: list[Placed[ObjectMapping]] = []
    for path in project.mapping_files():
        doc = files.read(path)
        parsed, _ = validate(MappingFile, doc)
        if parsed is not None:
            out += [Placed(o, doc, ("objects", i)) for i, o in enumerate(parsed.objects)]
    return out


# --------------------------------------------------------------------------- checks


def _did_you_mean(name: str, schema: ObjectSchema) -> str:
    """The closest real property by name or by label, then some real names."""
    names = sorted(schema.properties)
    by_label = {p.label.casefold(): p.name for p in schema.properties.values() if p.label}
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    guess = close[0] if close else by_label.get(name.replace("_", " ").casefold())
    listing = ", ".join(names[:_SHOWN_NAMES]) + (", …" if len(names) > _SHOWN_NAMES else "")
    head = f"did you mean {guess!r}? " if guess else "use the property's internal name; "
    return f"{head}properties of {schema.object_type} there: {listing}"


def allowed_values(prop: PropertyInfo, schema: ObjectSchema) -> dict[str, str] | None:
    """Values the property accepts (id → label), or ``None`` when not enumerated. The
    deal stage and pipeline take the ids of the portal's pipelines and stages."""
    if prop.name == "dealstage" and schema.pipelines:
        return {sid: label for p in schema.pipelines for sid, label in p.stages}
    if prop.name == "pipeline" and schema.pipelines:
        return {p.id: p.label for p in schema.pipelines}
    if prop.type in ("enumeration", "bool") and prop.options:
        return dict(prop.options)
    return None


def is_stage(prop: PropertyInfo, schema: ObjectSchema) -> bool:
    """Whether ``prop`` is the object's pipeline stage: HubSpot's ``dealstage``, or a
    CRM's picklist whose values are its pipeline's stages (Salesforce's
    ``StageName``), so its values are called stages in the messages."""
    if prop.name == "dealstage":
        return True
    stages = {sid for p in schema.pipelines for sid, _ in p.stages}
    return bool(stages) and {value for value, _ in prop.options} == stages


def value_hint(value: str, allowed: Mapping[str, str], what: str) -> str:
    """A label written for an id, or the closest id, then the ids to choose from."""
    by_label = {label.casefold(): vid for vid, label in allowed.items() if label}
    ids = list(allowed)
    listing = ", ".join(ids[:20]) + (", …" if len(ids) > 20 else "")
    label_of = by_label.get(value.strip().casefold())
    if label_of is not None:
        head = f"{value!r} is the label of {what} {label_of!r}: write the id {label_of!r}; "
    else:
        close = difflib.get_close_matches(value, ids, n=1, cutoff=0.6)
        head = f"did you mean {close[0]!r}? " if close else ""
    return f"{head}{what} ids there: {listing}"


class _Checker:
    def __init__(
        self,
        config_doc: Document,
        problems: list[Problem],
        setup: Mapping[Side, set[tuple[str, str]]],
    ) -> None:
        self.config_doc = config_doc
        self.problems = problems
        self.setup = setup
        self.unreadable: dict[str, str] = {}  # portal key -> why it could not be read

    def _unreadable(self, portal: Portal, what: str, why: str, line: str | None = None) -> None:
        """One problem for a portal that cannot be read: an error naming where its
        credentials come from, or a warning when the caller tolerates it. ``line``: the
        adapter's own one-line account (host, portal, what to try: it could not be
        reached, or it refused the token), said as it is."""
        portal.failed = True
        creds = f" ({portal.credentials})" if portal.credentials else ""
        self.unreadable[portal.key] = line or f"{what}: {why}"
        if line is not None and not portal.tolerated:
            self.problems.append(
                problem_at(
                    self.config_doc, portal.path, line, "then run `dealsync check --online` again"
                )
            )
            return
        if portal.tolerated:
            self.problems.append(
                warning_at(
                    self.config_doc,
                    portal.path,
                    f"portal {portal.name!r}{creds} was not checked online: {what}: {why}",
                    "this edit did not change it, so it is not refused for that; "
                    "run `dealsync check --online` once the portal answers",
                )
            )
            return
        self.problems.append(
            problem_at(
                self.config_doc,
                portal.path,
                f"{what} in portal {portal.name!r}{creds}: {why}",
                "check the portal's credentials (they need the right to read its object "
                "schemas: a HubSpot private app's crm.schemas.*.read scopes, a Salesforce "
                "user's API access) and host, then run the check again",
            )
        )

    # -------------------------------------------------------------- portals

    def schema(self, portal: Portal, object_type: str) -> ObjectSchema | None:
        """The portal's schema of ``object_type``; a portal that has none or cannot be
        read is reported once and then skipped."""
        if portal.failed or portal.unavailable:
            return None
        if portal.error is not None:
            self._unreadable(portal, *portal.error)
            return None
        if object_type not in portal.schemas:
            try:
                portal.schemas[object_type] = portal.adapter.object_schema(object_type)
            except AdapterError as exc:
                self._unreadable(
                    portal,
                    f"could not read the properties of {object_type}",
                    str(exc),
                    str(exc) if isinstance(exc, PortalUnreachable) else None,
                )
                return None
            if portal.schemas[object_type] is None:
                portal.unavailable = True
                self.problems.append(
                    warning_at(
                        self.config_doc,
                        (*portal.path, "adapter"),
                        f"online check not available for portal {portal.name!r}: a local "
                        "portal accepts any property, so there is no schema to check against",
                        "its mappings were checked offline only; HubSpot portals and "
                        "Salesforce orgs are checked against their real properties, "
                        "pipelines and picklists",
                    )
                )
        return portal.schemas[object_type]

    # -------------------------------------------------------------- mappings

    def object(self, placed: Placed[ObjectMapping], portal: Portal) -> None:
        obj = placed.item
        object_type = obj.partner_object if portal.side == "partner" else obj.vendor_object
        schema = self.schema(portal, object_type)
        if schema is None:
            return
        for j, f in enumerate(obj.fields):
            self.field(f, placed.src, (*placed.path, "fields", j), portal, schema)
        conditions = obj.share.partner if portal.side == "partner" else obj.share.vendor
        for k, cond in enumerate(conditions or []):
            self.condition(
                cond, placed.src, (*placed.path, "share", portal.side, k), portal, schema
            )

    def missing(
        self,
        name: str,
        src: Source,
        path: YamlPath,
        portal: Portal,
        schema: ObjectSchema,
        what: str,
    ) -> None:
        if (schema.object_type, name) in self.setup.get(portal.side, set()):
            self.problems.append(
                warning_at(
                    src,
                    path,
                    f"{portal.side} property {name!r} does not exist yet on "
                    f"{schema.object_type} in portal {portal.name!r}",
                    "`dealsync setup` creates it; run it before the first sync",
                )
            )
            return
        self.problems.append(
            problem_at(
                src,
                path,
                f"{what} {name!r} does not exist on {schema.object_type} in portal {portal.name!r}",
                _did_you_mean(name, schema),
            )
        )

    def field(
        self, f: FieldMapping, src: Source, fpath: YamlPath, portal: Portal, schema: ObjectSchema
    ) -> None:
        side = portal.side
        name = getattr(f, side)
        prop = schema.properties.get(name)
        if prop is None:
            self.missing(name, src, (*fpath, side), portal, schema, f"{side} property")
            return
        where = f"{schema.object_type}.{name} in portal {portal.name!r}"
        fits = _FITS.get(f.transform)
        if fits is not None and prop.type not in fits:
            self.problems.append(
                problem_at(
                    src,
                    (*fpath, "transform"),
                    f"transform {f.transform} does not fit {where}, a {prop.type} property",
                    f"use `transform: {_TRANSFORM_FOR.get(prop.type, 'string')}`, or map a "
                    f"{' or '.join(sorted(fits))} property",
                )
            )
        elif f.transform == "string" and prop.type in ("number", "date", "datetime", "bool"):
            self.problems.append(
                warning_at(
                    src,
                    (*fpath, "transform"),
                    f"transform string copies text into {where}, a {prop.type} property; "
                    "a value that is not a valid "
                    f"{prop.type} will be refused record by record",
                    f"use `transform: {_TRANSFORM_FOR[prop.type]}`",
                )
            )
        if side in writes(f.direction) and prop.read_only:
            other = "partner" if side == "vendor" else "vendor"
            self.problems.append(
                problem_at(
                    src,
                    (*fpath, side),
                    f"{where} is read-only, but this field writes it (direction: {f.direction})",
                    f"set `direction: to_{other}` so the field only reads it, or map a "
                    "property that can be written",
                )
            )
        allowed = allowed_values(prop, schema)
        if allowed is None:
            return
        what = "stage" if is_stage(prop, schema) else "pipeline" if name == "pipeline" else "option"
        if f.value_map:
            for key, value in f.value_map.items():
                written = key if side == "partner" else value
                if written not in allowed:
                    self.problems.append(
                        problem_at(
                            src,
                            (*fpath, "value_map", key),
                            f"value_map names {side} {what} {written!r}, which {where} "
                            "does not have",
                            value_hint(written, allowed, what),
                        )
                    )
        mapped = set(f.value_map or {}) | set((f.value_map or {}).values())
        if (
            f.default is not None
            and side in writes(f.direction)
            and f.default not in allowed
            and f.default not in mapped
        ):
            self.problems.append(
                problem_at(
                    src,
                    (*fpath, "default"),
                    f"default {f.default!r} is not a {what} of {where}",
                    value_hint(f.default, allowed, what),
                )
            )

    def condition(
        self, cond: Condition, src: Source, cpath: YamlPath, portal: Portal, schema: ObjectSchema
    ) -> None:
        prop = schema.properties.get(cond.property)
        if prop is None:
            self.missing(cond.property, src, (*cpath, "property"), portal, schema, "property")
            return
        allowed = allowed_values(prop, schema)
        if allowed is None:
            return
        what = "stage" if is_stage(prop, schema) else "option"
        tested: list[tuple[YamlPath, str]] = []
        if cond.equals is not None:
            tested.append(((*cpath, "equals"), cond.equals))
        for n, value in enumerate(cond.is_in or []):
            tested.append(((*cpath, "in", n), value))
        for path, value in tested:
            if value not in allowed:
                self.problems.append(
                    problem_at(
                        src,
                        path,
                        f"condition on {cond.property!r} tests {value!r}, which is not a "
                        f"{what} of {schema.object_type}.{prop.name} in portal "
                        f"{portal.name!r}, so no record would match",
                        value_hint(value, allowed, what),
                    )
                )

    # -------------------------------------------------------------- rules

    def rules(self, project: Project, vendor: Portal, files: _Files) -> None:
        """The stage ids of the rules exist in the vendor's deal pipelines."""
        schema = self.schema(vendor, vendor.adapter.naming.deals)
        if schema is None or not schema.pipelines:
            return
        stages = {sid: label for p in schema.pipelines for sid, label in p.stages}
        if project.config.rules is not None:
            src: Source = files.read(project.resolve(project.config.rules))
            base: YamlPath = ("vendor_signals",)
            default = ""
        else:
            src, base, default = self.config_doc, ("rules",), " (the default, no rules file)"
        signals = project.rules.vendor_signals
        for key in ("won_stages", "closed_stages"):
            values: Sequence[str] = getattr(signals, key)
            for k, stage in enumerate(values):
                if stage in stages:
                    continue
                path = (*base, key, k) if not default else base
                self.problems.append(
                    problem_at(
                        src,
                        path,
                        f"{key} names {stage!r}{default}, which is not a stage of the vendor's "
                        f"deal pipelines (portal {vendor.name!r}), so no deal would ever "
                        "count as in it",
                        value_hint(stage, stages, "stage"),
                    )
                )
