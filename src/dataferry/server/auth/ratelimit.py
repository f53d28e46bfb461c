"""Brute-force limits on login and TOTP: per account and per client IP (429 + Retry-After).

Failures are rows in the metadata DB (``LoginFailures``) so several server processes
enforce one limit. An account locks after 10 failures in 15 minutes, an IP after 50
(spraying one password over many accounts); both unlock as the window slides past the
failures. A full login clears the account's count but not the IP's: otherwise an
attacker could reset their IP budget by logging into an account of their own.
"""

from __future__ import annotations

import math

from dataferry.metadata import LoginFailures
from dataferry.metadata.attempts import FailureCount
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.errors import RateLimited


class RateLimiter:
    """Checks and counts failed attempts for an account name and a client IP."""

    def __init__(self, failures: LoginFailures, settings: AuthSettings) -> None:
        self.failures = failures
        self.settings = settings

    def check(self, account: str, client_ip: str) -> None:
        """Raise ``RateLimited`` if the account or the IP has failed too often lately."""
        window = self.settings.failure_window
        for count, limit in ((self.failures.for_account(account, window),
                              self.settings.account_failures),
                             (self.failures.for_ip(client_ip, window),
                              self.settings.ip_failures)):
            if count.count >= limit:
                raise RateLimited(self._retry_after(count))

    def failed(self, account: str, client_ip: str) -> None:
        self.failures.record(account, client_ip)

    def succeeded(self, account: str) -> None:
        self.failures.forget_account(account)

    def _retry_after(self, count: FailureCount) -> int:
        """Seconds until the oldest failure in the window leaves it (at least 1)."""
        if count.oldest is None:
            return 1
        free_at = count.oldest + self.settings.failure_window
        return max(1, math.ceil((free_at - self.failures.now()).total_seconds()))
