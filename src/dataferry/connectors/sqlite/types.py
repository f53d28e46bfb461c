"""SQLite types: what the sink declares for each model type, what the source reads as what.

SQLite is dynamically typed: a column's declared type only gives it an *affinity*
(INTEGER, REAL, TEXT, BLOB or NUMERIC, by the rules of https://sqlite.org/datatype3.html),
and every value carries its own storage class.

The sink declares (``native_type``):

==========================  ============  =================================================
model type                  declared      stored value
==========================  ============  =================================================
bool                        BOOLEAN       0 or 1 (NUMERIC affinity keeps integers)
int8..int64, uint8..uint32  INTEGER       the integer
uint64                      TEXT          decimal digits (may exceed SQLite's int64)
float*                      REAL          the float (SQLite stores NaN as NULL)
decimal(p<=15,s)            DECIMAL(p,s)  the number (NUMERIC affinity: SQLite keeps 15
                                          significant digits, so these are exact)
decimal(p>15,s)             TEXT          the exact decimal text, e.g. ``12.50``
string, string(n)           TEXT          the text
binary                      BLOB          the bytes
date                        DATE          ``YYYY-MM-DD``
time                        TIME          ``HH:MM:SS.ffffff``
timestamp                   TIMESTAMP     ``YYYY-MM-DD HH:MM:SS.ffffff``
timestamp_tz                TIMESTAMP     ``YYYY-MM-DD HH:MM:SS.ffffff+00:00`` (UTC)
uuid                        UUID TEXT     the 36-character text (TEXT affinity)
json                        JSON          the JSON text (a bare number is stored as
                                          SQLite's number, NUMERIC affinity: rounded
                                          beyond int64 or 15 significant digits)
interval                    TEXT          the ISO 8601 duration text (``P1Y2M-3DT4H5M6.5S``)
list, map, struct           TEXT          compact JSON: lists as arrays, maps and structs as
                                          objects (map keys as text), decimals, dates, times
                                          and timestamps as JSON strings, binary as base64,
                                          NaN/infinities as the strings "NaN", "Infinity"
==========================  ============  =================================================

The declared names are the ones SQLAlchemy's reflection and Python's
``sqlite3.connect(..., detect_types=PARSE_DECLTYPES)`` know (``DATE`` and ``TIMESTAMP``
convert to ``date`` / ``datetime``; a zoned timestamp becomes its naive UTC time there,
an aware one in SQLAlchemy).
They have NUMERIC affinity (``UUID TEXT``: TEXT), which keeps ISO text as text (it
never looks like a number).
The text sorts chronologically and SQLite's date functions read it (``julianday``,
``datetime``). Timestamps are written with a space between date and time, the form
Python's ``sqlite3`` and SQLAlchemy parse; a column an earlier dataferry declared
``TEXT`` keeps its declaration and its ``YYYY-MM-DDTHH:MM:SS`` form, so a table made
before keeps working (merges on a timestamp key included).

The source reads (``read_type``) a column of INTEGER affinity as int64, REAL as float64,
TEXT as string, a column declared BLOB as binary; JSON text in a column whose model type
is a list, map or struct becomes that nested value; typeless and NUMERIC columns are read
by value, in the Arrow type the model's declared type suggests (integers as int64,
floats as float64, binary as binary, everything else as text: the store's
conform step parses numbers, dates, timestamps, decimals and uuids from text). A column
the model declares ``bool`` is read as bool (0 and 1) unless it holds text.
"""

from __future__ import annotations

from typing import assert_never

import pyarrow as pa

from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    family,
)

INTEGER, REAL, TEXT, BLOB, NUMERIC = "INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC"
_DECLARED = {"date": "DATE", "time": "TIME", "timestamp": "TIMESTAMP",
             "timestamp_tz": "TIMESTAMP", "uuid": "UUID TEXT", "json": "JSON"}
"""Model types held as text under a declared type that names them. ``UUID TEXT``: SQLAlchemy
does not know ``UUID`` in SQLite and would read the column as NUMERIC (a decimal), and
``PARSE_DECLTYPES`` looks converters up by the first word (``UUID``)."""


def native_type(t: DataType) -> str:
    """The declared SQLite type of a column of model type ``t`` (table above)."""
    match t:
        case Primitive("bool"):
            return "BOOLEAN"
        case Primitive("uint64"):
            return TEXT
        case Primitive() if family(t) == "integer":
            return INTEGER
        case Primitive() if family(t) == "float":
            return REAL
        case Primitive("binary"):
            return BLOB
        case Primitive(name) if name in _DECLARED:
            return _DECLARED[name]
        case Decimal(p, s) if p <= 15:
            return f"DECIMAL({p},{s})"
        case Primitive() | Decimal() | String() | ListType() | MapType() | StructType():
            return TEXT
        case _:
            assert_never(t)


def affinity(declared: str) -> str:
    """The affinity of a declared column type, by SQLite's rules; "" for no type at all."""
    upper = declared.upper()
    if "INT" in upper:
        return INTEGER
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return TEXT
    if not upper.strip():
        return ""
    if "BLOB" in upper:
        return BLOB
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return REAL
    return NUMERIC


def is_nested(t: DataType | None) -> bool:
    return isinstance(t, ListType | MapType | StructType)


def read_type(declared_native: str, declared: DataType | None) -> pa.DataType:
    """The Arrow type the source produces for a column (see the module docstring).

    ``declared_native`` is the SQLite declared type ("" for none or an expression);
    ``declared`` the model's type for the column, if the model declares it.
    """
    kind = affinity(declared_native)
    if is_nested(declared) and kind in (TEXT, NUMERIC, ""):
        assert declared is not None
        return json_type(declared)
    wanted = family(declared) if declared is not None else "string"
    if wanted == "bool" and kind in (INTEGER, NUMERIC, ""):
        return pa.bool_()  # SQLite's booleans are 0 and 1
    if kind == INTEGER:
        if wanted == "float":
            return pa.float64()
        return pa.string() if wanted == "decimal" else pa.int64()
    if kind == REAL:
        return pa.float64()
    if kind == TEXT:
        return pa.string()
    if kind == BLOB:
        return pa.binary()
    return _by_value(wanted)


def _by_value(wanted: str) -> pa.DataType:
    if wanted in ("integer", "bool"):
        return pa.int64()
    if wanted == "float":
        return pa.float64()
    return pa.binary() if wanted == "binary" else pa.string()


def json_type(t: DataType) -> pa.DataType:
    """The Arrow type JSON text of model type ``t`` is read into (leaves as ``_by_value``).

    uint64 leaves are read as text (JSON numbers may exceed int64); conform converts them.
    """
    match t:
        case ListType(item):
            return pa.list_(json_type(item))
        case MapType(key, value):
            return pa.map_(json_type(key), json_type(value))
        case StructType(fields):
            return pa.struct([pa.field(n, json_type(f)) for n, f in fields])
        case Primitive("uint64"):
            return pa.string()
        case Primitive("bool"):
            return pa.bool_()
        case _:
            return _by_value(family(t))
