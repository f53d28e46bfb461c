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

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from dataferry.connectors.postgres import reading as r
from dataferry.connectors.postgres.connection import ident

Values = Sequence[bytes | None]
"""One column of decoded changes: each value's binary form, None for NULL."""
Decoder = Callable[[Values], pa.Array]

_DAYS_2000 = 10_957  # 2000-01-01 (PostgreSQL's epoch) in days since 1970-01-01
_MICROS_2000 = _DAYS_2000 * 86_400_000_000


def _fixed(values: Values, dtype: str, arrow: pa.DataType,
           shift: Callable[[np.ndarray], np.ndarray] | None = None) -> pa.Array:
    """Fixed-width big-endian values (``dtype``, e.g. ``>i8``) as an Arrow array."""
    width = np.dtype(dtype).itemsize
    present = [v for v in values if v is not None]
    data = b"".join(present)
    if len(data) != width * len(present):
        raise r.BadValue(f"has a binary value that is not {width} bytes long (a changed "
                         "type at the source? read it again with ferry run --full)")
    numbers = np.frombuffer(data, dtype=dtype).astype(dtype[1:])
    if shift is not None:
        numbers = shift(numbers)
    if len(present) == len(values):
        return pa.array(numbers, type=arrow)
    mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    full = np.zeros(len(values), dtype=numbers.dtype)
    full[~mask] = numbers
    return pa.array(full, type=arrow, mask=mask)


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


def _text(values: Values) -> pa.Array:
    return pa.array(values, pa.binary()).cast(pa.string())  # checks the UTF-8


def _jsonb(values: Values) -> pa.Array:
    """jsonb's binary form: a version byte (1) and the value's text."""
    if any(v is not None and v[:1] != b"\x01" for v in values):
        raise r.BadValue("has a jsonb value of an unknown binary version")
    return _text([None if v is None else v[1:] for v in values])


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
    r.BYTEA: lambda v: pa.array(v, pa.binary()),
    r.UUID: lambda v: pa.array(v, pa.binary(16)),
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

