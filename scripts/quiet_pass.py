"""Measure a quiet pass (nothing changed) over many registrations: SQL statements,
registration rows loaded and CPU — the figures of ``docs/benchmarks.md`` ("Quiet pass
and many registrations"). Not a test: a measurement, run by hand.

    python scripts/quiet_pass.py --registrations 5000 [--profile]

The registrations are seeded straight into the state store through the registry
(``Registry.record_many``), half with a contact in Germany, half in the US; a first
pass decides their consent work, then a second pass with nothing changed is measured.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connector.testing.queries import count_queries
from connector.testing.registrations import seed_registrations
from connector.testing.world import FileCRMWorld, project_yaml, write_project

NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrations", type=int, default=5000)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        world = FileCRMWorld.open(write_project(Path(d), project_yaml(("acme",))))
        registry = world.app.registry
        seed_registrations(
            registry, "acme", args.registrations, decided_at=NOW - timedelta(days=1),
            countries=("DE", "US"),
        )  # fmt: skip
        world.app.sync("acme", now=NOW)  # decides the consent work once
        later = NOW + timedelta(minutes=5)
        with count_queries(world.app.store) as counted:
            cpu, wall = time.process_time(), time.perf_counter()
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
            result = world.app.sync("acme", now=later)
            if args.profile:
                prof.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"registrations={args.registrations} status={result.status} "
            f"statements={counted.statements} registration_rows={counted.rows('registration')} "
            f"contact_rows={counted.rows('registration_contact')} "
            f"cpu={cpu:.2f}s wall={wall:.2f}s"
        )
        if args.profile:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        world.app.close()


if __name__ == "__main__":
    main()
