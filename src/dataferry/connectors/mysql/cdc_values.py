"""Binlog row values as the same Arrow values a snapshot read gives (``types.py``).

python-mysql-replication decodes each row event's columns into Python values; a few of
them differ from what the snapshot path (``decode.py``) produces, and are brought in line
here, so a row read from the binlog equals the same row read by ``SELECT``, column for
column: ``SET`` (a Python set) becomes its comma-separated text in definition order (an
empty set ``''``, not NULL), ``BIT`` (a string of 0/1) a number, ``UUID`` (its 16 bytes)
the canonical text, a ``TIME`` (a timedelta) a time of day, and a zero date, which the
library reads as NULL, is an error naming the column, as in a snapshot.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa

from dataferry.connectors.mysql.types import BIT, ResultColumn
from dataferry.errors import SourceError

_OUT_OF_RANGE = ("out of datetime range", "out of date range", "out of datetime2 range")
_DAY = timedelta(days=1)


def normalize(value: Any, column: Any, none_source: str | None, native_type: str,
              dataset: str, name: str) -> Any:
    """One decoded binlog value in the form ``to_arrow`` takes.

    ``column`` is the library's column of the event's table map (its ``set_values``),
    ``none_source`` why the library gave None, ``native_type`` the table's
    ``COLUMN_TYPE`` (``uuid``, ``set(...)``...); ``dataset`` and ``name`` (the declared
    column) are named in errors.
    """
    if value is None:
        if none_source == "empty set":
            return ""
        if none_source in _OUT_OF_RANGE:
            raise SourceError(
                f"{dataset}: column {name!r} holds a zero or invalid date, which is not a "
                "valid date; MariaDB zero dates have no date equivalent: fix the rows (the "
                "snapshot read refuses them too)")
        return None
    if isinstance(value, set | frozenset):
        order = list(getattr(column, "set_values", None) or sorted(value))
        return ",".join(v for v in order if v in value)
    if native_type.startswith("bit") and isinstance(value, str):
        return int(value, 2) if value else 0
    if native_type == "uuid" and isinstance(value, bytes | bytearray) and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    if isinstance(value, dict | list):  # MySQL's binary JSON
        return json.dumps(value, separators=(", ", ": "))
    return value


def to_arrow(values: Sequence[Any], column: ResultColumn, arrow: pa.DataType,
             where: str) -> pa.Array:
    """An Arrow array of type ``arrow`` (the snapshot's type for ``column``) from
    normalized values; raises ``SourceError`` naming the column for a value that has no
    exact equivalent (a TIME outside a day, as the snapshot does)."""
    try:
        if pa.types.is_null(arrow):
            return pa.nulls(len(values))
        if pa.types.is_time(arrow):
            return pa.array([_time_of_day(v, column, where) for v in values], arrow)
        if column.type_code == BIT and pa.types.is_boolean(arrow):
            return pa.array([None if v is None else bool(v) for v in values], arrow)
        if pa.types.is_timestamp(arrow) and arrow.tz is not None:
            # The library reads TIMESTAMP as naive UTC, the session zone of a snapshot.
            return pa.array(values, pa.timestamp("us")).cast(arrow)
        if pa.types.is_string(arrow):
            return pa.array([_text(v) for v in values], arrow)
        if pa.types.is_binary(arrow):
            return pa.array([v.encode() if isinstance(v, str) else v for v in values], arrow)
        return pa.array(values, arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise SourceError(f"{where}: column {column.name!r}: a value read from the binlog "
                          f"cannot be read as {arrow} ({exc})") from None


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _time_of_day(value: Any, column: ResultColumn, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, timedelta) or value < timedelta(0) or value >= _DAY:
        raise SourceError(
            f"{where}: column {column.name!r} (time) holds a value that is not a time of day "
            "(00:00:00..23:59:59.999999); MariaDB TIME used as a duration cannot be read as "
            "a time")
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
