"""Logging in: password, then TOTP (or a recovery code) when enrolled, under rate limits.

Every failure looks the same to the caller (401, one generic message), whether the user
is unknown, disabled, the password wrong or the TOTP code wrong or replayed, so the
answer tells an attacker nothing; the audit log records the real reason. An unknown user
costs the same argon2 work as a known one, so timing tells nothing either.
"""

from __future__ import annotations

import logging

from dataferry.metadata import AuditLog, User
from dataferry.metadata.audit import Outcome
from dataferry.server.auth.passwords import Passwords
from dataferry.server.auth.ratelimit import RateLimiter
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.auth.tokens import IssuedToken, Tokens
from dataferry.server.auth.users import Accounts, normalize_username
from dataferry.server.errors import Forbidden, RateLimited, Unauthorized

GENERIC_FAILURE = "invalid username, password or TOTP code"
log = logging.getLogger("dataferry.auth")


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
            self.limiter.check(account, client_ip)
        except RateLimited:
            self._audit(account, "rate_limited", client_ip, "too many failures")
            raise
        user = self.accounts.users.get(account)
        if user is None:
            self.passwords.waste_time(password)
            return self._fail(account, client_ip, "unknown user")
        if not self.passwords.verify(user.password_hash, password):
            return self._fail(account, client_ip, "wrong password")
        if user.disabled:
            return self._fail(account, client_ip, "user disabled")
        if self.passwords.needs_rehash(user.password_hash):
            self.accounts.users.set_password_hash(user.id, self.passwords.hash(password))
        method = "password"
        if user.totp_enabled:
            if not totp_code:
                return self._fail(account, client_ip, "TOTP code missing")
            factor = self.accounts.second_factor(user, totp_code)
            if factor is None:
                return self._fail(account, client_ip, "wrong or reused TOTP code")
            method = f"password+{factor}"
        elif user.totp_required or self.settings.require_totp:
            self._audit(account, "denied", client_ip, "TOTP enrollment required")
            raise Forbidden("this account must set up TOTP before it can log in: ask an admin "
                            f"to run `ferry users totp-enroll {user.username}`")
        self.limiter.succeeded(account)
        issued = self.tokens.issue_access(user)
        self._audit(account, "success", client_ip, None, method=method,
                    token=issued.record.id)
        if method.endswith("recovery"):
            left = self.accounts.users.recovery_codes_left(user.id)
            log.warning("user %s logged in with a recovery code (%d left)", account, left)
        return issued

    def logout(self, user: User, token_id: int, client_ip: str) -> None:
        self.tokens.revoke(token_id, actor=user.username, client_ip=client_ip, reason="logout")
        self.audit.record(user.username, "logout", f"token:{token_id}", "success",
                          client_ip=client_ip)

    def _fail(self, account: str, client_ip: str, reason: str) -> IssuedToken:
        self.limiter.failed(account, client_ip)
        self._audit(account, "failure", client_ip, reason)
        log.info("failed login for %r from %s: %s", account, client_ip, reason)
        raise Unauthorized(GENERIC_FAILURE)

    def _audit(self, account: str, outcome: Outcome, client_ip: str, reason: str | None,
               **extra: object) -> None:
        detail: dict[str, object] = {"reason": reason} if reason else {}
        detail.update(extra)
        self.audit.record(account, "login", f"user:{account}", outcome,
                          client_ip=client_ip, detail=detail or None)
