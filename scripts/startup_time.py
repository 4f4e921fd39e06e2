"""How long ``dealsync --help`` and ``dealsync check`` take to start: each command run
R times in a fresh interpreter, the median and best of wall and CPU (user + system)
time, and which heavy modules the command imported. Not a test: a measurement, run by
hand (docs/benchmarks.md, issue 17). On a shared machine the CPU time is the steadier
figure; the wall time includes waiting for a core.

    python scripts/startup_time.py [--runs 7] [--config dealsync.yaml]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sqlalchemy", "sqlmodel", "hubspot", "tldextract", "connector.engine.sync")
PROBE = (
    "import runpy, sys, atexit\n"
    "heavy = {heavy!r}\n"
    "def report():\n"
    "    got = sorted(h for h in heavy if h in sys.modules)\n"
    "    sys.stderr.write('HEAVY=' + ','.join(got) + '\\n')\n"
    "atexit.register(report)\n"
    "sys.argv = ['dealsync', *{args!r}]\n"
    "runpy.run_module('connector.cli', run_name='__main__')\n"
)


def run_once(args: list[str]) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fresh interpreter running ``dealsync ARGS``, and the
    heavy modules it had imported by its exit."""
    code = PROBE.format(heavy=HEAVY, args=args)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    heavy = next((ln[6:] for ln in out.stderr.splitlines() if ln.startswith("HEAVY=")), "?")
    return wall, cpu, heavy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--config", default=str(ROOT / "dealsync.yaml"))
    args = ap.parse_args()
    commands = {"--help": ["--help"], "check": ["--config", args.config, "check"]}
    for name, argv in commands.items():
        runs = [run_once(argv) for _ in range(args.runs)]
        walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"dealsync {name}: wall median {statistics.median(walls):.2f} s "
            f"(best {min(walls):.2f}), CPU median {statistics.median(cpus):.2f} s "
            f"(best {min(cpus):.2f}), heavy modules: {runs[-1][2] or 'none'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
