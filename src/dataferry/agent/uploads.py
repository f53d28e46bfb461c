"""Files agents upload, kept apart until the hub publishes them.

Each lands in ``<home>/agent-uploads/<agent job>/<attempt>/<name>``, hashed (SHA-256) as
it streams in; one whose bytes do not match the hash its agent announced is deleted and
refused. Before publishing, ``verified`` hashes every file the report names again: what
is published is exactly what the agent read, byte for byte. An attempt's files go with
its job (``discard``) once published or given up; ``ferry gc`` removes those of jobs that
ended an hour ago and were never published (their ``ferry run`` was killed meanwhile).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dataferry.errors import UsageError, VerificationError

FILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}\.parquet$")
CHUNK = 1 << 20
SWEEP_GRACE = timedelta(hours=1)
"""How long after its job ended an attempt's uploads stay (``ferry gc``): the process that
waits for the job may still be verifying and publishing them."""


class Uploads:
    """The staging directory of agent uploads under the hub's home."""

    def __init__(self, home: Path) -> None:
        self.root = home / "agent-uploads"

    def path(self, agent_job_id: int, attempt: int, name: str) -> Path:
        if not FILE_NAME.match(name):
            raise UsageError(f"upload name {name!r}: use a-z, 0-9, '_', '.', '-', ending .parquet")
        return self.root / str(agent_job_id) / str(attempt) / name

    async def receive(self, agent_job_id: int, attempt: int, name: str, sha256: str,
                      chunks: AsyncIterator[bytes]) -> int:
        """Store one uploaded file; raises ``VerificationError`` (file deleted) when its
        bytes do not hash to ``sha256``. Returns its size."""
        target = self.path(agent_job_id, attempt, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        digest, size = hashlib.sha256(), 0
        with partial.open("wb") as out:
            async for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        if digest.hexdigest() != sha256.lower():
            partial.unlink()
            raise VerificationError(f"upload {name} of agent job {agent_job_id}: its bytes hash "
                                    f"to {digest.hexdigest()}, not {sha256}; refused")
        os.replace(partial, target)
        return size

    def verified(self, agent_job_id: int, attempt: int,
                 files: list[dict[str, Any]]) -> list[Path]:
        """The files a report names, each hashed again; ``VerificationError`` names the
        first missing or changed one."""
        paths = []
        for entry in files:
            path = self.path(agent_job_id, attempt, str(entry["name"]))
            if not path.is_file():
                raise VerificationError(f"agent job {agent_job_id}: the report names "
                                        f"{entry['name']}, which was never uploaded")
            if file_sha256(path) != str(entry["sha256"]).lower():
                raise VerificationError(f"agent job {agent_job_id}: {entry['name']} does not "
                                        "hash to what the agent reported; nothing published")
            paths.append(path)
        return paths

    def discard(self, agent_job_id: int) -> None:
        shutil.rmtree(self.root / str(agent_job_id), ignore_errors=True)

    def sweep(self, ended_since: Callable[[int], datetime | None], now: datetime,
              grace: timedelta = SWEEP_GRACE) -> tuple[int, int]:
        """Remove the uploads of jobs that ended more than ``grace`` ago (or that the queue
        no longer has) and so will never be published: a ``ferry run`` killed while its
        agent worked leaves them behind. ``ended_since(id)``: when the job ended, ``None``
        while it is queued or running, ``datetime.min`` (aware) for an unknown job.
        Returns (jobs, bytes) removed."""
        removed, freed = 0, 0
        if not self.root.is_dir():
            return 0, 0
        for folder in sorted(self.root.iterdir()):
            if not folder.name.isdigit():
                continue
            ended = ended_since(int(folder.name))
            if ended is None or now - ended < grace:
                continue
            freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        return removed, freed


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read a chunk at a time (how uploads and steps are named)."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
