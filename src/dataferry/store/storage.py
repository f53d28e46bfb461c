"""Between declared types and the types the store keeps (``types.to_store_arrow``).

``encode`` turns conformed data (the declared types' natural Arrow form) into the
Delta-readable form the store writes; ``decode`` turns stored data back into values of
the declared types for people and tools: unsigned integers, time of day, naive
timestamps and wide decimals come back as such; low-precision floats as float32 (their
exact values) and uuids as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.spec import Column
from dataferry.model.types import (
    UTC_TIMESTAMP,
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    StructType,
    contains,
    parse_type,
    to_store_arrow,
    to_store_field,
)
from dataferry.store.conform import to_python_friendly

_UNSIGNED = {"uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(),
             "uint64": pa.uint64()}
_LOW_FLOATS = ("float16", "bfloat16", "float8_e4m3", "float8_e5m2")


def store_schema(columns: Mapping[str, Column] | Iterable[tuple[str, str, bool]], *,
                 utc_timestamps: bool = False) -> pa.Schema:
    """The schema of the store's files for declared columns (name -> Column, or triples).

    ``utc_timestamps``: ``timestamp`` as UTC instants, as datasets first published before
    ``timestamp_ntz`` keep it (``types.to_store_arrow``). Readers can use the default
    for those too: their values cast to the same wall-clock times.
    """
    if isinstance(columns, Mapping):
        triples = [(n, c.type, c.nullable) for n, c in columns.items()]
    else:
        triples = list(columns)
    return pa.schema([to_store_field(n, parse_type(t), nullable, utc_timestamps=utc_timestamps)
                      for n, t, nullable in triples])


_ENCODED = {*_UNSIGNED, *_LOW_FLOATS, "uuid", "time"}
_RESTORED = {*_ENCODED, "timestamp"}
"""Declared types stored in another type; ``timestamp`` only in datasets that keep it as
UTC instants, but decoding it costs nothing where it is stored as it is declared."""


def _stored_differently(leaf: DataType, names: set[str]) -> bool:
    if isinstance(leaf, Primitive):
        return leaf.name in names
    return isinstance(leaf, Decimal) and leaf.precision > 38


def _changes(t: DataType, *, encoding: bool = False, utc_timestamps: bool = False) -> bool:
    """Whether stored values of ``t`` differ in type from the conformed ones (that
    ``encoding`` changes them, with ``utc_timestamps`` or not)."""
    names = _RESTORED if not encoding or utc_timestamps else _ENCODED
    return contains(t, lambda leaf: _stored_differently(leaf, names))


def _nulls(array: pa.Array) -> pa.Array | None:
    return pc.is_null(array) if array.null_count else None


def _rebuild(array: pa.Array, t: DataType, convert: Callable[[pa.Array, DataType], pa.Array],
             target: pa.DataType | None) -> pa.Array:
    """Apply ``convert`` to the children of a list/map/struct array."""
    if isinstance(t, ListType):
        flat = array if array.offset == 0 else pa.concat_arrays([array])
        values = convert(flat.values, t.item)
        kind = target or pa.list_(pa.field("item", values.type))
        return pa.ListArray.from_arrays(flat.offsets, values, type=kind, mask=_nulls(flat))
    if isinstance(t, MapType):
        flat = array if array.offset == 0 else pa.concat_arrays([array])
        keys = convert(flat.keys, t.key)
        items = convert(flat.items, t.value)
        kind = target or pa.map_(keys.type, items.type)
        return pa.MapArray.from_arrays(flat.offsets, keys, items, type=kind, mask=_nulls(flat))
    assert isinstance(t, StructType)
    children = [convert(array.field(i), f) for i, (_, f) in enumerate(t.fields)]
    if target is not None:
        fields = list(target)
    else:
        fields = [pa.field(n, c.type) for (n, _), c in zip(t.fields, children, strict=True)]
    return pa.StructArray.from_arrays(children, fields=fields, mask=_nulls(array))


def encode_array(array: pa.Array, t: DataType, *, utc_timestamps: bool = False) -> pa.Array:
    """Conformed values of declared type ``t`` -> the store's form (``to_store_arrow``)."""
    if not _changes(t, encoding=True, utc_timestamps=utc_timestamps):
        return array
    match t:
        case Primitive(name) if name in _UNSIGNED:
            return array.cast(to_store_arrow(t))
        case Primitive(name) if name in _LOW_FLOATS or name == "uuid":
            field = pa.field("v", array.type, metadata={b"dataferry.type": name.encode()})
            friendly = to_python_friendly(pa.RecordBatch.from_arrays([array], schema=pa.schema([field])))
            return friendly.column(0)
        case Primitive("time"):
            # HH:MM:SS.ffffff, as strftime("%H:%M:%S") of a timestamp prints it, 5x faster
            return array.cast(pa.time64("us")).cast(pa.string())
        case Primitive("timestamp"):
            return array.cast(UTC_TIMESTAMP)
        case Decimal():
            return array.cast(pa.string())

    def encode(child: pa.Array, kind: DataType) -> pa.Array:
        return encode_array(child, kind, utc_timestamps=utc_timestamps)

    return _rebuild(array, t, encode, to_store_arrow(t, utc_timestamps=utc_timestamps))


def decode_array(array: pa.Array, t: DataType) -> pa.Array:
    """Stored values of declared type ``t`` -> the declared type's natural Arrow form."""
    if not _changes(t):
        return array
    match t:
        case Primitive(name) if name in _UNSIGNED:
            return array.cast(_UNSIGNED[name])
        case Primitive(name) if name in _LOW_FLOATS or name == "uuid":
            return array
        case Primitive("time"):
            parsed = pc.binary_join_element_wise("1970-01-01 ", array, "").cast(
                pa.timestamp("us"))
            return parsed.cast(pa.int64()).cast(pa.time64("us"))
        case Primitive("timestamp"):
            return array.cast(pa.timestamp("us"))
        case Decimal(p, s):
            return array.cast(pa.decimal256(p, s))
    return _rebuild(array, t, decode_array, None)


def _batch(batch: pa.RecordBatch, types: list[DataType],
           convert: Callable[[pa.Array, DataType], pa.Array],
           schema: pa.Schema | None) -> pa.RecordBatch:
    arrays = [convert(column, t) for column, t in zip(batch.columns, types, strict=True)]
    if schema is None:
        schema = pa.schema([pa.field(f.name, a.type, f.nullable)
                            for f, a in zip(batch.schema, arrays, strict=True)])
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def encode_reader(reader: pa.RecordBatchReader, columns: Mapping[str, Column], *,
                  utc_timestamps: bool = False) -> pa.RecordBatchReader:
    """Stream conformed batches in the store's form (``utc_timestamps``: see
    ``store_schema``)."""
    types = [parse_type(c.type) for c in columns.values()]
    schema = store_schema(columns, utc_timestamps=utc_timestamps)
    changes = any(_changes(t, encoding=True, utc_timestamps=utc_timestamps) for t in types)

    def encode(array: pa.Array, t: DataType) -> pa.Array:
        return encode_array(array, t, utc_timestamps=utc_timestamps)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if changes:
                yield _batch(batch, types, encode, schema)
            else:  # the same arrays; only the schema object is the store's
                yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def decode_batch(batch: pa.RecordBatch, declared: Mapping[str, str]) -> pa.RecordBatch:
    """A stored batch in the declared types' natural form (``declared``: name -> type text)."""
    types = [parse_type(declared[name]) for name in batch.schema.names]
    return _batch(batch, types, decode_array, None)
