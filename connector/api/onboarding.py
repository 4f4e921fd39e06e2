"""An operator's first day: ``dealsync init`` writes a project folder, ``dealsync
partners add`` appends a connection to an existing ``dealsync.yaml``.

Both are generic over the portal kinds of :mod:`connector.adapters.registry`: the keys a
portal is written with are its kind's settings fields that have no default of their own
(HubSpot's ``token_env`` and ``host``, the local CRM's ``path``, any new kind's), a key
ending in ``_env`` names an environment variable (``DEALSYNC_VENDOR_TOKEN``,
``DEALSYNC_PARTNER_ACME_TOKEN``: the names ``dealsync check`` suggests) and never holds a
secret. Whatever is written is first checked with the checks of ``dealsync check``
(offline, secrets' variables not required), so a project ``init`` writes passes
``check`` as soon as its secrets are set, and a partner ``partners add`` would make
invalid is refused with the file left as it was.

``partners add`` edits the file as text — the new entry goes right after the last
partner, with the file's own indentation — so every comment and blank line of the file
stays where the admin put it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from connector.api.errors import DealsyncError

DEFAULT_MAPPINGS = ("shared_deals.yaml",)
"""The shipped mapping files a new project syncs (``mappings:``), in order."""
RULES_FILE = "rules.yaml"
STATE_URL = "sqlite:///.dealsync/state.db"

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Where a kind's secret comes from, for the line above its variable in .env. A kind not
# listed gets a generic line; a new kind adds its own here.
SECRET_SOURCES: dict[tuple[str, str], str] = {
    ("hubspot", "token_env"): (
        "the access token of a HubSpot private app in that portal (Settings → "
        "Integrations → Private Apps → your app → Auth → Access token); scopes it needs: "
        "docs/deploy.md"
    ),
}


class OnboardingRefused(DealsyncError):
    """``init`` or ``partners add`` would write something invalid or overwrite a file;
    nothing was written, and the message says what to change."""


# --------------------------------------------------------------------------- shipped files


def shipped_mappings() -> Path:
    """The folder of the shipped mapping and rules files.

    In an installed wheel they are package data (``connector/shipped_mappings``); in a
    clone that path is a link to the repository's ``mappings/``, so both read the same
    files."""
    packaged = Path(str(resources.files("connector"))) / "shipped_mappings"
    if packaged.is_dir():
        return packaged
    clone = Path(__file__).resolve().parents[2] / "mappings"  # a clone without the link
    if clone.is_dir():
        return clone
    raise OnboardingRefused(
        f"the shipped mappings are missing (looked in {packaged} and {clone}); "
        "reinstall dealsync (`pip install --force-reinstall dealsync`)"
    )


# --------------------------------------------------------------------------- portal keys


@dataclass(frozen=True)
class PortalKey:
    """A key of a portal kind that ``init`` asks for (it has no default of its own)."""

    name: str
    required: bool

    @property
    def names_env(self) -> bool:
        """The key names an environment variable (that holds a secret)."""
        return self.name.endswith("_env")

    def suggestion(self, portal: str) -> str | None:
        """What to write when nobody says otherwise (``portal``: ``vendor`` or a partner
        id): a variable name for ``*_env`` keys, a file under ``.dealsync/`` for
        ``path``; None for the rest (left out: the kind's default applies)."""
        if self.names_env:
            return env_name(portal, self.name)
        if self.name == "path":
            return f".dealsync/{'vendor' if portal == 'vendor' else 'partner-' + portal}.db"
        return None


def kind_names() -> list[str]:
    """Every portal kind ``adapter:`` may name."""
    from connector.adapters.registry import kinds

    return list(kinds())


def describe_kinds() -> str:
    """``hubspot (a HubSpot portal), local (the embedded demo CRM)``."""
    from connector.adapters.registry import kinds

    return ", ".join(f"{k.name} ({k.describe})" for k in kinds().values())


def default_kind() -> str:
    """The kind a portal without ``adapter:`` is (the config model's default)."""
    from connector.config.models import PortalConfig

    return str(PortalConfig.model_fields["adapter"].default)


def _kind(name: str, where: str) -> Any:
    from connector.adapters.registry import kinds

    found = kinds().get(name)
    if found is None:
        raise OnboardingRefused(
            f"{where}: adapter {name!r} is not a known portal kind; use one of: {describe_kinds()}"
        )
    return found


def asked_keys(kind: str) -> list[PortalKey]:
    """The keys of ``kind`` that ``init`` asks for, in the settings' order: those with
    no default of their own (required ones, and optional ones that are empty unless
    set). Keys with a real default (rate limits, timeouts) are left to it."""
    settings = _kind(kind, "adapter").settings
    return [
        PortalKey(name, f.is_required())
        for name, f in settings.model_fields.items()
        if f.is_required() or f.default is None
    ]


def env_name(portal: str, key: str) -> str:
    """``DEALSYNC_VENDOR_TOKEN`` for the vendor's ``token_env``,
    ``DEALSYNC_PARTNER_ACME_TOKEN`` for partner acme's (``dealsync check``'s names)."""
    stem = key.removesuffix("_env").upper()
    who = "VENDOR" if portal == "vendor" else "PARTNER_" + portal.upper().replace("-", "_")
    return f"DEALSYNC_{who}_{stem}"


def secret_source(kind: str, key: str) -> str:
    """One line: where the secret a ``*_env`` key names comes from."""
    known = SECRET_SOURCES.get((kind, key))
    if known:
        return known
    describe = _kind(kind, "adapter").describe
    return f"the secret `{key}` names for {describe} (see docs/deploy.md)"


Ask = Callable[[PortalKey, str | None], str | None]
"""How a key's value is asked for: (key, suggestion) → the answer (None: leave out)."""


@dataclass(frozen=True)
class Portal:
    """A portal as it will be written: its kind and its own keys, in order."""

    adapter: str
    keys: dict[str, Any] = field(default_factory=dict)

    def env_keys(self) -> list[tuple[str, str]]:
        """(key, variable) for each key naming an environment variable."""
        return [(k, str(v)) for k, v in self.keys.items() if k.endswith("_env") and v]


def portal(
    kind: str,
    label: str,
    given: Mapping[str, Any] | None = None,
    *,
    ask: Ask | None = None,
    where: str = "",
) -> Portal:
    """The portal ``label`` (``vendor`` or a partner id) of ``kind`` with the keys
    ``given``; every other key ``init`` asks for is asked (``ask``) or takes its
    suggestion. A given key the kind does not have is refused, naming its keys."""
    where = where or f"{label} portal"
    k = _kind(kind, where)
    given = dict(given or {})
    fields = k.settings.model_fields
    unknown = [key for key in given if key not in fields]
    if unknown:
        raise OnboardingRefused(
            f"{where}: adapter {kind} has no key {unknown[0]!r} (its keys: "
            f"{', '.join(fields) or 'none'})"
        )
    keys: dict[str, Any] = {}
    for key in asked_keys(kind):
        if key.name in given:
            continue
        value = ask(key, key.suggestion(label)) if ask else key.suggestion(label)
        if value not in (None, ""):
            keys[key.name] = value
        elif key.required:
            raise OnboardingRefused(
                f"{where}: adapter {kind} needs {key.name}; give it with "
                f"--set {label}.{key.name}=VALUE"
            )
    # the settings' order, given keys where they belong
    ordered = {name: given.get(name, keys.get(name)) for name in fields}
    return Portal(kind, {n: v for n, v in ordered.items() if v not in (None, "")})


def scalar(text: str) -> Any:
    """A ``--set`` value as YAML reads it (``100`` a number, ``true`` a bool), a plain
    string when it would read as anything but a scalar."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool) else text


def parse_sets(values: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``--set vendor.host=URL --set acme.path=FILE`` → {portal: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in values:
        target, sep, value = item.partition("=")
        who, dot, key = target.partition(".")
        if not sep or not dot or not who or not key:
            raise OnboardingRefused(
                f"--set {item!r}: write PORTAL.KEY=VALUE, PORTAL being vendor or a partner "
                "id, e.g. --set vendor.host=https://api.hubapi.com"
            )
        out.setdefault(who, {})[key] = scalar(value)
    return out


def parse_keys(values: Iterable[str]) -> dict[str, Any]:
    """``partners add``'s ``--set KEY=VALUE`` → {key: value}."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OnboardingRefused(
                f"--set {item!r}: write KEY=VALUE, a key of the partner portal's kind, "
                "e.g. --set host=https://api.hubapi.com"
            )
        out[key.strip()] = scalar(value)
    return out


def parse_partner(text: str) -> tuple[str, str]:
    """``acme:Acme Agency`` → (``acme``, ``Acme Agency``); the name defaults to the id."""
    pid, _, name = text.partition(":")
    pid = pid.strip()
    check_partner_id(pid, "--partner")
    return pid, name.strip() or pid


def check_partner_id(pid: str, where: str) -> None:
    if not _ID.match(pid):
        raise OnboardingRefused(
            f"{where}: partner id {pid!r} is not valid: use 1 to 63 lowercase letters, "
            "digits, - and _, starting with a letter or digit (e.g. acme, globex-eu); it "
            "keys the sync state, so choose one you never need to rename"
        )


def parse_partner_adapters(values: Iterable[str]) -> tuple[str | None, dict[str, str]]:
    """``--partner-adapter KIND`` (every partner) and ``--partner-adapter ID=KIND``."""
    every: str | None = None
    per: dict[str, str] = {}
    for item in values:
        pid, sep, kind = item.partition("=")
        if sep:
            per[pid.strip()] = kind.strip()
        else:
            every = item.strip()
    return every, per


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_schedule(text: str) -> dict[str, Any]:
    """``300``, ``5m``, ``1h`` → every N seconds; five fields → a cron expression (UTC)."""
    from pydantic import ValidationError

    from connector.config.models import Schedule

    match = _DURATION.match(text)
    if match:
        seconds = int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        data: dict[str, Any] = {"every_seconds": seconds}
    elif len(text.split()) == 5:
        data = {"cron": text.strip()}
    else:
        raise OnboardingRefused(
            f"--schedule {text!r}: give an interval (300, 5m, 1h) or a cron expression of "
            "five fields (UTC), e.g. '*/15 * * * *'"
        )
    try:
        Schedule.model_validate(data)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise OnboardingRefused(f"--schedule {text!r}: {reason}") from None
    return data


# --------------------------------------------------------------------------- partners


@dataclass(frozen=True)
class Partner:
    """A partner connection as it will be written."""

    id: str
    name: str
    portal: Portal
    notify_email: str | None = None
    tier: str | None = None
    schedule: dict[str, Any] | None = None

    def entry(self) -> dict[str, Any]:
        """The YAML mapping of this partner, keys in the order people read them."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "adapter": self.portal.adapter}
        out.update(self.portal.keys)
        for key in ("notify_email", "tier", "schedule"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


def _dump(data: Mapping[str, Any]) -> list[str]:
    import yaml

    text = yaml.safe_dump(
        dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000
    )
    return text.splitlines()


def entry_lines(partner: Partner, dash: int, key: int) -> list[str]:
    """The partner as YAML list-item lines: ``-`` at column ``dash``, keys at ``key``."""
    lines = _dump(partner.entry())
    first = " " * dash + "-" + " " * (key - dash - 1) + lines[0]
    return [first, *(" " * key + line for line in lines[1:])]


# --------------------------------------------------------------------------- checking


def _errors_of_project(config: Path, shown_as: Mapping[Path, str]) -> list[str]:
    """The errors ``dealsync check`` would print for ``config`` with the secrets'
    variables not required; files in ``shown_as`` named as the user knows them."""
    from connector.config.check import errors_of
    from connector.config.loader import check_project

    names = {str(p): name for p, name in shown_as.items()}
    problems = errors_of(check_project(config, env=dict(os.environ), check_env=False))
    return [str(replace(p, file=names.get(p.file, p.file))) for p in problems]


# --------------------------------------------------------------------------- init


@dataclass(frozen=True)
class EnvVar:
    """A variable the project needs set: its name, what it is for, where it comes from."""

    name: str
    purpose: str
    source: str


@dataclass
class InitReport:
    """What ``init`` wrote and kept, and the variables to set next."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    secrets: list[EnvVar] = field(default_factory=list)

    def next_steps(self, cwd: Path | None = None) -> list[str]:
        """The commands to run next, in order, as the operator types them."""
        cwd = (cwd or Path.cwd()).resolve()
        steps: list[str] = []
        folder = self.folder.resolve()
        if folder != cwd:
            try:
                shown = folder.relative_to(cwd)
            except ValueError:
                shown = folder
            steps.append(f"cd {shown}")
        if self.secrets:
            names = ", ".join(v.name for v in self.secrets)
            steps.append(f"set {names} in .env (or the environment; see the comments in .env)")
        steps += [
            "dealsync check --online   # the config, and the mappings against the portals",
            "dealsync setup            # install dealsync's custom properties in every portal",
            "dealsync sync --all       # the first pass of every connection",
        ]
        return steps


def _project_yaml(vendor: Portal, partners: Sequence[Partner]) -> str:
    lines = [
        "# dealsync configuration, written by `dealsync init`. Paths are relative to the",
        "# folder of this file. Secrets never go here: a portal names the environment",
        "# variable that holds each secret (set it in the environment or in .env next to",
        "# this file). `dealsync check` validates this file, the mappings and the rules.",
        "",
        "# Format version of this file. Always 1 for now.",
        "version: 1",
        "",
        "# Where dealsync keeps its state (links, last agreed values, cursors, outbox, run",
        "# log): an SQLAlchemy URL. SQLite by default; for PostgreSQL e.g.",
        "# postgresql://dealsync@db.internal/dealsync. $DEALSYNC_STATE_URL overrides it.",
        f"state_url: {STATE_URL}",
        "",
        "# The vendor portal: the one CRM every partner connection syncs with.",
        f"# adapter: {describe_kinds()}.",
        "vendor:",
        *("  " + line for line in _dump({"adapter": vendor.adapter, **vendor.keys})),
        "",
        "# One entry per partner connection. `id` is short and stable (lowercase letters,",
        "# digits, - and _): it keys the sync state, so never rename it after a sync.",
        "# Optional: notify_email (lead notifications), tier, schedule (for `dealsync",
        "# serve`). Add more with `dealsync partners add ID`.",
        "partners:",
    ]
    for p in partners:
        lines += entry_lines(p, 2, 4)
    lines += [
        "",
        "# Mapping files, synced in this order; object names must be unique across them.",
        "mappings:",
        *(f"  - mappings/{name}" for name in DEFAULT_MAPPINGS),
        "",
        "# The program's rules (ownership period, commission, tiers, consent, ...).",
        f"rules: mappings/{RULES_FILE}",
    ]
    return "\n".join(lines) + "\n"


def _service_vars() -> list[tuple[str, str]]:
    """(variable, what it is) of ``dealsync serve``'s secrets, by their default names."""
    from connector.config.models import ServiceSettings

    fields = ServiceSettings.model_fields
    return [
        (
            str(fields["admin_token_env"].default),
            "logs in to the sync-health page at /admin: any long random string "
            "(e.g. `openssl rand -hex 32`)",
        ),
        (
            str(fields["webhook_secret_env"].default),
            "your HubSpot app's client secret, which signs its webhooks",
        ),
    ]


def _env_text(secrets: Sequence[EnvVar]) -> str:
    lines = [
        "# Secrets for the dealsync.yaml next to this file, written by `dealsync init`.",
        "# Put each value after its `=` and remove the `# ` in front; variables set in the",
        "# real environment win over this file. Never commit this file.",
        "",
        "# The portals' secrets (named by the *_env keys in dealsync.yaml):",
    ]
    for var in secrets:
        lines += [f"# {var.purpose}: {var.source}", f"# {var.name}=", ""]
    if not secrets:
        lines += ["# (none: these portals take no secrets)", ""]
    lines += ["# The service (`dealsync serve`), names set under `service:` in dealsync.yaml:"]
    for name, what in _service_vars():
        lines += [f"# {name}: {what}", f"# {name}=", ""]
    lines += [
        "# E-mail (consent e-mails, lead notifications, reminders): an SMTP server ...",
        "# DEALSYNC_SMTP_HOST=smtp.example.com",
        "# DEALSYNC_SMTP_PORT=587",
        "# DEALSYNC_SMTP_SECURITY=starttls",
        "# DEALSYNC_SMTP_USER=",
        "# DEALSYNC_SMTP_PASSWORD=",
        "# DEALSYNC_MAIL_FROM=privacy@vendor.example",
        "# ... or a folder where each message is written as an .eml file (trying it out):",
        "# DEALSYNC_MAIL_SINK=./mail",
    ]
    return "\n".join(lines) + "\n"


def _secrets_of(vendor: Portal, partners: Sequence[Partner]) -> list[EnvVar]:
    out = []
    for label, p in [("vendor", vendor), *((f"partner {q.id}", q.portal) for q in partners)]:
        for key, var in p.env_keys():
            out.append(EnvVar(var, f"{label} ({p.adapter}) {key}", secret_source(p.adapter, key)))
    return out


def _secrets_in_file(config: Path) -> list[EnvVar]:
    """The variables an existing ``dealsync.yaml`` names (``init`` keeps it)."""
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(data, dict):
        return []
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(data.get("vendor"), dict):
        found.append(("vendor", data["vendor"]))
    for p in data.get("partners") or []:
        if isinstance(p, dict):
            found.append((f"partner {p.get('id')}", p))
    out = []
    for label, raw in found:
        kind = str(raw.get("adapter") or default_kind())
        for key, var in raw.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(var, str):
                try:
                    source = secret_source(kind, key)
                except OnboardingRefused:
                    source = "see docs/deploy.md"
                out.append(EnvVar(var, f"{label} ({kind}) {key}", source))
    return out


def config_kept(folder: str | Path, force: bool = False) -> bool:
    """``init`` would keep the folder's existing ``dealsync.yaml`` (nothing to ask)."""
    return not force and (Path(folder) / "dealsync.yaml").exists()


def init_project(
    folder: str | Path,
    vendor: Portal | None,
    partners: Sequence[Partner],
    *,
    force: bool = False,
) -> InitReport:
    """Write ``dealsync.yaml``, ``.env`` and the shipped mappings into ``folder``.

    An existing file is kept unless ``force``. A new configuration is checked before
    anything is written (in a scratch folder, with the same checks as ``dealsync
    check``, secrets' variables not required): an invalid one is refused with every
    problem, and the folder is left as it was. When the folder's ``dealsync.yaml`` is
    kept, ``vendor`` and ``partners`` are not used: ``.env`` (if missing) names the
    variables the existing file names."""
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise OnboardingRefused(f"{root} is a file, not a folder; give a folder to init")
    config = root / "dealsync.yaml"
    keep_config = config_kept(root, force)
    files: dict[str, str] = {}
    if keep_config:
        secrets = _secrets_in_file(config)
    else:
        if vendor is None or not partners:
            raise OnboardingRefused(
                "a project needs a vendor portal and at least one partner connection: "
                "give --partner ID[:NAME]"
            )
        ids = [p.id for p in partners]
        for pid in ids:
            check_partner_id(pid, "--partner")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise OnboardingRefused(
                f"--partner {dupes[0]!r} is given twice; partner ids are unique"
            )
        secrets = _secrets_of(vendor, partners)
        files["dealsync.yaml"] = _project_yaml(vendor, partners)
    files[".env"] = _env_text(secrets)
    for f in sorted(shipped_mappings().glob("*.yaml")):
        files[f"mappings/{f.name}"] = f.read_text(encoding="utf-8")

    if not keep_config:
        with tempfile.TemporaryDirectory(prefix="dealsync-init-") as scratch:
            for rel, text in files.items():
                target = Path(scratch) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
            shown = {Path(scratch) / rel: str(root / rel) for rel in files}
            errors = _errors_of_project(Path(scratch) / "dealsync.yaml", shown)
        if errors:
            raise OnboardingRefused(
                "the configuration would not be valid, so nothing was written:\n  "
                + "\n  ".join(errors)
            )

    report = InitReport(root, secrets=secrets)
    if keep_config:
        report.kept.append(config)
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        target = root / rel
        if target.exists() and not force:
            report.kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if rel == ".env":
            target.chmod(0o600)  # it will hold the secrets: the owner's alone
        report.written.append(target)
    return report


# --------------------------------------------------------------------------- partners add


@dataclass(frozen=True)
class AddedPartner:
    """What ``partners add`` did: the file, where the entry went, the variables to set."""

    config: Path
    partner: Partner
    index: int
    line: int
    secrets: list[tuple[EnvVar, bool]]  # (variable, already set)


def _located_partners(text: str, file: str) -> tuple[list[str], Any]:
    """The ids already listed and the ``partners`` sequence node of ``text``."""
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise OnboardingRefused(f"{file}: expected a mapping of settings; run `dealsync check`")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "partners":
            if not isinstance(value, yaml.SequenceNode) or not value.value:
                break
            if value.flow_style:
                raise OnboardingRefused(
                    f"{file}:{key.start_mark.line + 1}: partners is written as a flow list "
                    "([...]); write it as a block list (one `- id: ...` entry per partner) "
                    "to use `partners add`, or add the entry by hand"
                )
            ids = []
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if isinstance(k, yaml.ScalarNode) and k.value == "id":
                            ids.append(str(v.value))
            return ids, value
    raise OnboardingRefused(
        f"{file}: no partners list to add to; write `partners:` with at least one entry "
        "(or start over with `dealsync init`)"
    )


def _last_end(node: Any) -> Any:
    """The end mark of the last thing written inside ``node``."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        return max((_last_end(v) for pair in node.value for v in pair), key=lambda m: m.index)
    if isinstance(node, yaml.SequenceNode) and node.value:
        return max((_last_end(v) for v in node.value), key=lambda m: m.index)
    return node.end_mark


def _insert(text: str, sequence: Any, partner: Partner, file: str) -> tuple[str, int]:
    """``text`` with ``partner`` after the last entry of ``sequence``; and its line."""
    last = sequence.value[-1]
    start = last.start_mark
    line_start = text.rfind("\n", 0, start.index) + 1
    prefix = text[line_start : start.index]
    if not re.fullmatch(r" *- +", prefix):
        raise OnboardingRefused(
            f"{file}:{start.line + 1}: the last partner entry is not laid out as "
            "`  - id: ...` with its keys on their own lines; add the entry by hand"
        )
    dash = prefix.index("-")
    newline = "\r\n" if "\r\n" in text else "\n"
    end = _last_end(last)
    if end.column == 0 or end.index >= len(text):
        at = min(end.index, len(text))
    else:
        nl = text.find("\n", end.index)
        at = len(text) if nl < 0 else nl + 1
    head, tail = text[:at], text[at:]
    if head and not head.endswith("\n"):
        head += newline
    block = newline.join(entry_lines(partner, dash, start.column)) + newline
    return head + block + tail, head.count("\n") + 1


def add_partner(
    config: str | Path | None,
    pid: str,
    *,
    name: str | None = None,
    adapter: str | None = None,
    keys: Mapping[str, Any] | None = None,
    notify_email: str | None = None,
    tier: str | None = None,
    schedule: str | None = None,
) -> AddedPartner:
    """Append partner ``pid`` to the project's ``dealsync.yaml``, keeping its comments
    and layout; refuse (file unchanged) a duplicate or invalid id, a file that is not
    valid now, or an entry that would make it invalid."""
    from connector.config.loader import config_path_from

    path = config_path_from(config)
    file = str(path)
    if not path.is_file():
        raise OnboardingRefused(
            f"{file}: config file not found; create a project with `dealsync init` or pass -c FILE"
        )
    before = _errors_of_project(path, {})
    if before:
        raise OnboardingRefused(
            f"{file} has problems already; fix them first (`dealsync check`), nothing was "
            "changed:\n  " + "\n  ".join(before)
        )
    text = path.read_bytes().decode("utf-8")  # as it is: CRLF line ends stay CRLF
    ids, sequence = _located_partners(text, file)
    index = len(sequence.value)
    check_partner_id(pid, f"{file}: partners[{index}].id")
    if pid in ids:
        at = ids.index(pid)
        line = _id_line(sequence.value[at])
        raise OnboardingRefused(
            f"{file}:{line}: partners[{at}].id: partner id {pid!r} is already used; choose "
            "another id (a partner's id keys its sync state, so an existing one is never "
            "reused)"
        )
    kind = adapter or _vendor_kind(text) or default_kind()
    entry = Partner(
        pid,
        name or pid,
        portal(kind, pid, keys, where=f"{file}: partners[{index}]"),
        notify_email=notify_email,
        tier=tier,
        schedule=parse_schedule(schedule) if schedule else None,
    )
    candidate, line = _insert(text, sequence, entry, file)

    fd, scratch = tempfile.mkstemp(
        prefix=".dealsync-partners-add-", suffix=".yaml", dir=path.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(candidate)
        errors = _errors_of_project(Path(scratch), {Path(scratch): file})
        if errors:
            raise OnboardingRefused(
                f"partner {pid!r} would make {file} invalid, so it was left unchanged:\n  "
                + "\n  ".join(errors)
            )
        shutil.copymode(path, scratch)
        os.replace(scratch, path)  # one step: a running `serve` sees the old or the new file
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)

    present = _environment(path.parent)
    secrets = [
        (
            EnvVar(var, f"partner {pid} ({kind}) {key}", secret_source(kind, key)),
            bool(present.get(var, "").strip()),
        )
        for key, var in entry.portal.env_keys()
    ]
    return AddedPartner(path, entry, index, line, secrets)


def _id_line(item: Any) -> int:
    import yaml

    for k, v in item.value if isinstance(item, yaml.MappingNode) else []:
        if isinstance(k, yaml.ScalarNode) and k.value == "id":
            return int(v.start_mark.line) + 1
    return int(item.start_mark.line) + 1


def _vendor_kind(text: str) -> str | None:
    """The vendor's ``adapter:`` (a new partner is of that kind unless told)."""
    import yaml

    data = yaml.safe_load(text)
    vendor = data.get("vendor") if isinstance(data, dict) else None
    if isinstance(vendor, dict):
        return str(vendor.get("adapter") or default_kind())
    return None


def _environment(folder: Path) -> dict[str, str]:
    """The environment as dealsync will see it: ``.env`` under the real variables."""
    from dotenv import dotenv_values

    dotenv = folder / ".env"
    values = dotenv_values(dotenv) if dotenv.is_file() else {}
    return {**{k: v for k, v in values.items() if v is not None}, **os.environ}
