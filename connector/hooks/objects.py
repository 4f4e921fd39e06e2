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
