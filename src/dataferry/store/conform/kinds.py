"""What kind of Arrow data came in: coarse kinds, declared-type tags, list layouts."""

from __future__ import annotations

import bisect
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import (
    METADATA_KEY,
    DataType,
    Primitive,
    UnsupportedArrowTypeError,
    from_arrow_field,
)
from dataferry.store.conform.rejections import _Rejected, _type_text

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
