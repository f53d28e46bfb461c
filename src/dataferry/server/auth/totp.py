"""TOTP second factor (RFC 6238, pyotp) and one-time recovery codes.

Seeds are encrypted at rest with AES-256-GCM under ``<home>/keys/totp.key`` (32 random
bytes made with mode 0600 on first use), with the username as associated data, so a
seed copied onto another user's row does not decrypt. A database dump alone reveals no
seed. Verification allows one 30-second step of clock skew either way and reports which
step matched: the caller stores it and refuses that step and earlier ones afterwards, so
a code works once. Recovery codes carry 60 random bits and are stored as SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from datetime import datetime
from pathlib import Path

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dataferry.errors import AuthError

SKEW_STEPS = 1
RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud, typed from paper


class SeedBox:
    """Encrypts and decrypts TOTP seeds with the key in ``<home>/keys/totp.key``."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self._key: bytes | None = None

    def encrypt(self, secret: str, username: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._load()).encrypt(nonce, secret.encode(), _aad(username))
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, blob: str, username: str) -> str:
        if not blob.startswith("v1:"):
            raise AuthError(f"the TOTP seed of {username} is in an unknown format")
        raw = base64.b64decode(blob[3:])
        try:
            return AESGCM(self._load()).decrypt(raw[:12], raw[12:], _aad(username)).decode()
        except InvalidTag as error:
            raise AuthError(f"the TOTP seed of {username} does not decrypt with "
                            f"{self.key_path}: was the key file replaced?") from error

    def _load(self) -> bytes:
        if self._key is None:
            self._key = _read_or_create_key(self.key_path)
        return self._key


def _aad(username: str) -> bytes:
    return b"dataferry totp seed v1\x00" + username.encode()


def _read_or_create_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # another process may have made it meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AuthError(f"the TOTP key {path} is readable by others (mode {mode:o}); "
                        f"run `chmod 600 {path}`")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as error:
        raise AuthError(f"the TOTP key {path} is not 64 hex digits") from error
    if len(key) != 32:
        raise AuthError(f"the TOTP key {path} is not 64 hex digits")
    return key


def new_secret() -> str:
    """A fresh 160-bit base32 seed."""
    return pyotp.random_base32(32)


def otpauth_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read (as text or a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def code_at(secret: str, at: datetime) -> str:
    """The code an authenticator shows at ``at`` (for tests and the CLI)."""
    return pyotp.TOTP(secret).at(at)


def matching_step(secret: str, code: str, at: datetime, skew: int = SKEW_STEPS) -> int | None:
    """The time step whose code is ``code``, within ``skew`` steps of ``at``; else None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(at)
    for offset in range(-skew, skew + 1):
        if hmac.compare_digest(totp.generate_otp(current + offset), code):
            return current + offset
    return None


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """``count`` codes like ``k7wm-q2xa-9fhe`` (12 characters of a 31-letter alphabet)."""
    codes = []
    for _ in range(count):
        text = "".join(secrets.choice(_ALPHABET) for _ in range(12))
        codes.append(f"{text[:4]}-{text[4:8]}-{text[8:]}")
    return codes


def hash_recovery_code(code: str) -> str:
    """SHA-256 of a recovery code, ignoring case, dashes and spaces as typed."""
    normalized = "".join(code.lower().split()).replace("-", "")
    return hashlib.sha256(b"dataferry recovery code\x00" + normalized.encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    return len("".join(code.split()).replace("-", "")) == 12
