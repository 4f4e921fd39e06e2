"""Hosts that fail the way a misconfigured or stopped portal does, for the tests of
fast, clear failures: a port nothing listens on (connection refused) and a socket that
accepts connections and never answers (what a wrong service on the right port, or a
hung proxy, looks like). No threads: the kernel completes the handshakes of a
listening socket's backlog, so a client connects, sends its request and waits."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def closed_port_url() -> str:
    """``http://127.0.0.1:PORT`` where nothing listens: a port the kernel just handed
    out and that was closed again (port 9 may be open on some machines)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_host(backlog: int = 64) -> Iterator[str]:
    """The URL of a socket that accepts connections and never answers; closed on exit.
    ``backlog`` bounds how many connections are taken before a connect would hang."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(backlog)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
