"""Dates, times and timestamps, from Arrow temporal types or ISO 8601 text."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType, Primitive
from dataferry.store.conform.kinds import _TEXT
from dataferry.store.conform.rejections import _cast, _first, _reject


def _to_date(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in ("date32", "date64", *_TEXT):
        return _cast(a, pa.date32(), declared, lambda v: "is not a date (whole days, "
                     "YYYY-MM-DD)", "write dates as ISO 8601, e.g. 2024-05-01")
    return None


_TIME_TEXT = r"^\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$"
_EXTRA_ZEROS = (r"(\.\d{6})0+(Z|[+-].*)?$", r"\1\2")
_TIME_HINT = "write times as ISO 8601, e.g. 12:30:00 or 12:30:00.250"


def _to_time(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    if kind in ("time32", "time64"):
        return _cast(a, pa.time64("us"), declared,
                     lambda v: "has a fraction finer than a microsecond",
                     "round the value to microseconds at the source")
    if kind not in _TEXT:
        return None
    index = _first(pc.invert(pc.match_substring_regex(a, _TIME_TEXT)))
    if index is not None:
        _reject(a, index, "is not a time", _TIME_HINT, declared)
    text = pc.binary_join_element_wise("1970-01-01T", pc.replace_substring_regex(
        a, *_EXTRA_ZEROS), "")
    parsed = _cast(text, pa.timestamp("us"), declared,
                   lambda v: "is not a valid time (or has a fraction finer than a microsecond)",
                   _TIME_HINT, a)
    micros = pc.cast(parsed, pa.int64())
    index = _first(pc.greater_equal(micros, 86_400_000_000))  # 24:00:00, leap seconds
    if index is not None:
        _reject(a, index, "is not a time of day before 24:00", _TIME_HINT, declared)
    return pc.cast(micros, pa.time64("us"))


_ZONE = r":\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)$"
_TS_HINT = "write timestamps as ISO 8601, e.g. 2024-05-01T12:30:00 (with Z or +02:00 for " \
           "timestamp_tz)"


def _to_timestamp(a: pa.Array, kind: str, declared: DataType, tag: DataType | None) -> Any:
    aware = declared == Primitive("timestamp_tz")
    target = pa.timestamp("us", "UTC" if aware else None)
    if kind == "timestamp":
        if a.type.tz is not None and not aware:
            _reject(a, _first(pc.is_valid(a)), f"has a time zone ({a.type.tz})",
                    "declare the column timestamp_tz, or convert to local times without a "
                    "zone at the source", declared)
        if a.type.tz is not None:
            a = a.cast(pa.timestamp(a.type.unit, "UTC"))
        return _cast(a, target, declared, _finer_than_micros,
                     "round the value to microseconds at the source")
    if kind not in _TEXT:
        return None
    text = pc.replace_substring_regex(pc.utf8_upper(a), *_EXTRA_ZEROS)
    zoned = pc.match_substring_regex(text, _ZONE)
    parse_failed = "is not an ISO 8601 timestamp"
    if not aware:
        index = _first(zoned)
        if index is not None:
            _reject(a, index, "has a time zone offset", "declare the column timestamp_tz, or "
                    "write local times without an offset", declared)
        return _cast(text, target, declared, lambda v: parse_failed, _TS_HINT, a)
    none = pa.scalar(None, text.type)
    with_zone = _cast(pc.if_else(zoned, text, none), target, declared,
                      lambda v: parse_failed, _TS_HINT, a)
    naive = _cast(pc.if_else(zoned, none, text), pa.timestamp("us"), declared,
                  lambda v: parse_failed, _TS_HINT, a)
    return pc.if_else(zoned, with_zone, pc.cast(naive, target))


def _finer_than_micros(value: Any) -> str:
    return "has a fraction finer than a microsecond or is out of range"
