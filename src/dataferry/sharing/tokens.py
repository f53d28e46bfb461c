"""Share tokens: one consumer's Delta Sharing bearer tokens, stored as SHA-256 only.

A token is made like an API token (``server.auth.tokens.new_secret``: 256 random bits) and
found by its hash; revoking takes effect on the next request. Every create, revoke and
query is audited (``share.create``, ``share.revoke``, ``share.query``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from dataferry.metadata import AuditLog, Metadata
from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.schema import ShareTokenRow
from dataferry.server.auth.tokens import new_secret, token_hash

DEFAULT_TTL = timedelta(days=90)
MAX_TTL = timedelta(days=366)
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class ShareToken:
    """A share token's record (its hash stays in the database)."""

    id: int
    consumer: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class IssuedShare:
    """A share token as made: ``secret`` is shown once (in the profile) and never again."""

    secret: str
    record: ShareToken

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"IssuedShare(record={self.record!r}, secret='fy_***')"


class ShareTokens:
    """Issues, finds, lists and revokes share tokens, auditing each change."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now
        self.audit = AuditLog(db, now)

    def create(self, consumer: str, ttl: timedelta, *, actor: str) -> IssuedShare:
        secret = new_secret()
        now = self.now()
        row = ShareTokenRow(consumer=consumer, token_hash=token_hash(secret), created_by=actor,
                            created_at=now, expires_at=now + ttl)
        with self.db.sessions.begin() as session:
            session.add(row)
            session.flush()
            record = _record(row)
        self.audit.record(actor, "share.create", f"share:{consumer}", "success",
                          detail={"token": record.id, "expires_at": record.expires_at.isoformat()})
        return IssuedShare(secret, record)

    def find_live(self, secret: str) -> ShareToken | None:
        """The unrevoked, unexpired token with this secret, touched at most once a minute."""
        now = self.now()
        with self.db.reads.begin() as session:
            row = session.execute(select(ShareTokenRow).where(
                ShareTokenRow.token_hash == token_hash(secret),
                ShareTokenRow.revoked_at.is_(None))).scalar_one_or_none()
            found = None if row is None else _record(row)
        if found is None or found.expires_at <= now:
            return None
        if found.last_used_at is None or now - found.last_used_at >= TOUCH_EVERY:
            with self.db.sessions.begin() as session:
                session.execute(update(ShareTokenRow).where(ShareTokenRow.id == found.id)
                                .values(last_used_at=now))
        return found

    def list(self, *, include_dead: bool = False) -> list[ShareToken]:
        """Tokens newest first; by default only live ones."""
        query = select(ShareTokenRow).order_by(ShareTokenRow.id.desc())
        if not include_dead:
            query = query.where(ShareTokenRow.revoked_at.is_(None),
                                ShareTokenRow.expires_at > self.now())
        with self.db.reads.begin() as session:
            return [_record(row) for row in session.execute(query).scalars()]

    def revoke(self, consumer: str, *, actor: str) -> int:
        """Revoke every live token of ``consumer`` now; returns how many."""
        now = self.now()
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(ShareTokenRow).where(ShareTokenRow.consumer == consumer,
                                            ShareTokenRow.revoked_at.is_(None),
                                            ShareTokenRow.expires_at > now)
                .values(revoked_at=now)).rowcount
        self.audit.record(actor, "share.revoke", f"share:{consumer}",
                          "success" if done else "failure", detail={"revoked": done})
        return int(done)


def _record(row: ShareTokenRow) -> ShareToken:
    return ShareToken(row.id, row.consumer, row.created_by, row.created_at, row.expires_at,
                      row.revoked_at, row.last_used_at)
