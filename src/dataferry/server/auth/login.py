"""Logging in: password, then TOTP (or a recovery code) when enrolled, under rate limits.

Every failure looks the same to the caller (401, one generic message), whether the user
is unknown, disabled, the password wrong or the TOTP code wrong or replayed, so the
answer tells an attacker nothing; the audit log records the real reason. An unknown user
costs the same argon2 work as a known one, so timing tells nothing either.

The attempt is counted before the password is checked (``RateLimiter.begin``), so a burst
of parallel guesses gets no more checks than the limit allows. Past the account's all-IP
limit every outcome but a login with a second factor is the same 429, so guessing there
tells nothing about the password either.
"""

from __future__ import annotations

import contextlib
import logging

from dataferry.metadata import AuditLog, User
from dataferry.metadata.audit import Outcome
from dataferry.server.auth.passwords import PasswordCheckBusy, Passwords
from dataferry.server.auth.ratelimit import Attempt, LimitReached, RateLimiter
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.auth.tokens import IssuedToken, Tokens
from dataferry.server.auth.users import Accounts, normalize_username
from dataferry.server.errors import Forbidden, Unauthorized

GENERIC_FAILURE = "invalid username, password or TOTP code"
log = logging.getLogger("dataferry.auth")


class _Failed(Exception):
    """A login failed for ``reason`` (audited; the caller sees the generic message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Login:
    """``login(username, password, totp, client_ip)`` -> an access token, or an error."""

    def __init__(self, accounts: Accounts, passwords: Passwords, tokens: Tokens,
                 limiter: RateLimiter, audit: AuditLog, settings: AuthSettings) -> None:
        self.accounts = accounts
        self.passwords = passwords
        self.tokens = tokens
        self.limiter = limiter
        self.audit = audit
        self.settings = settings

    def login(self, username: str, password: str, totp_code: str | None,
              client_ip: str) -> IssuedToken:
        account = normalize_username(username)[:64]
        try:
            attempt = self.limiter.begin(account, client_ip, second_factor=bool(totp_code))
        except LimitReached as refused:
            self._audit(account, "rate_limited", client_ip, "too many failures",
                        limit=refused.limit)
            raise
        try:
            user, method = self._authenticate(account, password, totp_code)
        except _Failed as failure:
            return self._fail(attempt, failure.reason)
        except PasswordCheckBusy:
            attempt.abandoned()
            self._audit(account, "rate_limited", client_ip, "server busy")
            raise
        except BaseException:
            attempt.abandoned()
            raise
        if attempt.beyond_account_limit is not None and method == "password":
            return self._fail(attempt, "account limit reached: needs a second factor")
        if not user.totp_enabled and (user.totp_required or self.settings.require_totp):
            attempt.abandoned()
            self._audit(account, "denied", client_ip, "TOTP enrollment required")
            raise Forbidden("this account must set up TOTP before it can log in: ask an admin "
                            f"to run `ferry users totp-enroll {user.username}`")
        attempt.succeeded()
        issued = self.tokens.issue_access(user)
        self._audit(account, "success", client_ip, None, method=method,
                    token=issued.record.id)
        if method.endswith("recovery"):
            left = self.accounts.users.recovery_codes_left(user.id)
            log.warning("user %s logged in with a recovery code (%d left)", account, left)
        return issued

    def _authenticate(self, account: str, password: str,
                      totp_code: str | None) -> tuple[User, str]:
        """The user and how they proved it (``password``, ``password+totp``...), or
        ``_Failed`` with the reason for the audit log."""
        user = self.accounts.users.get(account)
        if user is None:
            self.passwords.waste_time(password)
            raise _Failed("unknown user")
        if not self.passwords.verify(user.password_hash, password):
            raise _Failed("wrong password")
        if user.disabled:
            raise _Failed("user disabled")
        if self.passwords.needs_rehash(user.password_hash):
            # Busy: the next login upgrades it; this one need not fail for it.
            with contextlib.suppress(PasswordCheckBusy):
                self.accounts.users.set_password_hash(user.id, self.passwords.hash(password))
        if not user.totp_enabled:
            return user, "password"
        if not totp_code:
            raise _Failed("TOTP code missing")
        factor = self.accounts.second_factor(user, totp_code)
        if factor is None:
            raise _Failed("wrong or reused TOTP code")
        return user, f"password+{factor}"

    def logout(self, user: User, token_id: int, client_ip: str) -> None:
        self.tokens.revoke(token_id, actor=user.username, client_ip=client_ip, reason="logout")
        self.audit.record(user.username, "logout", f"token:{token_id}", "success",
                          client_ip=client_ip)

    def _fail(self, attempt: Attempt, reason: str) -> IssuedToken:
        """Count the failure, audit its reason, and answer as to any other failure (or,
        past the account's all-IP limit, with that limit's 429)."""
        attempt.failed()
        beyond = attempt.beyond_account_limit
        self._audit(attempt.account, "failure", attempt.client_ip, reason,
                    **({"limit": beyond.limit} if beyond else {}))
        log.info("failed login for %r from %s: %s", attempt.account, attempt.client_ip, reason)
        if beyond is not None:
            raise beyond
        raise Unauthorized(GENERIC_FAILURE)

    def _audit(self, account: str, outcome: Outcome, client_ip: str, reason: str | None,
               **extra: object) -> None:
        detail: dict[str, object] = {"reason": reason} if reason else {}
        detail.update(extra)
        self.audit.record(account, "login", f"user:{account}", outcome,
                          client_ip=client_ip, detail=detail or None)
