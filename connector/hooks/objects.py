"""Which of the project's mappings carry the program's deals, contacts and companies.

The program speaks of "the registered deals", "the leads" (contacts) and "the deal's
company"; a mapping says which CRM object type it syncs on each side. Which mapping is
which is read off the partner side's object types as the partner CRM names them
(:attr:`~connector.adapters.naming.Naming.deals`...), so a CRM whose deals are
``Opportunity`` finds its deal mapping the way HubSpot's ``deals`` does. The hooks ask
at the point they run, with the naming they are given (or the pass's), and never name
an object type themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connector.adapters.naming import Naming
from connector.config.models import ObjectMapping


@dataclass(frozen=True)
class ProgramMappings:
    """The program's mappings between one partner CRM and the vendor's."""

    deals: ObjectMapping | None
    """The registered deals: partner deals shared by a condition of their own."""
    contacts: ObjectMapping | None
    companies: ObjectMapping | None
    children: tuple[ObjectMapping, ...]
    """The mappings shared because a registered deal is associated with them."""


def program_mappings(mappings: Sequence[ObjectMapping], partner: Naming) -> ProgramMappings:
    """The program's mappings, found by their partner object types as ``partner`` (the
    partner CRM's naming) spells them."""
    deals = next(
        (m for m in mappings if m.partner_object == partner.deals and m.share.partner), None
    )
    return ProgramMappings(
        deals=deals,
        contacts=next((m for m in mappings if m.partner_object == partner.contacts), None),
        companies=next((m for m in mappings if m.partner_object == partner.companies), None),
        children=tuple(m for m in mappings if deals is not None and m.share.via == deals.name),
    )


def vendor_mapping(mappings: Sequence[ObjectMapping], object_type: str) -> ObjectMapping | None:
    """The first mapping syncing ``object_type`` on the vendor side (as the vendor's
    CRM names it), if any."""
    return next((m for m in mappings if m.vendor_object == object_type), None)


def partner_property(mapping: ObjectMapping | None, vendor_name: str) -> str | None:
    """The partner property ``mapping`` syncs with the vendor's ``vendor_name``.

    The program's rules name what they read in the vendor's vocabulary (a company's
    ``domain``, a contact's ``email``); a partner CRM may spell it otherwise
    (Salesforce: ``Website``, ``Email``). The mapping is where the two meet, so the
    partner's name is read off it. A mapping between two CRMs of one vocabulary (the
    same object type on both sides, HubSpot to HubSpot) reads an unmapped property
    under the vendor's name, as it always has; a partner CRM of another vocabulary has
    no property the mapping does not name (None: not read, never guessed)."""
    if mapping is None:
        return vendor_name
    field = next((f for f in mapping.fields if f.vendor == vendor_name), None)
    if field is not None:
        return field.partner
    if any(f.partner == vendor_name for f in mapping.fields):
        return vendor_name  # the rules name the partner's own property
    return vendor_name if mapping.partner_object == mapping.vendor_object else None


@dataclass(frozen=True)
class PartnerFields:
    """What the program reads of the partner's records, as the partner CRM names it
    (:func:`partner_fields`). None: that CRM has no such property under the mapping;
    the program does without it (a lead's domain then comes from its e-mail)."""

    email: str | None
    first_name: str | None
    last_name: str | None
    country: str | None
    contact_company: str | None
    """A contact's company name (HubSpot's free-text ``company``)."""
    language: str
    company_name: str | None
    company_domain: str | None
    lead_domain: str | None
    lead_flag: str

    @property
    def contact(self) -> tuple[str, ...]:
        """A registration's reads of a partner contact."""
        names = (self.first_name, self.last_name, self.email, self.country, self.language)
        return tuple(n for n in (*names, self.contact_company) if n)

    @property
    def company(self) -> tuple[str, ...]:
        """A registration's reads of a partner company (its domain and name)."""
        return tuple(n for n in (self.company_domain, self.company_name) if n)


def partner_fields(
    objects: ProgramMappings,
    naming: Naming,
    *,
    lead_flag: str,
    lead_domain: str,
    company_domain: str,
) -> PartnerFields:
    """The partner-side names of the program's reads: each through the mapping of its
    object (:func:`partner_property`), the program's own fields through the partner
    CRM's :meth:`~connector.adapters.naming.Naming.custom`."""
    contacts, companies = objects.contacts, objects.companies
    return PartnerFields(
        email=partner_property(contacts, "email"),
        first_name=partner_property(contacts, "firstname"),
        last_name=partner_property(contacts, "lastname"),
        country=partner_property(contacts, "country"),
        contact_company=partner_property(contacts, "company"),
        language=naming.language,
        company_name=partner_property(companies, "name"),
        company_domain=partner_property(companies, company_domain),
        lead_domain=partner_property(contacts, lead_domain),
        lead_flag=naming.custom(lead_flag),
    )
