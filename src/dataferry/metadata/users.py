"""Users as the metadata DB keeps them: accounts, their teams, TOTP state, recovery codes.

This is storage only: hashing, the password policy, seed encryption and auditing live in
``dataferry.server.auth``, which is the one caller. Methods that must hold against a
second process (a TOTP step accepted once, a recovery code used once, a user disabled
with all its tokens) are single conditional statements or one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, bindparam, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dataferry.errors import MetadataError
from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import RecoveryCodeRow, TokenRow, UserRow, UserTeamRow

Role = Literal["admin", "member", "viewer"]
ROLES: tuple[str, ...] = get_args(Role)


class LastAdminError(MetadataError):
    """Disabling this user would leave no enabled admin."""


@dataclass(frozen=True)
class User:
    """A user account; ``password_hash`` and the encrypted seed never leave the server."""

    id: int
    username: str
    email: str | None
    role: str
    disabled: bool
    teams: tuple[str, ...]
    password_hash: str
    totp_secret_encrypted: str | None
    totp_confirmed_at: datetime | None
    totp_last_step: int | None
    totp_required: bool
    created_at: datetime

    @property
    def totp_enabled(self) -> bool:
        """Login needs a TOTP code (the seed was confirmed with a first code)."""
        return self.totp_confirmed_at is not None and self.totp_secret_encrypted is not None


class UserStore:
    """Reads and writes the ``users``, ``user_teams`` and ``recovery_codes`` tables."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now

    def add(self, username: str, role: str, password_hash: str, *, email: str | None = None,
            teams: Iterable[str] = (), totp_required: bool = False) -> User:
        """Create a user; ``MetadataError`` if the name is taken."""
        if role not in ROLES:
            raise MetadataError(f"{role!r} is not a role: use one of {', '.join(ROLES)}")
        row = UserRow(username=username, email=email, role=role, password_hash=password_hash,
                      disabled=False, totp_required=totp_required, created_at=self.now())
        try:
            with self.db.sessions.begin() as session:
                session.add(row)
                session.flush()
                for team in sorted(set(teams)):
                    session.add(UserTeamRow(user_id=row.id, team=team))
        except IntegrityError as error:
            raise MetadataError(f"a user named {username!r} exists already") from error
        found = self.get(username)
        assert found is not None
        return found

    def get(self, username: str) -> User | None:
        with self.db.reads.begin() as session:
            row = session.scalars(select(UserRow).where(UserRow.username == username)).first()
            return None if row is None else self._user(session, row)

    def get_by_id(self, user_id: int) -> User | None:
        with self.db.reads.begin() as session:
            row = session.get(UserRow, user_id)
            return None if row is None else self._user(session, row)

    def list(self) -> list[User]:
        """Every user, by name."""
        with self.db.reads.begin() as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.username)).all()
            return [self._user(session, row) for row in rows]

    def count(self) -> int:
        with self.db.reads.begin() as session:
            return len(session.scalars(select(UserRow.id)).all())

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self.db.sessions.begin() as session:
            session.execute(update(UserRow).where(UserRow.id == user_id)
                            .values(password_hash=password_hash))

    def disable(self, user_id: int) -> int:
        """Disable a user and revoke all its live tokens at once; returns how many.

        Refuses (``LastAdminError``) to disable the last enabled admin: then nobody could
        manage users through the server. The enabled admins are locked first (``FOR
        UPDATE``; SQLite's write transactions are serial anyway), so two admins disabling
        each other at once cannot both succeed.
        """
        now = self.now()
        with self.db.sessions.begin() as session:
            admins = set(session.scalars(
                select(UserRow.id).where(UserRow.role == "admin", UserRow.disabled.is_(False))
                .with_for_update()).all())
            if admins == {user_id}:
                raise LastAdminError("the last enabled admin cannot be disabled: make "
                                     "another user an admin first")
            session.execute(update(UserRow).where(UserRow.id == user_id).values(disabled=True))
            done = session.connection().execute(
                update(TokenRow)
                .where(TokenRow.user_id == user_id, TokenRow.revoked_at.is_(None),
                       TokenRow.expires_at > now)
                .values(revoked_at=now))
            return done.rowcount

    def enable(self, user_id: int) -> bool:
        """Let a disabled user log in again; False if it was not disabled. The tokens
        revoked when it was disabled stay revoked."""
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(UserRow).where(UserRow.id == user_id, UserRow.disabled.is_(True))
                .values(disabled=False))
            return done.rowcount == 1

    def set_totp(self, user_id: int, secret_encrypted: str, code_hashes: Iterable[str], *,
                 confirmed: bool) -> None:
        """Store a new seed (pending until confirmed) and replace the recovery codes."""
        with self.db.sessions.begin() as session:
            session.execute(update(UserRow).where(UserRow.id == user_id).values(
                totp_secret_encrypted=secret_encrypted, totp_last_step=None,
                totp_confirmed_at=self.now() if confirmed else None))
            session.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id))
            for code_hash in code_hashes:
                session.add(RecoveryCodeRow(user_id=user_id, code_hash=code_hash))

    def accept_totp_step(self, user_id: int, step: int, *, confirm: bool = False) -> bool:
        """Record ``step`` as the last accepted one; False if it (or a later one) was used.

        One conditional UPDATE, so two requests replaying the same code in two processes
        cannot both succeed. ``confirm`` also marks a pending seed as confirmed.
        """
        values: dict[str, object] = {"totp_last_step": step}
        if confirm:
            values["totp_confirmed_at"] = self.now()
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(UserRow)
                .where(UserRow.id == user_id,
                       or_(UserRow.totp_last_step.is_(None), UserRow.totp_last_step < step))
                .values(**values))
            return done.rowcount == 1

    def use_recovery_code(self, user_id: int, code_hash: str) -> bool:
        """Spend an unused recovery code; False if there is none with that hash."""
        with self.db.sessions.begin() as session:
            done = session.connection().execute(
                update(RecoveryCodeRow)
                .where(RecoveryCodeRow.user_id == user_id, RecoveryCodeRow.code_hash == code_hash,
                       RecoveryCodeRow.used_at.is_(None))
                .values(used_at=self.now()))
            return done.rowcount == 1

    def recovery_codes_left(self, user_id: int) -> int:
        with self.db.reads.begin() as session:
            return len(session.scalars(select(RecoveryCodeRow.id).where(
                RecoveryCodeRow.user_id == user_id, RecoveryCodeRow.used_at.is_(None))).all())

    @staticmethod
    def _user(session: Session, row: UserRow) -> User:
        return user_of(row, teams_of(session.connection(), row.id))


def teams_of(connection: Connection, user_id: int) -> tuple[str, ...]:
    """The teams the metadata DB gives a user, by name."""
    return tuple(connection.execute(_TEAMS, {"user_id": user_id}).scalars())


_TEAMS = (select(UserTeamRow.team).where(UserTeamRow.user_id == bindparam("user_id"))
          .order_by(UserTeamRow.team))


def user_of(row: Any, teams: tuple[str, ...]) -> User:
    """A ``User`` from a ``UserRow`` or a Core row with the same column names."""
    return User(row.id, row.username, row.email, row.role, row.disabled, teams,
                row.password_hash, row.totp_secret_encrypted, row.totp_confirmed_at,
                row.totp_last_step, row.totp_required, row.created_at)
