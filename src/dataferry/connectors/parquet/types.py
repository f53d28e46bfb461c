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
uuid                        string, the 36-character text
json                        string, the JSON text
interval                    string, the ISO 8601 duration text (``P1Y2M-3DT4H5M6.5S``):
                            Parquet has no type for Arrow's month_day_nano intervals
list<T>, map<K,V>, struct   list, map and struct of the forms above
==========================  ===========================================================

Each top-level field carries ``{"dataferry.type": <declared type>}`` in its metadata.
"""

from __future__ import annotations

from typing import assert_never

import pyarrow as pa

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
