"""Short-lived signed file URLs: ``/delta-sharing/files/<payload>.<signature>``.

The payload (URL-safe base64 of JSON) names a file under the store root and when the URL
expires; the signature is its HMAC-SHA256 under ``<home>/keys/sharing.key`` (32 random
bytes made on first use, mode 0600, beside the TOTP key: never in the model or the
store). A URL works without the bearer token until it expires; a forged, altered or
expired one gets 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

URL_TTL = timedelta(hours=1)
KEY_FILE = "sharing.key"


def signing_key(home: Path) -> bytes:
    path = home / "keys" / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, relative: str, expires: datetime) -> str:
    """The token of a URL for ``relative`` (a path under the store root) until ``expires``."""
    payload = _b64(json.dumps({"p": relative, "e": int(expires.timestamp())},
                              separators=(",", ":")).encode())
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def verify(key: bytes, token: str, now: datetime) -> str | None:
    """The path a token names, or None if it is forged, altered, malformed or expired."""
    payload, _, signature = token.partition(".")
    if not token.isascii() or not signature:  # anything else is none of ours
        return None
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        facts = json.loads(_unb64(payload))
        relative, expires = str(facts["p"]), int(facts["e"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return relative if now.timestamp() < expires else None
