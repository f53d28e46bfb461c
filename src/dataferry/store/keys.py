"""Team signing keys: Ed25519, one per team, kept under ``<home>/keys`` (never in the store).

A key is generated the first time a team publishes. The private key file is written with
mode 0600 in a 0700 directory; copying a store never copies it. ``ferry keys`` shows the
public part and its fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dataferry.errors import StoreError

# cryptography loads where a key is used (signing, verifying): a run reads its source first.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNATURE_DOMAIN = b"dataferry signed manifest v1\x00"
"""Prefix of every signed message, so a signature can never be replayed as another kind."""


def fingerprint(public_key: bytes) -> str:
    """``SHA256:<base64>`` of a raw 32-byte public key (the form ssh users know)."""
    digest = hashlib.sha256(public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(SIGNATURE_DOMAIN + message)


def verify_signature(public_key_hex: str, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is the holder of ``public_key_hex``'s over ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(signature, SIGNATURE_DOMAIN + message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class KeyInfo:
    team: str
    public_key: str  # hex of the raw 32 bytes
    fingerprint: str
    path: Path


class KeyStore:
    """The signing keys under ``<home>/keys``."""

    def __init__(self, home: Path) -> None:
        self.directory = home / "keys"

    def _path(self, team: str) -> Path:
        return self.directory / f"{team}.ed25519"

    def signing_key(self, team: str, *, create: bool = True) -> Ed25519PrivateKey:
        """The team's private key; generated (0600) on first use when ``create``."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = self._path(team)
        if path.exists():
            return self._load(path, team)
        if not create:
            raise StoreError(f"no signing key for team {team} in {self.directory}; it is made "
                             "when the team first publishes")
        key = Ed25519PrivateKey.generate()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        # A temporary name of its own: two jobs of one team may make its first key at once.
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # fails if another process or thread made the key meanwhile
        except FileExistsError:
            temp.unlink()
            return self._load(path, team)
        temp.unlink()
        return key

    def _load(self, path: Path, team: str) -> Ed25519PrivateKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise StoreError(f"the signing key {path} is readable by others (mode {mode:o}); "
                             f"run `chmod 600 {path}`")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise StoreError(f"{path} is not an Ed25519 key (team {team})")
        return key

    def keys(self) -> list[KeyInfo]:
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*.ed25519")):
            team = path.name.removesuffix(".ed25519")
            public = public_bytes(self._load(path, team))
            out.append(KeyInfo(team, public.hex(), fingerprint(public), path))
        return out
