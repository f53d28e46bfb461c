"""ISO 8601 duration text <-> Arrow month_day_nano (dataferry.intervals): the fast numpy
parse agrees with the checked Arrow one, and text -> interval -> text -> interval is exact."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.intervals import (
    IntervalError,
    _checked_parts,
    _long_numbers,
    check_durations,
    to_duration_text,
    to_month_day_nano,
)
from tests.store.test_conform import iso_durations


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(iso_durations() | st.none(), min_size=1, max_size=30),
       cut=st.integers(0, 3))
def test_parsing_is_exact_and_survives_a_round_trip(texts: list[str | None], cut: int) -> None:
    text = pa.array(texts, pa.string()).slice(min(cut, len(texts) - 1))  # an offset too
    months, days, micros = _checked_parts(pc.fill_null(text, "PT0S"))
    want = pa.array([None if t is None else pa.MonthDayNano([int(m), int(d), int(u) * 1000])
                     for t, m, d, u in zip(text.to_pylist(), months, days, micros, strict=True)],
                    pa.month_day_nano_interval())
    parsed = to_month_day_nano(text)
    assert parsed.equals(want)
    assert to_month_day_nano(to_duration_text(parsed)).equals(parsed)


def test_values_postgresql_prints() -> None:
    text = pa.array(["P1Y2M-3DT4H5M6.5S", "PT-0.5S", "P-1Y-2M", "PT0S", "P1W", None])
    assert to_month_day_nano(text).to_pylist() == [
        pa.MonthDayNano([14, -3, 14_706_500_000_000]), pa.MonthDayNano([0, 0, -500_000_000]),
        pa.MonthDayNano([-14, 0, 0]), pa.MonthDayNano([0, 0, 0]), pa.MonthDayNano([0, 7, 0]),
        None]


@pytest.mark.parametrize(("text", "problem"), [
    ("1 day", "is not an ISO 8601 duration"),
    ("P", "is not an ISO 8601 duration"),
    ("P1DT", "is not an ISO 8601 duration"),
    ("P1.5D", "is not an ISO 8601 duration"),
    ("P178956971Y", "has more months"),
    ("PT2562048H", "beyond 2562047:47:16.854775"),
    ("PT1000000000000000000000H-60000000000000000000000M", "beyond 2562047"),
])
def test_bad_text_names_its_row(text: str, problem: str) -> None:
    with pytest.raises(IntervalError, match=problem) as caught:
        check_durations(pa.array(["P1D", None, text]))
    assert caught.value.index == 2


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(iso_durations() | st.none(), min_size=1, max_size=30),
       cut=st.integers(0, 3))
def test_long_numbers_are_found_as_a_regular_expression_finds_them(
        texts: list[str | None], cut: int) -> None:
    text = pa.array(texts, pa.string()).slice(min(cut, len(texts) - 1))
    want = [i for i, t in enumerate(text.to_pylist())
            if t is not None and re.search(r"\d{7}", t)]
    assert _long_numbers(text).tolist() == want


@pytest.mark.parametrize(("text", "problem"), [
    ("P178956971Y", "has more months"),
    ("PT2562048H", "beyond 2562047:47:16.854775"),
])
def test_printed_text_still_has_its_ranges_checked(text: str, problem: str) -> None:
    """PostgreSQL's interval holds 1000 times more hours than Arrow's: its text is not
    checked for its form again, but for what Arrow can hold."""
    check_durations(pa.array(["P1D", None, "PT2562047H"]), printed=True)
    with pytest.raises(IntervalError, match=problem) as caught:
        check_durations(pa.array(["P1D", None, text]), printed=True)
    assert caught.value.index == 2
