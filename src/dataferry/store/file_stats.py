"""Delta per-file statistics (``numRecords``, ``minValues``, ``maxValues``, ``nullCount``)
from a Parquet file's footer, so Delta readers can skip files a filter rules out.

The footer already holds min, max and null count per row group and column, so nothing is
read but the footer. What goes in follows the Delta protocol's "Per-file Statistics":
nested under struct columns, none for lists, maps and binaries. Bounds only ever widen:

- timestamps are written as ISO 8601 text at millisecond precision (``Z`` for instants,
  none for ``timestamp_ntz``): the minimum rounded down, the maximum rounded up, so a
  microsecond maximum is never cut below the real one;
- strings longer than ``STRING_PREFIX`` characters keep a prefix as their minimum and no
  maximum (a cut maximum would be below the real one);
- decimals with a scale are written as the nearest float outside the bound (a JSON
  number), and get none past ``FLOAT_DIGITS`` digits;
- floats get no bounds (Parquet's leave NaN out, but a query's ``x > 1e9`` matches NaN),
  booleans none (useless).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

STRING_PREFIX = 32
FLOAT_DIGITS = 15
"""Decimal digits a float keeps exactly."""
"""Characters of a string kept as its bound (Spark's and delta-rs' default)."""
_EPOCH = dt.datetime(1970, 1, 1)
_PER_MS = {"milliseconds": 1, "microseconds": 1_000, "nanoseconds": 1_000_000}


def file_stats(path: Path, *, tight: bool = True) -> dict[str, Any]:
    """The Delta ``stats`` object of the Parquet file at ``path``.

    ``tight=False`` marks the bounds as wide (``tightBounds``): a deletion vector has
    since removed rows the footer still counts.
    """
    metadata = pq.read_metadata(path)
    return footer_stats(metadata, tight=tight)


def footer_stats(metadata: pq.FileMetaData, *, tight: bool = True) -> dict[str, Any]:
    """``file_stats`` of an already read footer."""
    leaves: dict[str, list[Any]] = {}
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            leaves.setdefault(column.path_in_schema, []).append(column.statistics)
    schema = metadata.schema.to_arrow_schema()
    minimum: dict[str, Any] = {}
    maximum: dict[str, Any] = {}
    nulls: dict[str, Any] = {}
    for field in schema:
        _collect(field, field.name, leaves, minimum, maximum, nulls)
    stats: dict[str, Any] = {"numRecords": metadata.num_rows}
    if minimum:
        stats["minValues"] = minimum
    if maximum:
        stats["maxValues"] = maximum
    if nulls:
        stats["nullCount"] = nulls
    if not tight:
        stats["tightBounds"] = False
    return stats


def _collect(field: pa.Field, path: str, leaves: dict[str, list[Any]],
             minimum: dict[str, Any], maximum: dict[str, Any], nulls: dict[str, Any]) -> None:
    """Put ``field``'s statistics (those of its children, for a struct) in the three maps."""
    kind = field.type
    if pa.types.is_dictionary(kind):  # a dictionary-typed column holds its values' type
        kind = kind.value_type
    if pa.types.is_struct(kind):
        inner: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
        for child in kind:
            _collect(child, f"{path}.{child.name}", leaves, *inner)
        for target, found in zip((minimum, maximum, nulls), inner, strict=True):
            if found:
                target[field.name] = found
        return
    if pa.types.is_nested(kind):  # lists, maps: the protocol keeps no statistics for them
        return
    statistics = leaves.get(path)
    if not statistics or any(s is None for s in statistics):
        return
    if all(s.has_null_count for s in statistics):
        nulls[field.name] = sum(int(s.null_count) for s in statistics)
    bounded = [s for s in statistics if s.has_min_max]
    if not bounded:  # only nulls: no bounds to give
        return
    if pa.types.is_timestamp(kind):
        low, high = _timestamp(bounded, low=True), _timestamp(bounded, low=False)
    else:
        low = _bound(kind, min(s.min for s in bounded), low=True)
        high = _bound(kind, max(s.max for s in bounded), low=False)
    if low is not None:
        minimum[field.name] = low
    if high is not None:
        maximum[field.name] = high


def _bound(kind: pa.DataType, value: Any, *, low: bool) -> Any:
    """``value`` as the protocol writes it, widened as the module says; None: no bound."""
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_decimal(kind):
        return _decimal(value, kind, low=low)
    if pa.types.is_date(kind):
        return value.isoformat() if isinstance(value, dt.date) else None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if len(text) <= STRING_PREFIX:
            return text
        return text[:STRING_PREFIX] if low else None
    return None


def _decimal(value: Decimal, kind: pa.Decimal128Type, *, low: bool) -> int | float | None:
    """A decimal bound as a JSON number: exact for integers; otherwise the nearest float
    on the outer side of ``value``, which rounds back to it at the column's scale while
    the column has at most ``FLOAT_DIGITS`` digits (JSON numbers are floats in Python)."""
    if kind.scale == 0:
        return int(value)
    if kind.precision > FLOAT_DIGITS:
        return None
    bound = float(value)
    if (Decimal(bound) > value) if low else (Decimal(bound) < value):
        bound = math.nextafter(bound, -math.inf if low else math.inf)
    return bound


def _timestamp(statistics: list[Any], *, low: bool) -> str | None:
    """The minimum (``low``) or maximum of a timestamp column's row groups as ISO text in
    whole milliseconds, rounded down for a minimum and up for a maximum. Read from the
    raw integers in the file's own unit (the Arrow schema may name another: seconds are
    stored as milliseconds), so nothing is lost to a datetime conversion."""
    logical = json.loads(statistics[0].logical_type.to_json())
    per_ms = _PER_MS.get(logical.get("timeUnit", ""))
    if per_ms is None:
        return None
    raw = min(int(s.min_raw) for s in statistics) if low else max(
        int(s.max_raw) for s in statistics)
    millis = raw // per_ms if low else -(-raw // per_ms)
    try:
        moment = _EPOCH + dt.timedelta(milliseconds=millis)
    except OverflowError:
        return None
    text = moment.isoformat(timespec="milliseconds")
    return text + "Z" if logical.get("isAdjustedToUTC") else text
