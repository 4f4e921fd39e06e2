"""A pass's exit codes (``dealsync sync``, the CLI's errors): their own module, with
nothing imported, so the CLI can exit with them without loading the engine (issue 17:
a failing ``dealsync check`` exits 3 and stays light)."""

from __future__ import annotations

EXIT_OK, EXIT_CONFLICTS, EXIT_FAILED, EXIT_FATAL = 0, 1, 2, 3
