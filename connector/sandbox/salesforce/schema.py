"""Salesforce objects, fields, ids and timestamps as the sandbox serves them.

The standard objects carry the Salesforce API names, types and key prefixes the
adapter maps (Account 001, Contact 003, Opportunity 006, OpportunityContactRole 00K,
User 005), so a describe, a SOQL field list or a record body read exactly as an org's
would.  Custom fields (``__c``) are added per org through the Tooling API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

# --------------------------------------------------------------------------- ids

_CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")


def id_suffix(id15: str) -> str:
    """The 3-character case-safe suffix Salesforce appends to a 15-character id: one
    character per 5-character chunk, whose bits say which characters are upper case."""
    out = ""
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out += _CHECKSUM_CHARS[bits]
    return out


def make_id(prefix: str, pod: str, counter: int) -> str:
    """An 18-character id: key prefix, a 2-character pod, a zero pad and a base-62
    counter (like ``0015g00000AbCdEFGH``)."""
    digits = ""
    n = counter
    while True:
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
        if n == 0:
            break
    body = (prefix + pod + "0" * 10)[: 15 - len(digits)] + digits
    return body + id_suffix(body)


def to_id18(value: str) -> str | None:
    """A 15- or 18-character id as its 18-character form; None when not an id."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    if len(value) == 18:
        # the suffix is case-insensitive; normalise it so equality is by value
        body = value[:15]
        return body + id_suffix(body) if value[15:].upper() == id_suffix(body) else None
    return value + id_suffix(value)


# --------------------------------------------------------------------------- time


def format_datetime(moment: datetime) -> str:
    """Salesforce's JSON dateTime: milliseconds and a ``+0000`` offset."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(text: str) -> datetime | None:
    """A dateTime as Salesforce accepts it on input (ISO 8601, ``Z`` or an offset, with
    or without milliseconds); None when it is not one.  No offset means UTC."""
    m = _DT_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro, UTC)
    except ValueError:
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        moment = moment - timedelta(minutes=offset)
    return moment


def parse_date(text: str) -> date | None:
    """A ``YYYY-MM-DD`` date; None when it is not one."""
    if not isinstance(text, str) or not re.match(r"^\d{4}-\d{2}-\d{2}$", text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- fields

# describe's ``soapType`` of each field type
_SOAP = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "picklist": "xsd:string",
    "email": "xsd:string",
    "url": "xsd:string",
    "phone": "xsd:string",
    "textarea": "xsd:string",
    "boolean": "xsd:boolean",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
STRING_TYPES = {"string", "picklist", "email", "url", "phone", "textarea"}
NUMBER_TYPES = {"double", "currency", "percent", "int"}


@dataclass(frozen=True)
class Field:
    """One field of an sObject, with what describe reports about it."""

    name: str
    label: str
    type: str
    length: int = 0
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    required: bool = False  # required on create (not nillable, no default)
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    custom: bool = False
    reference_to: tuple[str, ...] = ()
    default: Any = None
    precision: int = 0
    scale: int = 0

    def describe(self) -> dict[str, Any]:
        """The field as ``GET /sobjects/{Type}/describe`` lists it."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": _SOAP.get(self.type, "xsd:string"),
            "length": self.length,
            "byteLength": self.length * 3,
            "precision": self.precision,
            "scale": self.scale,
            "digits": 0,
            "picklistValues": [
                {"value": v, "label": v, "active": True, "defaultValue": False, "validFor": None}
                for v in self.picklist
            ],
            "restrictedPicklist": self.restricted,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive,
            "idLookup": self.type == "id" or self.external_id,
            "custom": self.custom,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "defaultedOnCreate": self.default is not None
            or self.name in SYSTEM_FIELDS
            or self.name == "OwnerId",
            "calculated": not self.createable and not self.updateable and self.name == "Name",
            "filterable": True,
            "sortable": self.type != "textarea",
            "groupable": self.type not in NUMBER_TYPES | {"textarea", "datetime"},
            "referenceTo": list(self.reference_to),
            "relationshipName": (
                self.name[:-2] if self.type == "reference" and self.name.endswith("Id") else None
            ),
        }


def _sys(name: str, label: str, type_: str, **kw: Any) -> Field:
    return Field(name, label, type_, createable=False, updateable=False, **kw)


SYSTEM_FIELDS = (
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)


def _system() -> list[Field]:
    return [
        _sys("Id", "Record ID", "id", length=18, nillable=False),
        _sys("IsDeleted", "Deleted", "boolean", nillable=False),
        _sys("CreatedDate", "Created Date", "datetime", nillable=False),
        _sys("CreatedById", "Created By ID", "reference", length=18, reference_to=("User",)),
        _sys("LastModifiedDate", "Last Modified Date", "datetime", nillable=False),
        _sys(
            "LastModifiedById",
            "Last Modified By ID",
            "reference",
            length=18,
            reference_to=("User",),
        ),
        _sys("SystemModstamp", "System Modstamp", "datetime", nillable=False),
    ]


def _owner() -> Field:
    return Field("OwnerId", "Owner ID", "reference", length=18, reference_to=("User",))


def _s(name: str, label: str, length: int, **kw: Any) -> Field:
    return Field(name, label, "string", length=length, **kw)


# Opportunity stages: (value, probability %, closed, won) — Salesforce's defaults
STAGES: tuple[tuple[str, int, bool, bool], ...] = (
    ("Prospecting", 10, False, False),
    ("Qualification", 10, False, False),
    ("Needs Analysis", 20, False, False),
    ("Proposal/Price Quote", 75, False, False),
    ("Negotiation/Review", 90, False, False),
    ("Closed Won", 100, True, True),
    ("Closed Lost", 0, True, False),
)

INDUSTRIES = (
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
)

ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)


@dataclass(frozen=True)
class SObject:
    """One sObject type: its name, key prefix and fields (custom ones included)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[Field, ...]
    createable: bool = True

    def field(self, name: str) -> Field | None:
        """A field by name, case-insensitively (SOQL and REST names are)."""
        wanted = name.lower()
        for f in self.fields:
            if f.name.lower() == wanted:
                return f
        return None

    def with_field(self, new: Field) -> SObject:
        """A copy with one more (custom) field."""
        return replace(self, fields=(*self.fields, new))

    def describe(self, base: str) -> dict[str, Any]:
        """``GET /sobjects/{Type}/describe``."""
        out = self.summary(base)
        out["fields"] = [f.describe() for f in self.fields]
        out["childRelationships"] = []
        out["recordTypeInfos"] = []
        return out

    def summary(self, base: str) -> dict[str, Any]:
        """The object as describeGlobal lists it."""
        url = f"{base}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": False,
            "createable": self.createable,
            "updateable": self.createable,
            "deletable": self.createable,
            "queryable": True,
            "retrieveable": True,
            "replicateable": True,
            "searchable": True,
            "undeletable": self.createable,
            "urls": {
                "sobject": url,
                "describe": f"{url}/describe",
                "rowTemplate": f"{url}/{{ID}}",
            },
        }


def standard_objects() -> dict[str, SObject]:
    """The standard objects every sandbox org starts with."""
    account = SObject(
        "Account",
        "Account",
        "Accounts",
        "001",
        (
            *_system(),
            _s("Name", "Account Name", 255, required=True, nillable=False),
            Field(
                "Type",
                "Account Type",
                "picklist",
                length=255,
                picklist=(
                    "Prospect",
                    "Customer - Direct",
                    "Customer - Channel",
                    "Channel Partner / Reseller",
                    "Installation Partner",
                    "Technology Partner",
                    "Other",
                ),
            ),
            Field("Industry", "Industry", "picklist", length=255, picklist=INDUSTRIES),
            Field("Website", "Website", "url", length=255),
            Field("Phone", "Account Phone", "phone", length=40),
            Field("BillingStreet", "Billing Street", "textarea", length=255),
            _s("BillingCity", "Billing City", 40),
            _s("BillingState", "Billing State/Province", 80),
            _s("BillingPostalCode", "Billing Zip/Postal Code", 20),
            _s("BillingCountry", "Billing Country", 80),
            Field("NumberOfEmployees", "Employees", "int"),
            Field("AnnualRevenue", "Annual Revenue", "currency", precision=18, scale=0),
            Field("Description", "Account Description", "textarea", length=32000),
            _owner(),
        ),
    )
    contact = SObject(
        "Contact",
        "Contact",
        "Contacts",
        "003",
        (
            *_system(),
            Field("AccountId", "Account ID", "reference", length=18, reference_to=("Account",)),
            _s("FirstName", "First Name", 40),
            _s("LastName", "Last Name", 80, required=True, nillable=False),
            Field("Name", "Full Name", "string", length=121, createable=False, updateable=False),
            _s("Title", "Title", 128),
            Field("Email", "Email", "email", length=80),
            Field("Phone", "Business Phone", "phone", length=40),
            Field("MailingStreet", "Mailing Street", "textarea", length=255),
            _s("MailingCity", "Mailing City", 40),
            _s("MailingState", "Mailing State/Province", 80),
            _s("MailingPostalCode", "Mailing Zip/Postal Code", 20),
            _s("MailingCountry", "Mailing Country", 80),
            Field("HasOptedOutOfEmail", "Email Opt Out", "boolean", nillable=False, default=False),
            Field("Description", "Contact Description", "textarea", length=32000),
            _owner(),
        ),
    )
    opportunity = SObject(
        "Opportunity",
        "Opportunity",
        "Opportunities",
        "006",
        (
            *_system(),
            Field("AccountId", "Account ID", "reference", length=18, reference_to=("Account",)),
            _s("Name", "Name", 120, required=True, nillable=False),
            Field("Description", "Description", "textarea", length=32000),
            Field(
                "StageName",
                "Stage",
                "picklist",
                length=255,
                picklist=tuple(s[0] for s in STAGES),
                restricted=True,
                required=True,
                nillable=False,
            ),
            Field("Amount", "Amount", "currency", precision=18, scale=2),
            Field("Probability", "Probability (%)", "percent", precision=3, scale=0),
            Field("CloseDate", "Close Date", "date", required=True, nillable=False),
            Field(
                "Type",
                "Opportunity Type",
                "picklist",
                length=255,
                picklist=(
                    "Existing Customer - Upgrade",
                    "Existing Customer - Replacement",
                    "Existing Customer - Downgrade",
                    "New Customer",
                ),
            ),
            Field(
                "LeadSource",
                "Lead Source",
                "picklist",
                length=255,
                picklist=("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"),
            ),
            _s("NextStep", "Next Step", 255),
            _sys("IsClosed", "Closed", "boolean", nillable=False),
            _sys("IsWon", "Won", "boolean", nillable=False),
            _owner(),
        ),
    )
    role = SObject(
        "OpportunityContactRole",
        "Opportunity Contact Role",
        "Opportunity Contact Role",
        "00K",
        (
            *_system(),
            Field(
                "OpportunityId",
                "Opportunity ID",
                "reference",
                length=18,
                reference_to=("Opportunity",),
                required=True,
                nillable=False,
                updateable=False,
            ),
            Field(
                "ContactId",
                "Contact ID",
                "reference",
                length=18,
                reference_to=("Contact",),
                required=True,
                nillable=False,
            ),
            Field("Role", "Role", "picklist", length=40, picklist=ROLES),
            Field("IsPrimary", "Primary", "boolean", nillable=False, default=False),
        ),
    )
    user = SObject(
        "User",
        "User",
        "Users",
        "005",
        (
            *_system(),
            _s("Username", "Username", 80, required=True, nillable=False),
            _s("Name", "Full Name", 121),
            Field("Email", "Email", "email", length=128),
            Field("IsActive", "Active", "boolean", nillable=False, default=True),
        ),
        createable=False,
    )
    return {o.name: o for o in (account, contact, opportunity, role, user)}


# --------------------------------------------------------------------------- custom fields

# Tooling API ``Metadata.type`` → (describe type, default length)
CUSTOM_TYPES: dict[str, tuple[str, int]] = {
    "Text": ("string", 255),
    "TextArea": ("textarea", 255),
    "LongTextArea": ("textarea", 32768),
    "Email": ("email", 80),
    "Url": ("url", 255),
    "Phone": ("phone", 40),
    "Number": ("double", 0),
    "Currency": ("currency", 0),
    "Percent": ("percent", 0),
    "Checkbox": ("boolean", 0),
    "Date": ("date", 0),
    "DateTime": ("datetime", 0),
    "Picklist": ("picklist", 255),
}

CUSTOM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*__c$")


@dataclass
class CustomFieldDef:
    """A custom field as created through the Tooling API (kept for persistence)."""

    object_name: str
    field_name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def to_field(self) -> Field:
        """The describe-level field this definition makes."""
        md = self.metadata
        type_, default_length = CUSTOM_TYPES[md.get("type", "Text")]
        picklist: tuple[str, ...] = ()
        if type_ == "picklist":
            values = ((md.get("valueSet") or {}).get("valueSetDefinition") or {}).get("value", [])
            picklist = tuple(str(v.get("fullName") or v.get("label")) for v in values)
        boolean = type_ == "boolean"
        return Field(
            self.field_name,
            str(md.get("label") or self.field_name[:-3].replace("_", " ")),
            type_,
            length=int(md.get("length") or default_length),
            picklist=picklist,
            restricted=bool((md.get("valueSet") or {}).get("restricted", False)),
            required=bool(md.get("required", False)),
            nillable=not boolean and not md.get("required", False),
            external_id=bool(md.get("externalId", False)),
            unique=bool(md.get("unique", False)),
            case_sensitive=bool(md.get("caseSensitive", False)),
            custom=True,
            default=(str(md.get("defaultValue", "false")).lower() == "true") if boolean else None,
            precision=int(md.get("precision") or (18 if type_ in NUMBER_TYPES else 0)),
            scale=int(md.get("scale") or 0),
        )
