"""Delta file statistics read from Parquet footers: bounds that never exclude a value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.store.file_stats import STRING_PREFIX, file_stats

EPOCH = dt.datetime(1970, 1, 1)


def stats_of(tmp: Path, table: pa.Table, row_group_size: int | None = None) -> dict[str, Any]:
    path = tmp / "f.parquet"
    pq.write_table(table, path, row_group_size=row_group_size)
    return file_stats(path)


def as_naive(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.removesuffix("Z"))


@settings(max_examples=60, deadline=None)
@given(
    ints=st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), min_size=1,
                  max_size=30),
    times=st.lists(st.one_of(st.none(), st.datetimes(dt.datetime(1900, 1, 1),
                                                     dt.datetime(2200, 1, 1))),
                   min_size=1, max_size=30),
    texts=st.lists(st.one_of(st.none(), st.text(max_size=50)), min_size=1, max_size=30),
    decimals=st.lists(st.one_of(st.none(), st.decimals(-10**13 + 1, 10**13 - 1, places=2)),
                      min_size=1, max_size=30),
    group=st.integers(1, 8),
)
def test_bounds_hold_every_value(tmp_path_factory: Any, ints: list[int | None],
                                 times: list[dt.datetime | None], texts: list[str | None],
                                 decimals: list[Decimal | None], group: int) -> None:
    rows = min(len(ints), len(times), len(texts), len(decimals))
    ints, times, texts, decimals = ints[:rows], times[:rows], texts[:rows], decimals[:rows]
    table = pa.table({"i": pa.array(ints, pa.int64()),
                      "d": pa.array(decimals, pa.decimal128(15, 2)),
                      "t": pa.array(times, pa.timestamp("us")),
                      "z": pa.array([v.replace(tzinfo=dt.UTC) if v else None for v in times],
                                    pa.timestamp("us", "UTC")),
                      "s": pa.array(texts, pa.string())})
    stats = stats_of(tmp_path_factory.mktemp("stats"), table, row_group_size=group)
    assert stats["numRecords"] == rows
    for name, values in (("i", ints), ("t", times), ("z", times), ("s", texts),
                         ("d", decimals)):
        present = [v for v in values if v is not None]
        assert stats["nullCount"][name] == rows - len(present)
        low, high = stats.get("minValues", {}).get(name), stats.get("maxValues", {}).get(name)
        if not present:
            assert low is None and high is None
            continue
        if name in ("t", "z"):
            assert low is not None and high is not None
            assert low.endswith("Z") == (name == "z")
            assert as_naive(low) <= min(present) and as_naive(high) >= max(present)  # type: ignore[type-var]
        elif name == "d":  # a float outside the bound, the same at the column's scale
            assert low is not None and high is not None
            assert Decimal(low) <= min(present) and Decimal(high) >= max(present)  # type: ignore[type-var]
            assert round(Decimal(low), 2) == min(present)  # type: ignore[type-var]
            assert round(Decimal(high), 2) == max(present)  # type: ignore[type-var]
        elif name == "s":
            texts_present = [str(v) for v in present]
            assert low is not None and low <= min(texts_present)
            assert high is None or high >= max(texts_present)
            assert len(low) <= STRING_PREFIX
        else:
            assert low == min(present) and high == max(present)  # type: ignore[type-var]


def test_what_the_protocol_keeps_and_what_it_leaves_out(tmp_path: Path) -> None:
    table = pa.table({
        "at": pa.array([dt.datetime(2024, 5, 1, 10, 0, 0, 500),
                        dt.datetime(2024, 5, 1, 10, 0, 0, 999_001)], pa.timestamp("us")),
        "day": pa.array([dt.date(2024, 5, 1), dt.date(2024, 5, 3)]),
        "amount": pa.array([Decimal("1.25"), Decimal("3.50")], pa.decimal128(5, 2)),
        "count": pa.array([Decimal(7), Decimal(9)], pa.decimal128(20, 0)),
        "ratio": pa.array([0.5, float("nan")]),
        "flag": [True, False],
        "blob": [b"a", b"b"],
        "tags": [["x"], None],
        "place": [{"city": "Oslo", "zip": 150}, None],
        "long": ["c" * 40, "a" * 40],  # too long a maximum: none
    })
    stats = stats_of(tmp_path, table)
    assert stats["minValues"] == {
        "at": "2024-05-01T10:00:00.000", "day": "2024-05-01", "amount": 1.25, "count": 7,
        "place": {"city": "Oslo", "zip": 150}, "long": "a" * STRING_PREFIX}
    # the maximum rounds up to the millisecond: 10:00:00.999001 is not below it
    assert stats["maxValues"] == {
        "at": "2024-05-01T10:00:01.000", "day": "2024-05-03", "amount": 3.5, "count": 9,
        "place": {"city": "Oslo", "zip": 150}}
    assert stats["nullCount"] == {
        "at": 0, "day": 0, "amount": 0, "count": 0, "ratio": 0, "flag": 0, "blob": 0,
        "place": {"city": 1, "zip": 1}, "long": 0}
    assert "tightBounds" not in stats
