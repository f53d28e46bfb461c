"""Tokens as the metadata DB keeps them: only a SHA-256 of each, never the token itself.

Making and hashing tokens is ``dataferry.server.auth.tokens``' job; this module finds a
token by its hash, lists, revokes and touches them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, Select, bindparam, select, update

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import TokenRow, UserRow, UTCDateTime
from dataferry.metadata.users import User, teams_of, user_of

TokenKind = Literal["access", "api"]
TOUCH_EVERY = timedelta(minutes=1)
"""``last_used_at`` is rewritten at most this often: not one write per API request."""


@dataclass(frozen=True)
class Token:
    """A token's record (its hash stays in the database)."""

    id: int
    user_id: int
    username: str
    kind: str
    name: str
    scopes: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def live(self, at: datetime) -> bool:
        """Neither revoked nor expired at ``at``."""
        return self.revoked_at is None and at < self.expires_at


class TokenStore:
    """Reads and writes the ``tokens`` table; ``now`` is the clock (tests pass a fake)."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def add(self, user_id: int, kind: TokenKind, name: str, token_hash: str,
            expires_at: datetime, scopes: Iterable[str] | None = None) -> Token:
        row = TokenRow(user_id=user_id, kind=kind, name=name, token_hash=token_hash,
                       scopes=None if scopes is None else sorted(set(scopes)),
                       created_at=self.now(), expires_at=expires_at)
        with self.db.sessions.begin() as session:
            session.add(row)
            session.flush()
            token_id = row.id
        found = self.get(token_id)
        assert found is not None
        return found

    def get(self, token_id: int) -> Token | None:
        with self.db.reads.begin() as session:
            found = session.execute(self._query().where(TokenRow.id == token_id)).first()
            return None if found is None else _token(found[0], found[1])

    def find_live(self, token_hash: str) -> tuple[Token, User] | None:
        """The unrevoked, unexpired token with this hash and its user, if enabled; touched.

        Every authenticated request asks this, so it is two prepared Core queries on one
        connection rather than ORM loads. Sets ``last_used_at`` at most once a minute.
        """
        now = self.now()
        with self.db.reads.begin() as session:
            connection = session.connection()
            found = connection.execute(_LIVE, {"token_hash": token_hash, "now": now}).first()
            if found is None:
                return None
            user = user_of(_UserColumns(found), teams_of(connection, found.user_id))
        token = Token(found.id, found.user_id, found.u_username, found.kind, found.name,
                      None if found.scopes is None else tuple(found.scopes), found.created_at,
                      found.expires_at, found.revoked_at, found.last_used_at)
        if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
            with self.db.sessions.begin() as session:
                session.execute(update(TokenRow).where(TokenRow.id == token.id)
                                .values(last_used_at=now))
        return token, user

    def list(self, user_id: int | None = None, *, include_dead: bool = False) -> list[Token]:
        """Tokens newest first, of one user or all; by default only live ones."""
        query = self._query().order_by(TokenRow.id.desc())
        if user_id is not None:
            query = query.where(TokenRow.user_id == user_id)
        if not include_dead:
            query = query.where(TokenRow.revoked_at.is_(None), TokenRow.expires_at > self.now())
        with self.db.reads.begin() as session:
            return [_token(row, name) for row, name in session.execute(query).all()]

    def revoke(self, token_id: int) -> bool:
        """Revoke one token now; False if there is no such live token."""
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(TokenRow).where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
                .values(revoked_at=self.now()))
            return done.rowcount == 1

    def revoke_others(self, user_id: int, keep: int | None) -> int:
        """Revoke every live token of the user but ``keep`` (after a password change);
        returns how many."""
        now = self.now()
        query = update(TokenRow).where(TokenRow.user_id == user_id,
                                       TokenRow.revoked_at.is_(None), TokenRow.expires_at > now)
        if keep is not None:
            query = query.where(TokenRow.id != keep)
        with self.db.sessions.begin() as session:
            return session.connection().execute(query.values(revoked_at=now)).rowcount

    @staticmethod
    def _query() -> Select[TokenRow, str]:
        return select(TokenRow, UserRow.username).join(UserRow, UserRow.id == TokenRow.user_id)


_TOKENS, _USERS = TokenRow.__table__, UserRow.__table__
_LIVE = (
    select(_TOKENS, *(column.label(f"u_{column.name}") for column in _USERS.c))
    .join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("token_hash"), _TOKENS.c.revoked_at.is_(None),
           _TOKENS.c.expires_at > bindparam("now", type_=UTCDateTime()),
           _USERS.c.disabled.is_(False))
)


class _UserColumns:
    """The ``u_*`` columns of a ``_LIVE`` row under the users table's own names."""

    def __init__(self, row: Row[Any]) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, f"u_{name}")


def _token(row: TokenRow, username: str) -> Token:
    return Token(row.id, row.user_id, username, row.kind, row.name,
                 None if row.scopes is None else tuple(row.scopes), row.created_at,
                 row.expires_at, row.revoked_at, row.last_used_at)
