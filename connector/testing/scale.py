"""Processes for the scale-out tests (``python -m connector.testing.scale ...``): a
``dealsync worker`` that kills itself at a named point of the pass it runs (as
``kill -9`` or a lost machine ends it), and a burst of HubSpot requests through a
portal's limiter (shared when ``DEALSYNC_LIMITS_URL`` is set), so two processes can be
seen sharing one budget at the sandbox."""

from __future__ import annotations

import argparse
import sys


def _worker(args: argparse.Namespace) -> None:
    from connector.api import Dealsync, scale
    from connector.testing.crash import kill_me

    scale.run_worker(
        Dealsync.open(args.config),
        stalled_after=args.stalled_after,
        crash_at=kill_me(args.crash_at),
    )


def _burst(args: argparse.Namespace) -> None:
    from connector.adapters.hubspot import HubSpotAdapter

    adapter = HubSpotAdapter(
        token=args.token,
        host=args.host,
        name="burst",
        rate_limit_per_10s=args.per_10s,
        search_rate_per_s=args.search_rate,
    )
    for _ in range(args.requests):
        adapter.read("deals", ["1"], ["dealname"])
    for _ in range(args.searches):
        adapter.find_by_property("companies", "domain", ["nobody.example"], ["name"])
    print(f"rate_limited={adapter.rate_limited}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connector.testing.scale")
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("worker", help="a worker that kills itself at --crash-at")
    w.add_argument("config")
    w.add_argument("--crash-at", required=True)
    w.add_argument("--stalled-after", type=float, default=1.0)
    b = sub.add_parser("burst", help="requests then searches through one portal's limiter")
    b.add_argument("host")
    b.add_argument("token")
    b.add_argument("--requests", type=int, default=10)
    b.add_argument("--searches", type=int, default=0)
    b.add_argument("--per-10s", type=int, default=100)
    b.add_argument("--search-rate", type=float, default=5.0)
    args = parser.parse_args(argv)
    {"worker": _worker, "burst": _burst}[args.what](args)


if __name__ == "__main__":
    main(sys.argv[1:])
