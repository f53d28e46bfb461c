"""The profile file a partner's client reads (Delta Sharing ``shareCredentialsVersion`` 1)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from dataferry.errors import UsageError

PREFIX = "/delta-sharing"


def endpoint_of(server: str) -> str:
    """The sharing endpoint for a server URL (``https://ferry.example.com`` or one that
    already ends in ``/delta-sharing``)."""
    server = server.strip().rstrip("/")
    if not server.startswith(("http://", "https://")) or len(server.split("/")) < 3:
        raise UsageError(f"--endpoint {server!r} is not an http(s) URL: give the server's "
                         "address as partners reach it, e.g. https://ferry.example.com")
    return server if server.endswith(PREFIX) else server + PREFIX


def profile(endpoint: str, secret: str, expires_at: datetime) -> dict[str, object]:
    return {
        "shareCredentialsVersion": 1,
        "endpoint": endpoint,
        "bearerToken": secret,
        "expirationTime": expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def write_profile(path: Path, content: dict[str, object]) -> None:
    """Write the profile readable by its owner only (it holds the bearer token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
