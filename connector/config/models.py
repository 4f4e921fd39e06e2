"""Typed models of the three YAML files: ``dealsync.yaml``, mappings, rules.

These models say what a valid file is; :mod:`connector.config.loader` turns YAML into
them and turns every validation problem into a message with file, line, YAML path and
a hint. Models are strict (``extra="forbid"``) so a typo is an error, not a silently
ignored key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.adapters.registry import kind_of, kinds, unknown_kind

Direction = Literal["both", "to_vendor", "to_partner", "create_only"]
Transform = Literal["string", "decimal", "integer", "bool", "date", "datetime", "enum", "domain"]
ConflictPolicy = Literal["vendor_wins", "partner_wins", "newest", "manual"]
DeletePolicy = Literal["archive", "unlink", "flag"]
N = TypeVar("N")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- config


class PortalConfig(Strict):
    """How to reach one CRM portal. Secrets are named by environment variable only.

    ``adapter`` names a portal kind of :mod:`connector.adapters.registry`; every other
    key of the portal is the kind's own (HubSpot's ``token_env``, ``host``, rate limits;
    the local CRM's ``path``), validated by the kind's settings model when the file is
    loaded and read as attributes (``portal.token_env``) or as :attr:`settings`. So a
    new CRM brings its keys with its registry entry and this model does not change.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    adapter: str = "hubspot"
    # The portal's account id in webhook events (HubSpot's ``portalId``): routes them
    # to connections.
    portal_id: int | None = Field(default=None, ge=1)

    @field_validator("adapter")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in kinds():
            raise unknown_kind(value)
        return value

    @property
    def settings(self) -> BaseModel:
        """The kind's own keys, validated, with their defaults."""
        return kind_of(self.adapter).settings.model_validate(self.__pydantic_extra__ or {})

    def __getattr__(self, name: str) -> Any:
        """A key of the portal's kind (``portal.token_env``), default filled in."""
        if not name.startswith("_") and "adapter" in self.__dict__:
            settings = self.settings
            if name in type(settings).model_fields:
                return getattr(settings, name)
        return super().__getattr__(name)  # type: ignore[misc]


class VendorConfig(PortalConfig):
    name: str = "vendor"


class Schedule(Strict):
    """When ``dealsync serve`` runs a connection's pass on its own: every N seconds or
    on a cron expression (5 fields, UTC), each run delayed by up to ``jitter_seconds``
    so connections do not hit the shared vendor portal at the same instant. After a
    failing pass the next run waits ``backoff_seconds`` doubled per consecutive
    failure, at most ``max_backoff_seconds``."""

    every_seconds: int | None = Field(default=None, ge=1, le=7 * 86400)
    cron: str | None = None
    jitter_seconds: int = Field(default=0, ge=0, le=3600)
    backoff_seconds: int = Field(default=60, ge=1, le=86400)
    max_backoff_seconds: int = Field(default=3600, ge=1, le=7 * 86400)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"cron {value!r} is not a valid cron expression ({exc}); write five fields "
                "minute hour day month weekday, e.g. '*/5 * * * *'"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(
                "a schedule needs exactly one of every_seconds or cron, e.g. "
                "`schedule: {every_seconds: 300}` or `schedule: {cron: '*/5 * * * *'}`"
            )
        return self


class PartnerConfig(PortalConfig):
    """One partner and its connection (one partner, one connection)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str
    notify_email: str | None = None
    tier: str | None = None
    schedule: Schedule | None = None  # no schedule: synced only on trigger or webhook
    # This connection's own mapping files, instead of the project's `mappings` (a
    # partner whose CRM names things otherwise, e.g. mappings/salesforce_partner.yaml
    # for a Salesforce partner). None: the project's.
    mappings: list[str] | None = Field(default=None, min_length=1)


class SyncSettings(Strict):
    overlap_seconds: int = Field(default=300, ge=0, le=86400)
    batch_size: int = Field(default=100, ge=1, le=100)
    max_attempts: int = Field(default=5, ge=1, le=20)


class ServiceSettings(Strict):
    """``dealsync serve``: where its secrets come from (names of environment variables,
    never the secrets themselves) and how hard partners may push it."""

    admin_token_env: str = "DEALSYNC_ADMIN_TOKEN"
    webhook_secret_env: str = "DEALSYNC_WEBHOOK_SECRET"
    # The public base URL HubSpot calls (behind a proxy the request URL the service sees
    # differs from the one HubSpot signed), e.g. https://dealsync.example.com
    public_url: str | None = None
    trigger_limit: int = Field(default=6, ge=1, le=10000)  # triggers per partner ...
    trigger_window_seconds: int = Field(default=60, ge=1, le=86400)  # ... per window
    reload_seconds: float = Field(default=2.0, gt=0, le=3600)  # config change polling
    # How long a reload waits for a new or changed portal to answer its probe
    # (connector/service/probe.py) before refusing the edit; 0: no probe.
    reload_probe_seconds: float = Field(default=10.0, ge=0, le=120)
    workers: int = Field(default=4, ge=1, le=64)  # passes of different connections at once
    # How long /healthz keeps a portal's reachability/authentication answer before
    # probing it again (connector/service/probe.py, PortalHealth); 0: not checked.
    portal_check_seconds: float = Field(default=60.0, ge=0, le=86400)
    # Largest webhook request body read (HubSpot sends at most 100 events, a few
    # hundred bytes each); a larger one is refused with 413 before it is read.
    webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Scale-out (docs/scale-out.md): "procrastinate" — serve and its scheduler queue
    # passes for `dealsync worker` processes (the queue lives in the state's
    # PostgreSQL) instead of running them; "none" (default): serve runs them itself.
    queue: Literal["none", "procrastinate"] = "none"


QUEUE_NEEDS_POSTGRES = (
    "service.queue is 'procrastinate' but the state is not on PostgreSQL (state_url "
    "{url}): the queue lives in the state's database; set state_url (or "
    "DEALSYNC_STATE_URL) to postgresql://USER@HOST:5432/DB, or remove service.queue "
    "to run passes in serve itself"
)


class AppConfig(Strict):
    """``dealsync.yaml``: the vendor side, the partners, and where everything lives."""

    version: Literal[1] = 1
    state_url: str = "sqlite:///dealsync.db"
    vendor: VendorConfig
    partners: list[PartnerConfig] = Field(min_length=1)
    mappings: list[str] = Field(min_length=1)
    rules: str | None = None
    sync: SyncSettings = SyncSettings()
    service: ServiceSettings = ServiceSettings()
    # Set by the loader, not by the file: where relative paths are resolved from.
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _queue_needs_postgres(self) -> AppConfig:
        """A queue lives in the state's database: PostgreSQL only. Checked when the
        file sets ``state_url`` itself (``DEALSYNC_STATE_URL`` is checked when
        ``serve`` starts, with the same message)."""
        if (
            self.service.queue == "procrastinate"
            and "state_url" in self.model_fields_set
            and not self.state_url.startswith(("postgresql:", "postgresql+", "postgres:"))
        ):
            raise ValueError(QUEUE_NEEDS_POSTGRES.format(url=self.state_url.split("?")[0]))
        return self

    def partner(self, partner_id: str) -> PartnerConfig:
        missing = f"no partner {partner_id!r} in the config"
        return by_name(self.partners, partner_id, lambda p: p.id, missing)


def by_name(items: Sequence[N], name: str, name_of: Callable[[N], str], missing: str) -> N:
    """The item called ``name``; else a KeyError saying ``missing`` and the known names
    (a typo on the command line gets the names to choose from)."""
    for item in items:
        if name_of(item) == name:
            return item
    known = ", ".join(name_of(i) for i in items)
    raise KeyError(f"{missing} (known: {known})")


# --------------------------------------------------------------------------- mappings


class FieldMapping(Strict):
    """One field of a shared object: which property on each side and how it syncs.

    ``value_map`` maps partner values to vendor values (e.g. deal stage ids, which
    differ per portal). ``default`` fills the target when the source has no value at
    creation time.
    """

    partner: str
    vendor: str
    direction: Direction = "both"
    transform: Transform = "string"
    value_map: dict[str, str] | None = None
    default: str | None = None
    conflict: ConflictPolicy = "vendor_wins"

    @property
    def key(self) -> str:
        """Stable name of the field in the base snapshot and conflict rows."""
        return f"{self.partner}>{self.vendor}"


class Condition(Strict):
    """A record filter condition on one property."""

    property: str
    equals: str | None = None
    is_in: list[str] | None = Field(default=None, alias="in")
    present: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ShareRule(Strict):
    """Which records of an object are shared.

    ``partner``/``vendor``: conditions (all must hold) that make an unlinked record on
    that side a new shared record. ``via``: instead, records are shared because a
    shared record of that other object is associated with them (company and contacts
    of a shared deal).
    """

    partner: list[Condition] | None = None
    vendor: list[Condition] | None = None
    via: str | None = None


class ObjectMapping(Strict):
    name: str
    partner_object: str
    vendor_object: str
    share: ShareRule
    on_delete: DeletePolicy = "unlink"
    associations: list[str] = []
    fields: list[FieldMapping] = Field(min_length=1)


class MappingFile(Strict):
    version: Literal[1] = 1
    objects: list[ObjectMapping] = Field(min_length=1)


# --------------------------------------------------------------------------- rules


class Tier(Strict):
    """A partner tier: reached at ``min_credited_mrr`` of credited MRR over the credit
    window; allows ``capacity`` active registrations at once."""

    name: str = Field(min_length=1)
    min_credited_mrr: float = Field(default=0, ge=0)
    capacity: int = Field(ge=0, le=100000)


class VendorSignals(Strict):
    """How the vendor CRM says what the registration checks need to know."""

    customer: list[Condition] = Field(
        default_factory=lambda: [Condition(property="lifecyclestage", equals="customer")],
        min_length=1,
    )
    sales_owner_property: str = "hubspot_owner_id"
    closed_stages: list[str] = Field(default_factory=lambda: ["closedwon", "closedlost"])
    won_stages: list[str] = Field(default_factory=lambda: ["closedwon"], min_length=1)
    self_serve: list[Condition] = Field(
        default_factory=lambda: [
            Condition(property="dealsync_purchase_channel", equals="self_serve")
        ],
        min_length=1,
    )
    mrr_property: str = "hs_mrr"
    amount_to_mrr_divisor: float = Field(default=12, gt=0)
    # a won vendor deal that is not a shared deal is self-serve (no sales interaction)
    # when it matches ``self_serve``, or when this owner property is empty and every
    # engagement property is empty or 0; otherwise the vendor's sales team led it
    deal_owner_property: str = "hubspot_owner_id"
    sales_engagement_properties: list[str] = Field(
        default_factory=lambda: ["notes_last_contacted", "num_contacted_notes"]
    )


class RegistrationRules(Strict):
    """Where registrations come from on the partner side."""

    lead_flag: str = "dealsync_register_lead"
    lead_domain_property: str = "website"
    company_domain_property: str = "domain"


ReviewMode = Literal["automatic", "manual"]


class ReviewRules(Strict):
    """How registrations are reviewed (issue 16 item 5): each kind ``automatic`` (the
    checks decide) or ``manual`` (a registration the checks accept waits, ``pending``,
    for an admin's ``registrations approve|reject``). ``manual_when_uncertain`` sends
    an automatic one to review when a check is uncertain: its company name is a fuzzy
    match (:func:`connector.program.review.similarity` ≥ ``fuzzy_threshold``) of
    another partner's active registration on a different domain. A registration
    pending longer than ``sla_hours`` reminds ``notify_email`` (the program's
    address), once."""

    deal: ReviewMode = "automatic"
    lead: ReviewMode = "automatic"
    manual_when_uncertain: bool = False
    fuzzy_threshold: float = Field(default=0.85, gt=0, le=1)
    sla_hours: int = Field(default=72, ge=1, le=24 * 90)
    notify_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    @property
    def ever_manual(self) -> bool:
        return "manual" in (self.deal, self.lead) or self.manual_when_uncertain

    @model_validator(mode="after")
    def _reminders_need_an_address(self) -> ReviewRules:
        if self.ever_manual and not self.notify_email:
            raise ValueError(
                "review.notify_email is required when a registration can go to manual "
                "review (deal/lead: manual, or manual_when_uncertain: true): it is where "
                "the reminders of registrations pending longer than review.sla_hours go"
            )
        return self


EU_MEMBERS = [
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
]


class ConsentRules(Strict):
    """Privacy-law e-mails after a registration (DESIGN §2.2). Country codes are ISO
    3166-1 alpha-2; unknown or missing countries are treated like the EU."""

    dach: list[str] = Field(default_factory=lambda: ["DE", "AT", "CH"])
    eu: list[str] = Field(default_factory=lambda: list(EU_MEMBERS))
    # GDPR applies in the whole EEA (Iceland, Liechtenstein, Norway: EEA Agreement) and
    # the UK GDPR puts the same duty on the vendor: both on unless a program opts out
    treat_eea_as_eu: bool = True
    treat_uk_as_eu: bool = True
    # when the EU notice is due: ``notice_after_days`` after registration, or with
    # ``notice_period: 1 month`` one calendar month after it (GDPR Art. 14(3)(a))
    notice_after_days: int = Field(default=30, ge=1, le=365)
    notice_period: Literal["1 month"] | None = None
    # Opted in to the vendor's communications: any SUBSCRIBED subscription status, or
    # a vendor contact matching these conditions (e.g. a confirmed e-mail).
    opted_in_via_subscriptions: bool = True
    opted_in_properties: list[Condition] = Field(
        default_factory=lambda: [Condition(property="dealsync_email_confirmed", equals="true")]
    )
    # Web events within the notice window that make the EU notice unnecessary.
    engagement_events: list[str] = Field(
        default_factory=lambda: [
            "pe_privacy_policy_viewed",
            "pe_content_downloaded",
            "pe_form_submitted",
        ]
    )
    # Vendor contact properties whose strict value a sync write may never loosen
    # (an opt-out on the vendor side wins over anything synced from the partner).
    protected_properties: dict[str, str] = Field(
        default_factory=lambda: {"hs_email_optout": "true"}
    )
    vendor_name: str = "Our company"
    privacy_url: str = "https://example.com/privacy"
    consent_url: str = "https://example.com/consent"

    @field_validator("notice_period", mode="before")
    @classmethod
    def _month_only(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() == "1 month"):
            return None if value is None else "1 month"
        raise ValueError(
            f"notice_period {value!r} is not a period dealsync knows: write `notice_period: "
            "1 month` (the same date next month, GDPR Art. 14(3)(a)), or leave it out and "
            "set `notice_after_days: N` for a period in days"
        )

    @model_validator(mode="after")
    def _one_period(self) -> ConsentRules:
        if self.notice_period is not None and "notice_after_days" in self.model_fields_set:
            raise ValueError(
                "consent has both notice_after_days and notice_period: the notice is due "
                "after one of them — keep `notice_after_days: N` (days) or "
                "`notice_period: 1 month` (a calendar month), not both"
            )
        return self


class NotifiedAction(Strict):
    event: str = Field(min_length=1)
    label: str = Field(min_length=1)


class NotificationRules(Strict):
    """High-value actions at an owned domain that a subscribed partner hears about."""

    actions: list[NotifiedAction] = Field(
        default_factory=lambda: [
            NotifiedAction(event="pe_demo_requested", label="requested a demo"),
            NotifiedAction(event="pe_pricing_page_viewed", label="viewed the pricing page"),
            NotifiedAction(event="pe_content_downloaded", label="downloaded content"),
            NotifiedAction(event="pe_form_submitted", label="filled in a form"),
        ]
    )


class ExpiryRules(Strict):
    """Before and around the end of a registration's ownership (issue 16 item 6):
    a reminder to the partner ``remind_days_before`` days ahead (0: none), and one
    extension by ``extend_months`` (0: no extensions) for a registration with activity
    in the last ``extend_requires_activity_days`` days (0: no activity needed)."""

    remind_days_before: int = Field(default=14, ge=0, le=365)
    extend_months: int = Field(default=3, ge=0, le=60)
    extend_requires_activity_days: int = Field(default=30, ge=0, le=365)


class RulesFile(Strict):
    """The partner program's policy numbers (registration, consent, commission).

    Unknown keys are errors so a misspelt rule never silently falls back to a default.
    """

    version: Literal[1] = 1
    ownership_months: int = Field(default=6, ge=1, le=60)
    commission_rate: float = Field(default=0.20, ge=0, le=1)
    credit_window_months: int = Field(default=12, ge=1, le=60)
    tiers: list[Tier] = Field(
        default_factory=lambda: [
            Tier(name="registered", min_credited_mrr=0, capacity=10),
            Tier(name="silver", min_credited_mrr=2000, capacity=25),
            Tier(name="gold", min_credited_mrr=10000, capacity=50),
        ],
        min_length=1,
    )
    personal_domains: list[str] = Field(
        default_factory=lambda: [
            "gmail.com",
            "googlemail.com",
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "yahoo.com",
            "icloud.com",
            "me.com",
            "aol.com",
            "proton.me",
            "protonmail.com",
            "gmx.de",
            "gmx.net",
            "web.de",
            "t-online.de",
            "mail.com",
            "yandex.ru",
        ]
    )
    vendor_signals: VendorSignals = Field(default_factory=VendorSignals)
    registration: RegistrationRules = Field(default_factory=RegistrationRules)
    consent: ConsentRules = Field(default_factory=ConsentRules)
    notifications: NotificationRules = Field(default_factory=NotificationRules)
    review: ReviewRules = Field(default_factory=ReviewRules)
    expiry: ExpiryRules = Field(default_factory=ExpiryRules)

    def tier_for(self, credited_mrr: float, floor: str | None = None) -> Tier:
        """The highest tier whose threshold ``credited_mrr`` reaches (never below
        ``floor``, a tier the program granted by hand in the config)."""
        ordered = sorted(self.tiers, key=lambda t: t.min_credited_mrr)
        best = ordered[0]
        for tier in ordered:
            if credited_mrr >= tier.min_credited_mrr:
                best = tier
        if floor is not None:
            granted = next((t for t in ordered if t.name == floor), None)
            if granted is not None and granted.min_credited_mrr > best.min_credited_mrr:
                best = granted
        return best
