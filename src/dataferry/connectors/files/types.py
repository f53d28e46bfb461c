"""What Arrow types each file format hands over, and one type for files that disagree.

- CSV: every declared column is read as **text** (``string``), exactly as written:
  ``0012`` keeps its zeros and ``1e3`` is not turned into a float; conform converts the
  text to the declared type. An unquoted empty field is a missing value (null); a quoted
  empty field (``""``) is an empty string (the PostgreSQL ``COPY ... CSV`` convention).
  Texts such as ``NULL``, ``NA`` or ``nan`` stay text unless the model's ``null_values:``
  (or ``ferry publish --null-value``) names them; a quoted value is never NULL.
  CSV has no nested values: a declared list, map or struct column cannot be read from it.
- Parquet: the file's own Arrow types (decimals, timestamps with their zone, nested
  lists/structs/maps...), only the declared columns are read.
- JSON Lines: the declared shape with text leaves, exactly as in
  ``dataferry.connectors.http.records`` (numbers keep the text they were written as).
  ``json_read_type`` gives the types Arrow's fast JSON reader parses into first.

Files of one dataset may disagree (a CSV and a Parquet file, or an ``int32`` and an
``int64`` Parquet column): ``common_type`` picks one type that holds every value exactly,
falling back to text, which conform parses.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    StructType,
    family,
)

__all__ = ["common_type", "json_read_type"]

def json_read_type(t: DataType) -> pa.DataType | None:
    """The type Arrow's JSON reader should parse a declared type into; None when it cannot
    (``json`` and maps need the raw JSON value: those files are parsed in Python)."""
    match t:
        case Primitive("json"):
            return None
        case Primitive("bool"):
            return pa.bool_()
        case Primitive("uint64"):
            return pa.uint64()
        case Primitive() if family(t) == "integer":
            return pa.int64()
        case Primitive("float32"):
            return pa.float32()
        case Primitive(name) if name.startswith(("float", "bfloat")):
            return pa.float64()
        case Decimal(p, s):
            return pa.decimal128(p, s) if p <= 38 else pa.decimal256(p, s)
        case ListType(item):
            child = json_read_type(item)
            return None if child is None else pa.list_(child)
        case StructType(fields):
            children = [(name, json_read_type(f)) for name, f in fields]
            if any(c is None for _, c in children):
                return None
            return pa.struct([pa.field(name, c) for name, c in children if c is not None])
        case MapType():
            return None
    return pa.string()  # text, dates, times, timestamps, uuids, binary: conform parses them


_SIGNED = (pa.int8(), pa.int16(), pa.int32(), pa.int64())


def _bits(t: pa.DataType) -> int:
    return int(t.bit_width)


def _common_integer(types: list[pa.DataType]) -> pa.DataType:
    signed = [t for t in types if pa.types.is_signed_integer(t)]
    unsigned = [t for t in types if pa.types.is_unsigned_integer(t)]
    if not signed:
        return max(unsigned, key=_bits)
    need = max([_bits(t) for t in signed] + [_bits(t) * 2 for t in unsigned])
    fits = [t for t in _SIGNED if _bits(t) >= need]
    return fits[0] if fits else pa.decimal128(20, 0)


def _common_decimal(types: list[pa.DataType]) -> pa.DataType:
    scale = max(t.scale for t in types)
    digits = max(t.precision - t.scale for t in types) + scale
    if digits > 76:
        return pa.string()
    return pa.decimal128(digits, scale) if digits <= 38 else pa.decimal256(digits, scale)


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_string_view(t))


def _is_nested(t: pa.DataType) -> bool:
    return bool(pa.types.is_nested(t))


def common_type(types: Iterable[pa.DataType]) -> pa.DataType | None:
    """One Arrow type that holds every value of ``types`` exactly (a lossless cast from
    each), text when only text can; None when nested types disagree irreconcilably."""
    distinct = list(dict.fromkeys(
        t.value_type if pa.types.is_dictionary(t) else t for t in types
        if not pa.types.is_null(t)
    ))
    if not distinct:
        return pa.string()
    if len(distinct) == 1:
        return distinct[0]
    if all(pa.types.is_integer(t) for t in distinct):
        return _common_integer(distinct)
    if all(pa.types.is_decimal(t) for t in distinct):
        return _common_decimal(distinct)
    if all(pa.types.is_floating(t) for t in distinct):
        return max(distinct, key=_bits)
    if all(pa.types.is_timestamp(t) for t in distinct) and len({t.tz for t in distinct}) == 1:
        units = ("s", "ms", "us", "ns")
        return pa.timestamp(max((t.unit for t in distinct), key=units.index), distinct[0].tz)
    if any(_is_nested(t) for t in distinct):
        try:
            schemas = [pa.schema([pa.field("c", t)]) for t in distinct]
            return pa.unify_schemas(schemas, promote_options="permissive").field("c").type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
    if all(_is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
           for t in distinct):
        return pa.binary()
    return pa.string()  # every primitive has an exact text form that conform parses
