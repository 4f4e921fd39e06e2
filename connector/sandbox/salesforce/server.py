"""Running the Salesforce sandbox over HTTPS: in a thread (tests, demo) or blocking (CLI).

simple-salesforce always builds ``https://{instance}/services/data/vNN.N/`` URLs, so
the sandbox speaks TLS.  Each server makes its own certificate authority with
``trustme`` and a certificate for 127.0.0.1/localhost; clients trust it through
:attr:`SalesforceSandbox.ca_file` (``requests.Session().verify = ca_file`` or
``REQUESTS_CA_BUNDLE``).  The socket is bound before uvicorn starts, like the HubSpot
sandbox's, so ``port=0`` gives a known free port.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import requests
import trustme
import uvicorn

from connector.sandbox.faults import FaultSpec
from connector.sandbox.salesforce.app import SalesforceApp
from connector.sandbox.salesforce.store import ORG_AGE, Org, OrgSpec


def parse_org(text: str) -> tuple[str, str, str]:
    """Parse the CLI's ``NAME:CLIENT_ID:CLIENT_SECRET``; ValueError saying what to type."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            f"bad org {text!r}: expected NAME:CLIENT_ID:CLIENT_SECRET, "
            "e.g. partner-acme:acme-client-id:acme-secret"
        )
    if any(c.isspace() for p in parts for c in p):
        raise ValueError(f"bad org {text!r}: no whitespace in the name, client id or secret")
    return parts[0], parts[1], parts[2]


def org_specs(
    orgs: Sequence[str],
    *,
    api_allocation: int = 100_000,
    faults: FaultSpec | None = None,
    jwt_public_key_pem: str | None = None,
) -> list[OrgSpec]:
    """The orgs of ``dealsync sandbox --salesforce`` from ``NAME:ID:SECRET`` texts; none
    given: one partner org ``partner-acme``."""
    triples = [parse_org(o) for o in orgs] or [("partner-acme", "acme-client-id", "acme-secret")]
    return [
        OrgSpec(
            name=n,
            client_id=c,
            client_secret=s,
            api_allocation=api_allocation,
            faults=faults or FaultSpec(),
            jwt_public_key_pem=jwt_public_key_pem,
            existed_for=ORG_AGE,
        )
        for n, c, s in triples
    ]


def build_orgs(specs: list[OrgSpec], limits: bool) -> list[Org]:
    """Orgs from specs; names and client ids must be unique."""
    names = [s.name for s in specs]
    clients = [s.client_id for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"org names must be unique: {names}")
    if len(set(clients)) != len(clients):
        raise ValueError("org client ids must be unique")
    return [Org(s, i, limits) for i, s in enumerate(specs)]


class SalesforceSandbox:
    """A fake multi-org Salesforce served over HTTPS by uvicorn in a daemon thread."""

    def __init__(
        self,
        orgs: list[OrgSpec],
        limits: bool = True,
        faults: FaultSpec | None = None,
        session_ttl_seconds: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        data_file: str | None = None,
        cert_dir: str | None = None,
    ) -> None:
        """``faults``: every org's faults, overriding the specs'; ``cert_dir``: where
        the CA and certificate files go (default: a temporary directory)."""
        self.host = host
        self.requested_port = port
        self.port = port
        self.limits = limits
        self.data_file = data_file
        self._orgs = build_orgs(orgs, limits)
        for org in self._orgs:
            if faults is not None:
                org.faults.set_spec(faults)
            if session_ttl_seconds is not None:
                from datetime import timedelta

                org.session_ttl = timedelta(seconds=session_ttl_seconds)
        self._by_name = {o.name: o for o in self._orgs}
        self.app = SalesforceApp(self._orgs, limits)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if cert_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dealsync-sf-")
            cert_dir = self._tmp.name
        os.makedirs(cert_dir, exist_ok=True)
        self.cert_dir = cert_dir
        self.ca_file, self._cert_file, self._key_file = self._make_certificates(cert_dir)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @staticmethod
    def _make_certificates(directory: str) -> tuple[str, str, str]:
        """The CA, certificate and key files in ``directory``: reused when all three
        are there (a partner configured with the CA file keeps trusting restarts),
        made with trustme otherwise."""
        names = ("sandbox-ca.pem", "sandbox-cert.pem", "sandbox-key.pem")
        paths = tuple(os.path.join(directory, n) for n in names)
        if all(os.path.exists(p) for p in paths):
            return paths[0], paths[1], paths[2]
        ca = trustme.CA(organization_name="dealsync Salesforce sandbox")
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_file = os.path.join(directory, "sandbox-ca.pem")
        cert_file = os.path.join(directory, "sandbox-cert.pem")
        key_file = os.path.join(directory, "sandbox-key.pem")
        ca.cert_pem.write_to_path(ca_file)
        with open(cert_file, "wb") as fh:
            for blob in cert.cert_chain_pems:
                fh.write(blob.bytes())
        cert.private_key_pem.write_to_path(key_file)
        return ca_file, cert_file, key_file

    # -------------------------------------------------------------- lifecycle

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
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
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
            ssl_certfile=self._cert_file,
            ssl_keyfile=self._key_file,
        )

    def _abort_connections(self, server: uvicorn.Server) -> None:
        """Close the open keep-alive connections at once: a TLS connection's graceful
        close waits for the client's close_notify, which an idle pooled client never
        sends, so a plain shutdown would sit out its whole grace period."""
        loop = self.app.loop
        if loop is None or loop.is_closed():
            return

        def abort() -> None:
            for conn in list(server.server_state.connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()

        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
            loop.call_soon_threadsafe(abort)

    def start(self, timeout: float = 10.0) -> SalesforceSandbox:
        """Start serving in a daemon thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("salesforce sandbox already started")
        if self.data_file:
            load_data(self._orgs, self.data_file)
        self._sock = self._bind()
        self._server = uvicorn.Server(self._config())
        sock, server = self._sock, self._server
        self._thread = threading.Thread(
            target=lambda: server.run(sockets=[sock]), name="dealsync-sf-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("salesforce sandbox server failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (and save to ``data_file`` if one was given)."""
        if self._server is not None:
            self._server.should_exit = True
            self._abort_connections(self._server)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None
        if self.data_file:
            save_data(self._orgs, self.data_file)

    def close(self) -> None:
        """Stop and remove the temporary certificate directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> SalesforceSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -------------------------------------------------------------- access

    @property
    def url(self) -> str:
        """The instance URL (``https://127.0.0.1:PORT``), as the token answer gives it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def token_url(self) -> str:
        """Where a client posts its OAuth token request."""
        return f"{self.url}/services/oauth2/token"

    @property
    def orgs(self) -> list[Org]:
        """All orgs, in the order given."""
        return list(self._orgs)

    def org(self, name: str) -> Org:
        """The in-memory org called ``name`` (the tests' backdoor; KeyError if unknown)."""
        return self._by_name[name]

    def session(self) -> requests.Session:
        """A ``requests.Session`` that trusts this sandbox's CA (give it to
        ``Salesforce(session=...)``)."""
        return CASession(self.ca_file)

    def login(self, name: str) -> str:
        """An access token for org ``name`` without an HTTP round trip (tests)."""
        return self.org(name).new_session().token


class CASession(requests.Session):
    """A ``requests.Session`` that trusts one CA file even when ``REQUESTS_CA_BUNDLE``
    or ``CURL_CA_BUNDLE`` is set: plain requests lets those variables override
    ``session.verify`` (psf/requests#3829), which would reject the sandbox's
    certificate on machines that set them."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:
        """Environment settings, but the session's own CA file wins."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings


def load_data(orgs: list[Org], data_file: str) -> None:
    """Restore orgs by name from a JSON file written by :func:`save_data`, if it exists."""
    if not os.path.exists(data_file):
        return
    with open(data_file, encoding="utf-8") as fh:
        data = json.load(fh)
    saved = {o["name"]: o for o in data.get("orgs", [])}
    for org in orgs:
        if org.name in saved:
            org.load(saved[org.name])


def save_data(orgs: list[Org], data_file: str) -> None:
    """Write all orgs to JSON atomically (temp file + rename)."""
    tmp = f"{data_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": 1, "kind": "salesforce", "orgs": [o.dump() for o in orgs]}, fh)
    os.replace(tmp, data_file)


def salesforce_sandbox_command(
    orgs: Sequence[str],
    *,
    host: str,
    port: int,
    data_file: str | None,
    limits: bool,
    faults: str | None = None,
    api_allocation: int = 100_000,
    jwt_key_file: str | None = None,
    cert_dir: str | None = None,
    session_ttl_seconds: float | None = None,
    print_fn: Callable[[str], Any] = print,
) -> None:
    """``dealsync sandbox --salesforce``: the options as typed, then serve until Ctrl-C.
    ValueError naming the option and what to type instead on bad input."""
    from connector.sandbox.faults import parse_faults

    pem = None
    if jwt_key_file:
        try:
            with open(jwt_key_file, encoding="utf-8") as fh:
                pem = fh.read()
        except OSError as exc:
            raise ValueError(f"--jwt-public-key {jwt_key_file}: {exc.strerror}") from None
        if "BEGIN PUBLIC KEY" not in pem and "BEGIN CERTIFICATE" not in pem:
            raise ValueError(
                f"--jwt-public-key {jwt_key_file}: not a PEM public key or certificate "
                "(expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)"
            )
    if api_allocation < 1:
        raise ValueError(f"--api-allocation must be at least 1, got {api_allocation}")
    specs = org_specs(
        orgs,
        api_allocation=api_allocation,
        faults=parse_faults(faults) if faults else None,
        jwt_public_key_pem=pem,
    )
    run_salesforce_sandbox(
        specs,
        host,
        port,
        data_file,
        limits,
        cert_dir=cert_dir,
        session_ttl_seconds=session_ttl_seconds,
        print_fn=print_fn,
    )


def run_salesforce_sandbox(
    specs: list[OrgSpec],
    host: str,
    port: int,
    data_file: str | None,
    limits: bool,
    cert_dir: str | None = None,
    session_ttl_seconds: float | None = None,
    print_fn: Callable[[str], Any] = print,
) -> None:
    """Serve until Ctrl-C (blocking, for ``dealsync sandbox --salesforce``)."""
    srv = SalesforceSandbox(
        specs,
        limits=limits,
        host=host,
        port=port,
        data_file=None,
        cert_dir=cert_dir,
        session_ttl_seconds=session_ttl_seconds,
    )
    if data_file:
        load_data(srv.orgs, data_file)
    sock = srv._bind()
    print_fn(
        f"Salesforce sandbox listening on {srv.url} (API allocation "
        f"{'enforced' if limits else 'counted, not enforced'})"
    )
    print_fn(f"  CA certificate: {srv.ca_file}")
    print_fn(f"  trust it: export REQUESTS_CA_BUNDLE={srv.ca_file}")
    print_fn(f"  token URL: {srv.token_url}")
    for org in srv.orgs:
        faults = org.faults.spec
        extra = f", faults {faults.to_dict()}" if faults.active else ""
        jwt = "JWT bearer on" if org.spec.jwt_public_key_pem else "JWT bearer off"
        print_fn(
            f"  org {org.name!r}: client id {org.spec.client_id!r}, client secret "
            f"{org.spec.client_secret!r}, username {org.username!r}, "
            f"{org.spec.api_allocation} API requests/24h, {jwt}{extra}"
        )
    print_fn(
        "  point a partner at it: instance URL "
        f"{srv.url}, login by client credentials at {srv.token_url}, "
        "and trust the CA certificate above"
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
            save_data(srv.orgs, data_file)
            print_fn(f"Saved sandbox data to {data_file}")
        if srv._tmp is not None:
            srv._tmp.cleanup()
