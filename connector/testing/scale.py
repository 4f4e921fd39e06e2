"""Processes for the scale-out tests (``python -m connector.testing.scale ...``): a
``dealsync worker`` that kills itself at a named point of the pass it runs (as
``kill -9`` or a lost machine ends it), and a burst of HubSpot requests through a
portal's limiter (shared when ``DEALSYNC_LIMITS_URL`` is set), so two processes can be
seen sharing one budget at the sandbox (``--skew``: with its wall clock off, as a
worker machine's may be); and :class:`TcpProxy`, a store that can be taken away and
brought back under running limiters."""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time


def _worker(args: argparse.Namespace) -> None:
    from connector.api import Dealsync, scale
    from connector.testing.crash import kill_me

    scale.run_worker(
        Dealsync.open(args.config),
        stalled_after=args.stalled_after,
        crash_at=kill_me(args.crash_at),
    )


def skew_clock(seconds: float) -> None:
    """This process's wall clock ``seconds`` off (``time.time``/``time_ns``), as a
    worker machine whose clock drifted: the shared windows must not care."""
    real, real_ns = time.time, time.time_ns
    time.time = lambda: real() + seconds
    time.time_ns = lambda: real_ns() + int(seconds * 1e9)


def _burst(args: argparse.Namespace) -> None:
    from connector.adapters.hubspot import HubSpotAdapter

    if args.skew:
        skew_clock(args.skew)

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


class TcpProxy:
    """A TCP forwarder to ``target`` on a local port: :meth:`stop` drops every
    connection and refuses new ones (the store is gone), :meth:`start` serves again on
    the same port (it is back)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            # the 5 s were for connecting: a connection idle for longer (one a pool
            # keeps) must not time out in the upstream pipe and be closed — that made
            # every connection a pool kept for over 5 s broken (issue 18)
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accepting thread (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


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
    b.add_argument("--skew", type=float, default=0.0, help="seconds off the wall clock")
    args = parser.parse_args(argv)
    {"worker": _worker, "burst": _burst}[args.what](args)


if __name__ == "__main__":
    main(sys.argv[1:])
