"""Passwords: the policy a new one must pass, and argon2id hashing (argon2-cffi).

The policy follows NIST SP 800-63B and OWASP ASVS 5.0: at least 12 characters, up to
128 (long passphrases welcome), no composition rules (they push people to
``Password1!``), but reject passwords found in breach lists and ones built from the
user's own name. A password is never logged, never stored, never returned: only its
argon2id hash is kept, and it is upgraded when the cost parameters change.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dataferry.server.auth.settings import AuthSettings
from dataferry.server.errors import BadRequest, RateLimited

MIN_LENGTH = 12
MAX_LENGTH = 128


class WeakPassword(BadRequest):
    """A new password fails the policy; the message says which rule and what to do."""


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of very common passwords, lowercased."""
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def check_policy(password: str, username: str, email: str | None = None) -> None:
    """Raise ``WeakPassword`` unless ``password`` is acceptable for ``username``."""
    length = len(unicodedata.normalize("NFC", password))
    if length < MIN_LENGTH:
        raise WeakPassword(f"the password has {length} characters; use at least {MIN_LENGTH} "
                           "(a few unrelated words make a good one)")
    if length > MAX_LENGTH:
        raise WeakPassword(f"the password has {length} characters; use at most {MAX_LENGTH}")
    folded = password.casefold()
    if folded.strip() in common_passwords():
        raise WeakPassword("that password is one of the most common ones and is guessed "
                           "first; choose another")
    names = {username.casefold()}
    if email:
        names.add(email.split("@")[0].casefold())
    if any(len(name) >= 3 and name in folded for name in names):
        raise WeakPassword("the password must not contain the user name or e-mail name")
    if len(set(folded)) < 4:
        raise WeakPassword("the password repeats too few characters; choose another")


class PasswordCheckBusy(RateLimited):
    """429: every argon2 slot stayed taken for the whole wait; nothing was checked."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, f"the server is busy checking other passwords; try "
                                      f"again in {retry_after} second"
                                      f"{'' if retry_after == 1 else 's'}")


class Passwords:
    """Hashes and verifies passwords with argon2id at the configured cost.

    At most ``argon2_concurrency`` hashes or checks run at once (per process): each costs
    tens of MiB and most of a core, and a burst of logins would otherwise stall every
    other request. One that cannot start within ``argon2_wait_seconds`` raises
    ``PasswordCheckBusy``. Every caller (login, TOTP confirmation, password re-checks)
    goes through here, so the bound covers them all.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self.hasher = PasswordHasher(time_cost=settings.argon2_time_cost,
                                     memory_cost=settings.argon2_memory_kib,
                                     parallelism=settings.argon2_parallelism, type=Type.ID)
        self.slots = threading.BoundedSemaphore(settings.argon2_concurrency)
        self.wait_seconds = settings.argon2_wait_seconds
        self._dummy: str | None = None

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self.slots.acquire(timeout=self.wait_seconds):
            raise PasswordCheckBusy(max(1, math.ceil(self.wait_seconds)))
        try:
            yield
        finally:
            self.slots.release()

    def hash(self, password: str) -> str:
        with self._slot():
            return self.hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True iff ``password`` matches; never raises for a wrong or mangled hash (only
        ``PasswordCheckBusy`` when it cannot get a turn)."""
        with self._slot():
            try:
                return self.hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, password_hash: str) -> bool:
        """The hash was made with other parameters than today's: hash again on login."""
        try:
            return self.hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def waste_time(self, password: str) -> None:
        """Verify against a dummy hash, so an unknown user takes as long as a known one."""
        if self._dummy is None:
            self._dummy = self.hash("dataferry timing equalizer")
        self.verify(self._dummy, password)
