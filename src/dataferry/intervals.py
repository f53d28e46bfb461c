"""The ``interval`` type's values: ISO 8601 duration text and Arrow's month_day_nano.

The store keeps an interval as ISO 8601 text (Parquet and Delta Lake have no interval
type); sinks with a native interval (PostgreSQL, DuckDB) get Arrow month_day_nano arrays,
which ADBC and DuckDB write as their INTERVAL. An interval is three separate parts, as in
both databases: months, days and microseconds (a month is not a fixed number of days).

The text accepted (``DURATION``) is what PostgreSQL prints with ``intervalstyle
iso_8601``: ``P[nY][nM][nW][nD][T[nH][nM][n[.ffffff]S]]``, each part with its own
optional minus sign (``P1Y2M-3DT4H5M6.5S``, ``PT-0.5S``), at least one part, seconds
with at most 6 fractional digits. The time part (hours, minutes, seconds) is at most
2562047:47:16.854775 either way, as Arrow's int64 nanoseconds hold (PostgreSQL allows 1000 times more). Years and months add up to the months (12 to a year),
weeks and days to the days (7 to a week), hours, minutes and seconds to the microseconds.
Everything here works on whole arrays (Arrow compute and numpy), never value by value.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataferry.model.types import DataType, ListType, MapType, Primitive, StructType, contains

DURATION = (r"^P(?:(?P<y>-?\d+)Y)?(?:(?P<mo>-?\d+)M)?(?:(?P<w>-?\d+)W)?(?:(?P<d>-?\d+)D)?"
            r"(?:T(?:(?P<h>-?\d+)H)?(?:(?P<mi>-?\d+)M)?"
            r"(?:(?P<sign>-?)(?P<s>\d+)(?:\.(?P<f>\d{1,6}))?S)?)?$")
HINT = ("write intervals as ISO 8601 durations, e.g. P1Y2M-3DT4H5M6.5S (PostgreSQL prints "
        "them so with intervalstyle iso_8601)")
_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_MICROS = {"h": 3_600_000_000, "mi": 60_000_000, "s": 1_000_000}
_STORAGE = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")])


class IntervalError(ValueError):
    """The value at ``index`` is not an interval dataferry can keep (``problem`` says why)."""

    def __init__(self, index: int, problem: str) -> None:
        self.index, self.problem = index, problem
        super().__init__(f"row {index}: {problem}")


def _first(mask: pa.Array) -> int | None:
    index = pc.index(mask, True).as_py()
    return None if index is None or index < 0 else int(index)


def not_a_duration(text: pa.Array) -> int | None:
    """The index of the first value of the string array ``text`` that is not ISO 8601
    duration text as ``DURATION`` describes it, or None (nulls are fine)."""
    empty = pc.or_(pc.equal(text, "P"), pc.ends_with(text, "T"))  # no part, or none after T
    bad = pc.or_(pc.invert(pc.match_substring_regex(text, DURATION)), empty)
    return _first(pc.fill_null(bad, False))


def check_durations(text: pa.Array, *, printed: bool = False) -> None:
    """Raise ``IntervalError`` for the first value of the string array ``text`` that is
    not ISO 8601 duration text, or whose months, days (int32) or time part (int64
    nanoseconds) overflow. Only values with a number of 7 digits or more can overflow;
    just those are parsed. ``printed``: the text is known to have the form (PostgreSQL
    printed it, or the store wrote it); only the ranges are checked then."""
    _large_parts(text, printed=printed)


def _large_parts(text: pa.Array, *, printed: bool = False
                 ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Check ``text`` (``check_durations``); return the rows with numbers of 7 digits or
    more and their (months, days, microseconds), parsed with checked arithmetic."""
    if not printed:
        index = not_a_duration(text)
        if index is not None:
            raise IntervalError(index, "is not an ISO 8601 duration")
    large = _long_numbers(text)
    if not len(large):
        return large, ()
    try:
        return large, _checked_parts(text.take(pa.array(large)))
    except IntervalError as error:
        raise IntervalError(int(large[error.index]), error.problem) from None


def _long_numbers(text: pa.Array) -> np.ndarray:
    """The rows of duration text ``text`` (a string array) holding a number of 7 digits or
    more, found in numpy over the text's bytes (a third of a regular expression's time).
    Duration text begins with P and ends with a letter, so no run of digits spans two
    values; the bytes of null values are not looked at."""
    count = len(text)
    offsets = np.frombuffer(text.buffers()[1], np.int32, count + 1, 4 * text.offset)
    size = int(offsets[-1] - offsets[0])
    if size < 7 or text.buffers()[2] is None:
        return np.empty(0, np.intp)
    raw = np.frombuffer(text.buffers()[2], np.uint8, size, int(offsets[0]))
    digit = (raw - np.uint8(ord("0"))) < 10
    run = digit[:size - 6].copy()  # run[i]: bytes i to i + 6 are all digits
    for shift in range(1, 7):
        run &= digit[shift:size - 6 + shift]
    rows = np.unique(np.searchsorted(offsets[1:] - offsets[0], np.flatnonzero(run),
                                     side="right"))
    if text.null_count and len(rows):
        rows = rows[pc.is_valid(text).to_numpy(zero_copy_only=False)[rows]]
    return rows


def to_month_day_nano(text: pa.Array) -> pa.Array:
    """Parse ISO 8601 duration text into a month_day_nano array (nanoseconds are whole
    microseconds). Raises ``IntervalError`` as ``check_durations``."""
    text = pc.cast(text, pa.string())
    large, checked = _large_parts(text)
    months, days, micros = _small_parts(pc.fill_null(text, "PT0S"))
    for whole, part in zip((months, days, micros), checked, strict=False):
        whole[large] = part
    storage = np.empty(len(text), _STORAGE)
    storage["months"], storage["days"], storage["nanos"] = months, days, micros * 1000
    validity = pc.is_valid(text).buffers()[1] if text.null_count else None
    return pa.Array.from_buffers(pa.month_day_nano_interval(), len(text),
                                 [validity, pa.py_buffer(storage.tobytes())],
                                 null_count=text.null_count)


_POWERS = 10 ** np.arange(19, dtype=np.int64)
_FACTORS = {ord("Y"): (0, 12), ord("W"): (1, 7), ord("D"): (1, 1), ord("H"): (2, 3_600_000_000),
            ord("S"): (2, 1_000_000), ord("."): (2, 1_000_000)}


def _small_parts(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(months, days, microseconds) of valid duration text without nulls, in numpy over the
    text's bytes: each digit run is a number, the byte after it its designator, the byte
    before it its sign ('-') or its role (after '.', a fraction of a second). Exact for
    numbers of up to 6 digits (no sum can overflow then); longer ones are garbage here."""
    count = len(text)
    offsets = np.frombuffer(text.buffers()[1], np.int32, count + 1, 4 * text.offset)
    raw = np.frombuffer(text.buffers()[2], np.uint8, offsets[-1] - offsets[0], offsets[0])
    first = offsets[:-1] - offsets[0]  # where each value starts in ``raw``
    digit = (raw >= ord("0")) & (raw <= ord("9"))
    before = np.concatenate(([False], digit[:-1]))
    after = np.concatenate((digit[1:], [False]))
    starts, ends = np.flatnonzero(digit & ~before), np.flatnonzero(digit & ~after) + 1
    row = np.searchsorted(offsets[1:] - offsets[0], starts, side="right")
    length = ends - starts
    value = (raw[ends - 1] - ord("0")).astype(np.int64)
    longer = np.arange(len(starts))
    for place in range(1, 6):  # the run's last 6 digits, one decimal place at a time
        longer = longer[length[longer] > place]  # most numbers have 1 or 2 digits
        if not len(longer):
            break
        digits = raw[ends[longer] - 1 - place].astype(np.int64) - ord("0")
        value[longer] += digits * _POWERS[place]
    sign = np.where(raw[starts - 1] == ord("-"), -1, 1)
    designator = raw[np.minimum(ends, len(raw) - 1)]
    # A designator M is months before the T, minutes after it.
    time_at = pc.find_substring(text, "T").to_numpy(zero_copy_only=False)[row]
    in_time = (time_at >= 0) & (starts - first[row] > time_at)
    fraction = raw[starts - 1] == ord(".")
    parts = [np.zeros(count, np.int64) for _ in range(3)]
    for code, (part, factor) in _FACTORS.items():
        chosen = (designator == code) & ~fraction
        np.add.at(parts[part], row[chosen], value[chosen] * sign[chosen] * factor)
    chosen = (designator == ord("M")) & in_time
    np.add.at(parts[2], row[chosen], value[chosen] * sign[chosen] * 60_000_000)
    chosen = (designator == ord("M")) & ~in_time
    np.add.at(parts[0], row[chosen], value[chosen] * sign[chosen])
    # A fraction takes the sign of its seconds (the run before it: '-0.5' is negative).
    seconds_sign = sign[np.flatnonzero(fraction) - 1]
    micros = value[fraction] * _POWERS[np.maximum(6 - length[fraction], 0)]
    np.add.at(parts[2], row[fraction], micros * seconds_sign)
    return parts[0], parts[1], parts[2]


def _checked_parts(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(months, days, microseconds) of valid duration text without nulls, with checked
    arithmetic: ``IntervalError`` names the first value beyond an interval's range."""
    parts = pc.extract_regex(text, DURATION)

    def number(name: str, kind: pa.DataType = pa.float64()) -> pa.Array:
        digits = parts.field(name)
        return pc.cast(pc.if_else(pc.equal(digits, ""), "0", digits), kind)

    fraction = pc.utf8_rpad(parts.field("f"), width=6, padding="0")
    sign = pc.if_else(pc.equal(parts.field("sign"), "-"), -1, 1)
    # Range checks in float64 first, so an overflow names its row.
    months = pc.add(pc.multiply(number("y"), 12), number("mo"))
    days = pc.add(pc.multiply(number("w"), 7), number("d"))
    terms = [pc.multiply(number(name), factor) for name, factor in _MICROS.items()]
    micros = pc.add(pc.add(terms[0], terms[1]), pc.multiply(terms[2], sign))
    largest = pc.max_element_wise(*(pc.abs(term) for term in terms))  # 1e30H-6e31M is not 0
    for values, limit, problem in (
        (months, _INT32, "has more months than an interval holds (2147483647)"),
        (days, _INT32, "has more days than an interval holds (2147483647)"),
        (pc.max_element_wise(pc.abs(micros), largest), _INT64 / 1000, "has hours, minutes "
         "and seconds beyond 2562047:47:16.854775 (292 years) either way, the most Arrow's "
         "month_day_nano interval holds"),
    ):
        index = _first(pc.greater(pc.abs(values), limit))
        if index is not None:
            raise IntervalError(index, problem)
    exact = pa.int64()
    try:
        months_exact = pc.add_checked(pc.multiply_checked(number("y", exact), 12),
                                      number("mo", exact))
        days_exact = pc.add_checked(pc.multiply_checked(number("w", exact), 7),
                                    number("d", exact))
        seconds = pc.add_checked(pc.multiply_checked(number("s", exact), _MICROS["s"]),
                                 pc.cast(fraction, exact))
        micros_exact = pc.add_checked(
            pc.add_checked(pc.multiply_checked(number("h", exact), _MICROS["h"]),
                           pc.multiply_checked(number("mi", exact), _MICROS["mi"])),
            pc.multiply_checked(seconds, pc.cast(sign, exact)))
        pc.multiply_checked(micros_exact, 1000)
    except pa.ArrowInvalid:  # within a hair of the limits: float64 rounded it inside
        raise IntervalError(0, "has a part too large for an interval") from None
    months_np, days_np, micros_np = (a.to_numpy(zero_copy_only=False).astype(np.int64)
                                     for a in (months_exact, days_exact, micros_exact))
    return months_np, days_np, micros_np


def to_duration_text(array: pa.Array) -> pa.Array:
    """ISO 8601 text of a month_day_nano or duration array (``P14M-3DT14706.5S``).
    Raises ``IntervalError`` for a value finer than a microsecond."""
    count = len(array)
    valid = pc.is_valid(array)
    if pa.types.is_duration(array.type):
        scale = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[array.type.unit]
        ticks = pc.fill_null(array.cast(pa.int64()), 0).to_numpy()
        nanos = ticks * scale  # durations in s and ms overflow int64 nanos only past 292 years
        months = days = np.zeros(count, np.int64)
    else:
        raw = np.frombuffer(array.buffers()[1], _STORAGE, count, array.offset * 16)
        months, days, nanos = (raw[name].astype(np.int64) for name in _STORAGE.names or ())
    index = _first(pc.and_(valid, pa.array(nanos % 1000 != 0)))
    if index is not None:
        raise IntervalError(index, "is finer than a microsecond")
    micros = nanos // 1000
    whole, fraction = np.divmod(np.abs(micros), 1_000_000)
    fraction_text = pc.utf8_rtrim(pc.utf8_lpad(pc.cast(pa.array(fraction), pa.string()),
                                               width=6, padding="0"), characters="0")
    seconds = pc.binary_join_element_wise(
        pa.array(np.where(micros < 0, "-", "")), pc.cast(pa.array(whole), pa.string()),
        pc.if_else(pa.array(fraction == 0), "", pc.binary_join_element_wise(
            ".", fraction_text, "")), "S", "")
    date_part = pc.binary_join_element_wise(
        *(pc.if_else(pa.array(values == 0), "", pc.binary_join_element_wise(
            pc.cast(pa.array(values), pa.string()), designator, ""))
          for values, designator in ((months, "M"), (days, "D"))), "")
    no_time = pc.and_(pa.array(micros == 0), pc.not_equal(date_part, ""))
    time_part = pc.if_else(no_time, "", pc.binary_join_element_wise("T", seconds, ""))
    text = pc.binary_join_element_wise("P", date_part, time_part, "")
    return pc.if_else(valid, text, pa.scalar(None, pa.string()))


def native_intervals(array: pa.Array, t: DataType) -> pa.Array:
    """``array`` (values of declared type ``t`` in their file form) with every interval in
    it, also inside lists, maps and structs, as month_day_nano instead of text. Raises
    ``IntervalError`` as ``to_month_day_nano``."""
    if not contains(t, lambda leaf: leaf == Primitive("interval")):
        return array
    match t:
        case ListType(item):
            values = native_intervals(array.values, item)
            return pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())
        case MapType(key, value):
            keys, items = native_intervals(array.keys, key), native_intervals(array.items, value)
            return pa.MapArray.from_arrays(array.offsets, keys, items, mask=array.is_null())
        case StructType(fields):
            children = [native_intervals(child, f)
                        for child, (_, f) in zip(array.flatten(), fields, strict=True)]
            names = [name for name, _ in fields]
            return pa.StructArray.from_arrays(children, names, mask=array.is_null())
    return to_month_day_nano(array)
