"""What the API's command groups use of :class:`connector.api.Dealsync`, declared once
for the type checker (the groups are mixins; ``Dealsync`` provides all of it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.adapters.base import CRMAdapter
    from connector.config import Project
    from connector.config.models import PartnerConfig
    from connector.state import StateStore


class Host:
    """The program's config, environment, store and portals."""

    if TYPE_CHECKING:  # provided by :class:`connector.api.Dealsync`
        env: dict[str, str]
        project: Project

        @property
        def store(self) -> StateStore: ...

        def partner(self, partner_id: str) -> PartnerConfig: ...

        def partner_crm(self, partner_id: str) -> CRMAdapter: ...

        def vendor(self) -> CRMAdapter: ...
