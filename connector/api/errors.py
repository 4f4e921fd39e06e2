"""The API's errors: what a command refuses, said in one line the CLI prints (exit 3)."""

from __future__ import annotations


class DealsyncError(Exception):
    """A problem the user must fix; the CLI prints it as one line and exits 3."""


class ConnectionUnusable(DealsyncError):
    """One partner's connection cannot run with this environment (its token variable
    is not set, say): that connection fails, the others run. The message names the
    variable and says what to do."""

    def __init__(self, connection: str, reason: str) -> None:
        super().__init__(f"connection {connection!r} cannot run: {reason}")
        self.connection, self.reason = connection, reason


UNUSABLE = "unusable"
"""The :attr:`PassResult.status` of a connection :meth:`Dealsync.sync_all` could not
run (no run is recorded; :attr:`PassResult.error` says why)."""


class DeliveryBusy(DealsyncError):
    """Another process is delivering the outbox (``outbox send`` says so, exit 3)."""
