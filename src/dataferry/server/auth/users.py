"""Managing users: add, change password, disable, enroll and check TOTP; all audited.

Shared by the admin API routes and ``ferry users``. Every change writes an audit entry
naming the actor (a username, or ``cli:<os user>`` for the command line); the password,
TOTP seed and recovery codes never reach the audit log, a log line or an error message.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from dataferry.metadata import ROLES, AuditLog, User, UserStore
from dataferry.metadata.users import LastAdminError
from dataferry.server.auth import totp
from dataferry.server.auth.passwords import Passwords, check_policy
from dataferry.server.auth.ratelimit import RateLimiter
from dataferry.server.auth.settings import AuthSettings
from dataferry.server.errors import UNSTORABLE, BadRequest, Conflict, NotFound, storable

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}\Z")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")


@dataclass(frozen=True)
class TotpEnrollment:
    """What a user needs once to set up TOTP; shown once, never stored in the clear."""

    uri: str
    secret: str
    recovery_codes: tuple[str, ...]

    def __repr__(self) -> str:
        return "TotpEnrollment(<secret>)"


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive: ``Ana`` and ``ana`` are one account. Characters
    no database stores become U+FFFD (``storable``): such a name is no valid user name,
    so it matches no account, and a failed login with it can still be counted."""
    return storable(username.strip().lower())


class Accounts:
    """The user service: every write goes through here so that it is checked and audited."""

    def __init__(self, users: UserStore, passwords: Passwords, seeds: totp.SeedBox,
                 limiter: RateLimiter, audit: AuditLog, settings: AuthSettings) -> None:
        self.users = users
        self.passwords = passwords
        self.seeds = seeds
        self.limiter = limiter
        self.audit = audit
        self.settings = settings

    def add(self, username: str, role: str, password: str, *, actor: str,
            email: str | None = None, teams: Iterable[str] = (),
            known_teams: Collection[str] | None = None, totp_required: bool = False,
            client_ip: str | None = None) -> User:
        """Create a user after checking name, role, e-mail, teams and password policy."""
        name = normalize_username(username)
        if not USERNAME.match(name):
            raise BadRequest(f"{username!r} is not a valid user name: 2-64 characters of "
                             "a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
        if role not in ROLES:
            raise BadRequest(f"{role!r} is not a role: use one of {', '.join(ROLES)}")
        if email is not None:
            email = email.strip().lower()
            if not EMAIL.match(email) or len(email) > 320 or UNSTORABLE.search(email):
                raise BadRequest(f"{email!r} is not an e-mail address")
        team_list = sorted(set(teams))
        unknown = [t for t in team_list if known_teams is not None and t not in known_teams]
        if unknown:
            raise BadRequest(f"the model has no team {unknown[0]!r}; teams: "
                             f"{', '.join(sorted(known_teams or [])) or '(none)'}")
        check_policy(password, name, email)
        if self.users.get(name) is not None:
            raise Conflict(f"a user named {name!r} exists already")
        user = self.users.add(name, role, self.passwords.hash(password), email=email,
                              teams=team_list, totp_required=totp_required)
        self.audit.record(actor, "user.add", f"user:{name}", "success", client_ip=client_ip,
                          detail={"role": role, "teams": team_list, "email": email,
                                  "totp_required": totp_required})
        return user

    def get(self, username: str) -> User:
        """The user, or ``NotFound`` naming the command that lists users."""
        user = self.users.get(normalize_username(username))
        if user is None:
            raise NotFound(f"there is no user {username!r}; `ferry users list` shows them")
        return user

    def list(self) -> list[User]:
        return self.users.list()

    def set_password(self, username: str, password: str, *, actor: str,
                     client_ip: str | None = None) -> None:
        user = self.get(username)
        check_policy(password, user.username, user.email)
        self.users.set_password_hash(user.id, self.passwords.hash(password))
        self.audit.record(actor, "user.password", f"user:{user.username}", "success",
                          client_ip=client_ip)

    def disable(self, username: str, *, actor: str, client_ip: str | None = None) -> int:
        """Disable the user and revoke its tokens; returns how many tokens were revoked.
        ``Conflict`` for the last enabled admin (nobody could manage users after it)."""
        user = self.get(username)
        try:
            revoked = self.users.disable(user.id)
        except LastAdminError:
            self.audit.record(actor, "user.disable", f"user:{user.username}", "denied",
                              client_ip=client_ip, detail={"reason": "last admin"})
            raise Conflict(f"{user.username} is the last enabled admin and cannot be "
                           "disabled: make another user an admin first") from None
        self.audit.record(actor, "user.disable", f"user:{user.username}", "success",
                          client_ip=client_ip, detail={"tokens_revoked": revoked})
        return revoked

    def enable(self, username: str, *, actor: str, client_ip: str | None = None) -> User:
        """Let a disabled user log in again (with new tokens: the old ones stay revoked)."""
        user = self.get(username)
        if not self.users.enable(user.id):
            raise Conflict(f"{user.username} is not disabled")
        self.audit.record(actor, "user.enable", f"user:{user.username}", "success",
                          client_ip=client_ip)
        return self.get(username)

    def enroll_totp(self, username: str, *, actor: str, confirmed: bool = False,
                    client_ip: str | None = None) -> TotpEnrollment:
        """A new seed and 10 recovery codes for the user, replacing any earlier ones.

        ``confirmed`` (an admin at the command line) makes login require it at once;
        otherwise it waits for ``confirm_totp`` with a first code from the app.
        """
        user = self.get(username)
        secret = totp.new_secret()
        codes = totp.new_recovery_codes()
        self.users.set_totp(user.id, self.seeds.encrypt(secret, user.username),
                            [totp.hash_recovery_code(c) for c in codes], confirmed=confirmed)
        self.audit.record(actor, "user.totp_enroll", f"user:{user.username}", "success",
                          client_ip=client_ip, detail={"confirmed": confirmed})
        uri = totp.otpauth_uri(secret, user.username, self.settings.issuer)
        return TotpEnrollment(uri, secret, tuple(codes))

    def confirm_totp(self, user: User, code: str, *, client_ip: str) -> None:
        """Turn a pending enrollment on with a first code; rate-limited like a login."""
        if user.totp_secret_encrypted is None:
            raise BadRequest("there is no TOTP enrollment to confirm: POST /api/v1/me/totp first")
        if user.totp_enabled:
            raise Conflict("TOTP is already enabled for this account")
        attempt = self.limiter.begin(user.username, client_ip)
        secret = self.seeds.decrypt(user.totp_secret_encrypted, user.username)
        step = totp.matching_step(secret, code, self.users.now())
        if step is None or not self.users.accept_totp_step(user.id, step, confirm=True):
            attempt.failed()
            self.audit.record(user.username, "user.totp_confirm", f"user:{user.username}",
                              "failure", client_ip=client_ip)
            raise BadRequest("that code is not valid: enter the current code from your app")
        attempt.abandoned()  # a right code is not a failure; it clears no password failures
        self.audit.record(user.username, "user.totp_confirm", f"user:{user.username}",
                          "success", client_ip=client_ip)

    def second_factor(self, user: User, code: str) -> str | None:
        """``totp`` or ``recovery`` if ``code`` is a fresh TOTP code or an unused recovery
        code of the user (consuming it); None otherwise."""
        if user.totp_secret_encrypted is None:
            return None
        secret = self.seeds.decrypt(user.totp_secret_encrypted, user.username)
        step = totp.matching_step(secret, code, self.users.now())
        if step is not None:
            return "totp" if self.users.accept_totp_step(user.id, step) else None
        if totp.looks_like_recovery_code(code) and self.users.use_recovery_code(
                user.id, totp.hash_recovery_code(code)):
            return "recovery"
        return None
