"""Render Arrow columns as the text MariaDB parses back into exactly the same values.

Every column of a batch becomes a string array (nulls kept) with vectorised Arrow casts
where possible: integers and floats in their shortest round-trip form (float32 widened
to float64 first, so the server rounds to the same float), decimals as exact decimal
text, dates/times/timestamps in ISO form (zone-aware timestamps as their UTC wall-clock
time), binary as hex. ``bulk.py`` then quotes them for ``LOAD DATA`` or for an
``INSERT`` statement.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import date, datetime, time
from decimal import Decimal as PyDecimal
from enum import Enum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.mysql.types import decimal_as_text, stored_as_json
from dataferry.errors import SinkError
from dataferry.model.types import DataType, Decimal, Primitive, family


class Form(Enum):
    """How a rendered value goes into SQL text."""

    NUMBER = "number"  # bare: 12, -1.5e+300
    TEXT = "text"  # quoted: 'it''s'
    HEX = "hex"  # X'00ff' (in LOAD DATA: UNHEX(..))


_NUMBERS = ("bool", "integer", "float")  # families (an interval's name starts with "int")


def form_of(t: DataType) -> Form:
    """Bare numbers for bool, integers and floats; hex for binary; quoted text otherwise
    (decimals too: a bare 1E-30 would be a DOUBLE literal)."""
    if isinstance(t, Primitive) and family(t) in _NUMBERS:
        return Form.NUMBER
    return Form.HEX if t == Primitive("binary") else Form.TEXT


def render(column: pa.Array | pa.ChunkedArray, t: DataType, where: str) -> pa.Array:
    """``column`` (of declared type ``t``) as a string array of MariaDB input text.

    Raises ``SinkError`` naming ``where`` (table and column) for a value MariaDB cannot
    store: NaN or an infinity in a float column.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), pa.string())
    if stored_as_json(t) and not pa.types.is_string(column.type) \
            and not pa.types.is_large_string(column.type):
        return _json(column, where)
    if isinstance(t, Decimal) and decimal_as_text(t):
        return pa.array([None if v is None else format(v, "f") for v in column.to_pylist()],
                        pa.string())
    kind = column.type
    if pa.types.is_boolean(kind):
        return column.cast(pa.int8()).cast(pa.string())
    if pa.types.is_floating(kind):
        finite = pc.is_finite(column)
        if pc.any(pc.invert(finite)).as_py():
            raise SinkError(f"{where} holds NaN or an infinity, which MariaDB cannot store; "
                            "filter those rows (where:) or map them to NULL upstream",
                            public=True)
        return column.cast(pa.float64()).cast(pa.string())
    if pa.types.is_timestamp(kind):
        return column.cast(pa.timestamp("us")).cast(pa.string())
    if pa.types.is_time(kind):
        return column.cast(pa.time64("us")).cast(pa.string())
    if pa.types.is_fixed_size_binary(kind) and t == Primitive("uuid"):
        return pa.array([None if v is None else str(uuid.UUID(bytes=v))
                         for v in column.to_pylist()], pa.string())
    if t == Primitive("binary") or pa.types.is_binary(kind) or pa.types.is_large_binary(kind) \
            or pa.types.is_fixed_size_binary(kind):
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()],
                        pa.string())
    return column.cast(pa.string())


def _json(column: pa.Array, where: str) -> pa.Array:
    texts = []
    for value in column.to_pylist():
        try:
            texts.append(None if value is None else json.dumps(
                _jsonable(value, column.type), ensure_ascii=False, separators=(",", ":"),
                allow_nan=False))
        except ValueError:
            raise SinkError(f"{where} holds NaN or an infinity inside a nested value, which "
                            "JSON cannot represent", public=True) from None
    return pa.array(texts, pa.string())


def _jsonable(value: Any, kind: pa.DataType) -> Any:
    """A nested Arrow value as JSON: maps as objects with text keys, decimals, dates and
    times as strings, binary as base64."""
    if value is None:
        return None
    if pa.types.is_map(kind):
        return {_key(k, kind.key_type): _jsonable(v, kind.item_type) for k, v in value}
    if pa.types.is_struct(kind):
        return {f.name: _jsonable(value.get(f.name), f.type) for f in kind}
    if isinstance(value, list):
        return [_jsonable(v, kind.value_type) for v in value]
    if isinstance(value, PyDecimal):
        return format(value, "f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _key(key: Any, kind: pa.DataType) -> str:
    plain = _jsonable(key, kind)
    return plain if isinstance(plain, str) else json.dumps(plain)
