"""Turn a column of raw result values (text, or bytes for binary columns) into Arrow.

The source reads with PyMySQL's converters switched off, so each value arrives as the
server's text (``'12.50'``, ``'2024-01-02 03:04:05.000001'``); a whole batch of a column
is then parsed by one vectorised Arrow cast, which is exact and much faster than
building a Python object per value. Values Arrow cannot parse (zero dates, TIME outside
a day) are reported with the column and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dataferry.connectors.mysql.types import BIT, FLOAT, TIME, ResultColumn
from dataferry.errors import SourceError

_MICROS = {"h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000}


def decode_column(values: Sequence[Any], column: ResultColumn, arrow: pa.DataType,
                  where: str) -> pa.Array:
    """An Arrow array of type ``arrow`` from one column's raw values of one batch.

    ``where`` names the dataset in errors. Raises ``SourceError`` (terminal) naming the
    column and the first value that has no exact Arrow equivalent.
    """
    if pa.types.is_null(arrow):
        return pa.nulls(len(values))
    if pa.types.is_binary(arrow):
        return pa.array(values, pa.binary())
    if column.type_code == BIT:
        return bits(values, arrow)
    return decode_text(pa.array(values, pa.string()), column, arrow, where)


def decode_text(text: pa.Array, column: ResultColumn, arrow: pa.DataType,
                where: str) -> pa.Array:
    """``decode_column`` for values that are already an Arrow string array (the server's
    text of each value)."""
    if pa.types.is_null(arrow):
        return pa.nulls(len(text))
    if pa.types.is_string(arrow):
        return text
    if column.type_code == TIME:
        return _times(text.to_pylist(), column, where)
    try:
        if column.type_code == FLOAT:  # read as CAST(.. AS DOUBLE): exact float32 values
            return text.cast(pa.float64()).cast(pa.float32())
        if pa.types.is_timestamp(arrow) and arrow.tz is not None:
            return text.cast(pa.timestamp("us")).cast(arrow)
        return text.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _bad_value(text.to_pylist(), column, arrow, where) from None


def bits(values: Sequence[Any], arrow: pa.DataType) -> pa.Array:
    """BIT values (big-endian bytes) as bool (BIT(1)) or unsigned integers."""
    numbers = [None if v is None else int.from_bytes(v, "big") for v in values]
    if pa.types.is_boolean(arrow):
        return pa.array([None if n is None else n != 0 for n in numbers], pa.bool_())
    return pa.array(numbers, arrow)


def _times(values: Sequence[Any], column: ResultColumn, where: str) -> pa.Array:
    """TIME text (``[-]H+:MM:SS[.ffffff]``) as microseconds since midnight."""
    micros: list[int | None] = []
    for value in values:
        if value is None:
            micros.append(None)
            continue
        clock, _, fraction = value.partition(".")
        parts = clock.split(":")
        if value.startswith("-") or len(parts) != 3 or int(parts[0]) >= 24:
            raise SourceError(
                f"{where}: column {column.name!r} (time) holds {value!r}, which is not a time "
                "of day (00:00:00..23:59:59.999999); MariaDB TIME used as a duration cannot "
                "be read as a time: select it as TIME_TO_SEC(...) or CAST(... AS CHAR) in a "
                "query: dataset",
                public=f"{where}: column {column.name!r} (time) holds a value that is not a "
                       "time of day; select it as TIME_TO_SEC(...) or CAST(... AS CHAR) in a "
                       "query: dataset")
        hours, minutes, seconds = (int(p) for p in parts)
        micros.append(hours * _MICROS["h"] + minutes * _MICROS["m"] + seconds * _MICROS["s"]
                      + int((fraction + "000000")[:6]))
    return pa.array(micros, pa.time64("us"))


def _bad_value(values: Sequence[Any], column: ResultColumn, arrow: pa.DataType,
               where: str) -> SourceError:
    target = pa.float64() if column.type_code == FLOAT else arrow
    for value in values:
        if value is None:
            continue
        try:
            pa.array([value], pa.string()).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hint = ""
            if value.startswith("0000") or "-00" in value[:10]:
                hint = ("; MariaDB zero dates have no date equivalent: fix the rows or select "
                        "NULLIF(column, '0000-00-00') (or a real date) in a query: dataset")
            return SourceError(f"{where}: column {column.name!r} holds {value!r}, which is "
                               f"not a valid {arrow}{hint}")
    return SourceError(f"{where}: column {column.name!r} cannot be read as {arrow}")
