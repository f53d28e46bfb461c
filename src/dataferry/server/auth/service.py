"""``Auth``: every authentication service wired to one metadata DB, one key, one clock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dataferry.metadata import (
    AuditLog,
    Clock,
    LoginFailures,
    Metadata,
    TokenStore,
    UserStore,
    utcnow,
)
from dataferry.server.auth.login import Login
from dataferry.server.auth.passwords import Passwords
from dataferry.server.auth.ratelimit import RateLimiter
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.auth.tokens import Tokens
from dataferry.server.auth.totp import SeedBox
from dataferry.server.auth.users import Accounts

if TYPE_CHECKING:
    from dataferry.engine.context import RunContext

TOTP_KEY_FILE = "totp.key"


class Auth:
    """Users, tokens, logins, rate limits and the audit log of one dataferry home.

    ``home`` is where ``keys/totp.key`` lives (the store's home, next to the team signing
    keys); ``now`` the clock every timestamp, expiry, window and TOTP step is read from.
    """

    def __init__(self, db: Metadata, home: Path, settings: AuthSettings | None = None,
                 now: Clock = utcnow) -> None:
        self.db = db
        self.settings = settings or AuthSettings()
        self.now = now
        self.audit = AuditLog(db, now)
        self.users = UserStore(db, now)
        self.passwords = Passwords(self.settings)
        self.seeds = SeedBox(home / "keys" / TOTP_KEY_FILE)
        self.limiter = RateLimiter(LoginFailures(db, now), self.settings)
        self.tokens = Tokens(TokenStore(db, now), self.audit, self.settings)
        self.accounts = Accounts(self.users, self.passwords, self.seeds, self.limiter,
                                 self.audit, self.settings)
        self.login = Login(self.accounts, self.passwords, self.tokens, self.limiter,
                           self.audit, self.settings)

    @classmethod
    def for_context(cls, context: RunContext, settings: AuthSettings | None = None,
                    now: Clock = utcnow) -> Auth:
        """The model's metadata DB (opened now) and its store's home."""
        return cls(context.metadata, context.store.home, settings, now)
