"""Login and TOTP attempts, counted per (account, client IP), per client IP and per account.

Rate limits must hold however many server processes share the database and however many
requests arrive at once, so attempts are rows, not counters in memory, and an attempt is
recorded *before* its password is checked: ``record`` commits the row, then ``counts``
sees it together with every other attempt committed so far, in flight or failed. Of any
number of concurrent attempts, the last to count sees all the others, so no more than
the limit can pass, on SQLite and PostgreSQL alike. An attempt that is refused or
succeeds is forgotten again; one that fails stays as a failure.

Rows older than the longest window are pruned as new ones arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, select, update

from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.database import Metadata
from dataferry.metadata.schema import LoginFailureRow

ACCOUNT_LENGTH = 200
IP_LENGTH = 64


@dataclass(frozen=True)
class FailureCount:
    """How many attempts in a window, and when the oldest of them happened."""

    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class AttemptCounts:
    """The attempts in a window that count against each limit of one login."""

    pair: FailureCount
    """This account from this client IP (cleared by a login of the account from it)."""
    ip: FailureCount
    """This client IP, for any account (never cleared: see ``forget_pair``)."""
    account: FailureCount
    """This account from any client IP (less the ones cleared by its logins)."""


class LoginFailures:
    """Records attempts and failures, and counts them in a sliding window."""

    def __init__(self, db: Metadata, now: Clock = utcnow, *,
                 keep: timedelta = timedelta(hours=1)) -> None:
        self.db = db
        self.now = now
        self.keep = keep

    def record(self, account: str, client_ip: str) -> int:
        """Count one attempt (or failure) of ``account`` from ``client_ip``, committed at
        once; returns its id for ``forget``. Also forgets very old ones."""
        now = self.now()
        row = LoginFailureRow(account=account[:ACCOUNT_LENGTH], client_ip=client_ip[:IP_LENGTH],
                              at=now, account_cleared=False)
        with self.db.sessions.begin() as session:
            session.execute(delete(LoginFailureRow).where(LoginFailureRow.at < now - self.keep))
            session.add(row)
            session.flush()
            return row.id

    def forget(self, attempt_id: int) -> None:
        """Drop one attempt: it was refused before any check, or it succeeded."""
        with self.db.sessions.begin() as session:
            session.execute(delete(LoginFailureRow).where(LoginFailureRow.id == attempt_id))

    def counts(self, account: str, client_ip: str, window: timedelta) -> AttemptCounts:
        """The attempts within ``window`` against each limit, in one consistent read."""
        account, client_ip = account[:ACCOUNT_LENGTH], client_ip[:IP_LENGTH]
        of_account = (LoginFailureRow.account == account) & LoginFailureRow.account_cleared.is_(
            False)
        of_ip = LoginFailureRow.client_ip == client_ip
        columns = []
        for condition in (and_(of_account, of_ip), of_ip, of_account):
            columns += [func.count(case((condition, LoginFailureRow.id))),
                        func.min(case((condition, LoginFailureRow.at)))]
        since = self.now() - window
        with self.db.reads.begin() as session:
            found = session.execute(
                select(*columns).where(LoginFailureRow.at > since,
                                       (LoginFailureRow.account == account) | of_ip)
            ).one()
        pair, ip, of = (FailureCount(int(found[n]), found[n + 1]) for n in (0, 2, 4))
        return AttemptCounts(pair=pair, ip=ip, account=of)

    def forget_pair(self, account: str, client_ip: str) -> None:
        """Clear an account's failures from one IP after it logged in from there.

        Marked, not deleted: they still count against the IP, or an attacker could reset
        their IP's budget by logging into an account of their own. Failures from other
        IPs stay too: the owner logging in must not hand an attacker a fresh budget.
        """
        with self.db.sessions.begin() as session:
            session.execute(update(LoginFailureRow)
                            .where(LoginFailureRow.account == account[:ACCOUNT_LENGTH],
                                   LoginFailureRow.client_ip == client_ip[:IP_LENGTH])
                            .values(account_cleared=True))
