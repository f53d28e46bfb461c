"""PostgreSQL column types and the dataferry types, both ways.

Reading (``PostgresSource``): each PostgreSQL type becomes the nearest Arrow type with
the exact value; the store's conform step then converts it to the declared type.

=================================== ==========================================================
PostgreSQL                          Arrow produced
=================================== ==========================================================
smallint, integer, bigint           int16, int32, int64
real, double precision              float32, float64
numeric(p,s), p <= 76, 0 <= s <= p  decimal128(p,s) (p <= 38) or decimal256(p,s); a NaN or
                                    infinity in such a column is a ``SourceError``
numeric (no precision), money,      string: the exact decimal text (``nan``, ``inf`` and
numeric(p,s) with p > 76 or s < 0   ``-inf`` for the special values)
boolean                             bool
text, varchar(n), char(n), name,    string (char(n) keeps its trailing blanks, as
"char", enum types                  PostgreSQL sends them)
bytea                               binary
date                                date32 (``infinity`` is a ``SourceError``)
time                                time64[us] (``24:00:00`` is a ``SourceError``)
timestamp                           timestamp[us] (``infinity`` is a ``SourceError``)
timestamptz                         timestamp[us, UTC]
json, jsonb                         string: the JSON text (jsonb as PostgreSQL prints it)
uuid                                fixed_size_binary(16), field tagged ``dataferry.type:
                                    uuid`` (conform turns it into text for string columns)
interval                            string in ISO 8601 (``P1Y2M3DT4H5M6.5S``), field tagged
                                    ``dataferry.type: interval`` (the store keeps that text;
                                    read in binary and printed as PostgreSQL prints it)
time with time zone                 string (``12:34:56+05:30``): no Arrow type keeps the offset
oid                                 int64 (an oid is unsigned 32-bit)
composite (row) types               string: the row as JSON text (declare ``json``)
arrays of the types above           list<...> of the element's Arrow type; arrays of other
                                    element types are list<string>; a multi-dimensional array
                                    value is a ``SourceError`` (Arrow lists have one level)
anything else (inet, xml, ranges,   string: PostgreSQL's text form
geometry, tsvector, bit...)
domains                             as their base type
=================================== ==========================================================

Writing (``PostgresSink``): each declared type gets the nearest column type
(``native_type``); nested types are stored natively where PostgreSQL can:

=============================== ===============================================================
declared                        PostgreSQL column
=============================== ===============================================================
bool                            boolean
int8, int16, uint8              smallint
int32, uint16                   integer
int64, uint32                   bigint
uint64                          numeric(20,0)
float16, bfloat16, float8_*,    real (the exact value; the low-precision types are subsets of
float32                         float32)
float64                         double precision
decimal(p,s)                    numeric(p,s)
string / string(n)              text / varchar(n) (n > 10485760: text)
binary                          bytea
date, time                      date, time (microseconds)
timestamp, timestamp_tz         timestamp, timestamptz
uuid                            uuid
interval                        interval (written from ISO 8601 text as months, days and
                                microseconds, as PostgreSQL keeps them)
json                            jsonb (the same JSON value; PostgreSQL normalises its text:
                                spacing, key order, the last of duplicate keys)
list<T>, T a scalar type        T[] (a PostgreSQL array of T's column type)
list<T> for nested or json T,   jsonb: JSON arrays, objects (map keys as text, struct fields by
map<K,V>, struct<...>           name); decimals, dates, times and timestamps as JSON strings,
                                binary as base64 strings, NaN/Infinity floats as strings
=============================== ===============================================================

An existing column may be wider than the declared type (bigint for int32, text for
string(10) or interval, numeric for any integer or decimal, jsonb or json for json and nested types);
a narrower one is widened with ``ALTER COLUMN TYPE`` (``widened_type``).
"""

from __future__ import annotations

import re

from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    family,
    is_widening,
)

MAX_VARCHAR = 10_485_760
JSON_NATIVE = "jsonb"

_NATIVE = {
    "bool": "boolean", "int8": "smallint", "int16": "smallint", "int32": "integer",
    "int64": "bigint", "uint8": "smallint", "uint16": "integer", "uint32": "bigint",
    "uint64": "numeric(20,0)", "float16": "real", "bfloat16": "real", "float8_e4m3": "real",
    "float8_e5m2": "real", "float32": "real", "float64": "double precision", "string": "text",
    "binary": "bytea", "date": "date", "time": "time without time zone",
    "timestamp": "timestamp without time zone", "timestamp_tz": "timestamp with time zone",
    "uuid": "uuid", "json": JSON_NATIVE, "interval": "interval",
}
# What an existing column of each type holds exactly, as a declared type.
_HOLDS: dict[str, DataType] = {
    "boolean": Primitive("bool"), "smallint": Primitive("int16"),
    "integer": Primitive("int32"), "bigint": Primitive("int64"),
    "real": Primitive("float32"), "double precision": Primitive("float64"),
    "text": Primitive("string"), "character varying": Primitive("string"),
    "bytea": Primitive("binary"), "date": Primitive("date"),
    "time without time zone": Primitive("time"),
    "timestamp without time zone": Primitive("timestamp"),
    "timestamp with time zone": Primitive("timestamp_tz"), "uuid": Primitive("uuid"),
    "interval": Primitive("interval"),
}
_NUMERIC = re.compile(r"numeric\((\d+),(-?\d+)\)")
_VARCHAR = re.compile(r"character varying\((\d+)\)")
# interval with fields or a precision (``interval year to month``, ``interval(3)``)
_INTERVAL = re.compile(r"interval( [a-z ]+)?(\(\d\))?")


def is_array_item(t: DataType) -> bool:
    """Whether ``list<t>`` is stored as a PostgreSQL array (else as jsonb)."""
    return isinstance(t, Decimal | String) or (isinstance(t, Primitive) and t.name != "json")


def native_type(t: DataType) -> str:
    """The column type for declared type ``t``, spelled as PostgreSQL's ``format_type``
    prints it (so an existing column can be compared as text)."""
    match t:
        case Primitive(name):
            return _NATIVE[name]
        case Decimal(precision, scale):
            return f"numeric({precision},{scale})"
        case String(length):
            return f"character varying({length})" if length <= MAX_VARCHAR else "text"
        case ListType(item) if is_array_item(item):
            return native_type(item) + "[]"
        case _:
            return JSON_NATIVE


def holds(native: str) -> DataType | None:
    """The declared type an existing column of type ``native`` holds exactly, or None when
    no single one does (numeric without precision, json, other types)."""
    if native.endswith("[]"):
        item = holds(native[:-2])
        return ListType(item) if item is not None else None
    if native in _HOLDS:
        return _HOLDS[native]
    if match := _NUMERIC.fullmatch(native):
        precision, scale = int(match[1]), int(match[2])
        return Decimal(precision, scale) if 0 <= scale <= precision <= 76 else None
    if match := _VARCHAR.fullmatch(native):
        return String(int(match[1]))
    if _INTERVAL.fullmatch(native):
        return Primitive("interval")
    return None


def writable(t: DataType, native: str) -> bool:
    """Whether every value of declared type ``t`` fits a column of type ``native`` exactly."""
    if native == native_type(t):
        return True
    if native in ("jsonb", "json"):
        return t == Primitive("json") or isinstance(t, ListType | MapType | StructType)
    if native == "numeric":
        return isinstance(t, Decimal) or family(t) == "integer"
    if native.endswith("[]") and isinstance(t, ListType):
        return writable(t.item, native[:-2])
    if native.startswith("interval"):
        return False  # interval(3), interval year to month...: PostgreSQL rounds the value
    if t == Primitive("interval") and native == "text":
        return True  # its ISO 8601 text, e.g. a column made when it was declared string
    held = holds(native)
    return held is not None and is_widening(t, held)


def widened_type(t: DataType, native: str) -> str | None:
    """The column type to ``ALTER`` a ``native`` column to so it holds ``t``: None when
    the column's values would not all keep their meaning (then the table is incompatible).
    """
    held = holds(native)
    if held is None or not is_widening(held, t):
        return None
    if isinstance(t, ListType) and not is_array_item(t.item):
        return None  # an array cannot become jsonb in place
    return native_type(t)
