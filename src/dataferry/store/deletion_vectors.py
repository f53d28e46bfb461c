"""Delta deletion vectors: rows of a data file marked deleted without rewriting the file.

An incremental version that changes 1% of the rows, picked at random, touches nearly
every data file; copying those files whole for each version (copy-on-write) costs a
rewrite of the table. Instead, the changed rows are written as one new file and each
touched file gets a deletion vector: the positions of its rows that are no longer live.
This is Delta's own merge-on-read (PROTOCOL.md, "Deletion Vectors", reader version 3),
so Spark, delta-rs (``QueryBuilder``), Polars and DuckDB's delta extension read the
tables as they are.

The formats, as the Delta protocol specifies them:

- a deletion vector is the magic number 1681511377 (little endian) followed by a 64-bit
  Roaring bitmap in the portable format: the count of 32-bit bitmaps, then each one's
  high 32 bits and its portable serialisation (``pyroaring`` writes that part);
- a deletion vector file ``deletion_vector_<uuid>.bin`` is a version byte (1) and, for
  each vector, its size (4 bytes, big endian), its bytes and their CRC-32 (big endian);
- the log names a vector by storage type ``u``, the file's UUID in Z85 (20 characters),
  the offset of the vector in the file, its size and its cardinality.

dataferry signs the BLAKE3/SHA-256 hash of each vector's bytes in the manifest, next to
the file it applies to, so ``ferry verify`` checks vectors like data files.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyroaring import BitMap

from dataferry.errors import StoreError
from dataferry.store.hashing import hash_bytes

MAGIC = 1681511377
FILE_FORMAT_VERSION = 1
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_VALUES = {c: i for i, c in enumerate(_Z85)}


@dataclass(frozen=True)
class DeletionVector:
    """Where one file's deletion vector is stored, and what it holds."""

    file: str
    """The ``deletion_vector_<uuid>.bin`` file, relative to the dataset directory."""
    offset: int
    size: int
    cardinality: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "offset": self.offset, "size": self.size,
                "cardinality": self.cardinality, "hash": self.hash}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DeletionVector:
        return cls(str(raw["file"]), int(raw["offset"]), int(raw["size"]),
                   int(raw["cardinality"]), str(raw["hash"]))

    def descriptor(self) -> dict[str, Any]:
        """The ``deletionVector`` object of a Delta ``add``/``remove`` action."""
        name = Path(self.file).name
        file_uuid = uuid.UUID(name.removeprefix("deletion_vector_").removesuffix(".bin"))
        return {"storageType": "u", "pathOrInlineDv": z85_encode(file_uuid.bytes),
                "offset": self.offset, "sizeInBytes": self.size,
                "cardinality": self.cardinality}


def serialize(positions: BitMap) -> bytes:
    """A deletion vector's bytes (row positions below 2**32: one 32-bit bitmap)."""
    return struct.pack("<IqI", MAGIC, 1, 0) + positions.serialize()


def deserialize(data: bytes) -> BitMap:
    """The row positions of a deletion vector's bytes (see ``serialize``)."""
    if len(data) < 12:
        raise StoreError("deletion vector is truncated")
    magic, count = struct.unpack_from("<Iq", data)
    if magic != MAGIC:
        raise StoreError(f"deletion vector has magic number {magic}, expected {MAGIC}")
    if count == 0:
        return BitMap()
    if count != 1 or struct.unpack_from("<I", data, 12)[0] != 0:
        raise StoreError("deletion vector covers rows past 2**32, which dataferry never writes")
    return BitMap.deserialize(data[16:])


def write_file(directory: Path, vectors: Mapping[str, BitMap],
               algorithm: str) -> dict[str, DeletionVector]:
    """Write one deletion vector file holding a vector per data file (path -> positions)."""
    name = f"deletion_vector_{uuid.uuid4()}.bin"
    out: dict[str, DeletionVector] = {}
    parts = [bytes([FILE_FORMAT_VERSION])]
    offset = 1
    for path, positions in vectors.items():
        data = serialize(positions)
        out[path] = DeletionVector(name, offset, len(data), len(positions),
                                   hash_bytes(algorithm, data))
        parts += [struct.pack(">I", len(data)), data, struct.pack(">I", zlib.crc32(data))]
        offset += 8 + len(data)
    target = directory / name
    with target.open("wb") as handle:
        handle.write(b"".join(parts))
        handle.flush()
        os.fsync(handle.fileno())
    return out


def read(directory: Path, vector: DeletionVector) -> BitMap:
    """The positions a stored vector deletes, checked against its size and CRC."""
    return deserialize(read_bytes(directory, vector))


def read_bytes(directory: Path, vector: DeletionVector) -> bytes:
    path = directory / vector.file
    try:
        with path.open("rb") as handle:
            handle.seek(vector.offset)
            head = handle.read(4)
            data = handle.read(vector.size)
            crc = handle.read(4)
    except FileNotFoundError:
        raise StoreError(f"deletion vector file {vector.file} is missing") from None
    if len(head) < 4 or struct.unpack(">I", head)[0] != vector.size or len(data) != vector.size:
        raise StoreError(f"deletion vector in {vector.file} at {vector.offset} has the wrong size")
    if len(crc) < 4 or struct.unpack(">I", crc)[0] != zlib.crc32(data):
        raise StoreError(f"deletion vector in {vector.file} at {vector.offset} fails its CRC")
    return data


def positions_array(positions: BitMap) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The deleted positions, sorted, as a NumPy array."""
    return np.asarray(positions.to_array(), dtype=np.int64)


def live_mask(deleted: np.ndarray[Any, np.dtype[np.int64]], start: int,
              length: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True for the rows ``start .. start+length`` of a file that ``deleted`` (sorted
    positions, see ``positions_array``) does not name."""
    mask = np.ones(length, dtype=np.bool_)
    lo, hi = np.searchsorted(deleted, [start, start + length])
    mask[deleted[lo:hi] - start] = False
    return mask


def z85_encode(data: bytes) -> str:
    """Z85 (ZeroMQ's base 85), the encoding Delta uses for UUIDs in the log."""
    if len(data) % 4:
        raise ValueError("Z85 encodes multiples of 4 bytes")
    out: list[str] = []
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i:i + 4], "big")
        chunk: list[str] = []
        for _ in range(5):
            value, digit = divmod(value, 85)
            chunk.append(_Z85[digit])
        out.extend(reversed(chunk))
    return "".join(out)


def z85_decode(text: str) -> bytes:
    if len(text) % 5:
        raise ValueError("Z85 text comes in groups of 5 characters")
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for char in text[i:i + 5]:
            value = value * 85 + _Z85_VALUES[char]
        out += value.to_bytes(4, "big")
    return bytes(out)
