"""``connector/testing`` is importable without the development-only libraries: its
SMTP servers and webhook client load aiosmtpd / starlette's test client (httpx) only
when they start, so a product install can import any of its modules."""

from __future__ import annotations

import subprocess
import sys

MODULES = (
    "adapter_suite",
    "clock",
    "crash",
    "dead_hosts",
    "faults",
    "hubspot",
    "mail",
    "sandbox",
    "wait",
    "world",
)


def test_connector_testing_imports_no_dev_only_library() -> None:
    code = (
        "import sys\n"
        + "".join(f"import connector.testing.{m}\n" for m in MODULES)
        + "print(sorted(m for m in ('aiosmtpd', 'httpx', 'starlette.testclient')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
