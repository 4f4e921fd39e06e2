"""Partner API tokens: created once (the secret is shown then and never again), stored
as a salted SHA-256, looked up by their public prefix, revoked by id.

A token reads ``dsk_<prefix>_<secret>``. The prefix is not secret; it names the token
in lists and finds its row without comparing hashes across all rows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from connector.records import utcnow
from connector.state import StateStore
from connector.state.tables import PartnerToken

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

    @property
    def active(self) -> bool:
        return self.revoked_at is None


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
    )


class PartnerTokens:
    """The token table of one state store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def create(self, partner: str, label: str = "") -> tuple[TokenInfo, str]:
        """A new token for ``partner``; returns its info and the full token, which is
        not stored anywhere and cannot be shown again."""
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        row = PartnerToken(
            partner=partner, prefix=prefix, salt=salt, digest=_digest(salt, secret), label=label
        )
        with self.store.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return _info(row), f"{PREFIX}{prefix}_{secret}"

    def list(self, partner: str | None = None) -> list[TokenInfo]:
        with self.store.session() as s:
            q = select(PartnerToken)
            if partner:
                q = q.where(PartnerToken.partner == partner)
            return [_info(r) for r in s.exec(q.order_by(col(PartnerToken.id))).all()]

    def revoke(self, token_id: int, partner: str | None = None) -> TokenInfo | None:
        """Revoke by id (only if it belongs to ``partner`` when given); None if unknown."""
        with self.store.session() as s:
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
        """The partner a presented token belongs to, or None (unknown, malformed,
        revoked or wrong secret). Compares digests in constant time."""
        if not token.startswith(PREFIX):
            return None
        prefix, sep, secret = token[len(PREFIX) :].partition("_")
        if not sep or not prefix or not secret or len(token) > 200:
            return None
        with self.store.session() as s:
            row = s.exec(select(PartnerToken).where(PartnerToken.prefix == prefix)).first()
            if row is None:
                # Same work as a hit, so timing does not tell whether a prefix exists.
                hmac.compare_digest(_digest("x" * 32, secret), "0" * 64)
                return None
            if not hmac.compare_digest(_digest(row.salt, secret), row.digest):
                return None
            if row.revoked_at is not None:
                return None
            row.last_used_at = utcnow()
            s.add(row)
            s.commit()
            return row.partner
