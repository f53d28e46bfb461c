"""Column values a slot sends in binary (pgoutput's ``binary 'true'``, PostgreSQL 14 and
later) turned into Arrow arrays here, without a round trip through the server.

Only for the types whose binary form (the type's ``send`` function) is fixed and simple,
and that a table read selects as they are (no SQL cast in their ``ColumnPlan``): the
integers, floats, bool, text-like types and enums, bytea, uuid, json and jsonb, date,
time, timestamp and timestamptz. Each array is then checked by the same ``fix`` as a
table read's (``reading.py``): ``infinity`` and ``24:00:00`` stop the run with the same
message, so a value reads the same by snapshot or by change. A table with any other
declared column (numeric, interval, arrays...) is read in text and cast by the server.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from dataferry.connectors.postgres import reading as r
from dataferry.connectors.postgres.connection import ident

Decoder = Callable[[pa.Array], pa.Array]
"""One column of decoded changes (each value's binary form in a binary array, NULL for
NULL) -> the Arrow array a table read would give."""

_DAYS_2000 = 10_957  # 2000-01-01 (PostgreSQL's epoch) in days since 1970-01-01
_MICROS_2000 = _DAYS_2000 * 86_400_000_000


def _fixed(values: pa.Array, dtype: str, arrow: pa.DataType,
           shift: Callable[[np.ndarray], np.ndarray] | None = None) -> pa.Array:
    """Fixed-width big-endian values (``dtype``, e.g. ``>i8``) as an Arrow array."""
    width = np.dtype(dtype).itemsize
    count = len(values)
    large = values.type == pa.large_binary()
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32)[
        values.offset:values.offset + count + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else \
        np.zeros(0, dtype=np.uint8)
    missing = values.is_null().to_numpy(zero_copy_only=False)
    present = ~missing
    starts = offsets[:-1][present]
    if ((offsets[1:] - offsets[:-1])[present] != width).any():
        raise r.BadValue(f"has a binary value that is not {width} bytes long (a changed "
                         "type at the source? read it again with ferry run --full)")
    raw = data[(starts[:, None] + np.arange(width)).reshape(-1)]
    numbers = raw.view(dtype).astype(dtype[1:])
    if shift is not None:
        numbers = shift(numbers)
    if not missing.any():
        return pa.array(numbers, type=arrow)
    full = np.zeros(count, dtype=numbers.dtype)
    full[present] = numbers
    return pa.array(full, type=arrow, mask=missing)


def _infinite_below(epoch: int, bits: int) -> Callable[[np.ndarray], np.ndarray]:
    """Days or microseconds since 2000 -> since 1970; +-infinity (the type's extremes)
    -> the smallest value, which the table read's range check refuses as infinity."""
    top, bottom = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))

    def shift(numbers: np.ndarray) -> np.ndarray:
        wide = numbers.astype(np.int64)
        infinite = (wide == top) | (wide == bottom)
        wide = np.where(infinite, 0, wide) + epoch
        out: np.ndarray = np.where(infinite, np.iinfo(np.int64).min if bits == 64 else bottom,
                                   wide).astype(np.int64 if bits == 64 else np.int32)
        return out

    return shift


def _text(values: pa.Array) -> pa.Array:
    return values.cast(pa.string())  # checks the UTF-8


def _jsonb(values: pa.Array) -> pa.Array:
    """jsonb's binary form: a version byte (1) and the value's text."""
    listed = values.to_pylist()
    if any(v is not None and v[:1] != b"\x01" for v in listed):
        raise r.BadValue("has a jsonb value of an unknown binary version")
    return _text(pa.array([None if v is None else v[1:] for v in listed], pa.binary()))


def _uuid(values: pa.Array) -> pa.Array:
    try:
        return values.cast(pa.binary(16))
    except pa.ArrowInvalid:
        raise r.BadValue("has a binary value that is not 16 bytes long (a changed type at "
                         "the source? read it again with ferry run --full)") from None


DECODERS: dict[int, Decoder] = {
    r.BOOL: lambda v: _fixed(v, ">u1", pa.uint8()).cast(pa.bool_()),
    r.INT2: lambda v: _fixed(v, ">i2", pa.int16()),
    r.INT4: lambda v: _fixed(v, ">i4", pa.int32()),
    r.INT8: lambda v: _fixed(v, ">i8", pa.int64()),
    r.FLOAT4: lambda v: _fixed(v, ">f4", pa.float32()),
    r.FLOAT8: lambda v: _fixed(v, ">f8", pa.float64()),
    r.DATE: lambda v: _fixed(v, ">i4", pa.date32(), _infinite_below(_DAYS_2000, 32)),
    r.TIME: lambda v: _fixed(v, ">i8", pa.time64("us")),
    r.TIMESTAMP: lambda v: _fixed(v, ">i8", pa.timestamp("us"),
                                  _infinite_below(_MICROS_2000, 64)),
    r.TIMESTAMPTZ: lambda v: _fixed(v, ">i8", pa.timestamp("us", tz="UTC"),
                                    _infinite_below(_MICROS_2000, 64)),
    r.TEXT: _text, r.VARCHAR: _text, r.BPCHAR: _text, r.JSON: _text, r.JSONB: _jsonb,
    r.BYTEA: lambda v: v.cast(pa.binary()),
    r.UUID: _uuid,
}


def decoder(source: str, info: r.TypeInfo, plan: r.ColumnPlan
            ) -> Decoder | None:
    """How column ``source``'s binary values become the Arrow array a table read would
    give (None: the type is not one of these; the server must cast its text)."""
    if info.element or plan.dims_check or plan.expr != ident(source):
        return None
    if info.kind == "e":
        return _text
    if info.kind != "b" and info.kind != "d":
        return None
    return DECODERS.get(info.oid)

