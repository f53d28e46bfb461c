"""Genesis, manifests and signatures: the signed, hash-chained history of a dataset.

Layout under a dataset's directory (STORE.md)::

    _sig/genesis.json          dataset id = hash of these bytes; allowed keys; hash algorithm
    _sig/m/<version>.json      canonical manifest of that version
    _sig/m/<version>.sig       {"key": <public key hex>, "signature": <base64>}
    _sig/c/<file-hash>.chunks  the chunk hashes of one data file
    _sig/checkpoint.json/.sig  where the chain restarts after `ferry gc` dropped versions

A version is *published* when its ``.sig`` exists: the manifest is written first, the
signature last, each atomically (temp file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataferry.errors import StoreError
from dataferry.store.hashing import hash_bytes, merkle_root
from dataferry.store.keys import public_bytes, sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

GENESIS_FORMAT = "dataferry.genesis/1"
MANIFEST_FORMAT = "dataferry.manifest/1"


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` holds either the old content or all of the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class Genesis:
    dataset: str
    algorithm: str
    keys: tuple[str, ...]
    created_at: str
    format: str = GENESIS_FORMAT

    def to_bytes(self) -> bytes:
        data = asdict(self)
        data["keys"] = list(self.keys)
        return canonical(data)

    @property
    def dataset_id(self) -> str:
        return hash_bytes(self.algorithm, self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Genesis:
        raw = json.loads(data)
        if raw.get("format") != GENESIS_FORMAT:
            raise StoreError(f"unknown genesis format {raw.get('format')!r}")
        return cls(raw["dataset"], raw["algorithm"], tuple(raw["keys"]), raw["created_at"],
                   raw["format"])


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    hash: str
    rows: int
    chunk_size: int
    chunks_hash: str
    partition_values: dict[str, str | None] = field(default_factory=dict)
    deletion_vector: dict[str, Any] | None = None
    """Rows of the file that are deleted (``deletion_vectors.DeletionVector`` as JSON)."""

    @property
    def live_rows(self) -> int:
        """Rows of the file that are part of the version (``rows`` minus deleted ones)."""
        return self.rows - (int(self.deletion_vector["cardinality"])
                            if self.deletion_vector else 0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["deletion_vector"] is None:  # manifests without vectors stay as they were
            del data["deletion_vector"]
        return data


def files_root(algorithm: str, files: Iterable[FileEntry]) -> str:
    """The Merkle root a manifest records over a version's files and deletion vectors."""
    leaves = []
    for entry in files:
        leaves.append(entry.hash)
        if entry.deletion_vector:
            leaves.append(str(entry.deletion_vector["hash"]))
    return merkle_root(algorithm, leaves)


@dataclass(frozen=True)
class Manifest:
    """One version of a dataset: what changed, its totals, and links to the previous one."""

    dataset: str
    dataset_id: str
    version: int
    created_at: str
    prev: str | None
    delta_commit: dict[str, Any]
    schema: dict[str, Any]
    files: tuple[FileEntry, ...]
    removed: tuple[str, ...]
    rows: int
    added_rows: int
    removed_rows: int
    root: str
    mode: str = "replace"
    cursor: dict[str, Any] | None = None
    lineage: tuple[dict[str, Any], ...] = ()
    keys: tuple[str, ...] | None = None
    """When set: the public keys allowed to sign the *next* versions (key rotation)."""
    definition: dict[str, Any] | None = None
    """A transformer's output: the fingerprint of the definition that computed it
    (``engine.definition``); absent from other manifests and older ones."""
    format: str = MANIFEST_FORMAT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = [f.to_json() for f in self.files]
        data["removed"] = list(self.removed)
        data["lineage"] = list(self.lineage)
        data["keys"] = list(self.keys) if self.keys is not None else None
        if data["definition"] is None:  # manifests without one stay as they were
            del data["definition"]
        return data

    def to_bytes(self) -> bytes:
        return canonical(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if raw.get("format") != MANIFEST_FORMAT:
            raise StoreError(f"unknown manifest format {raw.get('format')!r}")
        files = tuple(FileEntry(**entry) for entry in raw.pop("files"))
        keys = raw.pop("keys", None)
        return cls(
            files=files,
            removed=tuple(raw.pop("removed")),
            lineage=tuple(raw.pop("lineage", ())),
            keys=tuple(keys) if keys is not None else None,
            **raw,
        )


@dataclass(frozen=True)
class Signature:
    key: str
    signature: bytes

    def to_bytes(self) -> bytes:
        return canonical({"key": self.key, "signature": base64.b64encode(self.signature).decode()})

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        raw = json.loads(data)
        return cls(raw["key"], base64.b64decode(raw["signature"], validate=True))

    @classmethod
    def create(cls, key: Ed25519PrivateKey, message: bytes) -> Signature:
        return cls(public_bytes(key).hex(), sign(key, message))


@dataclass(frozen=True)
class Checkpoint:
    """Where the chain restarts after older versions were dropped by ``ferry gc``.

    It is signed like a manifest and carries what the first kept version needs: the hash
    its ``prev`` names, and the complete file list of the version before it.
    """

    dataset_id: str
    first_version: int
    prev: str | None
    files: tuple[FileEntry, ...]
    keys: tuple[str, ...]
    created_at: str
    format: str = "dataferry.checkpoint/1"

    def to_bytes(self) -> bytes:
        data = asdict(self)
        data["files"] = [f.to_json() for f in self.files]
        data["keys"] = list(self.keys)
        return canonical(data)

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        raw = json.loads(data)
        files = tuple(FileEntry(**entry) for entry in raw.pop("files"))
        return cls(files=files, keys=tuple(raw.pop("keys")), **raw)


def signed_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> bytes:
    """The checkpoint file: its body and the signature over the body's canonical bytes."""
    body = checkpoint.to_bytes()
    signature = Signature.create(key, body)
    return canonical({"checkpoint": json.loads(body),
                      "signature": json.loads(signature.to_bytes())})


def read_signed_checkpoint(data: bytes) -> tuple[Checkpoint, bytes, Signature]:
    """(checkpoint, the bytes that were signed, signature) from a checkpoint file."""
    envelope = json.loads(data)
    body = canonical(envelope["checkpoint"])
    signature = Signature.from_bytes(canonical(envelope["signature"]))
    return Checkpoint.from_bytes(body), body, signature
