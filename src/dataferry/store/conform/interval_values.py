"""interval: ISO 8601 duration text, kept as given; Arrow intervals and durations as text."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dataferry.intervals import HINT, IntervalError, to_duration_text, to_month_day_nano
from dataferry.model.types import DataType
from dataferry.store.conform.kinds import _TEXT
from dataferry.store.conform.rejections import _reject


def _to_interval(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    try:
        if kind in _TEXT:
            to_month_day_nano(a)  # checks every value: the form and the range of each part
            return a
        if pa.types.is_interval(a.type) or pa.types.is_duration(a.type):
            return to_duration_text(a)
    except IntervalError as error:
        _reject(a, error.index, error.problem, HINT, declared)
    return None
