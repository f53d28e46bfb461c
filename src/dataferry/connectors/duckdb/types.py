"""DuckDB types: what the sink creates for each model type, what the source hands over.

The sink creates (``native_type``):

==========================  ==========================================================
model type                  DuckDB type
==========================  ==========================================================
bool                        BOOLEAN
int8, int16, int32, int64   TINYINT, SMALLINT, INTEGER, BIGINT
uint8..uint64               UTINYINT, USMALLINT, UINTEGER, UBIGINT
float16, bfloat16, float8_* FLOAT (holds every value exactly)
float32, float64            FLOAT, DOUBLE
decimal(p<=38,s)            DECIMAL(p,s)
decimal(p>38,s)             VARCHAR, the exact decimal text (DuckDB decimals stop at 38)
string, string(n)           VARCHAR
binary                      BLOB
date, time                  DATE, TIME
timestamp, timestamp_tz     TIMESTAMP, TIMESTAMPTZ (instants; shown in the session zone)
uuid                        UUID
json                        JSON (the json extension, built into the Python package);
                            VARCHAR if it cannot be loaded offline
interval                    INTERVAL (the store's ISO 8601 text, handed over as Arrow
                            month_day_nano: DuckDB does not parse ISO 8601 durations)
list<T>                     T[]
map<K,V>                    MAP(K, V)
struct<a:T, ...>            STRUCT("a" T, ...)
==========================  ==========================================================

The source hands DuckDB's own Arrow export over (it is exact: TIMESTAMPTZ as
timestamp[us, UTC], UUID and JSON as text, ENUM as dictionary-encoded text, nested types
as Arrow nested types), except for the types below, read as their exact text
(``source_cast``): HUGEINT and UHUGEINT (DuckDB exports them as decimal128(38,0), which
cannot hold all their values), INTERVAL (unless declared ``interval``: then its Arrow
month_day_nano export), TIME WITH TIME ZONE, BIT, BIGNUM/VARINT, UNION
and anything nesting them. A VARCHAR or JSON column whose model type is a list, map or
struct is parsed as JSON into that type.
"""

from __future__ import annotations

import re
from typing import assert_never

from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
)

_PRIMITIVES = {
    "bool": "BOOLEAN", "int8": "TINYINT", "int16": "SMALLINT", "int32": "INTEGER",
    "int64": "BIGINT", "uint8": "UTINYINT", "uint16": "USMALLINT", "uint32": "UINTEGER",
    "uint64": "UBIGINT", "float16": "FLOAT", "bfloat16": "FLOAT", "float8_e4m3": "FLOAT",
    "float8_e5m2": "FLOAT", "float32": "FLOAT", "float64": "DOUBLE", "string": "VARCHAR",
    "binary": "BLOB", "date": "DATE", "time": "TIME", "timestamp": "TIMESTAMP",
    "timestamp_tz": "TIMESTAMPTZ", "uuid": "UUID", "json": "JSON",
    "interval": "INTERVAL",
}


def quote(name: str) -> str:
    """A safely quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def native_type(t: DataType, json: bool = True) -> str:
    """The DuckDB type of a column of model type ``t`` (table above); ``json=False``: no
    JSON type available, use VARCHAR."""
    match t:
        case Primitive("json"):
            return "JSON" if json else "VARCHAR"
        case Primitive(name):
            return _PRIMITIVES[name]
        case Decimal(p, s):
            return f"DECIMAL({p},{s})" if p <= 38 else "VARCHAR"
        case String():
            return "VARCHAR"
        case ListType(item):
            return f"{native_type(item, json)}[]"
        case MapType(key, value):
            return f"MAP({native_type(key, json)}, {native_type(value, json)})"
        case StructType(fields):
            inner = ", ".join(f"{quote(n)} {native_type(f, json)}" for n, f in fields)
            return f"STRUCT({inner})"
        case _:
            assert_never(t)


_AS_TEXT = re.compile(r"\b(HUGEINT|UHUGEINT|INTERVAL|TIME WITH TIME ZONE|BIT|BIGNUM|VARINT|"
                      r"UNION)\b")


def source_cast(native: str, declared: DataType | None) -> str | None:
    """The DuckDB type to cast a source column of type ``native`` to, or None to keep it."""
    if isinstance(declared, ListType | MapType | StructType) and native.upper() in (
            "VARCHAR", "JSON"):
        return native_type(declared)
    if declared == Primitive("interval") and native.upper() == "INTERVAL":
        return None  # exported as month_day_nano, which conform writes as ISO 8601 text
    if _AS_TEXT.search(native.upper().replace('"', " ")):
        return "VARCHAR"
    return None
