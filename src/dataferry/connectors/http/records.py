"""JSON records to Arrow batches, exactly (shared by the HTTP source and JSON Lines files).

Parsing (``loads``): a JSON number with a fraction or an exponent is kept as its text, a
``JsonNumber`` (a ``str``), and an integer is a Python ``int`` (any size). Nothing is
rounded on the way in: ``0.1`` reaches a ``decimal(p,s)`` column as ``"0.1"``, a float32
column is rounded once, from the text, by the store's conform step, and a 30-digit
integer stays whole.

Each declared column is handed over in its **transport type**: the declared shape (lists,
structs and maps stay nested) with every scalar leaf as text (``transport_type``):

- text values as they are; integers as their digits; ``true``/``false``; numbers with a
  fraction or exponent as written in the JSON;
- ``json`` columns: the value re-serialized as compact JSON (numbers as written);
  a JSON ``null`` is a missing value, not the JSON text ``null``;
- a JSON object or array where a scalar is declared: its compact JSON text (conform then
  names the row if that text is not, say, an integer; a ``string`` column keeps it);
- ``list<T>`` takes a JSON array, ``struct<..>`` an object (fields by name; absent keys are
  nulls, undeclared keys are dropped), ``map<K,V>`` an object (keys are its member names);
  anything else there is a ``ShapeError`` naming the column and record.

Conform turns the text into the declared types (dates, timestamps with offsets, uuids,
decimals...), so every source of JSON converts the same way. A declared column that is
absent from a record is null in that record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from dataferry.connectors.base import SourceColumn
from dataferry.model.types import DataType, ListType, MapType, Primitive, StructType

__all__ = [
    "JsonNumber",
    "ShapeError",
    "dump",
    "infer_columns",
    "json_kind",
    "loads",
    "records_batch",
    "transport_schema",
    "transport_type",
]

_JSON = Primitive("json")


class JsonNumber(str):
    """A JSON number with a fraction or exponent, kept as the text it was written as."""

    __slots__ = ()


_DECODER = json.JSONDecoder(parse_float=JsonNumber)
_quote: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or \
    json.encoder.py_encode_basestring


def loads(data: str | bytes) -> Any:
    """Parse JSON keeping numbers exact (see the module docstring); bytes are UTF-8."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return _DECODER.decode(data.removeprefix("\ufeff"))


def dump(value: Any) -> str:
    """Compact JSON text of a parsed value; ``JsonNumber`` values are written as they were."""
    if isinstance(value, JsonNumber):
        return str.__str__(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_quote(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    return int.__repr__(value) if isinstance(value, int) else json.dumps(value)


def json_kind(value: Any) -> str:
    """The JSON type name of a parsed value: object, array, string, integer, number..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, JsonNumber | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


class ShapeError(ValueError):
    """A JSON value whose shape cannot hold the declared nested type."""

    def __init__(self, column: str, row: int, declared: DataType, value: Any) -> None:
        expected = "an array" if isinstance(declared, ListType) else "an object"
        super().__init__(f"column {column!r}: expected {expected} for the declared "
                         f"{declared}, got {_article(json_kind(value))}")
        self.column, self.row = column, row


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def transport_type(t: DataType) -> pa.DataType:
    """The Arrow type a declared type is handed over in: its shape with text leaves."""
    match t:
        case ListType(item):
            return pa.list_(pa.field("item", transport_type(item)))
        case StructType(fields):
            return pa.struct([pa.field(n, transport_type(f)) for n, f in fields])
        case MapType(_, value):
            return pa.map_(pa.field("key", pa.string(), nullable=False),
                           pa.field("value", transport_type(value)))
    return pa.string()


def transport_schema(columns: Sequence[tuple[str, DataType]]) -> pa.Schema:
    """The schema of ``records_batch`` for these declared (name, type) columns."""
    return pa.schema([pa.field(name, transport_type(t)) for name, t in columns])


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return dump(value)


class _Mismatch(Exception):
    def __init__(self, declared: DataType, value: Any) -> None:
        self.declared, self.value = declared, value


def _convert(value: Any, t: DataType) -> Any:
    """A parsed JSON value as the Python value of ``transport_type(t)``."""
    if value is None:
        return None
    match t:
        case ListType(item):
            if not isinstance(value, list):
                raise _Mismatch(t, value)
            return [_convert(v, item) for v in value]
        case StructType(fields):
            if not isinstance(value, dict):
                raise _Mismatch(t, value)
            return {name: _convert(value.get(name), f) for name, f in fields}
        case MapType(_, item):
            if not isinstance(value, dict):
                raise _Mismatch(t, value)
            return [(str(k), _convert(v, item)) for k, v in value.items()]
    return dump(value) if t == _JSON else _text(value)


def column_array(name: str, values: list[Any], t: DataType) -> pa.Array:
    """The transport array of one column's values (``ShapeError`` for a wrong shape)."""
    if t == _JSON:
        return pa.array([None if v is None else dump(v) for v in values], pa.string())
    if not isinstance(t, ListType | StructType | MapType):
        try:  # fast path: all text, all integers or all booleans
            inferred = pa.array(values, from_pandas=False)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            inferred = None
        if inferred is not None:
            kind = inferred.type
            if pa.types.is_string(kind):
                return inferred
            if pa.types.is_null(kind):
                return pa.nulls(len(values), pa.string())
            if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
                return inferred.cast(pa.string())
        return pa.array([_text(v) for v in values], pa.string())
    converted = []
    for row, value in enumerate(values):
        try:
            converted.append(_convert(value, t))
        except _Mismatch as mismatch:
            raise ShapeError(name, row, mismatch.declared, mismatch.value) from None
    return pa.array(converted, transport_type(t), from_pandas=False)


def records_batch(
    records: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, DataType]],
    schema: pa.Schema | None = None,
) -> pa.RecordBatch:
    """One batch of ``records`` (parsed JSON objects) in ``transport_schema(columns)``.

    Raises ``ShapeError`` (``row`` = index in ``records``) for a value of the wrong shape.
    """
    schema = schema if schema is not None else transport_schema(columns)
    arrays = [column_array(name, [r.get(name) for r in records], t) for name, t in columns]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


_SCALAR_KINDS = frozenset({"string", "integer", "number", "boolean", "null"})


def _accepts(t: DataType, kinds: set[str]) -> bool:
    if t == _JSON:
        return True
    if isinstance(t, ListType):
        return kinds <= {"array", "null"}
    if isinstance(t, StructType | MapType):
        return kinds <= {"object", "null"}
    return kinds <= _SCALAR_KINDS


def _plain(value: Any) -> Any:
    if isinstance(value, JsonNumber):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _inferred(values: list[Any]) -> pa.DataType:
    try:
        return pa.array([_plain(v) for v in values], from_pandas=False).type
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.string()


def infer_columns(
    records: Iterable[Mapping[str, Any]], declared: Mapping[str, DataType]
) -> list[SourceColumn]:
    """The keys of ``records`` in order of first appearance, as live columns.

    ``native_type`` lists the JSON types seen (``integer | null``). A declared column whose
    values all fit its declared shape reports its transport type (what a read produces);
    any other key reports the Arrow type inferred from its values, so drift detection sees
    e.g. an object where an integer is declared.
    """
    values: dict[str, list[Any]] = {}
    for count, record in enumerate(records):
        for key in record:
            values.setdefault(key, [None] * count)
        for key, column in values.items():
            column.append(record.get(key))
    found = []
    for key, column in values.items():
        kinds = {json_kind(v) for v in column}
        native = " | ".join(sorted(kinds))
        t = declared.get(key)
        arrow = transport_type(t) if t is not None and _accepts(t, kinds) else _inferred(column)
        found.append(SourceColumn(key, native, arrow, nullable=True))
    return found
