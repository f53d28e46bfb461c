"""Brute-force limits on login and TOTP (429 + Retry-After), counted before any check.

Three limits, each over a sliding window (15 minutes by default):

- an account from one client IP: 10 attempts. This is what stops one attacker guessing
  one account, and it locks out only the attacker's address, not the owner elsewhere;
- one client IP over all accounts: 50 (spraying a password over many accounts);
- an account from all IPs together: 100, against guessing spread over many addresses.
  Past it the account takes only a complete login with a second factor (password and a
  TOTP or recovery code): a guessed password alone is no use then, so an owner with
  TOTP can still log in while an attacker keeps the account's limit full.

``begin`` records the attempt in the metadata DB (``LoginFailures``) and only then counts,
so concurrent attempts in one or many server processes cannot all slip under a limit
before any of them is counted. The caller then settles the ``Attempt``: ``failed`` keeps
it as a failure, ``succeeded`` forgets it and the account's failures from that IP (not
the IP's count: otherwise an attacker could reset their IP's budget by logging into an
account of their own), ``abandoned`` forgets it (nothing was checked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from dataferry.metadata import LoginFailures
from dataferry.metadata.attempts import FailureCount
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.errors import RateLimited

Limit = Literal["account+ip", "ip", "account"]


class LimitReached(RateLimited):
    """429: an attempt beyond one of the limits; ``limit`` says which (for the audit log)."""

    def __init__(self, retry_after: int, limit: Limit) -> None:
        super().__init__(retry_after)
        self.limit = limit


@dataclass
class Attempt:
    """One counted attempt: settle it with exactly one of the three methods."""

    limiter: RateLimiter
    id: int
    account: str
    client_ip: str
    beyond_account_limit: LimitReached | None
    """Set when the account's all-IP limit is full: then only a login with a second
    factor may succeed, and any other outcome is answered with this 429."""

    def failed(self) -> None:
        """Keep the attempt as a failure against every limit."""

    def succeeded(self) -> None:
        self.limiter.failures.forget(self.id)
        self.limiter.failures.forget_pair(self.account, self.client_ip)

    def abandoned(self) -> None:
        """Nothing was checked (the server was busy, or failed): do not count it."""
        self.limiter.failures.forget(self.id)


class RateLimiter:
    """Counts attempts for an account name and a client IP, and refuses those over a limit."""

    def __init__(self, failures: LoginFailures, settings: AuthSettings) -> None:
        self.failures = failures
        self.settings = settings

    def begin(self, account: str, client_ip: str, *, second_factor: bool = False) -> Attempt:
        """Count an attempt now; raise ``LimitReached`` if it is one too many.

        ``second_factor``: the attempt comes with a TOTP or recovery code, so it may go on
        past the account's all-IP limit (never past the other two).
        """
        attempt_id = self.failures.record(account, client_ip)
        counts = self.failures.counts(account, client_ip, self.settings.failure_window)
        settings = self.settings
        limits: tuple[tuple[FailureCount, int, Limit], ...] = (
            (counts.pair, settings.account_failures, "account+ip"),
            (counts.ip, settings.ip_failures, "ip"),
            (counts.account, settings.account_failures_any_ip, "account"))
        for count, allowed, limit in limits:
            if count.count > allowed:  # the count includes this attempt
                refused = LimitReached(self._retry_after(count), limit)
                if limit == "account" and second_factor:
                    return Attempt(self, attempt_id, account, client_ip, refused)
                self.failures.forget(attempt_id)
                raise refused
        return Attempt(self, attempt_id, account, client_ip, None)

    def _retry_after(self, count: FailureCount) -> int:
        """Seconds until the oldest attempt in the window leaves it (at least 1)."""
        if count.oldest is None:
            return 1
        free_at = count.oldest + self.settings.failure_window
        return max(1, math.ceil((free_at - self.failures.now()).total_seconds()))
