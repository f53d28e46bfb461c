"""UUID text to 16-byte values, vectorised (conform, the PostgreSQL sink and the Parquet
sink each check the text their own way first, then pack it here)."""

from __future__ import annotations

import struct

import pyarrow as pa
import pyarrow.compute as pc

CANONICAL = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""The 8-4-4-4-12 form, either case."""


def pack_uuid_text(text: pa.Array) -> pa.Array:
    """``fixed_size_binary(16)`` of checked UUID text: every valid value is 32 hex digits,
    in either case, with or without the dashes of the 8-4-4-4-12 form; nulls stay null."""
    digits = pc.fill_null(pc.replace_substring(text, "-", ""), "0" * 32)
    _, offsets, data = digits.buffers()
    start = struct.unpack_from("<i", offsets, 4 * digits.offset)[0]
    raw = bytes.fromhex(data.to_pybytes()[start:start + 32 * len(digits)].decode("ascii"))
    packed = pa.Array.from_buffers(pa.binary(16), len(digits), [None, pa.py_buffer(raw)])
    return pc.if_else(pc.is_valid(text), packed, pa.scalar(None, pa.binary(16)))
