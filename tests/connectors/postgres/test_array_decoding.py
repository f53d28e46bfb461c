"""Arrays of numbers and text are read as ``array_send(col)`` and decoded in numpy
(``connectors/postgres/arrays.py``): every value comes back as PostgreSQL holds it, null
arrays, empty arrays and null elements included, against the real server on 127.0.0.1."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.postgres.reading import INT4, TEXT, TypeInfo, plan_column
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.errors import SourceError
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import PostgresSource as SourceSpec
from tests.connectors.pg_helpers import temporary_database

TEXT_VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\x00"), max_size=20)
ELEMENTS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "int2[]": ("list<int16>", st.integers(-(2**15), 2**15 - 1)),
    "int4[]": ("list<int32>", st.integers(-(2**31), 2**31 - 1)),
    "int8[]": ("list<int64>", st.integers(-(2**63), 2**63 - 1)),
    "float4[]": ("list<float32>", st.floats(width=32, allow_nan=False)),
    "float8[]": ("list<float64>", st.floats(allow_nan=False)),
    "text[]": ("list<string>", TEXT_VALUES),
    "varchar(20)[]": ("list<string>", TEXT_VALUES),
    "char(5)[]": ("list<string>", TEXT_VALUES.map(lambda text: text[:5])),
}


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def _read(dsn: str, table: str, columns: dict[str, str]) -> list[dict[str, Any]]:
    src = PostgresSource("crm.db", SourceSpec(kind="postgres", dsn=dsn), Path("."))
    spec = SourceDataset(table=table, columns={n: Column(type=t) for n, t in columns.items()})
    try:
        reader = src.read(ReadRequest("crm.t", spec, list(columns), batch_rows=7)).reader
        return sorted(reader.read_all().to_pylist(), key=lambda row: row["id"])
    finally:
        src.close()


def test_arrays_of_numbers_and_text_are_sent_whole_and_need_no_depth_column() -> None:
    for element in (INT4, TEXT):
        plan = plan_column("tags", "tags", TypeInfo(0, -1, "x[]", "b", element, "b"))
        assert plan.expr == 'array_send("tags")'
        assert not plan.dims_check
    enum = plan_column("moods", "moods", TypeInfo(0, -1, "mood[]", "b", 12345, "e"))
    assert enum.dims_check  # other element types: ADBC's decoding and the depth check


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), native=st.sampled_from(sorted(ELEMENTS)))
def test_every_array_comes_back_as_postgresql_holds_it(dsn: str, data: st.DataObject,
                                                       native: str) -> None:
    declared, values = ELEMENTS[native]
    rows = data.draw(st.lists(st.none() | st.lists(st.none() | values, max_size=6),
                              max_size=30))
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("drop table if exists arr")
        db.execute(f"create table arr (id int primary key, a {native})")
        with db.cursor() as cursor:
            cursor.executemany(f"insert into arr values (%s, %s::{native})",
                               list(enumerate(rows)))
        stored = [row[0] for row in db.execute("select a from arr order by id")]
    got = [row["a"] for row in _read(dsn, "arr", {"id": "int32", "a": declared})]
    if native != "char(5)[]":  # char(n) pads: PostgreSQL holds the padded text
        assert got == rows  # the drawn float4 values are exact float32 values
    if native != "float4[]":  # psycopg reads float4 from its shortest text, not exactly
        assert got == stored


def test_special_floats_and_long_arrays_in_many_batches(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table floats (id int primary key, f float8[], t text[])")
        db.execute("insert into floats values (1, '{NaN,Infinity,-Infinity,-0,NULL}', "
                   "'{\"a,b\",\"{}\",NULL,\"\"}')")
        db.execute("insert into floats select g, array_fill(g::float8, array[g % 50]), "
                   "array_fill(repeat('ü', g % 5), array[g % 300]) "
                   "from generate_series(2, 5000) g")
    rows = _read(dsn, "floats", {"id": "int32", "f": "list<float64>", "t": "list<string>"})
    first = rows[0]["f"]
    assert math.isnan(first[0]) and first[1:4] == [math.inf, -math.inf, 0.0]
    assert math.copysign(1, first[3]) == -1 and first[4] is None
    assert rows[0]["t"] == ["a,b", "{}", None, ""]
    assert all(row["f"] == [float(row["id"])] * (row["id"] % 50) for row in rows[1:])
    assert all(row["t"] == ["ü" * (row["id"] % 5)] * (row["id"] % 300) for row in rows[1:])


def test_a_lower_bound_other_than_one_keeps_the_elements(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table bounds (id int primary key, a int4[])")
        db.execute("insert into bounds values (1, '[0:2]={7,8,9}'), (2, '{}')")
    rows = _read(dsn, "bounds", {"id": "int32", "a": "list<int32>"})
    assert [row["a"] for row in rows] == [[7, 8, 9], []]


def test_a_two_dimensional_array_is_refused_with_what_to_do(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table square (id int primary key, a text[])")
        db.execute("insert into square values (1, '{x}'), (2, '{{a,b},{c,d}}')")
    with pytest.raises(SourceError, match=r"column a has a 2-dimensional array.*to_jsonb"):
        _read(dsn, "square", {"id": "int32", "a": "list<string>"})


def test_the_arrow_type_is_a_plain_list() -> None:
    plan = plan_column("v", "v", TypeInfo(0, -1, "int8[]", "b", 20, "b"))
    assert plan.field.type == pa.list_(pa.int64())
