"""Declared types for live columns: each catalog module asks its connector's own mapping
first (what a column of that native type holds exactly, the same rules the sinks use),
then falls back to the Arrow type the source reads the column as (``from_arrow``): nested
values the model cannot declare (a struct field named ``a b``) become ``json``, other
types without a dataferry type ``string`` (their text), each with a note.
"""

from __future__ import annotations

import re

import pyarrow as pa

from dataferry.connectors.base import SourceColumn
from dataferry.discover.live import LiveColumn
from dataferry.model.types import (
    DataType,
    UnsupportedArrowTypeError,
    format_type,
    from_arrow_field,
)

_ENUM = re.compile(r"^\s*enum\s*\((.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def from_arrow(column: SourceColumn) -> LiveColumn:
    """The declared type of the Arrow type the source reads ``column`` as; text with a
    note when it has none (the source then hands the value over as text)."""
    try:
        t = from_arrow_field(pa.field(column.name, column.arrow_type))
    except (UnsupportedArrowTypeError, ValueError):
        if _nested(column.arrow_type):  # e.g. a struct field name a column cannot have
            return LiveColumn(column, "json", "nested values with names the model cannot "
                                              "declare: kept as JSON")
        return LiveColumn(column, "string", f"{column.native_type} has no dataferry type: "
                                            "read as text")
    arrow = column.arrow_type
    if (pa.types.is_timestamp(arrow) or pa.types.is_time(arrow)) and arrow.unit == "ns":
        return LiveColumn(column, format_type(t), "nanoseconds: dataferry keeps microseconds, "
                                                  "so a finer value fails the ingest")
    return LiveColumn(column, format_type(t))


def _nested(arrow: pa.DataType) -> bool:
    types = pa.types
    return bool(types.is_struct(arrow) or types.is_map(arrow) or types.is_list(arrow)
                or types.is_large_list(arrow) or types.is_fixed_size_list(arrow))


def declared(column: SourceColumn, t: DataType, note: str | None = None,
             values: tuple[str, ...] = ()) -> LiveColumn:
    return LiveColumn(column, format_type(t), note, values)


def as_text(column: SourceColumn, why: str) -> LiveColumn:
    """A column read as its text: ``string`` with ``why`` as the note."""
    return LiveColumn(column, "string", why)


def enum_values(native: str) -> tuple[str, ...]:
    """The values of ``enum('a','b')`` (MariaDB, DuckDB spelling); () for other types."""
    match = _ENUM.match(native)
    if match is None:
        return ()
    return tuple(v.replace("''", "'") for v in _QUOTED.findall(match[1]))
