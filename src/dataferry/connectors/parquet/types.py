"""The Arrow types of the Parquet files the parquet sink writes: portable forms of declared types.

Every Arrow and Parquet reader (DuckDB, pandas, Spark, polars) reads these without loss, so
the DuckDB and SQLite sinks start from the same form before they convert further.

==========================  ===========================================================
declared type               Arrow type in the files
==========================  ===========================================================
bool                        bool
int8..int64, uint8..uint64  the same integer type (Parquet INT with its signedness)
float16, bfloat16, float8_* float32 (the exact value)
float32, float64            float32, float64
decimal(p<=38,s)            decimal128(p,s)
decimal(p>38,s)             string, the exact decimal text (DuckDB reads wider decimals
                            as DOUBLE, which would lose digits)
string, string(n)           string
binary                      binary
date                        date32
time                        time64[us]
timestamp                   timestamp[us] (no zone)
timestamp_tz                timestamp[us, UTC]
uuid                        string, the 36-character text (parquet sink: arrow.uuid)
json                        string, the JSON text (parquet sink: arrow.json)
interval                    string, the ISO 8601 duration text (``P1Y2M-3DT4H5M6.5S``):
                            Parquet has no type for Arrow's month_day_nano intervals
list<T>, map<K,V>, struct   list, map and struct of the forms above
==========================  ===========================================================

Each top-level field carries ``{"dataferry.type": <declared type>}`` in its metadata.

The parquet sink's own files (``sink_field``) say more than this portable form: a
top-level uuid column is Arrow's ``arrow.uuid`` extension (16 bytes, the Parquet UUID
logical type) and a top-level json column ``arrow.json`` (the Parquet JSON logical type),
so DuckDB reads them as UUID and JSON and pyarrow as those extension types. Inside lists,
maps and structs they stay text.
"""

from __future__ import annotations

import uuid
from typing import assert_never

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import (
    METADATA_KEY,
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    format_type,
    to_arrow,
    to_arrow_field,
)
from dataferry.store.conform import to_python_friendly
from dataferry.uuids import CANONICAL, pack_uuid_text

_LOW_FLOATS = ("float16", "bfloat16", "float8_e4m3", "float8_e5m2")


def file_type(t: DataType) -> pa.DataType:
    """The Arrow type values of declared type ``t`` have in the files (table above)."""
    match t:
        case Primitive(name) if name in _LOW_FLOATS:
            return pa.float32()
        case Primitive("uuid") | Primitive("json"):
            return pa.string()
        case Primitive():
            return to_arrow(t)
        case Decimal(p, s):
            return pa.decimal128(p, s) if p <= 38 else pa.string()
        case String():
            return pa.string()
        case ListType(item):
            return pa.list_(pa.field("item", file_type(item)))
        case MapType(key, value):
            return pa.map_(pa.field("key", file_type(key), False), pa.field("value", file_type(value)))
        case StructType(fields):
            return pa.struct([pa.field(n, file_type(f)) for n, f in fields])
        case _:
            assert_never(t)


def file_field(name: str, t: DataType, nullable: bool = True) -> pa.Field:
    """The field of a column of declared type ``t``, tagged with ``t``."""
    return pa.field(name, file_type(t), nullable, metadata={METADATA_KEY: format_type(t)})


def to_file_array(array: pa.Array, t: DataType) -> pa.Array:
    """Values of declared type ``t`` in any natural Arrow form -> ``file_type(t)``.

    Accepts what deliveries carry: the declared type's natural form (uuid as 16 bytes or
    text, low-precision floats as raw bits or float32, wide decimals as decimal256 or
    text), dictionary or extension arrays. Values are converted exactly or an Arrow error
    is raised.
    """
    if isinstance(array, pa.ChunkedArray):
        array = pa.concat_arrays(array.chunks) if array.num_chunks else pa.array([], array.type)
    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    target = file_type(t)
    if array.type == target:
        return array
    # Raw bits of low-precision floats and 16-byte uuids are only told apart by their tag.
    natural = to_arrow(t)
    field = (to_arrow_field("v", t) if array.type == natural
             else pa.field("v", array.type))
    batch = pa.RecordBatch.from_arrays([array], schema=pa.schema([field]))
    friendly = to_python_friendly(batch).column(0)
    return friendly if friendly.type == target else friendly.cast(target)


def file_schema(columns: list[tuple[str, DataType, bool]]) -> pa.Schema:
    """The schema of files holding these declared (name, type, nullable) columns."""
    return pa.schema([file_field(n, t, nullable) for n, t, nullable in columns])


def sink_field(name: str, t: DataType, nullable: bool = True) -> pa.Field:
    """The field of the parquet sink's files: ``file_field``, with uuid and json as the Arrow
    extension types that carry the Parquet UUID and JSON logical types."""
    field = file_field(name, t, nullable)
    if t == Primitive("uuid"):
        return field.with_type(pa.uuid())
    if t == Primitive("json"):
        return field.with_type(pa.json_(pa.string()))
    return field


def to_sink_form(array: pa.Array, t: DataType) -> pa.Array:
    """Values of declared type ``t`` in any natural Arrow form -> ``sink_field``'s type (a
    uuid's 16 bytes are kept as they are, not turned into text and back)."""
    if t == Primitive("uuid"):
        if isinstance(array, pa.ChunkedArray):
            array = pa.concat_arrays(array.chunks) if array.num_chunks else pa.array([], array.type)
        storage = array.storage if isinstance(array.type, pa.BaseExtensionType) else array
        if storage.type == pa.binary(16):
            return pa.ExtensionArray.from_storage(pa.uuid(), storage)
    target = sink_field("v", t).type
    return to_sink_array(to_file_array(array, t), target)


def to_sink_array(array: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    """Values in a ``file_type`` form (or as DuckDB hands them back) -> a ``sink_field`` type."""
    if isinstance(array, pa.ChunkedArray):
        array = pa.concat_arrays(array.chunks) if array.num_chunks else pa.array([], array.type)
    if array.type == target:
        return array
    if isinstance(target, pa.UuidType):
        storage = array.storage if isinstance(array.type, pa.BaseExtensionType) else array
        if not pa.types.is_fixed_size_binary(storage.type):
            storage = _uuid_bytes(storage.cast(pa.string()))
        return pa.ExtensionArray.from_storage(target, storage)
    if isinstance(target, pa.JsonType):
        storage = array.storage if isinstance(array.type, pa.BaseExtensionType) else array
        return pa.ExtensionArray.from_storage(target, storage.cast(pa.string()))
    return array.cast(target)


def _uuid_bytes(text: pa.Array) -> pa.Array:
    """Canonical uuid text (``8-4-4-4-12`` hex digits) -> fixed_size_binary(16), vectorized;
    anything else goes through Python's ``uuid.UUID`` (which raises on a bad value)."""
    if pc.all(pc.match_substring_regex(text, CANONICAL)).as_py() is not False:
        return pack_uuid_text(text)
    return pa.array([None if v is None else uuid.UUID(v).bytes for v in text.to_pylist()],
                    pa.binary(16))
