"""Transports: how a queued e-mail leaves (SMTP, or a folder of ``.eml`` files)."""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("dealsync.outbox")


class PlaintextAuthRefused(smtplib.SMTPException):
    """SMTP credentials would travel unencrypted and the configuration did not allow it.
    An ``SMTPException``, so the delivery fails with this reason in the outbox row."""


class Transport(Protocol):
    def send(self, message: EmailMessage) -> str:
        """Deliver; return the server's answer; raise on failure."""
        ...


@dataclass
class SmtpTransport:
    host: str
    port: int = 25
    security: str = "none"  # none | starttls | ssl
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0

    allow_plaintext_auth: bool = False

    def send(self, message: EmailMessage) -> str:
        """Deliver one message; its answer is the server's reply to DATA.

        The message is sent the moment the server answers 2xx to DATA: what happens to
        QUIT or the connection afterwards (a 421, a drop, a reset) is logged, never a
        failure — a failure here would make the outbox send it again."""
        if self.user and self.security == "none" and not self.allow_plaintext_auth:
            raise PlaintextAuthRefused(
                "refusing to send the SMTP user and password unencrypted: set "
                "DEALSYNC_SMTP_SECURITY=starttls or ssl, or DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH=1 "
                "if the network to the mail server is trusted"
            )
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "ssl":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        # the server's answer to this message is its reply to DATA (e.g. "250 2.0.0
        # Ok: queued as ABC123"), which send_message() does not return
        replies: list[tuple[int, bytes]] = []
        try:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password or "")
            data = smtp.data

            def recording_data(msg: Any) -> tuple[int, bytes]:
                reply = data(msg)
                replies.append(reply)
                return reply

            smtp.data = recording_data  # type: ignore[method-assign]
            refused = smtp.send_message(message)
        except BaseException:
            smtp.close()
            raise
        code, answer = replies[-1]
        sent = f"accepted ({code} {answer.decode(errors='replace')})"
        if refused:
            # some recipients took it: sending again would duplicate it for them
            sent += f"; refused by the server for {len(refused)} recipient(s)"
        try:
            quit_code, _ = smtp.quit()
            if quit_code != 221:
                log.info(
                    "the SMTP server accepted %s, then answered %s to QUIT: it counts as sent",
                    message["Message-ID"],
                    quit_code,
                )
        except (OSError, smtplib.SMTPException) as exc:
            log.info(
                "the SMTP server accepted %s, then QUIT failed (%s): it counts as sent",
                message["Message-ID"],
                exc,
            )
        finally:
            smtp.close()
        return sent


@dataclass
class FileSink:
    """Writes each message as an ``.eml`` file: the demo's mail server."""

    directory: Path

    def send(self, message: EmailMessage) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(message["Message-ID"]).encode()).hexdigest()[:16]
        path = self.directory / f"{name}.eml"
        path.write_bytes(bytes(message))
        return f"written to {path}"


def transport_from_env(env: Mapping[str, str]) -> Transport | None:
    """``DEALSYNC_MAIL_SINK`` (a folder) or ``DEALSYNC_SMTP_HOST`` and friends."""
    if env.get("DEALSYNC_MAIL_SINK"):
        return FileSink(Path(env["DEALSYNC_MAIL_SINK"]))
    host = env.get("DEALSYNC_SMTP_HOST")
    if not host:
        return None
    security = env.get("DEALSYNC_SMTP_SECURITY", "none").lower()
    if security not in ("none", "starttls", "ssl"):
        raise ValueError(f"DEALSYNC_SMTP_SECURITY must be none, starttls or ssl, not {security!r}")
    default_port = {"none": 25, "starttls": 587, "ssl": 465}[security]
    return SmtpTransport(
        host=host,
        port=int(env.get("DEALSYNC_SMTP_PORT") or default_port),
        security=security,
        user=env.get("DEALSYNC_SMTP_USER") or None,
        password=env.get("DEALSYNC_SMTP_PASSWORD") or None,
        allow_plaintext_auth=_flag(env, "DEALSYNC_SMTP_ALLOW_PLAINTEXT_AUTH"),
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1 or 0 (true/false), not {value!r}")
