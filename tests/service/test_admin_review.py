"""Registration review on the admin page (issue 16 item 5): the pending registrations
listed with their reason, approved or rejected by a logged-in admin's POST (CSRF
checked), recorded as done by the admin page."""

from __future__ import annotations

import html
import re

from service_support import ADMIN_TOKEN, Harness
from starlette.testclient import TestClient

from connector.service import Service, build_app
from connector.testing.world import review_rules


def _sync(svc: Service) -> None:
    job, _ = svc.request_pass("acme", "schedule")
    job.done.wait(30)
    assert job.run_id is not None and svc.store.run(job.run_id).status == "ok"


def test_pending_registrations_are_approved_and_rejected_on_the_admin_page(
    harness: Harness,
) -> None:
    rules = harness.root / "mappings" / "rules.yaml"
    rules.write_text(
        review_rules(rules.read_text(), deal="manual", notify_email="program@vendor.example")
    )
    svc = harness.service(hooks=None)  # the program's hooks (the default ones)
    first = harness.seed_deal("acme")
    second = harness.seed_deal("acme")
    _sync(svc)
    registry = svc.store.registry
    pending = {r.partner_record_id: r for r in registry.registrations("acme", "pending")}
    assert set(pending) == {first.id, second.id}
    a, b = pending[first.id].id, pending[second.id].id

    with TestClient(build_app(svc)) as client:
        page = client.post("/admin/login", data={"token": ADMIN_TOKEN})
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert "Registrations pending review (2)" in page.text
        assert f'data-registration="{a}"' in page.text and "c1.com" in page.text
        assert "ann@c1.com" not in page.text  # the lead's address is not shown
        assert client.post(f"/admin/registrations/{a}/approve", data={}).status_code == 403

        done = client.post(f"/admin/registrations/{a}/approve", data={"csrf": csrf})
        assert f"Registration #{a} approved." in done.text
        bad = client.post(
            f"/admin/registrations/{b}/reject", data={"csrf": csrf, "code": "because"}
        )
        assert f"Registration #{b} not changed: unknown rejection code 'because'" in html.unescape(
            bad.text
        )
        done = client.post(
            f"/admin/registrations/{b}/reject", data={"csrf": csrf, "code": "invalid_data"}
        )
        assert f"Registration #{b} rejected." in done.text
        assert "Registrations pending review (0)" in done.text

    approved, rejected = registry.get(a), registry.get(b)
    assert approved is not None and rejected is not None
    assert (approved.status, approved.reviewed_by) == ("accepted", "admin page")
    assert (rejected.status, rejected.code, rejected.reviewed_by) == (
        "rejected",
        "invalid_data",
        "admin page",
    )
    written = harness.crms["acme"].get("deals", first.id).properties
    assert written["dealsync_registration_status"] == "accepted"
