"""``dealsync serve`` reloads through the same semantic checks as ``dealsync check``:
an edit that cannot mean what the admin meant is refused (the last good version stays,
the reason is on /healthz), one dealsync can normalise is taken normalised."""

from __future__ import annotations

from service_support import Harness
from starlette.testclient import TestClient

from connector.service import build_app


def test_a_partner_portal_edited_to_the_vendors_is_refused_on_reload(harness: Harness) -> None:
    svc = harness.service()
    good = svc.project
    client = TestClient(build_app(svc))
    text = harness.config.read_text()
    assert "path: partner-globex.db" in text
    harness.config.write_text(text.replace("path: partner-globex.db", "path: vendor.db"))
    assert svc.check_reload() is False
    assert svc.project is good
    body = client.get("/healthz").json()
    assert body["config_valid"] is False
    assert any(
        "partners[1]: partner 'globex' is the vendor's portal" in p for p in body["config_problems"]
    )


def test_a_normalisable_rules_edit_is_reloaded_normalised(harness: Harness) -> None:
    svc = harness.service()
    rules = harness.root / "mappings" / "rules.yaml"
    text = rules.read_text()
    assert "dach: [DE, AT, CH]" in text and "  - gmail.com\n" in text
    rules.write_text(
        text.replace("dach: [DE, AT, CH]", "dach: [Germany, AT, CH]").replace(
            "  - gmail.com\n", '  - "@gmail.com"\n'
        )
    )
    assert svc.check_reload() is True
    assert svc.project.rules.consent.dach == ["DE", "AT", "CH"]
    assert svc.project.rules.personal_domains[0] == "gmail.com"
    assert [w.path for w in svc.project.warnings] == ["personal_domains[0]", "consent.dach[0]"]
