"""Rows as Python values, for what shows or writes them one by one (``ferry show``, JSONL).

Arrow holds times Python's ``datetime`` cannot: years after 9999 and before 1, which a
source may well have (PostgreSQL's ``infinity`` aside, 4713 BC and 294276 AD are valid
there) and which the store and the sinks keep. ``to_pylist`` raises OverflowError on them.
Only then, and only for the columns that need it, the times become ISO 8601 text made by
Arrow, as ``isoformat()`` writes the others: ``11968-12-31T00:00:00+00:00``, ``-0249-10-15`` (astronomical years, as
ISO 8601's expanded form has them).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def python_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, with times out of Python's range as ISO text."""
    try:
        rows: list[dict[str, Any]] = batch.to_pylist()
    except (OverflowError, ValueError):
        rows = _with_far_times_as_text(batch).to_pylist()
    return rows


def _with_far_times_as_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    columns: list[pa.Array] = []
    fields: list[pa.Field] = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if _temporal(field.type) and not _fits_python(column):
            column = _iso_text(column)
            field = pa.field(field.name, pa.string(), field.nullable, field.metadata)
        columns.append(column)
        fields.append(field)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, batch.schema.metadata))


def _temporal(kind: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date(kind))


def _fits_python(column: pa.Array) -> bool:
    try:
        column.to_pylist()
    except (OverflowError, ValueError):
        return False
    return True


def _iso_text(column: pa.Array) -> pa.Array:
    if pa.types.is_date(column.type):
        return column.cast(pa.string())
    text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")
    text = pc.replace_substring_regex(text, pattern=r"\.0+$", replacement="")  # as isoformat()
    if column.type.tz is not None:  # the store keeps aware times in UTC
        text = pc.binary_join_element_wise(text, "+00:00", "")
    return text
