"""Re-authentication: the fresh proof that TOTP enrollment and password changes need.

A stolen session token must not be enough to take the account over (enroll a TOTP seed
the owner does not have, or change the password), so those routes need a login session
(``scopes.SESSION``) *and* the current password in the request body. A wrong password
counts as a failed login for the account and the client address, so these routes are no
way around the login rate limit; a right one does not clear the count (only a full
login does).
"""

from __future__ import annotations

from dataferry.metadata import User
from dataferry.server.auth.service import Auth
from dataferry.server.errors import Forbidden, RateLimited


def prove_password(auth: Auth, user: User, password: str, *, action: str,
                   client_ip: str) -> None:
    """Return if ``password`` is the user's current one; else ``Forbidden`` (or
    ``RateLimited`` after too many failures), audited as ``action``.

    The attempt is counted before the password is checked, as a login's is, so parallel
    guesses cannot all slip under the limit."""
    target = f"user:{user.username}"
    try:
        attempt = auth.limiter.begin(user.username, client_ip)
    except RateLimited:
        auth.audit.record(user.username, action, target, "rate_limited", client_ip=client_ip)
        raise
    try:
        right = auth.passwords.verify(user.password_hash, password)
    except BaseException:  # busy (429) or failed: nothing was checked, nothing counts
        attempt.abandoned()
        raise
    if not right:
        attempt.failed()
        auth.audit.record(user.username, action, target, "failure", client_ip=client_ip,
                          detail={"reason": "wrong current password"})
        raise Forbidden("the current password is not right: send the password you log in "
                        "with as 'password'")
    attempt.abandoned()  # a right password is no failure, and clears none (a login does)
