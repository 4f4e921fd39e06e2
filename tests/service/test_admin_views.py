"""The admin page's views (issue 19 item 7) over the Starlette app, on seeded state:
runs (filtered by connection, each run's outcome and failed records), registrations
(pending ones approved or rejected there), commissions (earned and not credited, with
why), the outbox (held ones with the reason and what to do); and what every view
shares — auto-refresh with a pause, a phone viewport, readable UTC timestamps, long
errors folded, the pass chart, "showing 50 of N" pages."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from service_support import ADMIN_TOKEN, Harness
from starlette.testclient import TestClient

from connector.api.admin import Slot, slot_outcomes, sum_commissions
from connector.mail.render import Rendered
from connector.program.commission import NOT_CREDITED
from connector.service import Service, build_app
from connector.service.admin import VIEWS, ago, fold, safe_next
from connector.state import StateStore
from connector.state.admin_views import AdminViews
from connector.state.runs import RecordOutcome
from connector.state.tables import Commission, Run, UncreditedWin
from connector.testing.world import review_rules

LONG_ERROR = (
    "HubSpot refused it (400): amount is locked by the validation rule 'Finance sign-off' "
    "on this pipeline stage; ask finance to unlock it or move the deal back a stage "
    "— correlation id 7f3a-91bc-4d2e-aa10"
)


@dataclass
class World:
    svc: Service
    failed_run: int
    ok_run: int
    globex_run: int
    pending: list[int]
    held: int
    failed_mail: int


def _pass(svc: Service, connection: str) -> int:
    job, _ = svc.request_pass(connection, "schedule")
    job.done.wait(30)
    assert job.run_id is not None
    return job.run_id


def seed_world(harness: Harness) -> World:
    """Two connections with runs (one failing with a long error), two registrations
    pending review, commissions earned and a won deal not credited, and e-mails in
    every interesting status."""
    rules = harness.root / "mappings" / "rules.yaml"
    rules.write_text(
        review_rules(rules.read_text(), deal="manual", notify_email="program@vendor.example")
    )
    svc = harness.service(hooks=None)  # the program's own hooks
    harness.seed_deal("acme")
    harness.seed_deal("acme")
    ok_run = _pass(svc, "acme")
    assert svc.store.run(ok_run).status == "ok"
    # a pass whose vendor write was refused, as the engine records one
    store = svc.store
    failed_run = store.start_run("acme", dry_run=False, trigger="schedule")
    store.add_outcomes(
        failed_run,
        [RecordOutcome("deals", "vendor", "v-77", "update", "failed", "amount", LONG_ERROR)],
    )
    store.finish_run(
        failed_run, status="failed", counts={"failed": 1}, api_calls={}, error="1 record failed"
    )
    harness.seed_deal("globex")
    globex_run = _pass(svc, "globex")
    pending = [r.id for r in svc.store.registry.registrations(status="pending") if r.id]
    assert len(pending) >= 2

    registry = svc.store.registry
    for n, (amount, rate) in enumerate((("1000", "0.10"), ("2500.50", "0.20"))):
        registry.add_commission(
            Commission(
                partner="acme",
                kind="shared",
                vendor_deal_id=f"v-won-{n}",
                partner_deal_id=f"p-{n}",
                domain=f"won{n}.example",
                amount=amount,
                currency="EUR",
                rate=rate,
                commission=str(float(amount) * float(rate)),
                mrr=amount,
            )
        )
    registry.record_uncredited(
        UncreditedWin(
            vendor_deal_id="v-late-1",
            partner="globex",
            kind="shared",
            domain="late.example",
            code="won_after_ownership",
            reason=NOT_CREDITED["won_after_ownership"].format(
                partner="globex", domain="late.example", end="2026-10-01", closed="2026-11-03"
            ),
            amount="800",
            currency="EUR",
            closed_at=datetime(2026, 11, 3, tzinfo=UTC),
        )
    )

    outbox = svc.store.outbox
    text = Rendered(subject="Your registration", body="Hello", language="en")
    for key, status, detail in (
        ("k-held", "held", "held: the recipient's domain is on the do-not-contact list"),
        ("k-failed", "failed", "SMTP 550: <someone@c1.com>: mailbox unavailable"),
        ("k-sent", "sent", None),
        ("k-queued", "queued", None),
    ):
        outbox.queue(
            dedupe_key=key,
            kind="lead_notification",
            recipient="someone@c1.com",
            rendered=text,
            partner="acme",
            status=status,
            detail=detail,
        )
    held, failed_mail = outbox.id_of("k-held"), outbox.id_of("k-failed")
    assert held is not None and failed_mail is not None
    return World(svc, failed_run, ok_run, globex_run, pending, held, failed_mail)


def login(client: TestClient) -> str:
    page = client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def world(harness: Harness) -> World:
    return seed_world(harness)


@pytest.fixture
def admin(world: World) -> TestClient:
    client = TestClient(build_app(world.svc))
    login(client)
    return client


def _rows(page: str, cls: str, key: str) -> list[str]:
    """The ``data-<key>`` of each row of class ``cls``, in page order."""
    return re.findall(rf'<tr class="{cls}"[^>]*?data-{key}="([^"]+)"', page)


# ---------------------------------------------------------------------- runs


def test_a_connection_links_to_its_runs_with_their_outcomes_and_errors(
    world: World, admin: TestClient
) -> None:
    overview = admin.get("/admin").text
    assert 'href="/admin/runs?connection=acme"' in overview
    assert f'href="/admin/runs?connection=acme#run-{world.failed_run}"' in overview

    page = admin.get("/admin/runs?connection=acme").text
    runs = _rows(page, "run", "run")
    assert runs == [str(world.failed_run), str(world.ok_run)]  # newest first, acme only
    assert str(world.globex_run) not in runs
    assert "Showing 1–2 of 2 runs" in page
    failed = page[
        page.index(f'id="run-{world.failed_run}"') : page.index(f'id="run-{world.ok_run}"')
    ]
    assert 'class="outcome failed"' in failed
    # the record that failed, its long error folded: a short summary, the whole text inside
    assert '<details class="run-records"><summary>1 record</summary>' in failed
    folded = re.search(
        r'<details class="error-text"><summary>(.*?)</summary><pre>(.*?)</pre>', failed, re.S
    )
    assert folded is not None
    assert html.unescape(folded.group(2)) == LONG_ERROR
    assert len(folded.group(1)) < len(LONG_ERROR)

    every = admin.get("/admin/runs").text
    assert set(_rows(every, "run", "run")) == {
        str(world.failed_run),
        str(world.ok_run),
        str(world.globex_run),
    }
    only_failed = admin.get("/admin/runs?status=failed").text
    assert _rows(only_failed, "run", "run") == [str(world.failed_run)]
    assert 'data-status="failed" class="active"' not in only_failed  # the link, not a row
    unknown = admin.get("/admin/runs?connection=nosuch").text
    assert "There is no connection nosuch" in unknown
    hostile = admin.get("/admin/runs", params={"connection": "<b>x</b>", "status": "<i>"}).text
    assert "There is no connection &lt;b&gt;x&lt;/b&gt;" in hostile and "<b>x</b>" not in hostile


def test_a_run_with_many_failed_records_shows_how_many_and_the_first_twenty(
    world: World, admin: TestClient
) -> None:
    store = world.svc.store
    run_id = store.start_run("globex", dry_run=False, trigger="resync")
    store.add_outcomes(
        run_id,
        [
            RecordOutcome("deals", "vendor", f"v-{n}", "update", "failed", None, "HTTP 400")
            for n in range(130)
        ]
        + [RecordOutcome("deals", "vendor", "v-ok", "update", "ok")],
    )
    store.finish_run(run_id, status="failed", counts={"failed": 130}, api_calls={})
    page = admin.get("/admin/runs?connection=globex").text
    run = page[page.index(f'id="run-{run_id}"') : page.index(f'id="run-{world.globex_run}"')]
    assert "<summary>130 records</summary>" in run
    assert re.findall(
        r'<tr class="run-record"><td>deals</td><td>vendor</td><td>(v-\d+)</td>', run
    ) == [f"v-{n}" for n in range(20)]
    more = f'href="/admin/runs/{run_id}?outcome=failed">all on the run\'s page</a>'
    assert f"Showing 20 of 130: <a {more}, or <code>dealsync runs {run_id} --failed</code>" in run
    assert "v-ok" not in run
    assert f'<a href="/admin/runs/{run_id}" class="run-link">#{run_id}</a>' in run

    # the run's own page: every record, paged, filtered by outcome
    detail = admin.get(f"/admin/runs/{run_id}").text
    assert "Showing 1–50 of 131 records" in detail
    assert re.search(r'data-status="failed"[^>]*>failed \(130\)', detail)
    assert re.search(r'data-status="ok"[^>]*>ok \(1\)', detail)
    last = admin.get(f"/admin/runs/{run_id}?outcome=failed&offset=100").text
    assert "Showing 101–130 of 130 records" in last and "v-ok" not in last
    assert len(re.findall(r'<tr class="run-record"', last)) == 30
    gone = admin.get("/admin/runs/987654")
    assert gone.url.path == "/admin/runs" and "no run #987654" in html.unescape(gone.text)


@pytest.mark.parametrize("state_backend", ["sqlite", "postgres"])
def test_the_views_queries_read_the_same_on_sqlite_and_postgresql(
    state_url_factory: Callable[[str], str],
) -> None:
    """The pages, counts, first failed records per run and chart rows, on both
    databases the state store supports (PostgreSQL skipped when no server answers)."""
    store = StateStore(state_url_factory("admin"))
    runs = []
    for n in range(7):
        run_id = store.start_run("acme" if n % 2 else "globex", dry_run=False)
        store.add_outcomes(
            run_id,
            [RecordOutcome("deals", "vendor", f"v{n}-{k}", "update", "failed") for k in range(n)],
        )
        store.finish_run(run_id, status="failed" if n else "ok", counts={}, api_calls={})
        runs.append(run_id)
    views = AdminViews(store)
    page = views.runs_page("acme", offset=1, limit=2)
    assert ([r.id for r in page.rows], page.total, page.older, page.newer) == (
        [runs[3], runs[1]],
        3,
        None,
        0,
    )
    assert views.run_statuses() == {"ok": 1, "failed": 6}
    assert views.runs_by_connection() == {"acme": 3, "globex": 4}
    problems = views.run_problems(runs, per_run=2)
    assert {k: (n, [r.record_id for r in recs]) for k, (n, recs) in problems.items()} == {
        runs[n]: (n, [f"v{n}-0", f"v{n}-1"][: min(n, 2)]) for n in range(1, 7)
    }
    assert len(views.run_outcomes(datetime.now(UTC) - timedelta(hours=1))) == 7
    store.engine.dispose()


def test_long_run_lists_are_paged_and_say_how_many_there_are(
    world: World, admin: TestClient
) -> None:
    store = world.svc.store
    for _ in range(58):
        run_id = store.start_run("globex", dry_run=False, trigger="schedule")
        store.finish_run(run_id, status="ok", counts={}, api_calls={})
    first = admin.get("/admin/runs?connection=globex").text
    assert "Showing 1–50 of 59 runs" in first
    assert len(_rows(first, "run", "run")) == 50
    assert 'href="/admin/runs?connection=globex&amp;offset=50" class="older"' in first
    second = admin.get("/admin/runs?connection=globex&offset=50").text
    assert "Showing 51–59 of 59 runs" in second and len(_rows(second, "run", "run")) == 9
    assert str(world.globex_run) in _rows(second, "run", "run")  # the oldest, last
    assert 'class="older"' not in second and 'class="newer"' in second
    # hostile paging is clamped, never an error
    for q in ("offset=-5", "limit=100000", "offset=abc&limit=x"):
        assert admin.get(f"/admin/runs?{q}").status_code == 200


# ---------------------------------------------------------------------- registrations


def test_pending_registrations_are_decided_on_the_registrations_view(
    world: World, admin: TestClient
) -> None:
    page = admin.get("/admin/registrations").text
    a, b = world.pending[:2]
    assert f"Pending review ({len(world.pending)})" in page
    assert f'data-registration="{a}"' in page
    assert "ann@" not in page  # no lead's address
    assert 'data-status="pending"' in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    # guarded like every admin action: no CSRF token 403, no session 401
    url = f"/admin/registrations/{a}/approve"
    assert admin.post(url, data={"next": "/admin/registrations"}).status_code == 403
    assert TestClient(build_app(world.svc)).post(url, data={"csrf": csrf}).status_code == 401

    done = admin.post(
        url, data={"csrf": csrf, "next": "/admin/registrations"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/registrations"
    after = admin.get("/admin/registrations").text
    assert f"Registration #{a} approved." in after
    rejected = admin.post(
        f"/admin/registrations/{b}/reject",
        data={"csrf": csrf, "code": "invalid_data", "next": "/admin/registrations?status=rejected"},
    )
    assert f"Registration #{b} rejected." in rejected.text
    assert _rows(rejected.text, "registration", "registration") == [
        str(b)
    ]  # back on the filtered view
    assert "<code>invalid_data</code>" in rejected.text
    reg = world.svc.store.registry.get(a)
    assert reg is not None and (reg.status, reg.reviewed_by) == ("accepted", "admin page")
    counts = admin.get("/admin/registrations").text
    assert f"Pending review ({len(world.pending) - 2})" in counts
    assert re.search(r'data-status="accepted"[^>]*>accepted \(\d+\)', counts)


def test_a_form_cannot_send_the_admin_to_another_site() -> None:
    assert safe_next("/admin/outbox?status=held") == "/admin/outbox?status=held"
    for hostile in (
        "https://evil.example/admin",
        "//evil.example/admin",
        "/\\evil.example",
        "/x",
        "",
    ):
        assert safe_next(hostile) == "/admin", hostile


# ---------------------------------------------------------------------- commissions


def test_commissions_earned_and_won_deals_not_credited_with_why(
    world: World, admin: TestClient
) -> None:
    page = admin.get("/admin/commissions").text
    assert "Commissions earned (2)" in page
    assert _rows(page, "commission", "commission") == [
        str(c.id) for c in reversed(world.svc.store.registry.commissions())
    ]
    total = re.search(r'<tr class="commission-total" data-partner="acme">(.*?)</tr>', page)
    assert total is not None and "<td>EUR</td><td>2</td><td>600.10</td>" in total.group(1)
    assert "Won but not credited (1)" in page
    assert "<code>won_after_ownership</code>" in page
    assert "globex&#39;s ownership of late.example ended 2026-10-01, the deal closed" in page
    only_globex = admin.get("/admin/commissions?partner=globex").text
    assert "Commissions earned (0)" in only_globex and "Won but not credited (1)" in only_globex


def test_commission_totals_are_exact_per_partner_and_currency() -> None:
    totals = sum_commissions(
        [("acme", "EUR", "0.10"), ("acme", "EUR", "0.20"), ("acme", "USD", "5"), ("b", None, "x")]
    )
    assert [(t.partner, t.currency, str(t.commission), t.count) for t in totals] == [
        ("acme", "EUR", "0.30", 2),
        ("acme", "USD", "5", 1),
        ("b", "", "0", 1),  # not a number: counted, not summed, no crash
    ]


# ---------------------------------------------------------------------- outbox


def test_the_outbox_shows_every_status_and_what_to_do_with_held_and_failed(
    world: World, admin: TestClient
) -> None:
    page = admin.get("/admin/outbox").text
    assert "Held for a decision (1)" in page
    held = page[page.index('id="held-emails"') :]
    assert "do-not-contact list" in held and 'class="release"' in held and 'class="cancel"' in held
    assert "dealsync outbox show ID" in page
    statuses = dict(
        re.findall(r'<tr class="outbox-message" data-outbox="(\d+)" data-status="(\w+)"', page)
    )
    assert sorted(statuses.values()) == ["failed", "held", "queued", "sent"]
    assert "someone@c1.com" not in page  # recipients stay off the page, quoted ones too
    assert "SMTP 550: &lt;&lt;e-mail&gt;&gt;: mailbox unavailable" in page
    assert f'action="/admin/outbox/{world.failed_mail}/retry"' in page
    assert re.search(r'data-status="held"[^>]*>held \(1\)', page)

    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    retried = admin.post(
        f"/admin/outbox/{world.failed_mail}/retry", data={"csrf": csrf, "next": "/admin/outbox"}
    )
    assert f"E-mail #{world.failed_mail} queued again" in retried.text
    assert world.svc.store.outbox.get(world.failed_mail).status == "queued"  # type: ignore[union-attr]
    again = admin.post(f"/admin/outbox/{world.failed_mail}/retry", data={"csrf": csrf})
    assert "is not failed (only those retry)" in again.text
    assert admin.post(f"/admin/outbox/{world.held}/retry", data={}).status_code == 403

    cancelled = admin.post(
        f"/admin/outbox/{world.held}/cancel",
        data={"csrf": csrf, "next": "/admin/outbox?status=cancelled"},
    )
    assert "Held for a decision (0)" in cancelled.text
    assert _rows(cancelled.text, "outbox-message", "outbox") == [str(world.held)]


def test_many_held_e_mails_are_paged_oldest_first_and_the_overview_points_there(
    world: World, admin: TestClient
) -> None:
    text = Rendered(subject="Notice", body="Hello", language="en")
    for n in range(55):
        world.svc.store.outbox.queue(
            dedupe_key=f"many-{n}",
            kind="data_notice",
            recipient=f"p{n}@c1.com",
            rendered=text,
            partner="globex",
            status="held",
            detail="held: no consent on record",
        )
    overview = admin.get("/admin").text
    assert "E-mails held for a decision (56)" in overview
    assert len(_rows(overview, "held-email", "outbox")) == 50
    assert (
        "Showing 50 of 56" in overview and 'href="/admin/outbox">all on the Outbox view' in overview
    )
    first = admin.get("/admin/outbox").text
    held_first = first[first.index('id="held-emails"') : first.index("Every e-mail")]
    assert _rows(held_first, "held-email", "outbox")[0] == str(world.held)  # waiting longest
    assert "Showing 1–50 of 56 held e-mails" in first
    assert "Showing 1–50 of 59 e-mails" in first
    rest = admin.get("/admin/outbox?held_offset=50").text
    assert "Showing 51–56 of 56 held e-mails" in rest
    assert "Showing 1–50 of 59 e-mails" in rest  # the other list stays where it was


def test_a_long_list_of_failing_records_is_cut_with_what_to_do(
    world: World, admin: TestClient
) -> None:
    world.svc.store.add_retries(
        "acme",
        [("deals", "vendor", f"v-{n}", "HubSpot refused it (400): amount") for n in range(60)],
    )
    page = admin.get("/admin").text
    assert len(re.findall(r'<tr class="failing-record"', page)) == 50
    assert "Showing 50 of 60 refused records: <b>Resync failed records</b> retries all" in page
    row = re.search(r'<tr data-connection="acme">.*?<td class="failing">(\d+)</td>', page, re.S)
    assert row is not None and row.group(1) == "60"


# ---------------------------------------------------------------------- every view


def test_every_view_refreshes_itself_until_paused_and_fits_a_phone(
    world: World, admin: TestClient
) -> None:
    for view in VIEWS:
        page = admin.get(view.path)
        assert page.status_code == 200, view
        text = page.text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
        assert '<meta http-equiv="refresh" content="30">' in text
        assert f'href="{view.path}?refresh=0" id="pause"' in text
        assert "<script" not in text  # no script: the CSP stays default-src 'none'
        assert not re.search(r"(src|href)=\"https?://", text)  # nothing from the network
        assert "UTC" in text
        paused = admin.get(f"{view.path}?refresh=0").text
        assert 'http-equiv="refresh"' not in paused and 'id="resume"' in paused
        # the nav keeps the pause
        assert all(f'href="{v.path}?refresh=0"' in paused for v in VIEWS)
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert admin.get("/admin/runs?connection=acme&refresh=0").text.count("refresh=0") > len(VIEWS)


def test_on_a_fresh_service_every_view_says_there_is_nothing_yet(
    service: Service, client: TestClient
) -> None:
    login(client)
    expected = {
        "/admin": ["No runs yet.", "0 in all, 0 failed", 'id="held-emails-none"'],
        "/admin/runs": ["No runs", "0 in all, 0 failed"],
        "/admin/registrations": ['id="pending-registrations-none"', "No registrations"],
        "/admin/commissions": ["Commissions earned (0)", "No won deals not credited"],
        "/admin/outbox": ['id="held-emails-none"', "No e-mails"],
        "/admin/capacity": ['id="no-queue"', "Rate budgets per portal"],
    }
    assert set(expected) == {v.path for v in VIEWS}
    for path, texts in expected.items():
        page = client.get(path)
        assert page.status_code == 200, path
        for text in texts:
            assert text in page.text, (path, text)


def test_views_need_a_session(world: World) -> None:
    anonymous = TestClient(build_app(world.svc))
    for view in VIEWS:
        r = anonymous.get(view.path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/admin/login", view


def test_timestamps_read_relative_with_the_exact_utc_time_in_the_title(
    world: World, admin: TestClient
) -> None:
    page = admin.get("/admin/runs").text
    stamps = re.findall(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)</time>', page)
    assert stamps
    for iso, title, shown in stamps:
        at = datetime.fromisoformat(iso)
        assert at.tzinfo is not None and title == at.strftime("%Y-%m-%d %H:%M:%S UTC")
        assert shown in ("just now",) or shown.endswith("ago")
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=10), now) == "just now"
    assert ago(now - timedelta(minutes=7), now) == "7 min ago"
    assert ago(now - timedelta(hours=3, minutes=10), now) == "3 h ago"
    assert ago(now - timedelta(days=2), now) == "2 days ago"
    assert ago(now + timedelta(minutes=30), now) == "in 30 min"


def test_short_errors_are_shown_long_ones_folded() -> None:
    assert str(fold("HTTP 503")) == "HTTP 503"
    assert str(fold(None)) == ""
    folded = str(fold("line one\nline <two>"))
    assert folded.startswith('<details class="error-text"><summary>line one</summary>')
    assert "line &lt;two&gt;" in folded  # escaped, never markup


def test_the_pass_chart_counts_passes_and_failures_per_hour(
    world: World, admin: TestClient
) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    runs = [
        (now - timedelta(hours=23, minutes=30), "ok"),
        (now - timedelta(hours=23, minutes=1), "failed"),
        (now - timedelta(minutes=5), "conflicts"),
        (now - timedelta(minutes=4), "fatal"),
        (now - timedelta(minutes=3), "running"),  # not counted until it ends
        (now - timedelta(hours=30), "ok"),  # before the chart
    ]
    slots = slot_outcomes(runs, now, hours=24, slots=24)
    assert len(slots) == 24 and slots[0].start == now - timedelta(hours=24)
    assert (slots[0].ok, slots[0].failed) == (1, 1)
    assert (slots[-1].conflicts, slots[-1].failed, slots[-1].ok) == (1, 1, 0)
    assert sum(s.total for s in slots) == 4
    assert isinstance(slots[5], Slot) and slots[5].total == 0

    # on the page: an inline SVG drawn by the server, one bar part per status present
    with world.svc.store.session() as s:  # a failed pass three hours ago
        s.add(
            Run(
                connection="acme",
                status="failed",
                started_at=datetime.now(UTC) - timedelta(hours=3),
            )
        )
        s.commit()
    page = admin.get("/admin").text
    svg = page[page.index('<svg class="chart"') : page.index("</svg>")]
    assert re.search(r"Passes per hour, last 24 hours \(UTC\): 4 in all, 2 failed", svg)
    assert len(re.findall(r'<rect class="ok"', svg)) >= 1
    assert len(re.findall(r'<rect class="failed"', svg)) == 2  # two hours with a failure
    acme = admin.get("/admin/runs?connection=globex").text
    assert "1 in all, 0 failed" in acme
