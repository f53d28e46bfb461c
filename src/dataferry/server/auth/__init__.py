"""Authentication for ``ferry serve`` and ``ferry users``/``tokens``/``audit``.

    passwords   policy (12..128 characters, not common, not the user's name) and argon2id
    totp        RFC 6238 codes, seeds encrypted at rest, one-time recovery codes
    tokens      opaque bearer tokens: access (12 h, from a login) and API (scoped, expiring)
    ratelimit   per-account and per-IP failure limits (429 with Retry-After)
    users       the user service: add, password, disable, TOTP enrollment; audited
    login       the login flow that ties the above together
    service     ``Auth``: all of it wired to one metadata DB and clock
    scopes      the token scopes (read, run, tokens, admin) and the login-session-only routes
    reauth      the current password as fresh proof, for TOTP enrollment and password changes
    dependency  FastAPI dependencies: ``current_principal``, ``scoped``, ``require_admin``
    routes      /auth, /me, /users and /tokens under /api/v1

Storage is in ``dataferry.metadata`` (users, tokens, audit, attempts); what a principal
may see is ``dataferry.server.authz``'s business.
"""

from __future__ import annotations

from dataferry.server.auth.service import Auth
from dataferry.server.auth.settings import AuthSettings

__all__ = ["Auth", "AuthSettings"]
