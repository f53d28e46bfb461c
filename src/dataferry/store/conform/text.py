"""Strings, binaries and UUIDs (16 bytes in Arrow, 36 characters as text)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType, Primitive, String
from dataferry.store.conform.interval_values import _to_interval
from dataferry.store.conform.kinds import _BYTES, _TEXT
from dataferry.store.conform.rejections import _cast, _first, _python, _reject
from dataferry.uuids import pack_uuid_text


def _to_string(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind == "fixed_size_binary" and tag == Primitive("uuid"):
        a = _uuid_text(a)
    elif pa.types.is_interval(a.type) or pa.types.is_duration(a.type):
        a = _to_interval(a, kind, declared, tag)
        if a is None:
            return None
    elif kind in _BYTES:
        a = _cast(a, pa.string(), declared, lambda v: "is not valid UTF-8 text",
                  "declare the column binary, or fix the encoding at the source")
    elif kind not in _TEXT:
        return None
    a = pc.cast(a, pa.string())
    if isinstance(declared, String):
        index = _first(pc.greater(pc.utf8_length(a), declared.length))
        if index is not None:
            length = len(_python(a, index))
            _reject(a, index, f"has {length} characters, more than {declared} allows",
                    f"shorten it at the source, or declare string({length}) or string",
                    declared)
    return a


def _to_binary(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in (*_BYTES, *_TEXT, "fixed_size_binary"):
        return pc.cast(a, pa.binary())
    return None


_UUID_TEXT = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$"


def _to_uuid(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    hint = "write UUIDs as 36-character text (8-4-4-4-12 hex digits), 32 hex digits or 16 bytes"
    if kind == "fixed_size_binary" or kind in _BYTES:
        index = _first(pc.not_equal(pc.binary_length(a), 16))
        if index is not None:
            length = pc.binary_length(a)[index].as_py()
            _reject(a, index, f"has {length} bytes, a UUID has 16", hint, declared)
        return pc.cast(pc.cast(a, pa.binary()), pa.binary(16))
    if kind not in _TEXT:
        return None
    lower = pc.utf8_lower(a)
    index = _first(pc.invert(pc.match_substring_regex(lower, _UUID_TEXT)))
    if index is not None:
        _reject(a, index, "is not a UUID", hint, declared)
    return pack_uuid_text(lower)


def _uuid_text(array: pa.Array) -> pa.Array:
    """36-character UUID text of 16-byte values (vectorised: a hex table lookup in numpy)."""
    count = len(array)
    start = array.offset * 16
    raw = np.frombuffer(array.buffers()[1], np.uint8, 16 * count, start).reshape(count, 16)
    text = np.empty((count, 36), np.uint8)
    # Each byte becomes two hex digits: one lookup of a 2-byte table entry per byte.
    digits = _HEX_PAIRS[raw].view(np.uint8)
    for (low, high), at in zip(_UUID_GROUPS, (0, 9, 14, 19, 24), strict=True):
        text[:, at:at + high - low] = digits[:, low:high]
        if at:
            text[:, at - 1] = ord("-")
    offsets = np.arange(0, 36 * count + 1, 36, dtype=np.int32)
    validity = array.buffers()[0] if array.null_count else None
    if validity is not None and array.offset:
        validity = pc.is_valid(array).buffers()[1]
    return pa.Array.from_buffers(pa.string(), count,
                                 [validity, pa.py_buffer(offsets), pa.py_buffer(text)],
                                 null_count=array.null_count)


_HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint16)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digits of 8-4-4-4-12
