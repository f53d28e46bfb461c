"""An ``interval`` column is read in binary (``interval_send``) and printed in numpy as
PostgreSQL prints it (``connectors/postgres/interval_text.py``): every value, over the
whole range PostgreSQL stores, gives the very text the server's own ``::text`` gives with
``intervalstyle iso_8601``, against the real server on 127.0.0.1."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.postgres.interval_text import to_iso_text
from dataferry.connectors.postgres.reading import INTERVAL, TypeInfo, plan_column
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import PostgresSource as SourceSpec
from tests.connectors.pg_helpers import temporary_database

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
HOUR = 3_600_000_000


def _part(low: int, high: int, unit: int) -> st.SearchStrategy[int]:
    """Small values (most data), whole units, any value, and the limits."""
    return st.one_of(st.integers(-99, 99), st.integers(-10_000, 10_000).map(lambda n: n * unit),
                     st.integers(low, high), st.sampled_from([low, high, low + 1, high - 1, 0]))


INTERVALS = st.tuples(_part(*INT32, 12), _part(*INT32, 7), _part(*INT64, HOUR))
"""(months, days, microseconds): anything PostgreSQL's binary form holds."""


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("create table spans (id bigint primary key, span interval)")
        yield url


def _copy_in(db: psycopg.Connection[Any], values: list[tuple[int, int, int] | None]) -> None:
    """Write the rows in binary COPY: each interval's parts exactly, as interval_recv
    takes them (no text or float on the way)."""
    data = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    for index, value in enumerate(values):
        data += struct.pack(">hiq", 2, 8, index)
        if value is None:
            data += struct.pack(">i", -1)
        else:
            months, days, micros = value
            data += struct.pack(">iqii", 16, micros, days, months)
    data += struct.pack(">h", -1)
    with db.cursor().copy("copy spans (id, span) from stdin (format binary)") as copy:
        copy.write(bytes(data))


def _read(dsn: str, declared: str) -> list[str | None]:
    source = PostgresSource("ops.db", SourceSpec(kind="postgres", dsn=dsn), Path("."))
    spec = SourceDataset(table="spans", columns={"id": Column(type="int64"),
                                                 "span": Column(type=declared)})
    try:
        reader = source.read(ReadRequest("ops.spans", spec, ["id", "span"], batch_rows=7)).reader
        rows = sorted(reader.read_all().to_pylist(), key=lambda row: row["id"])
    finally:
        source.close()
    return [row["span"] for row in rows]


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(values=st.lists(INTERVALS | st.none(), min_size=1, max_size=60))
def test_every_interval_reads_as_the_text_postgresql_prints(
    dsn: str, values: list[tuple[int, int, int] | None],
) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("truncate spans")
        _copy_in(db, values)
        db.execute("set intervalstyle = 'iso_8601'")
        printed = [text for (text,) in db.execute("select span::text from spans order by id")]
    assert _read(dsn, "string") == printed


def test_interval_is_selected_in_binary_and_tagged_as_postgresql_text() -> None:
    plan = plan_column("span", "span", TypeInfo(INTERVAL, -1, "interval", "b", 0, ""))
    assert plan.expr == 'interval_send("span")'
    assert plan.field.type == pa.string()
    assert plan.field.metadata == {b"dataferry.type": b"interval"}


def test_a_time_part_past_292_years_reads_where_arrow_nanoseconds_would_overflow(
    dsn: str,
) -> None:
    """ADBC's own month_day_nano decoding refuses the whole read for such a value."""
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("truncate spans")
        db.execute("insert into spans values (1, interval '3000000 hours 1.5 seconds'), "
                   "(2, interval '-1 year -2 months 3 days -00:00:00.000001'), (3, null), "
                   "(4, interval '0')")
    assert _read(dsn, "string") == ["PT3000000H1.5S", "P-1Y-2M3DT-0.000001S", None, "PT0S"]


def _sent(months: int, days: int, micros: int) -> bytes:
    return struct.pack(">qii", micros, days, months)


def test_postgresql_17_infinities_print_as_infinity_and_before_as_the_numbers() -> None:
    """PostgreSQL 17 stores +-infinity as every part at its limit; older servers print
    the same parts as an ordinary (if absurd) interval."""
    top, bottom = _sent(2**31 - 1, 2**31 - 1, 2**63 - 1), _sent(-(2**31), -(2**31), -(2**63))
    values = pa.array([top, None, bottom, _sent(0, 0, 1)], pa.binary())
    assert to_iso_text(values, infinities=True).to_pylist() == [
        "infinity", None, "-infinity", "PT0.000001S"]
    assert to_iso_text(values, infinities=False).to_pylist() == [
        "P178956970Y7M2147483647DT2562047788H54.775807S", None,
        "P-178956970Y-8M-2147483648DT-2562047788H-54.775808S", "PT0.000001S"]


@given(st.lists(INTERVALS | st.none(), max_size=30), st.integers(0, 5))
def test_a_sliced_array_prints_the_same(values: list[tuple[int, int, int] | None],
                                        cut: int) -> None:
    """Arrays as Arrow hands them over: an offset into shared buffers, nulls anywhere."""
    raw = pa.array([None if v is None else _sent(*v) for v in values], pa.binary())
    whole = to_iso_text(raw, infinities=False).to_pylist()
    assert to_iso_text(raw.slice(cut), infinities=False).to_pylist() == whole[cut:]
    assert [text is None for text in whole] == [v is None for v in values]
