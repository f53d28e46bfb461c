"""PostgreSQL intervals read in binary and printed as PostgreSQL prints them, in numpy.

The store keeps an interval as the ISO 8601 text PostgreSQL prints with ``intervalstyle
iso_8601`` (``P1Y2M-3DT4H5M6.5S``); another spelling of the same value would change every
stored value on the next version. Printing it costs the server more than sending it:
per 2M rows 0.79 s of backend CPU for ``col::text`` against 0.30 s for the binary form.
So the source selects ``interval_send(col)`` (the 16 bytes binary COPY carries, as a
``bytea`` ADBC copies without looking inside: ADBC's own month_day_nano decoding refuses
the whole read for a time part past 2^63 nanoseconds) and ``to_iso_text`` prints a whole
batch of them here, exactly as PostgreSQL's ``EncodeInterval`` does:

- the months split into years and months, the microseconds into hours, minutes, seconds
  and a fraction, each by C's truncating division (so every part has the sign of its
  whole: ``-14 months`` is ``P-1Y-2M``);
- ``P``, then each non-zero part as ``<n>Y``, ``<n>M``, ``<n>D``; ``T`` if the time part is
  not zero, then ``<n>H``, ``<n>M`` and the seconds: a ``-`` if negative, the whole
  seconds, ``.`` and the fraction's 6 digits without trailing zeros, ``S``;
- ``PT0S`` for a zero interval, ``infinity`` and ``-infinity`` (PostgreSQL 17) as such.

The binary form (``interval_send``, big-endian): ``int64`` microseconds, ``int32`` days,
``int32`` months. A batch is printed with numpy passes over whole arrays, one per
character place any value may print (``_print``): 10.6 ms per 100,000 values, against
150 ms for a first version that selected the rows of each digit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_BINARY = np.dtype([("micros", ">i8"), ("days", ">i4"), ("months", ">i4")])
_HOUR, _MINUTE, _SECOND = 3_600_000_000, 60_000_000, 1_000_000
_INT32_MAX, _INT32_MIN = 2**31 - 1, -(2**31)
_INT64_MAX, _INT64_MIN = 2**63 - 1, -(2**63)


class NotAnInterval(ValueError):
    """A value is not 16 bytes long (the column was not ``interval_send``'s output)."""


def to_iso_text(array: pa.Array, *, infinities: bool = True) -> pa.StringArray:
    """The ISO 8601 text PostgreSQL prints for each ``interval_send`` value of ``array``
    (``binary``; null values stay null). ``infinities``: the server is PostgreSQL 17 or
    later, where months, days and microseconds all at their limits are ``infinity``
    (before, such a value is an ordinary one, printed as such)."""
    if not isinstance(array, pa.BinaryArray):
        array = array.cast(pa.binary())
    rows = len(array)
    present = array.drop_null() if array.null_count else array  # contiguous values
    count = len(present)
    _, offsets_buffer, data_buffer = present.buffers()
    if not count:
        return pa.nulls(rows, pa.string())
    offsets = np.frombuffer(offsets_buffer, np.int32, count + 1, present.offset * 4)
    if offsets[-1] - offsets[0] != 16 * count or np.any(np.diff(offsets) != 16):
        raise NotAnInterval("a value is not the 16 bytes of interval_send")
    values = np.frombuffer(data_buffer, _BINARY, count, int(offsets[0]))
    text_offsets, text = _print(values["months"].astype(np.int32),
                                values["days"].astype(np.int32),
                                values["micros"].astype(np.int64), infinities)
    validity = None
    if count != rows:  # the null rows: no text, the input's validity
        valid = array.is_valid()
        ends = np.zeros(rows, np.int32)
        ends[valid.to_numpy(zero_copy_only=False)] = text_offsets[1:]
        text_offsets = np.zeros(rows + 1, np.int32)
        np.maximum.accumulate(ends, out=text_offsets[1:])
        validity = valid.buffers()[1]
    return pa.Array.from_buffers(pa.string(), rows,
                                 [validity, pa.py_buffer(text_offsets), pa.py_buffer(text)])


def _print(months: np.ndarray, days: np.ndarray, micros: np.ndarray, infinities: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    """(int32 offsets, UTF-8 bytes) of the text of each interval.

    Each character any row may print is a slot (``P``, a sign, each digit place of each
    part, its designator...), with the character of every row and whether the row prints
    it. The text's lengths are the number of slots each row prints; then the slots are
    written last to first, every row's character at the place before its row's last
    written one, which moves back only if the row prints the slot: a slot a row does not
    print is written over by the row's next printed one (``P``, always printed, is the
    last). No step selects rows: every pass is over whole arrays."""
    count = len(months)
    # PostgreSQL 17's infinities: months, days and microseconds all at their limits. They
    # are printed as zero (PT0S, within their length) and their text written over that.
    special = []
    for limits, text in (((_INT32_MAX, _INT32_MAX, _INT64_MAX), b"infinity"),
                         ((_INT32_MIN, _INT32_MIN, _INT64_MIN), b"-infinity")
                         ) if infinities else ():
        rows = np.flatnonzero((micros == limits[2]) & (days == limits[1])
                              & (months == limits[0]))
        if rows.size:
            special.append((rows, text))
            months, days, micros = months.copy(), days.copy(), micros.copy()
            months[rows] = days[rows] = micros[rows] = 0
    # C's truncating division, as interval2itm: each part has its whole's sign. (The
    # absolute value of -2**31 is -2**31 in int32, and 2**31 seen as uint32.)
    whole_months = np.abs(months).view(np.uint32)
    years = whole_months // np.uint32(12)
    month_part = whole_months - np.uint32(12) * years
    negative_months = months < 0
    negative_time = micros < 0
    # abs(-2**63) does not fit int64: take it as 2**63 - 1 and add the microsecond back.
    lowest = micros == _INT64_MIN
    left = np.abs(micros + lowest) if lowest.any() else np.abs(micros)
    hours = left // _HOUR
    left -= hours * _HOUR
    small = left.astype(np.uint32)  # under an hour: 3.6e9 microseconds fit uint32
    minutes = small // np.uint32(_MINUTE)
    small -= minutes * np.uint32(_MINUTE)
    seconds = small // np.uint32(_SECOND)
    fraction = small - seconds * np.uint32(_SECOND) + lowest
    has_time = micros != 0
    # A zero interval prints PT0S: its time part shown, with zero seconds.
    zero = ~has_time & (months == 0) & (days == 0)
    has_time |= zero
    has_fraction = fraction != 0
    has_seconds = (seconds != 0) | has_fraction | zero
    slots: list[tuple[np.ndarray | int, np.ndarray | bool]] = [(ord("P"), True)]

    def number(values: np.ndarray, shown: np.ndarray, negative: np.ndarray | None,
               designator: int | None) -> None:
        largest = int(values.max(initial=0))
        if designator is not None and largest == 0:
            return  # shown nowhere
        if negative is not None and negative.any():
            slots.append((ord("-"), shown & negative))
        values = values.astype(np.uint8 if largest < 2**8 else np.uint16 if largest < 2**16
                               else np.uint32 if largest < 2**32 else np.uint64)
        ten = values.dtype.type(10)
        for place in range(len(str(largest)) - 1, -1, -1):
            digits = values // values.dtype.type(10**place) if place else values
            digits = digits - digits // ten * ten
            slots.append((digits.astype(np.uint8) + np.uint8(ord("0")),
                          shown & (values >= 10**place) if place else shown))
        if designator is not None:
            slots.append((designator, shown))

    number(years, years != 0, negative_months, ord("Y"))
    number(month_part, month_part != 0, negative_months, ord("M"))
    number(np.abs(days).view(np.uint32), days != 0, days < 0, ord("D"))
    slots.append((ord("T"), has_time))
    number(hours, hours != 0, negative_time, ord("H"))
    number(minutes, minutes != 0, negative_time, ord("M"))
    number(seconds, has_seconds, negative_time, None)
    if has_fraction.any():
        slots.append((ord("."), has_fraction))
        # 6 digits, the trailing zeros left out: place q is printed where the fraction is
        # not a multiple of 10**(q + 1); once no row prints a place, none prints the next.
        for place in range(5, -1, -1):
            above = fraction // np.uint32(10**(place + 1))
            shown = above * np.uint32(10**(place + 1)) != fraction
            if not shown.any():
                break
            digits = fraction // np.uint32(10**place) - above * np.uint32(10)
            slots.append((digits.astype(np.uint8) + np.uint8(ord("0")), shown))
    slots.append((ord("S"), has_seconds))
    lengths = np.zeros(count, np.int32)
    for _, shown in slots:
        lengths += shown
    for rows, text in special:
        lengths[rows] = len(text)
    offsets = np.zeros(count + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise OverflowError("a batch of intervals is 2 GiB of text or more")
    out = np.empty(int(offsets[-1]), np.uint8)
    at = offsets[1:] - 1
    for characters, shown in reversed(slots):
        out[at] = characters
        at -= shown
    for rows, text in special:  # over the PT0S written at their end
        out[offsets[rows][:, None] + np.arange(len(text))] = np.frombuffer(text, np.uint8)
    return offsets.astype(np.int32), out

