"""Values most tools and people can read (``to_python_friendly``)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import METADATA_KEY, Primitive
from dataferry.store.conform.kinds import _LISTS, _flatten, _kind, _nulls, _tag
from dataferry.store.conform.low_floats import _FORMATS, _decode
from dataferry.store.conform.text import _uuid_text


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
