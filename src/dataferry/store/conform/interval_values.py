"""interval: ISO 8601 duration text, kept as given; Arrow intervals and durations as text."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.intervals import HINT, IntervalError, check_durations, to_duration_text
from dataferry.model.types import DataType
from dataferry.store.conform.kinds import _TEXT
from dataferry.store.conform.rejections import _reject


def _to_interval(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    try:
        if kind in _TEXT:
            # The form (unless PostgreSQL printed it: tagged), and the range of each part.
            check_durations(pc.cast(a, pa.string()), printed=tag == declared)
            return a
        if pa.types.is_interval(a.type) or pa.types.is_duration(a.type):
            return to_duration_text(a)
    except IntervalError as error:
        _reject(a, error.index, error.problem, HINT, declared)
    return None
