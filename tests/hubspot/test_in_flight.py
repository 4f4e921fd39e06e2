"""More than one request in flight per portal (issue 17): the batches of one read or
write go out side by side, up to the portal's ``max_in_flight``, their results in input
order, every request still through the portal's limiter.

The sandbox counts the requests it is serving per portal at once; a latency fault
holds each request open long enough for the next to arrive. Counts, never times.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hs_support import FakeTime, make_adapter, settled_stats

from connector.adapters.hubspot import HubSpotAdapter
from connector.adapters.registry import HubSpotSettings
from connector.engine.detect import LockedAdapter, lock_for
from connector.records import PropertySpec
from connector.sandbox import FaultSpec, PortalSpec, SandboxServer

SRC = "dealsync_source_id"
SPECS = [PropertySpec("deals", SRC, "dealsync source id", unique=True)]
DEAL = {"pipeline": "default", "dealstage": "appointmentscheduled"}
LATENCY = FaultSpec(latency_ms=250)  # holds each request open while the next arrives


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    with SandboxServer([PortalSpec("main", "if-token")], port=0, limits=False, search_lag=0) as s:
        yield s


def _adapter(srv: SandboxServer, cap: int, ft: FakeTime | None = None) -> HubSpotAdapter:
    adapter = make_adapter(srv.url, "if-token", name="main", ft=ft, max_in_flight=cap)
    adapter.ensure_properties(SPECS)
    return adapter


def _deals(prefix: str, n: int, bad: int | None = None) -> list[tuple[str, dict[str, str]]]:
    return [
        (
            f"{prefix}:{i}",
            {"dealname": f"Deal {i}", **DEAL, "amount": "abc" if i == bad else str(i)},
        )
        for i in range(n)
    ]


def test_a_write_of_five_batches_overlaps_up_to_the_cap_in_input_order(
    srv: SandboxServer,
) -> None:
    """500 deals upserted with ``max_in_flight: 3`` and one bad amount in the fourth
    batch: the sandbox served more than one request at once and never more than 3;
    the results come back in input order, the bad input alone failed (its batch split
    as before), the other 499 are on the portal."""
    ft = FakeTime()
    hs = _adapter(srv, 3, ft)
    portal = srv.portal("main")
    portal.set_faults(LATENCY)
    portal.reset_stats()
    srv.app.reset_in_flight("main")
    sent_before = hs.limits.requests.in_window()
    items = _deals("w", 500, bad=342)
    results = hs.upsert("deals", SRC, items)
    portal.set_faults(FaultSpec())
    assert [r.key for r in results] == [k for k, _ in items]
    assert [r.key for r in results if not r.ok] == ["w:342"]
    assert 1 < srv.app.peak_in_flight("main") <= 3
    assert len(portal.all("deals")) == 499
    # every request went through the limiter and was counted once, threads or not
    served = settled_stats(srv, "main")["by_kind"]["batch_upsert"]
    assert hs.api_calls()["batch_upsert"] == served
    assert hs.limits.requests.in_window() - sent_before == served  # fake time stands still


@pytest.mark.parametrize("cap", [1, 2])
def test_the_cap_is_honoured_on_reads_and_updates(srv: SandboxServer, cap: int) -> None:
    """800 deals read by id (8 batches) and updated (8 batches) with ``max_in_flight``
    1 or 2: the sandbox never served more of them at once than the cap; with 1, one
    request at a time exactly as before. The reads answer every record."""
    hs = _adapter(srv, cap)
    made = hs.upsert("deals", SRC, _deals(f"c{cap}", 800))
    ids = [r.record.id for r in made if r.record is not None]
    assert len(ids) == 800
    portal = srv.portal("main")
    portal.set_faults(LATENCY if cap == 1 else FaultSpec(latency_ms=100))
    srv.app.reset_in_flight("main")
    got = hs.read("deals", ids, ["dealname"])
    updated = hs.update("deals", [(rid, {"amount": "7"}) for rid in ids])
    portal.set_faults(FaultSpec())
    assert set(got) == set(ids)
    assert [r.key for r in updated] == ids and all(r.ok for r in updated)
    assert srv.app.peak_in_flight("main") == cap


def test_max_in_flight_setting_defaults_and_refuses_bad_values() -> None:
    """The HubSpot portal's ``max_in_flight``: 3 by default; 0 or a word is refused by
    the config model, which ``dealsync check`` shows with the field's name."""
    assert HubSpotSettings().max_in_flight == 3
    assert HubSpotSettings(max_in_flight=1).max_in_flight == 1
    for bad in (0, -2, 17, "many"):
        with pytest.raises(ValueError, match="max_in_flight"):
            HubSpotSettings(max_in_flight=bad)  # type: ignore[arg-type]


CONFIG = """\
version: 1
state_url: sqlite:///state.db
vendor:
  name: vendor
  adapter: hubspot
  token_env: IF_VENDOR_TOKEN
partners:
  - id: acme
    name: Acme Agency
    adapter: hubspot
    token_env: IF_ACME_TOKEN
    max_in_flight: {cap}
mappings: [mappings/shared_deals.yaml]
rules: mappings/rules.yaml
"""


@pytest.mark.parametrize("cap", ["0", "lots"])
def test_dealsync_check_names_a_bad_max_in_flight(tmp_path: Path, cap: str) -> None:
    """A partner portal with ``max_in_flight: 0`` (or a word): ``dealsync check``
    fails naming the setting and the partner, instead of a pass that could never send
    a request; a good value passes the same check."""
    from click.testing import CliRunner

    from connector.cli import cli
    from connector.testing.world import write_project

    env = {"IF_VENDOR_TOKEN": "v", "IF_ACME_TOKEN": "a"}
    write_project(tmp_path, CONFIG.format(cap=cap))
    out = CliRunner().invoke(cli, ["--config", str(tmp_path / "dealsync.yaml"), "check"], env=env)
    assert out.exit_code != 0, out.output
    assert "max_in_flight" in out.output and "Traceback" not in out.output, out.output
    good = tmp_path / "good"
    write_project(good, CONFIG.format(cap="4"))
    ok = CliRunner().invoke(cli, ["--config", str(good / "dealsync.yaml"), "check"], env=env)
    assert ok.exit_code == 0 and "max_in_flight" not in ok.output, ok.output


def test_detection_shares_a_thread_safe_adapter_without_a_lock(srv: SandboxServer) -> None:
    """The HubSpot adapter is safe to share between threads, so the detection thread's
    searches and the applying thread's reads of the same partner portal need no lock
    between them; any other adapter (or a wrapper answering for one) keeps its lock."""
    hs = _adapter(srv, 2)
    assert lock_for(hs).__class__.__name__ == "_NoLock"
    wrapped = LockedAdapter(lock_for(hs), hs)
    assert lock_for(wrapped).__class__.__name__ == "RLock"
    assert wrapped.max_in_flight == 2  # the engine sizes its waves through the wrapper
