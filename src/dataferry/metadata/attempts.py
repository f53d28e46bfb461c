"""Failed login and TOTP attempts, counted per account and per client IP.

Rate limits must hold however many server processes share the database, so failures
are rows, not counters in memory. Rows older than the longest window are pruned as new
ones arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, update

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import LoginFailureRow


@dataclass(frozen=True)
class FailureCount:
    """How many failures in a window, and when the oldest of them happened."""

    count: int
    oldest: datetime | None


class LoginFailures:
    """Records failures and counts them in a sliding window."""

    def __init__(self, db: Metadata, now: Clock = utcnow, *,
                 keep: timedelta = timedelta(hours=1)) -> None:
        self.db = db
        self.now = now
        self.keep = keep

    def record(self, account: str, client_ip: str) -> None:
        """Count one failure for ``account`` from ``client_ip`` (and forget very old ones)."""
        now = self.now()
        with self.db.sessions.begin() as session:
            session.execute(delete(LoginFailureRow).where(LoginFailureRow.at < now - self.keep))
            session.add(LoginFailureRow(account=account[:200], client_ip=client_ip[:64], at=now,
                                        account_cleared=False))

    def for_account(self, account: str, window: timedelta) -> FailureCount:
        return self._count((LoginFailureRow.account == account[:200])
                           & LoginFailureRow.account_cleared.is_(False), window)

    def for_ip(self, client_ip: str, window: timedelta) -> FailureCount:
        return self._count(LoginFailureRow.client_ip == client_ip[:64], window)

    def forget_account(self, account: str) -> None:
        """Clear an account's failures after a full login; the IP's count stays."""
        with self.db.sessions.begin() as session:
            # Marked, not deleted: the rows still count against the client IP.
            session.execute(update(LoginFailureRow)
                            .where(LoginFailureRow.account == account[:200])
                            .values(account_cleared=True))

    def _count(self, condition: ColumnElement[bool], window: timedelta) -> FailureCount:
        since = self.now() - window
        with self.db.reads.begin() as session:
            count, oldest = session.execute(
                select(func.count(LoginFailureRow.id), func.min(LoginFailureRow.at))
                .where(condition, LoginFailureRow.at > since)
            ).one()
            return FailureCount(int(count), oldest)
