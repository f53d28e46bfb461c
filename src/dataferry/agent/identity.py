"""The agent's identity in its ``--home``: an Ed25519 key and, once enrolled, its credential.

``identity.key`` (PEM, PKCS#8) is made on first start; ``credential.json`` holds the hub's
URL, the agent id and the bearer credential the enrollment token was exchanged for. Both
are written mode 0600 in a 0700 directory, so a restart with the same home needs no
token. The credential's ``repr`` never shows the secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataferry.errors import UsageError

KEY_FILE = "identity.key"
CREDENTIAL_FILE = "credential.json"


@dataclass(frozen=True)
class Enrolled:
    """What the hub gave this agent when it spent its token."""

    hub: str
    agent_id: int
    network: str
    credential: str

    def __repr__(self) -> str:
        return f"Enrolled(hub={self.hub!r}, agent_id={self.agent_id}, network={self.network!r})"


class Identity:
    """The agent's key and credential files under ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def key(self) -> Ed25519PrivateKey:
        """The agent's Ed25519 key, made (and saved 0600) on first use."""
        path = self.home / KEY_FILE
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise UsageError(f"{path} is not an Ed25519 key: move it away and enroll again")
            return loaded
        key = Ed25519PrivateKey.generate()
        _write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return key

    def public_key_hex(self) -> str:
        return self.key().public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw).hex()

    def sign(self, data: bytes) -> str:
        return self.key().sign(data).hex()

    def enrolled(self) -> Enrolled | None:
        path = self.home / CREDENTIAL_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Enrolled(str(data["hub"]), int(data["agent_id"]), str(data["network"]),
                        str(data["credential"]))

    def save(self, enrolled: Enrolled) -> None:
        _write_private(self.home / CREDENTIAL_FILE, json.dumps({
            "hub": enrolled.hub, "agent_id": enrolled.agent_id, "network": enrolled.network,
            "credential": enrolled.credential}, indent=2).encode())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    os.replace(partial, path)
