"""Adding a CRM is one adapter plus one registry entry: a portal kind registered by a
test is validated by the config loader, checked by ``dealsync check`` and built by
the API, and the engine writes the markers under the names the adapter gives them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connector.adapters.local import LocalCRM
from connector.adapters.naming import HUBSPOT_NAMING, Naming
from connector.adapters.registry import (
    BuildContext,
    CheckContext,
    KindSettings,
    PortalKind,
    Setting,
    register,
    unregister,
)
from connector.api import Dealsync
from connector.config import check_project, load_project
from connector.config.models import PortalConfig
from connector.testing.adapter_suite import (
    LocalBackdoor,
    Subject,
    check_naming_is_complete_and_its_markers_work,
)
from connector.testing.world import project_yaml, seed_deal, write_project

# A CRM whose custom fields end in __c, as Salesforce's do.
FIELD_NAMING = replace(
    HUBSPOT_NAMING,
    source_id="dealsync_source_id__c",
    partner_id="dealsync_partner_id__c",
    language="language__c",
)


class FieldSettings(KindSettings):
    database: str | None = None
    instance: str = "eu1"


def _check_fields(settings: FieldSettings, ctx: CheckContext) -> list[Setting]:
    if settings.database:
        return []
    return [Setting(None, "adapter fieldcrm needs database", "add `database: <file>.db`")]


def _build_fields(name: str, settings: FieldSettings, ctx: BuildContext) -> LocalCRM:
    assert settings.database is not None
    return LocalCRM(ctx.resolve(settings.database), name=name, naming=FIELD_NAMING)


@pytest.fixture
def field_kind() -> Iterator[PortalKind]:
    kind = register(
        PortalKind("fieldcrm", "a CRM with __c fields", FieldSettings, _build_fields, _check_fields)
    )
    try:
        yield kind
    finally:
        unregister("fieldcrm")


def _fieldcrm_partner(partner_keys: str) -> str:
    """The test project with partner acme on the registered kind."""
    return project_yaml().replace(
        "    adapter: local\n    path: partner-acme.db\n", f"    adapter: fieldcrm\n{partner_keys}"
    )


def test_a_registered_kind_is_loaded_and_built_without_touching_the_api(
    tmp_path: Path, field_kind: PortalKind
) -> None:
    config = write_project(
        tmp_path, _fieldcrm_partner("    database: acme.db\n    instance: us2\n")
    )
    project = load_project(config, env={})
    partner: PortalConfig = project.config.partner("acme")
    assert partner.adapter == "fieldcrm"
    assert (partner.database, partner.instance) == ("acme.db", "us2")
    ds = Dealsync(project, env={})
    try:
        crm = ds.partner_crm("acme")
        assert isinstance(crm, LocalCRM)
        assert crm.path == str(tmp_path / "acme.db") and crm.naming == FIELD_NAMING
        assert isinstance(ds.vendor(), LocalCRM) and ds.vendor().naming == HUBSPOT_NAMING
    finally:
        ds.close()


def test_a_registered_kind_has_its_keys_and_its_check_reported_with_lines(
    tmp_path: Path, field_kind: PortalKind
) -> None:
    config = write_project(tmp_path, _fieldcrm_partner("    databse: acme.db\n    instance: 7\n"))
    problems = check_project(config, env={})
    assert [(p.path, p.message) for p in problems] == [
        ("partners[0].databse", "unknown key 'databse'"),
        ("partners[0].instance", "expected a string, got the number 7"),
    ]
    assert "did you mean 'database'?" in problems[0].hint
    assert all(p.line is not None for p in problems)

    config = write_project(tmp_path, _fieldcrm_partner(""))
    (problem,) = check_project(config, env={})
    assert (problem.path, problem.message) == ("partners[0]", "adapter fieldcrm needs database")


def test_an_unregistered_kind_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    config = write_project(tmp_path, _fieldcrm_partner("    database: acme.db\n"))
    (problem,) = check_project(config, env={})
    assert problem.path == "partners[0].adapter"
    assert problem.message == "'fieldcrm' is not one of hubspot, local, salesforce"
    assert "local for the embedded demo CRM" in problem.hint


def test_the_engine_writes_and_reads_the_markers_under_the_adapters_names(
    tmp_path: Path, field_kind: PortalKind
) -> None:
    """Partner side on the __c kind, vendor on HubSpot's names; the engine alone
    (no hooks). A partner deal carrying the partner's own source-id marker was written
    by the connector and is not shared back; HubSpot's marker name means nothing there."""
    config = write_project(tmp_path, _fieldcrm_partner("    database: acme.db\n"))
    ds = Dealsync(load_project(config, env={}), env={}, hooks=[])
    try:
        installed = ds.setup()
        assert "deals.dealsync_source_id__c" in installed["acme"]
        assert "deals.dealsync_source_id" not in installed["acme"]
        assert {"deals.dealsync_source_id", "deals.dealsync_partner_id"} <= set(installed["vendor"])
        partner = ds.partner_crm("acme")
        vendor = ds.vendor()
        assert isinstance(partner, LocalCRM) and isinstance(vendor, LocalCRM)
        new = seed_deal(partner, dealname="New deal")
        ours = seed_deal(partner, dealname="Ours", dealsync_source_id__c="vendor:999")
        plain = seed_deal(partner, dealname="Plain", dealsync_source_id="vendor:998")

        ds.sync("acme")

        by_name = {str(d.get("dealname")): d for d in vendor.all("deals")}
        assert sorted(by_name) == ["New deal", "Plain"]
        assert by_name["New deal"].properties["dealsync_source_id"] == f"acme:{new.id}"
        assert by_name["New deal"].properties["dealsync_partner_id"] == "acme"
        assert by_name["Plain"].properties["dealsync_source_id"] == f"acme:{plain.id}"
        assert "dealsync_source_id__c" not in by_name["New deal"].properties
        sources = {d.get("dealsync_source_id") for d in by_name.values()}
        assert f"acme:{ours.id}" not in sources
    finally:
        ds.close()


def test_a_local_crm_with_other_names_passes_the_naming_check() -> None:
    crm = LocalCRM(name="conf", naming=FIELD_NAMING)
    check_naming_is_complete_and_its_markers_work(Subject(crm, LocalBackdoor(crm)))


def test_an_incomplete_naming_says_what_is_wrong() -> None:
    broken = Naming("same", "same", "deals", "deals", "", "hs language", "merged")
    assert broken.problems() == [
        "companies is '', not an API name (letters, digits, _)",
        "language is 'hs language', not an API name (letters, digits, _)",
        "source_id and partner_id are both 'same'",
        "deals, contacts and companies are not distinct: ('deals', 'deals', '')",
    ]
