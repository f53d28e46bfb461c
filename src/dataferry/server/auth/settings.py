"""The knobs of authentication, with the defaults SERVER.md asks for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class AuthSettings:
    """Token lifetimes, rate limits, TOTP policy and the argon2id cost.

    The argon2 defaults are argon2-cffi's (RFC 9106's low-memory profile: 3 passes over
    64 MiB); tests lower them to stay fast. Changing them makes every stored hash
    upgrade on the user's next login.
    """

    access_token_ttl: timedelta = timedelta(hours=12)
    api_token_ttl: timedelta = timedelta(days=30)
    api_token_max_ttl: timedelta = timedelta(days=366)
    account_failures: int = 10
    """Failed logins/TOTP codes per account from one client IP within ``failure_window``
    before 429 (for that IP only: the owner elsewhere can still log in)."""
    ip_failures: int = 50
    """Failed logins/TOTP codes from one client IP within ``failure_window`` before 429."""
    account_failures_any_ip: int = 100
    """Failed logins per account from all IPs within ``failure_window``; beyond it only a
    login with password and TOTP (or recovery) code gets through."""
    failure_window: timedelta = timedelta(minutes=15)
    require_totp: bool = False
    """Every user must have TOTP enrolled to log in (``ferry serve --require-totp``)."""
    issuer: str = "dataferry"
    """The issuer authenticator apps show next to the account name."""
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    argon2_concurrency: int = 2
    """Password checks (argon2) run at once; more wait ``argon2_wait_seconds`` for a turn,
    then get 429, so a burst of logins cannot starve every other request of CPU."""
    argon2_wait_seconds: float = 0.5
