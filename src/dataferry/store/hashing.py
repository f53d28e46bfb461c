"""Content hashes: whole files, fixed-size chunks, and Merkle roots over file hashes.

A file's ``hash`` is the plain hash of its bytes (BLAKE3 or SHA-256, as the dataset's
genesis says), so ``b3sum``/``sha256sum`` give the same value. Its chunk list holds the hash
of each ``chunk_size`` piece (for verified partial reads); ``chunks_hash`` is the hash of
that list. Writing computes all of them in the same pass as the bytes are written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import blake3

ALGORITHMS = ("blake3", "sha256")
CHUNK_SIZE = 1 << 20
_READ_SIZE = 8 << 20


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> Any: ...
    def hexdigest(self) -> str: ...
    def digest(self) -> bytes: ...


def new_hash(algorithm: str, *, threads: bool = False) -> _Hash:
    """A fresh hasher; ``threads`` lets BLAKE3 use every core on large updates."""
    if algorithm == "blake3":
        return blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")


def hash_bytes(algorithm: str, data: bytes) -> str:
    hasher = new_hash(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


@dataclass(frozen=True)
class FileDigest:
    """What the manifest records of one file."""

    hash: str
    size: int
    chunk_size: int
    chunks: tuple[str, ...]

    def chunks_bytes(self) -> bytes:
        """The chunk list as stored in ``_sig/c/<hash>.chunks``: one hex hash per line."""
        return "".join(f"{c}\n" for c in self.chunks).encode("ascii")

    def chunks_hash(self, algorithm: str) -> str:
        return hash_bytes(algorithm, self.chunks_bytes())


@dataclass
class Chunker:
    """A file's whole hash and its chunk hashes, fed its bytes in order (``chunker``)."""

    algorithm: str
    chunk_size: int
    whole: _Hash
    chunks: list[str] = field(default_factory=list)
    current: _Hash | None = None
    filled: int = 0
    size: int = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self.whole.update(view)
        self.size += len(view)
        while len(view):
            if self.current is None:
                self.current = new_hash(self.algorithm)
                self.filled = 0
            take = min(len(view), self.chunk_size - self.filled)
            self.current.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.chunk_size:
                self.chunks.append(self.current.hexdigest())
                self.current = None

    def digest(self) -> FileDigest:
        if self.current is not None:
            self.chunks.append(self.current.hexdigest())
            self.current = None
        return FileDigest(self.whole.hexdigest(), self.size, self.chunk_size, tuple(self.chunks))


class HashingWriter:
    """A binary file opened for writing that hashes what passes through it.

    ``close(fsync=True)`` flushes the bytes to disk; ``digest()`` then gives the
    ``FileDigest``. pyarrow's Parquet writer writes to it like to any file object.
    """

    def __init__(self, path: Path, algorithm: str, chunk_size: int = CHUNK_SIZE) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("xb")
        self._chunker = chunker(algorithm, chunk_size)
        self.closed = False
        self.failed: OSError | None = None

    def write(self, data: bytes | memoryview) -> int:
        if self.failed is not None:
            # The file is being abandoned (its writer raised the first error); Arrow's
            # buffered stream still flushes into it when it is destroyed, and a second
            # error there is printed as "Error ignored ... Traceback". Drop the bytes.
            return len(data)
        try:
            self._file.write(data)
        except OSError as error:
            self.failed = error
            raise
        self._chunker.update(data)
        return len(data)

    def tell(self) -> int:
        return self._chunker.size

    def flush(self) -> None:
        if self.failed is None:
            self._file.flush()

    def abandon(self) -> None:
        """Close and delete the file after a failed write (it belongs to no version)."""
        if self.failed is None:
            self.failed = OSError("abandoned")
        with contextlib.suppress(OSError):
            self._file.close()
        self.closed = True
        self.path.unlink(missing_ok=True)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def close(self, fsync: bool = True) -> None:
        if self.closed:
            return
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True

    def digest(self) -> FileDigest:
        return self._chunker.digest()


def chunker(algorithm: str, chunk_size: int = CHUNK_SIZE) -> Chunker:
    """A ``Chunker`` to feed a file's bytes as they arrive (``digest()`` at the end)."""
    return Chunker(algorithm, chunk_size, new_hash(algorithm))


def hash_file(path: Path, algorithm: str, chunk_size: int = CHUNK_SIZE) -> FileDigest:
    """Hash a file's bytes and chunks in one streaming pass (bounded memory)."""
    hasher = chunker(algorithm, chunk_size)
    with path.open("rb") as handle:
        while block := handle.read(_READ_SIZE):
            hasher.update(block)
    return hasher.digest()


def file_hash(path: Path, algorithm: str) -> tuple[str, int]:
    """Just the whole-file hash and size, as fast as the hardware allows (all cores)."""
    if algorithm == "blake3":
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(str(path))  # memory-mapped and multi-threaded, like b3sum
        return hasher.hexdigest(), path.stat().st_size
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


def merkle_root(algorithm: str, hashes: Iterable[str]) -> str:
    """A binary Merkle root over the sorted hex hashes (leaf/node prefixes 0x00/0x01)."""
    level = [_node(algorithm, b"\x00", bytes.fromhex(h)) for h in sorted(hashes)]
    if not level:
        return _node(algorithm, b"\x00", b"").hex()
    while len(level) > 1:
        paired = [
            _node(algorithm, b"\x01", level[i] + level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        level = paired
    return level[0].hex()


def _node(algorithm: str, prefix: bytes, data: bytes) -> bytes:
    hasher = new_hash(algorithm)
    hasher.update(prefix + data)
    return hasher.digest()
