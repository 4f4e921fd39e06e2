"""Partner API tokens: created once (the secret is shown then and never again), stored
as a salted SHA-256, looked up by their public prefix, revoked by id.

A token reads ``dsk_<prefix>_<secret>``. The prefix is not secret; it names the token
in lists and finds its row without comparing hashes across all rows. A token may have
an expiry (``--expires 90d``); past it, the token is refused with the date, so its
holder knows to ask for a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from connector.records import utcnow
from connector.state.tables import Database, PartnerToken, valid_id

PREFIX = "dsk_"


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never its secret or its hash."""

    id: int
    partner: str
    prefix: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired


@dataclass(frozen=True)
class TokenCheck:
    """A presented token's verdict: the partner it authenticates, or why not."""

    partner: str | None
    refusal: str = "a valid partner API token is required"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


_RELATIVE = re.compile(r"([0-9]{1,5})([dh])")


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``--expires``: ``90d`` (days), ``12h`` (hours), or an ISO date or date-time
    (a date means its midnight UTC; a time without offset is UTC). Must be in the
    future. Raises ValueError with the fix."""
    now = now or utcnow()
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if relative:
        n, unit = int(relative.group(1)), relative.group(2)
        if n == 0:
            raise ValueError(f"--expires {text!r}: give at least 1{unit}")
        return now + (timedelta(days=n) if unit == "d" else timedelta(hours=n))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"--expires {text!r} is not a duration or a date: use e.g. 90d, 12h, "
            "2027-06-30 or 2027-06-30T18:00:00+00:00"
        ) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment <= now:
        raise ValueError(f"--expires {text!r} is in the past (now is {_when(now)})")
    return moment


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def _info(row: PartnerToken) -> TokenInfo:
    assert row.id is not None
    return TokenInfo(
        row.id,
        row.partner,
        row.prefix,
        row.label,
        row.created_at,
        row.last_used_at,
        row.revoked_at,
        row.expires_at,
    )


class PartnerTokens:
    """The token table of one state store."""

    def __init__(self, store: Database) -> None:
        self.store = store

    def create(
        self, partner: str, label: str = "", *, expires_at: datetime | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token for ``partner`` (valid until ``expires_at``, or until revoked);
        returns its info and the full token, which is not stored anywhere and cannot be
        shown again."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        row = PartnerToken(
            partner=partner,
            prefix=prefix,
            salt=salt,
            digest=_digest(salt, secret),
            label=label,
            expires_at=expires_at,
        )
        with Session(self.store.engine, expire_on_commit=False) as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return _info(row), f"{PREFIX}{prefix}_{secret}"

    def list(self, partner: str | None = None) -> list[TokenInfo]:
        with Session(self.store.engine, expire_on_commit=False) as s:
            q = select(PartnerToken)
            if partner:
                q = q.where(PartnerToken.partner == partner)
            return [_info(r) for r in s.exec(q.order_by(col(PartnerToken.id))).all()]

    def revoke(self, token_id: int, partner: str | None = None) -> TokenInfo | None:
        """Revoke by id (only if it belongs to ``partner`` when given); None if unknown."""
        if not valid_id(token_id):
            return None
        with Session(self.store.engine, expire_on_commit=False) as s:
            row = s.get(PartnerToken, token_id)
            if row is None or (partner is not None and row.partner != partner):
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                s.add(row)
                s.commit()
                s.refresh(row)
            return _info(row)

    def verify(self, token: str) -> str | None:
        """The partner a presented token belongs to, or None (see :meth:`check`)."""
        return self.check(token).partner

    def check(self, token: str, now: datetime | None = None) -> TokenCheck:
        """The partner a presented token belongs to, or the refusal: unknown,
        malformed, revoked or wrong secret alike; "token expired on …" only to a
        holder of the right secret. Compares digests in constant time."""
        refused = TokenCheck(None)
        if not token.startswith(PREFIX):
            return refused
        prefix, sep, secret = token[len(PREFIX) :].partition("_")
        if not sep or not prefix or not secret or len(token) > 200:
            return refused
        now = now or utcnow()
        with Session(self.store.engine, expire_on_commit=False) as s:
            row = s.exec(select(PartnerToken).where(PartnerToken.prefix == prefix)).first()
            if row is None:
                # Same work as a hit, so timing does not tell whether a prefix exists.
                hmac.compare_digest(_digest("x" * 32, secret), "0" * 64)
                return refused
            if not hmac.compare_digest(_digest(row.salt, secret), row.digest):
                return refused
            if row.revoked_at is not None:
                return refused
            if row.expires_at is not None and row.expires_at <= now:
                return TokenCheck(None, f"token expired on {_when(row.expires_at)}")
            row.last_used_at = now
            s.add(row)
            s.commit()
            return TokenCheck(row.partner)
