"""Bearer tokens: access tokens from a login and API tokens for CI and automation.

A token is ``fy_`` plus 32 random bytes (256 bits, URL-safe base64): opaque, so it
carries nothing to forge or decode, and only its SHA-256 is stored (a fast hash is
enough for a secret with that much entropy). Access tokens live 12 hours by default;
API tokens need an expiry (30 days by default) and may be limited to scopes (``scopes``:
none given means all the user's rights but those of a login session). Each can be
revoked on its own; disabling a user revokes them all (``UserStore.disable``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from dataferry.metadata import AuditLog, Token, TokenStore, User
from dataferry.server.auth.scopes import check_scopes
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.errors import UNSTORABLE, BadRequest, NotFound

PREFIX = "fy_"
_SHAPE = re.compile(r"fy_[A-Za-z0-9_-]{43}\Z")


@dataclass(frozen=True)
class IssuedToken:
    """A token as made: ``secret`` is shown once and never again."""

    secret: str
    record: Token

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"IssuedToken(record={self.record!r}, secret='fy_***')"


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    """Issues, verifies, lists and revokes tokens, auditing every change."""

    def __init__(self, store: TokenStore, audit: AuditLog, settings: AuthSettings) -> None:
        self.store = store
        self.audit = audit
        self.settings = settings

    def issue_access(self, user: User) -> IssuedToken:
        """A login session's token (audited with the login itself)."""
        secret = new_secret()
        record = self.store.add(user.id, "access", "login", token_hash(secret),
                                self.store.now() + self.settings.access_token_ttl)
        return IssuedToken(secret, record)

    def create_api(self, user: User, name: str, *, expires_in: timedelta | None = None,
                   scopes: Iterable[str] | None = None, actor: str,
                   client_ip: str | None = None) -> IssuedToken:
        """An API token for ``user``, expiring after ``expires_in`` (default 30 days)."""
        name = name.strip()
        if not name or len(name) > 200 or UNSTORABLE.search(name):
            raise BadRequest("give the token a name (up to 200 characters, no NUL) that says "
                             "what uses it, e.g. 'ci-nightly'")
        ttl = self.settings.api_token_ttl if expires_in is None else expires_in
        if ttl <= timedelta(0) or ttl > self.settings.api_token_max_ttl:
            raise BadRequest(f"a token must expire within {self.settings.api_token_max_ttl.days} "
                             "days (e.g. 30d)")
        scope_list = check_scopes(scopes)
        if user.disabled:
            raise BadRequest(f"user {user.username} is disabled")
        secret = new_secret()
        record = self.store.add(user.id, "api", name, token_hash(secret),
                                self.store.now() + ttl, scope_list)
        self.audit.record(actor, "token.create", f"token:{record.id}", "success",
                          client_ip=client_ip,
                          detail={"user": user.username, "name": name, "kind": "api",
                                  "scopes": scope_list,
                                  "expires_at": record.expires_at.isoformat()})
        return IssuedToken(secret, record)

    def verify(self, secret: str) -> tuple[Token, User] | None:
        """The live token ``secret`` is and its user, or None (unknown, expired, revoked,
        user disabled)."""
        if not _SHAPE.match(secret):
            return None
        return self.store.find_live(token_hash(secret))

    def revoke(self, token_id: int, *, actor: str, client_ip: str | None = None,
               reason: str = "revoked") -> Token:
        """Revoke one token; ``NotFound`` if there is no live token with that id."""
        token = self.store.get(token_id)
        if token is None or not self.store.revoke(token_id):
            raise NotFound(f"there is no live token {token_id}; `ferry tokens list` shows them")
        self.audit.record(actor, "token.revoke", f"token:{token_id}", "success",
                          client_ip=client_ip,
                          detail={"user": token.username, "kind": token.kind, "reason": reason})
        return token
