"""Type mappings between MariaDB/MySQL and dataferry, both directions.

**Reading** (a result column, from the metadata the server sends with every result, so
tables and ``query:`` datasets map alike) to the nearest exact Arrow type:

======================================  ===============================================
MariaDB                                 Arrow
======================================  ===============================================
TINYINT/SMALLINT/MEDIUMINT/INT/BIGINT   int8/int16/int32/int32/int64; UNSIGNED: uint8,
                                        uint16, uint32, uint32, uint64
BOOLEAN (= TINYINT(1))                  int8 (it can hold 2..127 too; a declared ``bool``
                                        accepts 0/1 and rejects other values by row)
DECIMAL(p,s)                            decimal128(p,s) for p <= 38, else decimal256(p,s)
FLOAT / DOUBLE                          float32 / float64 (exact over the binary
                                        protocol; the PyMySQL path reads FLOAT as
                                        ``CAST(.. AS DOUBLE)``: the text protocol prints
                                        only 6 digits of it)
BIT(1) / BIT(n)                         bool / uint64
YEAR                                    int16
CHAR/VARCHAR/TEXT, ENUM, SET, JSON      string (SET as its comma-separated text; JSON,
                                        which MariaDB keeps as LONGTEXT, as its text)
UUID (MariaDB 10.7+), INET4/INET6       string (the canonical text)
BINARY/VARBINARY/BLOB, GEOMETRY         binary (GEOMETRY: MariaDB's internal SRID+WKB)
DATE                                    date32
TIME                                    time64[us]: values from 00:00:00 to 23:59:59.999999;
                                        a negative or >= 24 h value (TIME as a duration)
                                        is an error naming the column: select it as
                                        ``TIME_TO_SEC(c)`` or text in a ``query:``
DATETIME(fsp)                           timestamp[us] (no zone, as stored)
TIMESTAMP(fsp)                          timestamp[us, UTC] (the session zone is +00:00)
zero dates (``0000-00-00``)             an error naming the column and value
======================================  ===============================================

**Writing** (a declared type to the column type a sink creates; ``native_type``):

==========================  ====================================================
declared                    MariaDB column
==========================  ====================================================
bool                        BOOLEAN (TINYINT(1))
int8..int64, uint8..uint64  TINYINT..BIGINT, UNSIGNED for the unsigned ones
float16, bfloat16, float8_* FLOAT (float32 holds each of their values exactly)
float32 / float64           FLOAT / DOUBLE (NaN and infinities cannot be stored:
                            a delivery holding one fails naming the column)
decimal(p,s)                DECIMAL(p,s); beyond MariaDB's DECIMAL(65,30)
                            (p > 65 or s > 30): VARCHAR(p+3) with the exact text
string / string(n)          LONGTEXT / VARCHAR(n) for n <= 255, else TEXT,
                            MEDIUMTEXT or LONGTEXT by size; key columns
                            VARCHAR(min(n, 768)) with the exact collation
                            ``utf8mb4_nopad_bin`` (``utf8mb4_bin`` on MySQL)
binary                      LONGBLOB; key columns VARBINARY(3072)
date / time                 DATE / TIME(6)
timestamp                   DATETIME(6)
timestamp_tz                DATETIME(6) holding UTC (MariaDB's TIMESTAMP ends in
                            2038; readers take the values as UTC)
uuid                        CHAR(36), the canonical lower-case text. Not
                            MariaDB's UUID type: it refuses some 128-bit values
                            the model's uuid accepts (10.11 refuses a version
                            nibble 8-f with a variant nibble 0-7, e.g.
                            12345678-1234-8234-0234-123456789abc). An existing
                            UUID column is changed to CHAR(36) by the next
                            delivery (``tables.plan_evolution``)
json                        JSON (MariaDB: LONGTEXT checked by JSON_VALID)
interval                    LONGTEXT (key columns VARCHAR(768)), the ISO 8601
                            duration text (``P1Y2M-3DT4H5M6.5S``): MariaDB has
                            no interval column type
list, map, struct           JSON: lists as arrays, structs as objects, maps as
                            objects (keys as text); decimals, dates, times and
                            timestamps as JSON strings, binary as base64 text
==========================  ====================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    family,
)
from dataferry.model.types import StructType as Struct

# Protocol field types (include/mysql_com.h) and flags.
DECIMAL, TINY, SHORT, LONG, FLOAT, DOUBLE, NULL, TIMESTAMP = 0, 1, 2, 3, 4, 5, 6, 7
LONGLONG, INT24, DATE, TIME, DATETIME, YEAR, NEWDATE, VARCHAR, BIT = 8, 9, 10, 11, 12, 13, 14, 15, 16
JSON, NEWDECIMAL, ENUM, SET, GEOMETRY = 245, 246, 247, 248, 255
NOT_NULL_FLAG, UNSIGNED_FLAG, ENUM_FLAG, SET_FLAG = 1, 32, 256, 2048
BINARY_CHARSET = 63

MAX_KEY_CHARS = 768  # 3072 bytes of utf8mb4: InnoDB's largest index key
MAX_KEY_BYTES = 3072

_INTEGERS = {TINY: ("tinyint", 8), SHORT: ("smallint", 16), INT24: ("mediumint", 32),
             LONG: ("int", 32), LONGLONG: ("bigint", 64)}
INTEGERS = frozenset(_INTEGERS)
_SIMPLE_ARROW = {
    FLOAT: pa.float32(), DOUBLE: pa.float64(), NULL: pa.null(), DATE: pa.date32(),
    NEWDATE: pa.date32(), TIME: pa.time64("us"), DATETIME: pa.timestamp("us"),
    TIMESTAMP: pa.timestamp("us", tz="UTC"), YEAR: pa.int16(), GEOMETRY: pa.binary(),
}
_NAMES = {FLOAT: "float", DOUBLE: "double", NULL: "null", DATE: "date", NEWDATE: "date",
          TIME: "time", DATETIME: "datetime", TIMESTAMP: "timestamp", YEAR: "year",
          GEOMETRY: "geometry", JSON: "json", ENUM: "enum", SET: "set"}


@dataclass(frozen=True)
class ResultColumn:
    """One column of a result, as the server describes it."""

    name: str
    type_code: int
    flags: int
    charset: int
    length: int  # display length in bytes (characters x max bytes per character)
    scale: int  # decimals

    @classmethod
    def of(cls, field: Any) -> ResultColumn:
        """From PyMySQL's field descriptor packet."""
        return cls(field.name, field.type_code, field.flags, field.charsetnr, field.length,
                   field.scale)

    @property
    def unsigned(self) -> bool:
        return bool(self.flags & UNSIGNED_FLAG)

    @property
    def nullable(self) -> bool:
        return not self.flags & NOT_NULL_FLAG

    @property
    def precision(self) -> int:
        """DECIMAL precision: the display length less the point and the sign."""
        return self.length - (1 if self.scale else 0) - (0 if self.unsigned else 1)


def arrow_type(column: ResultColumn) -> pa.DataType:
    """The Arrow type ``MysqlSource`` produces for a result column (table in the module doc)."""
    code = column.type_code
    if code in _INTEGERS:
        bits = _INTEGERS[code][1]
        return getattr(pa, f"{'u' if column.unsigned else ''}int{bits}")()
    if code in (DECIMAL, NEWDECIMAL):
        p, s = column.precision, column.scale
        if not 1 <= p <= 76 or s > p:
            return pa.string()
        return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
    if code == BIT:
        return pa.bool_() if column.length == 1 else pa.uint64()
    if code in _SIMPLE_ARROW:
        return _SIMPLE_ARROW[code]
    if column.charset == BINARY_CHARSET and code not in (JSON, ENUM, SET):
        return pa.binary()
    return pa.string()


def native_name(column: ResultColumn) -> str:
    """A readable native type for a result column (``query:`` datasets; tables report
    ``information_schema.COLUMNS.COLUMN_TYPE``)."""
    code = column.type_code
    unsigned = " unsigned" if column.unsigned else ""
    if code in _INTEGERS:
        return _INTEGERS[code][0] + unsigned
    if code in (DECIMAL, NEWDECIMAL):
        return f"decimal({column.precision},{column.scale}){unsigned}"
    if code == BIT:
        return f"bit({column.length})"
    if column.flags & ENUM_FLAG:
        return "enum"
    if column.flags & SET_FLAG:
        return "set"
    if code in _NAMES:
        return _NAMES[code]
    binary = column.charset == BINARY_CHARSET
    if code in (VARCHAR, 253):
        return "varbinary" if binary else "varchar"
    if code == 254:
        return "binary" if binary else "char"
    return "blob" if binary else "text"


# --- writing -------------------------------------------------------------------------

_FLOAT32 = {"float16", "bfloat16", "float8_e4m3", "float8_e5m2", "float32"}
_TEXT_SIZES = ((255, "VARCHAR({n})"), (16_383, "TEXT"), (4_194_303, "MEDIUMTEXT"))


def stored_as_json(t: DataType) -> bool:
    return isinstance(t, ListType | MapType | Struct) or t == Primitive("json")


def native_type(t: DataType, *, key: bool = False) -> str:
    """The MariaDB column type a sink creates for declared type ``t`` (module doc).

    ``key``: the column is part of an index (primary key), so it needs a bounded length.
    """
    match t:
        case Primitive("bool"):
            return "BOOLEAN"
        case Primitive(name) if family(t) == "integer":
            bits = int(name.lstrip("uint"))
            sql = {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"}[bits]
            return sql + (" UNSIGNED" if name.startswith("u") else "")
        case Primitive(name) if name in _FLOAT32:
            return "FLOAT"
        case Primitive("float64"):
            return "DOUBLE"
        case Primitive("string") | Primitive("interval"):  # an interval: its ISO 8601 text
            return f"VARCHAR({MAX_KEY_CHARS})" if key else "LONGTEXT"
        case Primitive("binary"):
            return f"VARBINARY({MAX_KEY_BYTES})" if key else "LONGBLOB"
        case Primitive("date"):
            return "DATE"
        case Primitive("time"):
            return "TIME(6)"
        case Primitive("timestamp" | "timestamp_tz"):
            return "DATETIME(6)"
        case Primitive("uuid"):
            return "CHAR(36)"
        case Decimal(p, s):
            return f"DECIMAL({p},{s})" if p <= 65 and s <= 30 else f"VARCHAR({p + 3})"
        case String(n):
            if key:
                return f"VARCHAR({min(n, MAX_KEY_CHARS)})"
            for limit, sql in _TEXT_SIZES:
                if n <= limit:
                    return sql.format(n=n)
            return "LONGTEXT"
    return "JSON"  # json, list, map, struct


def decimal_as_text(t: DataType) -> bool:
    """Whether ``native_type`` keeps decimal ``t`` as text (beyond DECIMAL(65,30))."""
    return isinstance(t, Decimal) and not (t.precision <= 65 and t.scale <= 30)


_COLUMN_TYPE = re.compile(r"^\s*([a-z]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*(unsigned)?")
_HELD_INTEGERS = {"bool": 8, "boolean": 8, "tinyint": 8, "smallint": 16, "mediumint": 16,
                  "int": 32, "integer": 32, "bigint": 64}
_HELD_TEXT = {"tinytext": 63, "text": 16_383, "mediumtext": 4_194_303}
_HELD_SIMPLE = {
    "float": "float32", "double": "float64", "real": "float64", "date": "date",
    "time": "time", "datetime": "timestamp", "timestamp": "timestamp_tz", "uuid": "uuid",
    "json": "json", "longtext": "string", "binary": "binary", "varbinary": "binary",
    "tinyblob": "binary", "blob": "binary", "mediumblob": "binary", "longblob": "binary",
}


def held_type(column_type: str, is_json: bool = False) -> DataType | None:
    """The widest declared type whose every value an existing column holds exactly.

    ``column_type`` is ``information_schema.COLUMNS.COLUMN_TYPE`` (``int(11) unsigned``,
    ``varchar(50)``...); ``is_json``: a LONGTEXT with a ``JSON_VALID`` check. None when no
    declared type fits (ENUM, SET, YEAR, BIT...).
    """
    if is_json:
        return Primitive("json")
    match = _COLUMN_TYPE.match(column_type.lower())
    if match is None:
        return None
    name, first, second, unsigned = match.groups()
    if name in _HELD_INTEGERS:
        return Primitive(f"{'u' if unsigned else ''}int{_HELD_INTEGERS[name]}")
    if name in ("decimal", "numeric"):
        precision = int(first or 10)
        return Decimal(precision, int(second or 0)) if 1 <= precision <= 76 else None
    if name in ("char", "varchar"):
        return String(int(first or 1))
    if name in _HELD_TEXT:
        return String(_HELD_TEXT[name])
    held = _HELD_SIMPLE.get(name)
    return Primitive(held) if held is not None else None
