"""Running the sandbox: embedded in a thread (tests, demo) or blocking (the CLI).

The socket is bound before uvicorn starts, so ``port=0`` yields a known free port at
once and :meth:`SandboxServer.start` can return only when connections are accepted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import uvicorn

from connector.sandbox.app import SandboxApp
from connector.sandbox.faults import FaultSpec, parse_faults
from connector.sandbox.store import Portal, PortalSpec, parse_search_lag

log = logging.getLogger(__name__)


def parse_portal(text: str) -> tuple[str, str]:
    """Parse the CLI's ``NAME:TOKEN``; ValueError with a clear message otherwise."""
    name, sep, token = text.partition(":")
    name, token = name.strip(), token.strip()
    if not sep or not name or not token:
        raise ValueError(f"bad portal {text!r}: expected NAME:TOKEN, e.g. vendor:vendor-token")
    if any(c.isspace() for c in token):
        raise ValueError(f"bad portal {text!r}: the token must not contain whitespace")
    return name, token


def build_portals(specs: list[PortalSpec], limits: bool) -> list[Portal]:
    """Portals from specs; names and tokens must be unique, ids are assigned if absent."""
    names = [s.name for s in specs]
    tokens = [s.token for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"portal names must be unique: {names}")
    if len(set(tokens)) != len(tokens):
        raise ValueError("portal tokens must be unique")
    return [
        Portal(s, s.portal_id if s.portal_id is not None else 1001 + i, limits)
        for i, s in enumerate(specs)
    ]


def load_data(portals: list[Portal], data_file: str) -> None:
    """Restore portals by name from a JSON file written by :func:`save_data`, if it exists."""
    if not os.path.exists(data_file):
        return
    with open(data_file, encoding="utf-8") as fh:
        data = json.load(fh)
    saved = {p["name"]: p for p in data.get("portals", [])}
    for portal in portals:
        if portal.name in saved:
            portal.load(saved[portal.name])


def save_data(portals: list[Portal], data_file: str) -> None:
    """Write all portals to JSON atomically (temp file + rename)."""
    tmp = f"{data_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "portals": [p.dump() for p in portals]}, fh)
    os.replace(tmp, data_file)


class SandboxServer:
    """A fake multi-portal HubSpot served by uvicorn in a daemon thread."""

    def __init__(
        self,
        portals: list[PortalSpec],
        host: str = "127.0.0.1",
        port: int = 0,
        data_file: str | None = None,
        limits: bool = True,
        search_lag: tuple[float, float] | float | str | None = None,
    ) -> None:
        """``search_lag``: when given, every portal's search lag (seconds, or a
        ``(min, max)`` range drawn per write), overriding the specs'."""
        self.host = host
        self.requested_port = port
        self.data_file = data_file
        self.limits = limits
        self._portals = build_portals(portals, limits)
        if search_lag is not None:
            lag = parse_search_lag(search_lag)
            for p in self._portals:
                p.search_lag = lag
        self._by_name = {p.name: p for p in self._portals}
        self.app = SandboxApp(self._portals, limits)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = port

    # -------------------------------------------------------------- lifecycle

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only when
        # the listening socket says it is TCP; without it every keep-alive response
        # (headers and body written separately) waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        sock.listen(512)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        return sock

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            http="h11",
            lifespan="off",
            log_level="warning",
            log_config=None,  # uvicorn's lines go through the process's handler (logs.py)
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Start serving in a daemon thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("sandbox already started")
        if self.data_file:
            load_data(self._portals, self.data_file)
        self._sock = self._bind()
        self._server = uvicorn.Server(self._config())
        sock = self._sock
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="dealsync-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sandbox server failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (and save to ``data_file`` if one was given)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = None
        self._thread = None
        self._sock = None
        if self.data_file:
            save_data(self._portals, self.data_file)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -------------------------------------------------------------- access

    @property
    def url(self) -> str:
        """Base URL to give ``HubSpot(host=...)``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def portals(self) -> list[Portal]:
        """All portals, in the order given."""
        return list(self._portals)

    def portal(self, name: str) -> Portal:
        """The in-memory portal called ``name`` (KeyError if unknown)."""
        return self._by_name[name]

    def stats(self, name: str) -> dict[str, Any]:
        """Request counters of one portal (see ``Portal.stats``)."""
        return self.portal(name).stats()

    def reset_stats(self, name: str | None = None) -> None:
        """Zero counters and rate-limit windows of one portal, or of all."""
        for p in [self.portal(name)] if name else self._portals:
            p.reset_stats()


def _rate(value: str, unit: str) -> float:
    text = value.strip().lower().removesuffix(unit)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate like 100{unit}") from None
    if number <= 0:
        raise ValueError(f"{value!r} must be positive")
    return number


def portal_specs(
    portals: Sequence[str],
    *,
    rate_limit: str = "100/10s",
    search_rate: str = "5/s",
    search_lag: str = "1-3",
    faults: str | None = None,
) -> list[PortalSpec]:
    """The portals of ``dealsync sandbox`` from its options as typed (``NAME:TOKEN``,
    ``100/10s``, ``5/s``, ``1-3``, a fault spec); none given: a vendor and one partner.
    Raises ValueError with what to type instead."""
    fault_spec = parse_faults(faults) if faults else FaultSpec()
    lag = parse_search_lag(search_lag)
    pairs = [parse_portal(p) for p in portals] or [
        ("vendor", "vendor-token"),
        ("partner-acme", "acme-token"),
    ]
    per_10s, per_s = int(_rate(rate_limit, "/10s")), _rate(search_rate, "/s")
    return [
        PortalSpec(
            name=n,
            token=t,
            rate_limit_per_10s=per_10s,
            search_rate_per_s=per_s,
            search_lag=lag,
            faults=fault_spec,
        )
        for n, t in pairs
    ]


def run_sandbox(
    portals: list[PortalSpec],
    host: str,
    port: int,
    data_file: str | None,
    limits: bool,
    print_fn: Callable[[str], Any] = print,
) -> None:
    """Serve until Ctrl-C (blocking, for ``dealsync sandbox``); load/save ``data_file``."""
    srv = SandboxServer(portals, host=host, port=port, data_file=None, limits=limits)
    if data_file:
        load_data(srv.portals, data_file)
    sock = srv._bind()
    print_fn(f"HubSpot sandbox listening on {srv.url} (rate limits {'on' if limits else 'off'})")
    for p in srv.portals:
        faults = p.faults.spec
        extra = f", faults {faults.to_dict()}" if faults.active else ""
        print_fn(
            f"  portal {p.name!r}: token {p.token!r}, portal id {p.portal_id}, "
            f"{p.spec.rate_limit_per_10s}/10s, search {p.spec.search_rate_per_s}/s, "
            f"search lag {p.search_lag[0]:g}-{p.search_lag[1]:g}s{extra}"
        )
    if data_file:
        print_fn(f"  data file: {data_file} (saved on exit)")
    print_fn("Press Ctrl-C to stop.")
    server = uvicorn.Server(srv._config())
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if data_file:
            save_data(srv.portals, data_file)
            print_fn(f"Saved sandbox data to {data_file}")
