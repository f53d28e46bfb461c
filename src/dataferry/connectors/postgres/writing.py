"""Arrow arrays in the exact form ADBC's binary COPY needs for a given column type.

ADBC writes each Arrow type in one PostgreSQL binary format (int32 as ``integer``, a
string as ``text``...), and binary COPY does not convert: an int32 array cannot go into a
``bigint`` column as it is. ``encoder(native)`` returns the conversion for a target column
type: integer widths, uuid text to its 16 bytes, JSON text marked as JSON (ADBC then adds
jsonb's version byte), ISO 8601 interval text to month_day_nano, nested values to JSON
text, list items recursively.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.intervals import IntervalError, to_month_day_nano
from dataferry.model.types import DataType, ListType, MapType, Primitive, StructType
from dataferry.uuids import CANONICAL, pack_uuid_text

Encode = Callable[[pa.Array], pa.Array]

_SCALARS: dict[str, pa.DataType] = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "real": pa.float32(),
    "double precision": pa.float64(), "boolean": pa.bool_(), "bytea": pa.binary(),
    "date": pa.date32(), "time without time zone": pa.time64("us"),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}


class EncodeError(ValueError):
    """A value cannot be written to its column (the sink adds table and column)."""


def _plain(array: pa.Array) -> pa.Array:
    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _cast_to(target: pa.DataType) -> Encode:
    def encode(array: pa.Array) -> pa.Array:
        array = _plain(array)
        if array.type == target:
            return array
        try:
            return pc.cast(array, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise EncodeError(f"cannot be written as {target}: {exc}") from None

    return encode


def _text(declared: DataType | None) -> Encode:
    def encode(array: pa.Array) -> pa.Array:
        array = _plain(array)
        t = array.type
        if pa.types.is_struct(t) or pa.types.is_map(t) or _is_list(t):
            return json_text(array, declared)
        return _cast_to(pa.string())(array)

    return encode


def _jsonb(declared: DataType | None) -> Encode:
    text = _text(declared)

    def encode(array: pa.Array) -> pa.Array:
        return pa.ExtensionArray.from_storage(pa.json_(), text(array))

    return encode


def _numeric(array: pa.Array) -> pa.Array:
    array = _plain(array)
    if pa.types.is_integer(array.type):
        return _cast_to(pa.decimal128(20, 0))(array)
    return array  # decimal128/256: ADBC writes numeric; the column's typmod applies


def _uuid(array: pa.Array) -> pa.Array:
    array = _plain(array)
    if pa.types.is_fixed_size_binary(array.type) or pa.types.is_binary(array.type):
        return _cast_to(pa.binary(16))(array)
    text = _cast_to(pa.string())(array)
    index = _first(pc.invert(pc.match_substring_regex(text, CANONICAL)))
    if index is not None:
        raise EncodeError(f"has {text[index].as_py()!r}, which is not a UUID")
    return pack_uuid_text(text)


def _interval(array: pa.Array) -> pa.Array:
    array = _plain(array)
    if pa.types.is_interval(array.type):
        return array
    text = _cast_to(pa.string())(array)
    try:
        return to_month_day_nano(text)
    except IntervalError as error:
        raise EncodeError(f"has {text[error.index].as_py()!r}, which {error.problem}") from None


def _first(mask: pa.Array) -> int | None:
    index = pc.index(mask, True).as_py()
    return None if index is None or index < 0 else int(index)


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t)
                or pa.types.is_fixed_size_list(t))


def _array_of(item: Encode) -> Encode:
    def encode(array: pa.Array) -> pa.Array:
        array = _plain(array)
        if pa.types.is_fixed_size_list(array.type) or pa.types.is_large_list(array.type):
            array = pc.cast(array, pa.list_(array.type.value_field))
        if not pa.types.is_list(array.type):
            raise EncodeError(f"is {array.type}, not a list")
        values = item(array.values)
        return pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())

    return encode


def encoder(native: str, declared: DataType | None = None) -> Encode:
    """The conversion of arrays bound for a column of type ``native`` (``format_type``
    spelling) declared as ``declared``. Unknown column types get the array as it is
    (PostgreSQL then decides)."""
    if native.endswith("[]"):
        item = declared.item if isinstance(declared, ListType) else None
        return _array_of(encoder(native[:-2], item))
    if native in _SCALARS:
        return _cast_to(_SCALARS[native])
    if native.startswith("numeric"):
        return _numeric
    if native == "uuid":
        return _uuid
    if native == "interval":
        return _interval
    if native == "jsonb":
        return _jsonb(declared)
    if native in ("json", "text") or native.startswith(("character", "varchar")):
        return _text(declared)
    return _plain


# --- nested values as JSON text ---------------------------------------------------------


def json_text(array: pa.Array, declared: DataType | None = None) -> pa.Array:
    """Each value as compact JSON text (see ``types.py``); ``declared`` tells which nested
    strings are JSON text already (json fields), as delivered arrays carry no tags."""
    texts = [None if value is None else json.dumps(_jsonable(value, declared),
                                                    ensure_ascii=False, separators=(",", ":"))
             for value in array.to_pylist()]
    return pa.array(texts, pa.string())


def _key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(key)


def _jsonable(value: Any, declared: DataType | None) -> Any:
    if value is None:
        return None
    match declared:
        case Primitive("json") if isinstance(value, str):
            return json.loads(value)
        case StructType(fields):
            types = dict(fields)
            return {name: _jsonable(item, types.get(name)) for name, item in value.items()}
        case MapType(key, item):
            return {_key(_jsonable(k, key)): _jsonable(v, item) for k, v in value}
        case ListType(item):
            return [_jsonable(v, item) for v in value]
    if isinstance(value, dict):
        return {name: _jsonable(item, None) for name, item in value.items()}
    if isinstance(value, list):  # a list, or a map's (key, value) pairs
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {_key(_jsonable(k, None)): _jsonable(v, None) for k, v in value}
        return [_jsonable(v, None) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, date | time | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
