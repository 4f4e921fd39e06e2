"""``python -m connector.cli``: the same as the ``dealsync`` command."""

from __future__ import annotations

from connector.cli import main

main()
