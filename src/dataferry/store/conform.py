"""Turn incoming Arrow data into exactly the declared schema of a dataset, or fail clearly.

Columns are matched by name and put in declared order; undeclared input columns are
dropped with one warning each; a missing declared column is an error. Every value is
converted losslessly or rejected with a ``SchemaError`` that names the dataset, the
column, the source and declared types, an example value and the row's primary key.

What each declared type accepts (dictionary-encoded arrays are decoded first, extension
types are read through their storage, an all-null column of any type is accepted):

- integers: any integer, floats and decimals with whole values, numeric text;
- float32/float64: integers (exactly representable: |x| <= 2**24 / 2**53), floats,
  decimals, numeric text (``nan``, ``inf``); rounding to the declared precision is
  accepted, a finite value that overflows to infinity is not;
- float16, bfloat16, float8_e4m3, float8_e5m2: as float32, rounded to nearest-even;
  finite values beyond the largest finite value, and infinities for float8_e4m3, are
  errors; NaN keeps its sign and the top bits of its payload;
- decimal(p,s): integers, decimals, floats (their shortest text must fit), numeric text;
- bool: bool, text ``true``/``false``/``1``/``0`` (any case), integers that are 0 or 1;
- string, string(n): text of any Arrow string type, UTF-8 binary, uuid (as its 36-char
  text); ``string(n)`` counts Unicode code points, so a combining accent is one more;
- binary: any binary or string type; uuid: 16-byte binary, or text in the canonical
  8-4-4-4-12 form or as 32 hex digits (any case);
- date: date32/date64 (whole days), ISO 8601 text ``YYYY-MM-DD``;
  time: time32/time64 of any unit, text ``HH:MM[:SS[.fraction]]``;
- timestamp: timestamps of any unit without a time zone, ISO 8601 text without an offset;
  timestamp_tz: timestamps of any unit and zone (converted to UTC), text with an offset or
  ``Z``; naive timestamps and text without an offset are taken to be UTC. Fractions finer
  than a microsecond must be zero;
- json: text (checked with ``json.loads``, stored as given; text whose field is tagged
  ``json`` is taken as checked by its producer: PostgreSQL's json and jsonb, the store's
  own files), or structs, lists and maps
  (written as compact JSON; decimals, dates and times become JSON strings);
- list<T>: list, large_list, fixed_size_list and list views; map<K,V>: maps, or lists of
  two-field structs (``key``/``value``); struct<...>: structs, fields matched by name
  (undeclared fields are dropped with a warning, missing ones are an error).

In text input (CSV) an empty string is a missing value for every type but string and
binary. Leading and trailing whitespace is ignored when text is parsed as another type.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal as PyDecimal
from decimal import InvalidOperation
from typing import Any, NoReturn, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataferry.errors import StoreError
from dataferry.model.spec import Column
from dataferry.model.types import (
    METADATA_KEY,
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    UnsupportedArrowTypeError,
    format_type,
    from_arrow_field,
    parse_type,
    to_arrow_field,
)

__all__ = ["Conformer", "SchemaError", "declared_schema", "to_python_friendly"]


class SchemaError(StoreError):
    """Data does not fit a dataset's declared schema (terminal: retrying will not help).

    ``key`` holds the primary-key values of the offending row, ``{"row": index}`` when the
    dataset has no primary key, or ``{}`` when no single row is at fault (a missing column).
    The message names the value and the key; ``public`` says the same without them.
    """

    def __init__(self, dataset: str, column: str, key: dict[str, Any], message: str,
                 public: str | None = None) -> None:
        super().__init__(message, public=message if public is None and not key else public)
        self.dataset, self.column, self.key, self.message = dataset, column, key, message

    def __reduce__(self) -> tuple[type[SchemaError],
                                  tuple[str, str, dict[str, Any], str, str | None]]:
        return type(self), (self.dataset, self.column, self.key, self.message, self.public)


def declared_schema(columns: Mapping[str, Column]) -> pa.Schema:
    """The Arrow schema of the declared columns, in declared order, nullable per the model."""
    return pa.schema(
        [to_arrow_field(name, parse_type(c.type), c.nullable) for name, c in columns.items()]
    )


class Conformer:
    """Conforms the batches of one publication to a dataset's declared columns.

    ``dataset`` names the dataset in messages; ``primary_key`` columns identify an
    offending row in errors; ``on_warning`` receives each warning once (undeclared columns
    and struct fields). ``schema`` is the declared Arrow schema every output batch has.
    """

    def __init__(
        self,
        dataset: str,
        columns: Mapping[str, Column],
        primary_key: Sequence[str] = (),
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.columns = dict(columns)
        self.primary_key = tuple(primary_key)
        self.schema = declared_schema(columns)
        self._declared = {name: parse_type(c.type) for name, c in self.columns.items()}
        self._warn = on_warning or (lambda message: None)
        self._warned: set[str] = set()

    def conform(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
        """Return the same rows with the declared columns, types and order.

        Errors report rows by index within ``batch`` (``conform_reader`` counts across
        the whole stream).
        """
        return self._conform(batch, 0)

    def conform_reader(
        self, reader: pa.RecordBatchReader | Iterable[pa.RecordBatch]
    ) -> pa.RecordBatchReader:
        """Conform a stream lazily, batch by batch; the input is never held in memory at once.

        A reader's schema is checked at once (missing columns fail here); conversion errors
        are raised while the returned reader is consumed.
        """
        if isinstance(reader, pa.RecordBatchReader):
            self._match_columns(reader.schema)

        def batches() -> Iterator[pa.RecordBatch]:
            row = 0
            for item in reader:
                for batch in item.to_batches() if isinstance(item, pa.Table) else (item,):
                    yield self._conform(batch, row)
                    row += batch.num_rows

        return pa.RecordBatchReader.from_batches(self.schema, batches())

    # --- internals ---------------------------------------------------------------------

    def _match_columns(self, schema: pa.Schema) -> list[int]:
        names = schema.names
        for name in dict.fromkeys(n for n in names if n not in self.columns):
            if name not in self._warned:
                self._warned.add(name)
                self._warn(f"{self.dataset}: column {name!r} is not declared; ignored — "
                           "declare it in the model to keep it")
        indexes = []
        for name in self.columns:
            if names.count(name) > 1:
                raise SchemaError(self.dataset, name, {}, f"{self.dataset}: column {name!r} "
                                  "appears more than once in the input; rename or drop one")
            if name not in names:
                raise SchemaError(self.dataset, name, {}, self._missing(name, names))
            indexes.append(names.index(name))
        return indexes

    def _missing(self, name: str, found: list[str]) -> str:
        close = [n for n in found if n.lower() == name.lower()]
        close = close or difflib.get_close_matches(name, found, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listed = ", ".join(map(repr, found[:20])) + (", ..." if len(found) > 20 else "")
        return (f"{self.dataset}: declared column {name!r} is missing from the input "
                f"(found: {listed or 'no columns'}); {hint}add it to the data (all nulls if "
                "unknown), or remove it from the model")

    def _conform(self, batch: pa.RecordBatch | pa.Table, first_row: int) -> pa.RecordBatch:
        positions = dict(zip(self.columns, self._match_columns(batch.schema), strict=True))
        # The primary key first, so that an error elsewhere can name its row by key values.
        order = [*(k for k in self.primary_key if k in self.columns), *self.columns]
        arrays: dict[str, pa.Array] = {}
        for name in dict.fromkeys(order):
            index, declared = positions[name], self._declared[name]
            target = self.schema.field(name)
            column = batch.column(index)
            source = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            try:
                array = _Converter(self, name).convert(
                    source, batch.schema.field(index), declared, target
                )
                if not target.nullable and array.null_count:
                    raise _Rejected(_first(pc.is_null(array)), *self._null_problem(name),
                                    _type_text(source.type), declared)
            except _Rejected as rejected:
                raise self._error(name, rejected, arrays, first_row) from None
            arrays[name] = array
        return pa.RecordBatch.from_arrays([arrays[n] for n in self.columns], schema=self.schema)

    def _null_problem(self, name: str) -> tuple[str, str]:
        """What is wrong with a null in ``name``, and what to do."""
        if name in self.primary_key:
            return ("the value is null, but the column is part of the primary key",
                    "every row needs a key: fill it at the source, or change the primary key")
        return ("the value is null, but the column is not nullable",
                "fill it at the source, or declare the column nullable: true")

    def _error(
        self, name: str, rejected: _Rejected, done: dict[str, pa.Array], first_row: int
    ) -> SchemaError:
        where, key = "", {}
        if rejected.index is not None:
            row = first_row + rejected.index
            key = {"row": row}
            where = f" at row {row}"
            if self.primary_key and all(k in done for k in self.primary_key):
                key = {k: _python(done[k], rejected.index) for k in self.primary_key}
                shown = ", ".join(f"{k}={_show(v)}" for k, v in key.items())
                where = f" at row {row} ({shown})"
        value = ""
        if rejected.value is not _NO_VALUE:
            hidden = self.columns[name].pii
            value = "value <hidden: pii column> " if hidden else f"value {_show(rejected.value)} "
        field = f" (field {name}{rejected.path})" if rejected.path else ""
        problem = (f"{rejected.problem} (source type {rejected.source}, declared "
                   f"{rejected.declared}); {rejected.hint}")
        message = f"{self.dataset}: column {name!r}{field}{where}: {value}{problem}"
        # The problems are written by this module from types, never from the value.
        at = f" at row {first_row + rejected.index}" if rejected.index is not None else ""
        subject = "" if rejected.problem.startswith("the ") else "a value "
        public = f"{self.dataset}: column {name!r}{field}{at}: {subject}{problem}"
        return SchemaError(self.dataset, name, key, message, public)


# --- rejections ----------------------------------------------------------------------

_NO_VALUE: Any = object()


class _Rejected(Exception):
    """A value that does not fit; ``index`` is relative to the array being converted."""

    def __init__(
        self, index: int | None, problem: str, hint: str, source: str, declared: DataType,
        value: Any = _NO_VALUE,
    ) -> None:
        super().__init__(problem)
        self.index, self.problem, self.hint, self.value = index, problem, hint, value
        self.source, self.declared, self.path = source, format_type(declared), ""


def _reject(
    array: pa.Array, index: int | None, problem: str, hint: str, declared: DataType
) -> NoReturn:
    value = _python(array, index) if index is not None else _NO_VALUE
    raise _Rejected(index, problem, hint, _type_text(array.type), declared, value)


def _python(array: pa.Array | pa.ChunkedArray, index: int) -> Any:
    try:
        return array[index].as_py()
    except (ValueError, OverflowError, TypeError):  # no Python equivalent: year 10000, 1 ns
        return _Printed(array.slice(index, 1).to_string(indent=0, window=1).strip("[]\n "))


class _Printed(str):
    """A value as Arrow prints it, shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _show(value: Any) -> str:
    text = "null" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_text(t: pa.DataType) -> str:
    return str(t.storage_type if isinstance(t, pa.BaseExtensionType) else t)


def _first(mask: pa.Array) -> int | None:
    index = pc.index(mask, True).as_py()
    return None if index < 0 else int(index)


def _locate(array: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element ``convert`` fails on (bisection: O(n) work in total)."""
    start, length = 0, len(array)
    while length > 1:
        half = length // 2
        try:
            convert(array.slice(start, half))
        except pa.ArrowInvalid:
            length = half
            continue
        start, length = start + half, length - half
    return start


def _cast(
    array: pa.Array, target: pa.DataType, declared: DataType, why: Callable[[Any], str],
    hint: str, shown: pa.Array | None = None,
) -> pa.Array:
    """Safe-cast ``array``; on failure reject its first failing value, explained by ``why``.

    ``shown`` is the array as the user gave it, when ``array`` was rewritten for parsing.
    """
    try:
        return pc.cast(array, target, safe=True)
    except pa.ArrowInvalid:
        index = _locate(array, lambda part: pc.cast(part, target, safe=True))
        _reject(array if shown is None else shown, index, why(_python(array, index)), hint,
                declared)


# --- the conversion of one array -------------------------------------------------------

_INT_RANGES = {
    name: (pa.types.is_signed_integer(t), t.bit_width)
    for name, t in ((n, getattr(pa, n)()) for n in
                    ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"))
}
_TEXT = ("string", "large_string", "string_view")
_BYTES = ("binary", "large_binary", "binary_view")
_LISTS = ("list", "large_list", "fixed_size_list", "list_view", "large_list_view")


def _kind(t: pa.DataType) -> str:
    """A coarse name for an Arrow type: integer, floating, decimal, or the type id's name."""
    types = pa.types
    if types.is_integer(t):
        return "integer"
    if types.is_floating(t):
        return "floating"
    if types.is_decimal(t):
        return "decimal"
    for name in (*_TEXT, *_BYTES, *_LISTS, "fixed_size_binary", "map", "struct", "boolean",
                 "date32", "date64", "time32", "time64", "timestamp", "null"):
        if getattr(types, f"is_{name}")(t):
            return name
    return str(t)


def _tag(field: pa.Field) -> DataType | None:
    raw = (field.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        return None
    try:
        return from_arrow_field(field)
    except UnsupportedArrowTypeError:
        return None


class _Converter:
    """Converts the arrays of one column; nested values recurse with their own fields."""

    def __init__(self, conformer: Conformer, column: str) -> None:
        self.conformer, self.column = conformer, column

    def convert(
        self, array: pa.Array, source: pa.Field, declared: DataType, target: pa.Field,
        where: str = "",
    ) -> pa.Array:
        """Convert ``array`` (of field ``source``) to ``target``; ``where`` is the nested path."""
        if isinstance(array.type, pa.BaseExtensionType):
            extension = array.type.extension_name
            array = array.storage
            source = pa.field(source.name, array.type, metadata={METADATA_KEY: "uuid"}
                              if extension == "arrow.uuid" else None)
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
            source = source.with_type(array.type)
        if pa.types.is_null(array.type) or array.null_count == len(array):
            return pa.nulls(len(array), target.type)
        tag = _tag(source)
        if isinstance(tag, Primitive) and tag.name in _FORMATS and tag != declared:
            array = _decode(array, _FORMATS[tag.name])
        # Child fields from the schema: arrays built by pa.array(type=...) may lack metadata.
        typed = source.type if source.type == array.type else array.type
        match declared:
            case ListType(item):
                return self._list(array, typed, item, target, where)
            case MapType(key, value):
                return self._map(array, typed, key, value, target, where)
            case StructType(fields):
                return self._struct(array, typed, fields, target, where)
        family = _family(declared)
        kind = _kind(array.type)
        if kind in _TEXT or kind in _BYTES:  # one layout for each: fewer kernels to rely on
            array = pc.cast(array, pa.string() if kind in _TEXT else pa.binary())
            kind = "string" if kind in _TEXT else "binary"
        if kind == "floating" and pa.types.is_float16(array.type) and family != "low_float":
            array = pc.cast(array, pa.float32())
        if kind == "string" and family not in ("string", "binary"):
            if family != "json":  # json text is stored as given
                array = pc.utf8_trim_whitespace(array)
            array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
            if array.null_count == len(array):
                return pa.nulls(len(array), target.type)
        convert = _PRIMITIVES.get(family)
        result = convert(array, kind, declared, tag) if convert is not None else None
        if result is None:
            _reject(array, _first(pc.is_valid(array)),
                    f"cannot be converted (type {_type_text(array.type)} is not accepted "
                    f"for {format_type(declared)})",
                    "convert the column at the source, or declare a type that matches it",
                    declared)
        return result

    def _child(
        self, array: pa.Array, source: pa.Field, declared: DataType, target: pa.Field,
        where: str, path: str, rows: Callable[[int], int] | None = None,
    ) -> pa.Array:
        try:
            return self.convert(array, source, declared, target, where + path)
        except _Rejected as rejected:
            rejected.path = path + rejected.path
            if rejected.index is not None and rows is not None:
                rejected.index = rows(rejected.index)
            raise

    def _list(
        self, array: pa.Array, typed: pa.DataType, item: DataType, target: pa.Field, where: str
    ) -> pa.Array:
        if _kind(array.type) not in _LISTS:
            return self._mismatch(array, ListType(item))
        values, offsets, rows = _flatten(array)
        child = self._child(values, typed.value_field, item, target.type.value_field, where,
                            "[]", rows)
        return pa.ListArray.from_arrays(offsets, child, type=target.type, mask=_nulls(array))

    def _map(
        self, array: pa.Array, typed: pa.DataType, key: DataType, value: DataType,
        target: pa.Field, where: str,
    ) -> pa.Array:
        kind = _kind(array.type)
        if kind == "map":
            fields = pa.struct([typed.key_field, typed.item_field])
            array = pc.cast(array, pa.list_(pa.field("entries", fields, nullable=False)))
        elif kind in _LISTS and pa.types.is_struct(typed.value_type) and \
                typed.value_type.num_fields == 2:
            fields = typed.value_type
        else:
            return self._mismatch(array, MapType(key, value))
        values, offsets, rows = _flatten(array)
        names = [f.name for f in fields]
        order = (names.index("key"), names.index("value")) if {"key", "value"} <= set(names) \
            else (0, 1)
        children = values.flatten()
        keys = self._child(children[order[0]], fields[order[0]], key, target.type.key_field,
                           where, "{key}", rows)
        if keys.null_count:
            index = _first(pc.is_null(keys))
            assert index is not None
            rejected = _Rejected(rows(index), "the map key is null", "give every map entry "
                                 "a key", _type_text(keys.type), key)
            rejected.path = "{key}"
            raise rejected
        items = self._child(children[order[1]], fields[order[1]], value,
                            target.type.item_field, where, "{value}", rows)
        return pa.MapArray.from_arrays(offsets, keys, items, type=target.type,
                                       mask=_nulls(array))

    def _struct(
        self, array: pa.Array, typed: pa.DataType, fields: tuple[tuple[str, DataType], ...],
        target: pa.Field, where: str,
    ) -> pa.Array:
        if _kind(array.type) != "struct":
            return self._mismatch(array, StructType(fields))
        found = [f.name for f in typed]
        for name in found:
            if name not in dict(fields):
                self._warn_field(f"{self.column}{where}.{name}")
        children = array.flatten()
        out = []
        for (name, declared), target_field in zip(fields, target.type, strict=True):
            if name not in found:
                raise _Rejected(None, f"the struct has no field {name!r} (found: "
                                f"{', '.join(found)})",
                                "add the field to the data, or remove it from the model",
                                _type_text(array.type), StructType(fields))
            index = found.index(name)
            out.append(self._child(children[index], typed.field(index), declared,
                                   target_field, where, f".{name}"))
        return pa.StructArray.from_arrays(out, fields=list(target.type), mask=_nulls(array))

    def _mismatch(self, array: pa.Array, declared: DataType) -> NoReturn:
        _reject(array, _first(pc.is_valid(array)),
                f"cannot be converted (type {_type_text(array.type)} is not accepted for "
                f"{format_type(declared)})",
                "convert the column at the source, or declare a type that matches it", declared)

    def _warn_field(self, path: str) -> None:
        conformer = self.conformer
        if path not in conformer._warned:
            conformer._warned.add(path)
            conformer._warn(f"{conformer.dataset}: struct field {path!r} is not declared; "
                            "ignored — declare it in the model to keep it")


def _nulls(array: pa.Array) -> pa.Array | None:
    return pc.is_null(array) if array.null_count else None


def _flatten(array: pa.Array) -> tuple[pa.Array, pa.Array, Callable[[int], int]]:
    """The visible values of a list-like array, fresh int32 offsets, child index -> row."""
    values = array.flatten()
    lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int64())
    ends = pc.cumulative_sum(lengths)
    if len(values) >= 2**31:
        raise _Rejected(None, "has more than 2**31 list items in one batch",
                        "publish smaller batches", _type_text(array.type), Primitive("int32"))
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), ends]).cast(pa.int32())

    def rows(child: int) -> int:
        return bisect.bisect_right(offsets.to_pylist(), child) - 1

    return values, offsets, rows


# --- primitives --------------------------------------------------------------------------


def _family(declared: DataType) -> str:
    match declared:
        case Primitive(name) if name in _INT_RANGES:
            return "integer"
        case Primitive(name) if name in _FORMATS:
            return "low_float"
        case Primitive(name):
            return name
        case Decimal():
            return "decimal"
        case String():
            return "string"
    return ""


def _to_integer(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind not in ("integer", "floating", "decimal", *_TEXT):
        return None
    name = cast(Primitive, declared).name
    signed, bits = _INT_RANGES[name]
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def why(value: Any) -> str:
        try:
            number = PyDecimal(str(value).strip())
            if number.is_finite() and number == number.to_integral_value():
                return f"is out of range for {name} ({low}..{high})"
            return "has a fractional part" if number.is_finite() else "is not a number"
        except InvalidOperation:
            return "is not an integer"

    target, hint = getattr(pa, name)(), "fix the value at the source, or declare a wider " \
        "type (int64, decimal)"
    given = a
    if kind == "string":  # "42" fast; "42.0" and "4.2e1" (CSV from float columns) exactly
        try:
            return pc.cast(a, target)
        except pa.ArrowInvalid:
            a = _cast(a, pa.decimal256(76, 38), declared, why, hint)
    return _cast(a, target, declared, why, hint, given)


def _to_float(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    return _as_float(a, kind, declared, getattr(pa, cast(Primitive, declared).name)())


def _as_float(a: pa.Array, kind: str, declared: DataType, target: pa.DataType) -> Any:
    """Floats of type ``target`` (correctly rounded) from numbers or numeric text."""
    name, digits = ("float32", 24) if target == pa.float32() else ("float64", 53)
    if kind == "integer":
        return _cast(a, target, declared, lambda v: f"is not exactly representable in "
                     f"{name} (integers beyond ±2**{digits} lose digits)",
                     "declare float64, an integer or a decimal type")
    if kind == "decimal":  # via text: Arrow's direct cast is not always correctly rounded
        a = pc.cast(a, pa.string())
    elif kind not in (*_TEXT, "floating"):
        return None
    wide = a if kind == "floating" else _cast(
        a, pa.float64(), declared, lambda v: "is not a number",
        "write numbers like 1.5, -2e10, nan or inf")
    result = pc.cast(a, target)
    index = _first(pc.and_(pc.is_finite(wide), pc.invert(pc.is_finite(result))))
    if index is not None:
        _reject(a, index, f"is too large for {name}", "declare float64", declared)
    return result


def _to_decimal(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    p, s = cast(Decimal, declared).precision, cast(Decimal, declared).scale
    target, given = to_arrow_field("", declared).type, a
    if kind == "integer":
        a = pc.cast(a, pa.decimal128(38, 0))
    elif kind == "floating":
        index = _first(pc.invert(pc.is_finite(a)))
        if index is not None:
            _reject(a, index, "is not a finite number", "a decimal has no NaN or infinity",
                    declared)
        a = pc.cast(a, pa.string())  # the shortest text that reads back as the same float
    elif kind not in ("decimal", *_TEXT):
        return None

    def why(value: Any) -> str:
        try:
            number = PyDecimal(str(value).strip())
        except InvalidOperation:
            return "is not a decimal number"
        if not number.is_finite():
            return "is not a finite number"
        _, digits, exponent = number.as_tuple()
        exponent = int(exponent)
        while len(digits) > 1 and digits[-1] == 0 and exponent < 0:
            digits, exponent = digits[:-1], exponent + 1
        if -exponent > s:
            return f"has more than {s} digits after the decimal point"
        return f"has more than {p - s} digits before the decimal point"

    return _cast(a, target, declared, why, "round or fix the value at the source, or declare "
                 "a decimal with more precision or scale", given)


def _to_low_float(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    fmt = _FORMATS[cast(Primitive, declared).name]
    if a.type == fmt.storage and (tag == declared or fmt.name == "float16"):
        return a
    floats = a if kind == "floating" else _as_float(a, kind, declared, pa.float64())
    return None if floats is None else _encode(floats, fmt, declared)


def _to_bool(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind == "boolean":
        return a
    if kind == "integer":
        outside = pc.invert(pc.is_in(a, pa.array([0, 1], a.type)))
        index = _first(pc.and_(outside, pc.is_valid(a)))  # nulls stay null
        if index is not None:
            _reject(a, index, "is not 0 or 1", "write booleans as true/false or 1/0", declared)
        return pc.cast(a, pa.bool_())
    if kind in _TEXT:
        return _cast(pc.utf8_lower(a), pa.bool_(), declared, lambda v: "is not a boolean",
                     "write booleans as true/false or 1/0", a)
    return None


def _to_string(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind == "fixed_size_binary" and tag == Primitive("uuid"):
        a = _uuid_text(a)
    elif kind in _BYTES:
        a = _cast(a, pa.string(), declared, lambda v: "is not valid UTF-8 text",
                  "declare the column binary, or fix the encoding at the source")
    elif kind not in _TEXT:
        return None
    a = pc.cast(a, pa.string())
    if isinstance(declared, String):
        index = _first(pc.greater(pc.utf8_length(a), declared.length))
        if index is not None:
            length = len(_python(a, index))
            _reject(a, index, f"has {length} characters, more than {declared} allows",
                    f"shorten it at the source, or declare string({length}) or string",
                    declared)
    return a


def _to_binary(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in (*_BYTES, *_TEXT, "fixed_size_binary"):
        return pc.cast(a, pa.binary())
    return None


def _to_date(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in ("date32", "date64", *_TEXT):
        return _cast(a, pa.date32(), declared, lambda v: "is not a date (whole days, "
                     "YYYY-MM-DD)", "write dates as ISO 8601, e.g. 2024-05-01")
    return None


_TIME_TEXT = r"^\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$"
_EXTRA_ZEROS = (r"(\.\d{6})0+(Z|[+-].*)?$", r"\1\2")
_TIME_HINT = "write times as ISO 8601, e.g. 12:30:00 or 12:30:00.250"


def _to_time(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in ("time32", "time64"):
        return _cast(a, pa.time64("us"), declared,
                     lambda v: "has a fraction finer than a microsecond",
                     "round the value to microseconds at the source")
    if kind not in _TEXT:
        return None
    index = _first(pc.invert(pc.match_substring_regex(a, _TIME_TEXT)))
    if index is not None:
        _reject(a, index, "is not a time", _TIME_HINT, declared)
    text = pc.binary_join_element_wise("1970-01-01T", pc.replace_substring_regex(
        a, *_EXTRA_ZEROS), "")
    parsed = _cast(text, pa.timestamp("us"), declared,
                   lambda v: "is not a valid time (or has a fraction finer than a microsecond)",
                   _TIME_HINT, a)
    micros = pc.cast(parsed, pa.int64())
    index = _first(pc.greater_equal(micros, 86_400_000_000))  # 24:00:00, leap seconds
    if index is not None:
        _reject(a, index, "is not a time of day before 24:00", _TIME_HINT, declared)
    return pc.cast(micros, pa.time64("us"))


_ZONE = r":\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)$"
_TS_HINT = "write timestamps as ISO 8601, e.g. 2024-05-01T12:30:00 (with Z or +02:00 for " \
           "timestamp_tz)"


def _to_timestamp(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    aware = declared == Primitive("timestamp_tz")
    target = pa.timestamp("us", "UTC" if aware else None)
    if kind == "timestamp":
        if a.type.tz is not None and not aware:
            _reject(a, _first(pc.is_valid(a)), f"has a time zone ({a.type.tz})",
                    "declare the column timestamp_tz, or convert to local times without a "
                    "zone at the source", declared)
        if a.type.tz is not None:
            a = a.cast(pa.timestamp(a.type.unit, "UTC"))
        return _cast(a, target, declared, _finer_than_micros,
                     "round the value to microseconds at the source")
    if kind not in _TEXT:
        return None
    text = pc.replace_substring_regex(pc.utf8_upper(a), *_EXTRA_ZEROS)
    zoned = pc.match_substring_regex(text, _ZONE)
    parse_failed = "is not an ISO 8601 timestamp"
    if not aware:
        index = _first(zoned)
        if index is not None:
            _reject(a, index, "has a time zone offset", "declare the column timestamp_tz, or "
                    "write local times without an offset", declared)
        return _cast(text, target, declared, lambda v: parse_failed, _TS_HINT, a)
    none = pa.scalar(None, text.type)
    with_zone = _cast(pc.if_else(zoned, text, none), target, declared,
                      lambda v: parse_failed, _TS_HINT, a)
    naive = _cast(pc.if_else(zoned, none, text), pa.timestamp("us"), declared,
                  lambda v: parse_failed, _TS_HINT, a)
    return pc.if_else(zoned, with_zone, pc.cast(naive, target))


def _finer_than_micros(value: Any) -> str:
    return "has a fraction finer than a microsecond or is out of range"


_UUID_TEXT = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$"


def _to_uuid(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    hint = "write UUIDs as 36-character text (8-4-4-4-12 hex digits), 32 hex digits or 16 bytes"
    if kind == "fixed_size_binary" or kind in _BYTES:
        index = _first(pc.not_equal(pc.binary_length(a), 16))
        if index is not None:
            length = pc.binary_length(a)[index].as_py()
            _reject(a, index, f"has {length} bytes, a UUID has 16", hint, declared)
        return pc.cast(pc.cast(a, pa.binary()), pa.binary(16))
    if kind not in _TEXT:
        return None
    lower = pc.utf8_lower(a)
    index = _first(pc.invert(pc.match_substring_regex(lower, _UUID_TEXT)))
    if index is not None:
        _reject(a, index, "is not a UUID", hint, declared)
    digits = pc.fill_null(pc.replace_substring(lower, "-", ""), "0" * 32)
    _, offsets, data = digits.buffers()
    start = struct.unpack_from("<i", offsets, 4 * digits.offset)[0]
    raw = bytes.fromhex(data.to_pybytes()[start:start + 32 * len(digits)].decode("ascii"))
    packed = pa.Array.from_buffers(pa.binary(16), len(digits), [None, pa.py_buffer(raw)])
    return pc.if_else(pc.is_valid(a), packed, pa.scalar(None, pa.binary(16)))


def _to_json(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in _TEXT:
        a = pc.cast(a, pa.string())
        if tag == Primitive("json"):  # its producer checked it (PostgreSQL json, our files)
            return a
        for index, text in enumerate(a.to_pylist()):
            if text is not None:
                try:
                    json.loads(text, parse_constant=_no_constant)
                except ValueError as error:
                    _reject(a, index, f"is not valid JSON ({error})",
                            "fix the JSON text at the source", declared)
        return a
    if kind not in ("struct", "map", *_LISTS):
        return None
    texts = []
    for index, value in enumerate(a.to_pylist()):
        try:
            texts.append(None if value is None else json.dumps(
                _jsonable(value, a.type), separators=(",", ":"), ensure_ascii=False,
                allow_nan=False))
        except ValueError as error:
            _reject(a, index, f"cannot be written as JSON ({error})",
                    "fix the value at the source", declared)
    return pa.array(texts, pa.string())


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json_key(key: Any) -> Any:
    return key if isinstance(key, str | int | float | bool) or key is None else str(key)


def _jsonable(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_struct(t):
        return {f.name: _jsonable(value[f.name], f.type) for f in t}
    if pa.types.is_map(t):
        return {_json_key(_jsonable(k, t.key_type)): _jsonable(v, t.item_type) for k, v in value}
    if _kind(t) in _LISTS:
        return [_jsonable(v, t.value_type) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    if isinstance(value, bytes):
        raise ValueError("binary values have no JSON form; base64-encode them at the source")
    if isinstance(value, PyDecimal | date | time | datetime) or not isinstance(
        value, str | int | float | bool
    ):
        return value.isoformat() if isinstance(value, date | time) else str(value)
    return value


_Convert = Callable[[pa.Array, str, DataType, DataType | None], Any]
_PRIMITIVES: dict[str, _Convert] = {
    "integer": _to_integer, "float32": _to_float, "float64": _to_float,
    "low_float": _to_low_float, "decimal": _to_decimal, "bool": _to_bool,
    "string": _to_string, "binary": _to_binary, "date": _to_date, "time": _to_time,
    "timestamp": _to_timestamp, "timestamp_tz": _to_timestamp, "uuid": _to_uuid,
    "json": _to_json,
}


# --- low-precision floats --------------------------------------------------------------


@dataclass(frozen=True)
class _Format:
    """A binary float format: sign, ``exponent`` bits, ``mantissa`` explicit bits."""

    name: str
    exponent: int
    mantissa: int
    ieee: bool  # all-ones exponent = inf/NaN; float8_e4m3 (FN) uses it for numbers, NaN only
    storage: pa.DataType

    @property
    def bias(self) -> int:
        return (1 << (self.exponent - 1)) - 1

    @property
    def max_finite(self) -> float:
        top = (1 << self.exponent) - (2 if self.ieee else 1)
        fraction = 2 - 2.0 ** -(self.mantissa - (0 if self.ieee else 1))
        return fraction * 2.0 ** (top - self.bias)


_FORMATS = {
    "float16": _Format("float16", 5, 10, True, pa.float16()),
    "bfloat16": _Format("bfloat16", 8, 7, True, pa.uint16()),
    "float8_e4m3": _Format("float8_e4m3", 4, 3, False, pa.uint8()),
    "float8_e5m2": _Format("float8_e5m2", 5, 2, True, pa.uint8()),
}
_MANTISSA_BITS = {16: 10, 32: 23, 64: 52}


def _pow2(exponents: pa.Array) -> pa.Array:
    """2.0**k for int64 k in -1022..1023, exactly, from the float64 bit pattern."""
    return pc.shift_left(pc.add(exponents, 1023), 52).view(pa.float64())


def _exponent(values: pa.Array, low: int) -> pa.Array:
    """max(floor(log2(|x|)), low) for float64 x, read from the bits (exact)."""
    biased = pc.bit_wise_and(pc.shift_right(values.view(pa.int64()), 52), 0x7FF)
    return pc.max_element_wise(pc.subtract(biased, 1023), low)


def _encode(values: pa.Array, fmt: _Format, declared: DataType) -> pa.Array:
    """Round floats to nearest-even into ``fmt``'s bits; overflow (and inf for FN) is rejected."""
    width = values.type.bit_width
    x = pc.cast(values, pa.float64())  # exact for every finite value and infinity
    emin = 1 - fmt.bias
    finite, nan = pc.is_finite(x), pc.is_nan(x)
    quantum = _pow2(pc.subtract(_exponent(x, emin), fmt.mantissa))
    rounded = pc.multiply(pc.round(pc.divide(pc.abs(x), quantum), round_mode="half_to_even"),
                          quantum)
    index = _first(pc.and_(finite, pc.greater(rounded, fmt.max_finite)))
    if index is not None:
        _reject(values, index, f"is beyond the largest finite {fmt.name} ({fmt.max_finite:g})",
                "scale the values, or declare a wider float type", declared)
    if not fmt.ieee:
        index = _first(pc.is_inf(x))
        if index is not None:
            _reject(values, index, f"is infinite, and {fmt.name} has no infinity",
                    "declare float8_e5m2 or a wider float type", declared)
    rounded = pc.if_else(finite, rounded, 0.0)
    exponent = _exponent(rounded, emin)
    fields = pc.add(pc.multiply(pc.cast(pc.add(exponent, fmt.bias - 1), pa.float64()),
                                float(1 << fmt.mantissa)),
                    pc.multiply(rounded, _pow2(pc.subtract(fmt.mantissa, exponent))))
    bits = pc.cast(fields, pa.int64())
    ones = ((1 << fmt.exponent) - 1) << fmt.mantissa
    raw = pc.cast(values.view(getattr(pa, f"uint{width}")()), pa.uint64())
    if fmt.ieee:  # keep the top bits of a NaN's payload; make sure it stays a NaN
        payload = pc.bit_wise_and(pc.shift_right(raw, _u64(_MANTISSA_BITS[width] - fmt.mantissa)),
                                  _u64((1 << fmt.mantissa) - 1))
        payload = pc.cast(payload, pa.int64())
        quiet = pc.if_else(pc.equal(payload, 0), 1 << (fmt.mantissa - 1), payload)
        nan_bits = pc.add(quiet, ones)
    else:
        nan_bits = pa.scalar((1 << (fmt.exponent + fmt.mantissa)) - 1, pa.int64())
    special = pc.if_else(nan, nan_bits, pa.scalar(ones, pa.int64()))
    bits = pc.if_else(finite, bits, special)
    negative = pc.not_equal(pc.shift_right(raw, _u64(width - 1)), _u64(0))
    sign = 1 << (fmt.exponent + fmt.mantissa)
    bits = pc.if_else(negative, pc.bit_wise_or(bits, sign), bits)
    storage = pa.uint16() if fmt.name == "float16" else fmt.storage
    result = pc.cast(bits, storage)
    return result.view(pa.float16()) if fmt.name == "float16" else result


def _u64(value: int) -> pa.Scalar:
    return pa.scalar(value, pa.uint64())


@functools.cache
def _decode_table(name: str) -> pa.Array:
    """float32 value of every bit pattern of a float8 format."""
    fmt = _FORMATS[name]
    patterns = []
    for bits in range(1 << (1 + fmt.exponent + fmt.mantissa)):
        sign = (bits >> (fmt.exponent + fmt.mantissa)) << 31
        exponent = (bits >> fmt.mantissa) & ((1 << fmt.exponent) - 1)
        mantissa = bits & ((1 << fmt.mantissa) - 1)
        top = (1 << fmt.exponent) - 1
        if fmt.ieee and exponent == top:
            patterns.append(sign | 0x7F800000 | mantissa << (23 - fmt.mantissa))
        elif not fmt.ieee and exponent == top and mantissa == (1 << fmt.mantissa) - 1:
            patterns.append(sign | 0x7FC00000)
        else:
            significand = mantissa + ((1 << fmt.mantissa) if exponent else 0)
            value = math.ldexp(significand, max(exponent, 1) - fmt.bias - fmt.mantissa)
            patterns.append(sign | struct.unpack("<I", struct.pack("<f", value))[0])
    return pa.array(patterns, pa.uint32()).view(pa.float32())


def _decode(bits: pa.Array, fmt: _Format) -> pa.Array:
    """The float32 values of ``fmt`` bit patterns (exact: every one is a float32)."""
    if fmt.name == "float16":
        return pc.cast(bits.view(pa.float16()) if bits.type != pa.float16() else bits,
                       pa.float32())
    if fmt.name == "bfloat16":
        high = pc.shift_left(pc.cast(bits, pa.uint32()), pa.scalar(16, pa.uint32()))
        return high.view(pa.float32())
    return pc.take(_decode_table(fmt.name), bits)


# --- for people and tools --------------------------------------------------------------


def to_python_friendly(data: Any) -> Any:
    """The same table or batch with values most tools and people can read.

    bfloat16, float8_* and float16 become float32, uuid becomes 36-character text; json
    and string(n) stay text. Timestamps, decimals and everything else keep their Arrow
    types. Fields whose type changes lose their ``dataferry.type`` metadata.
    """
    schema = data.schema
    arrays, fields = [], []
    for index, field in enumerate(schema):
        column = data.column(index)
        if isinstance(column, pa.ChunkedArray):
            _, new_field = _friendly(pa.array([], field.type), field)
            chunks = [_friendly(chunk, field)[0] for chunk in column.chunks]
            arrays.append(pa.chunked_array(chunks, new_field.type))
        else:
            array, new_field = _friendly(column, field)
            arrays.append(array)
        fields.append(new_field)
    new_schema = pa.schema(fields, metadata=schema.metadata)
    if isinstance(data, pa.Table):
        return pa.Table.from_arrays(arrays, schema=new_schema)
    return pa.RecordBatch.from_arrays(arrays, schema=new_schema)


def _friendly(array: pa.Array, field: pa.Field) -> tuple[pa.Array, pa.Field]:
    t = array.type
    tag = _tag(field)
    if isinstance(t, pa.BaseExtensionType):
        tag = Primitive("uuid") if t.extension_name == "arrow.uuid" else tag
        array = array.storage
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    typed = field.type if field.type == array.type else array.type
    low_float = tag.name if isinstance(tag, Primitive) and tag.name in _FORMATS else None
    if low_float or pa.types.is_float16(array.type):
        array = _decode(array, _FORMATS[low_float or "float16"])
    elif tag == Primitive("uuid") and pa.types.is_fixed_size_binary(array.type):
        array = _uuid_text(array)
    elif _kind(array.type) in _LISTS or pa.types.is_map(array.type):
        array = _friendly_list(array, typed)
    elif pa.types.is_struct(array.type):
        children = [_friendly(c, f) for c, f in zip(array.flatten(), typed, strict=True)]
        array = pa.StructArray.from_arrays([c for c, _ in children],
                                           fields=[f for _, f in children], mask=_nulls(array))
    if array.type == t:
        return array, field
    metadata = {k: v for k, v in (field.metadata or {}).items() if k != METADATA_KEY.encode()}
    return array, pa.field(field.name, array.type, field.nullable, metadata or None)


def _friendly_list(array: pa.Array, typed: pa.DataType) -> pa.Array:
    if pa.types.is_map(array.type):
        fields = [typed.key_field, typed.item_field]
        entries = pa.list_(pa.field("entries", pa.struct(fields), False))
        values, offsets, _ = _flatten(pc.cast(array, entries))
        (keys, key_field), (items, item_field) = (
            _friendly(c, f) for c, f in zip(values.flatten(), fields, strict=True)
        )
        map_type = pa.map_(key_field, item_field)
        return pa.MapArray.from_arrays(offsets, keys, items, type=map_type, mask=_nulls(array))
    values, offsets, _ = _flatten(array)
    child, child_field = _friendly(values, typed.value_field)
    return pa.ListArray.from_arrays(offsets, child, type=pa.list_(child_field),
                                    mask=_nulls(array))


def _uuid_text(array: pa.Array) -> pa.Array:
    """36-character UUID text of 16-byte values (vectorised: a hex table lookup in numpy)."""
    count = len(array)
    start = array.offset * 16
    raw = np.frombuffer(array.buffers()[1], np.uint8, 16 * count, start).reshape(count, 16)
    text = np.empty((count, 36), np.uint8)
    # Each byte becomes two hex digits: one lookup of a 2-byte table entry per byte.
    digits = _HEX_PAIRS[raw].view(np.uint8)
    for (low, high), at in zip(_UUID_GROUPS, (0, 9, 14, 19, 24), strict=True):
        text[:, at:at + high - low] = digits[:, low:high]
        if at:
            text[:, at - 1] = ord("-")
    offsets = np.arange(0, 36 * count + 1, 36, dtype=np.int32)
    validity = array.buffers()[0] if array.null_count else None
    if validity is not None and array.offset:
        validity = pc.is_valid(array).buffers()[1]
    return pa.Array.from_buffers(pa.string(), count,
                                 [validity, pa.py_buffer(offsets), pa.py_buffer(text)],
                                 null_count=array.null_count)


_HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), np.uint16)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digits of 8-4-4-4-12
