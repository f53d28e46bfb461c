"""The conversion of one array to its declared type; nested types recurse here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

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
)
from dataferry.store.conform.interval_values import _to_interval
from dataferry.store.conform.json_values import _to_json
from dataferry.store.conform.kinds import (
    _BYTES,
    _INT_RANGES,
    _LISTS,
    _TEXT,
    _flatten,
    _kind,
    _nulls,
    _tag,
)
from dataferry.store.conform.low_floats import _FORMATS, _decode
from dataferry.store.conform.numbers import (
    _to_bool,
    _to_decimal,
    _to_float,
    _to_integer,
    _to_low_float,
)
from dataferry.store.conform.rejections import _first, _reject, _Rejected, _type_text
from dataferry.store.conform.temporal import _to_date, _to_time, _to_timestamp
from dataferry.store.conform.text import _to_binary, _to_string, _to_uuid

if TYPE_CHECKING:
    from dataferry.store.conform.conformer import Conformer


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
            # json text is stored as given; text tagged with the declared type (PostgreSQL's
            # interval, our own files) was printed by its producer, without blanks.
            if family != "json" and tag != declared:
                array = pc.utf8_trim_whitespace(array)
            array = _empty_to_null(array)
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


def _empty_to_null(array: pa.Array) -> pa.Array:
    """Empty text as null; the same array, not a copy, when none is empty (2M json
    values: 0.01 s to look instead of 0.2 s to copy)."""
    if array.null_count == len(array) or pc.min(pc.binary_length(array)).as_py() > 0:
        return array
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


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


_Convert = Callable[[pa.Array, str, DataType, DataType | None], Any]
_PRIMITIVES: dict[str, _Convert] = {
    "integer": _to_integer, "float32": _to_float, "float64": _to_float,
    "low_float": _to_low_float, "decimal": _to_decimal, "bool": _to_bool,
    "string": _to_string, "binary": _to_binary, "date": _to_date, "time": _to_time,
    "timestamp": _to_timestamp, "timestamp_tz": _to_timestamp, "uuid": _to_uuid,
    "json": _to_json, "interval": _to_interval,
}
