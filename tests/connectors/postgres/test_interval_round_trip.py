"""ISO 8601 interval text -> the store -> a native PostgreSQL ``interval`` column, equal
field by field (months, days, microseconds) to PostgreSQL's own reading of the text
(against the real server on 127.0.0.1:5432)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.connectors.base import OP_COLUMN, Delivery
from dataferry.connectors.postgres.sink import PostgresSink
from dataferry.errors import SinkError
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import PostgresSink as SinkSpec
from dataferry.model.types import parse_type
from dataferry.store.dataset import DatasetStore
from dataferry.store.keys import KeyStore
from dataferry.store.publish import publish
from tests.connectors.pg_helpers import rows_of, temporary_database
from tests.store.test_conform import iso_durations

COLUMNS = [("id", parse_type("int64"), False), ("span", parse_type("interval"), True),
           ("spans", parse_type("list<interval>"), True)]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def _deliver(dsn: str, rows: pa.RecordBatchReader, version: int) -> None:
    sink = PostgresSink("bi.wh", SinkSpec(kind="postgres", dsn=dsn, schema="wh"), Path("."))
    try:
        sink.deliver(Delivery(dataset="ops.jobs", consumer="bi.wh", table="jobs",
                              mode="replace", columns=COLUMNS, primary_key=["id"],
                              version=version, previous=version - 1 or None,
                              created_at=datetime(2024, 6, 1, tzinfo=UTC), rows=rows))
    finally:
        sink.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(texts=st.lists(iso_durations() | st.none(), min_size=1, max_size=20))
def test_iso_text_through_the_store_lands_as_the_same_interval(
    dsn: str, texts: list[str | None],
) -> None:
    spec = SourceDataset(table="jobs", primary_key=["id"], columns={
        "id": Column(type="int64", nullable=False), "span": Column(type="interval"),
        "spans": Column(type="list<interval>")})
    table = pa.table({"id": pa.array(range(len(texts)), pa.int64()),
                      "span": pa.array(texts, pa.string()),
                      "spans": pa.array([texts] * len(texts), pa.list_(pa.string()))})
    with tempfile.TemporaryDirectory() as tmp:
        dataset = DatasetStore(Path(tmp) / "store", "ops.jobs")
        publish(dataset, spec, table, keys=KeyStore(Path(tmp) / "home"))
        version = dataset.resolve(None)
        stored = dataset.reader(version).read_all()
        assert stored.column("span").to_pylist() == texts  # the store keeps the text
        previous = _applied(dsn)
        _deliver(dsn, stored.to_reader(), previous + 1)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("set intervalstyle = 'postgres'")
        assert rows_of(db, "select format_type(atttypid, atttypmod) from pg_attribute where "
                           "attrelid = 'wh.jobs'::regclass and attname in ('span', 'spans') "
                           "order by attname") == [("interval",), ("interval[]",)]
        # PostgreSQL's text shows the three fields: equal text, equal months, days, micros.
        got = rows_of(db, "select id, span::text, spans::text from wh.jobs order by id")
        want = db.execute("select i - 1, t::interval::text, %s::text[]::interval[]::text "
                          "from unnest(%s::text[]) with ordinality as x(t, i) order by i",
                          (texts, texts)).fetchall()
        assert got == want


def _applied(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as db:
        found = rows_of(db, "select coalesce(max(version), 0) from wh._ferry_loads") if rows_of(
            db, "select to_regclass('wh._ferry_loads') is not null")[0][0] else [(0,)]
    return int(found[0][0])


def test_text_that_is_not_iso_8601_is_a_sink_error_naming_the_column(dsn: str) -> None:
    """A delivery from elsewhere than the store (already conformed text there) still
    gets a clear error, not PostgreSQL's binary COPY failure."""
    rows = pa.table({"id": [1], "span": ["1 day"], "spans": pa.array([None], pa.list_(
        pa.string()))})
    with pytest.raises(SinkError, match=r"column span has '1 day', which is not an ISO 8601"):
        _deliver(dsn, rows.to_reader(), _applied(dsn) + 1)


@pytest.mark.parametrize(("existing", "after"), [("text", "text"), ("interval(0)", "interval")])
def test_an_existing_text_column_keeps_the_text_and_a_rounding_one_is_widened(
    dsn: str, existing: str, after: str,
) -> None:
    """Merge into an existing table: text (made when the column was declared string) holds
    the ISO 8601 text; interval(0) would round the seconds, so it becomes interval."""
    table = f"kept_{after}"
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create schema if not exists old")
        db.execute(f"create table old.{table} (id bigint primary key, span {existing})")
    rows = pa.table({"id": [1], "span": ["PT0.5S"], OP_COLUMN: ["upsert"]})
    sink = PostgresSink("bi.wh", SinkSpec(kind="postgres", dsn=dsn, schema="old"), Path("."))
    try:
        sink.deliver(Delivery(dataset="ops.kept", consumer="bi.wh", table=table, mode="merge",
                              columns=COLUMNS[:2], primary_key=["id"], version=1, previous=None,
                              created_at=datetime(2024, 6, 1, tzinfo=UTC),
                              rows=rows.to_reader()))
    finally:
        sink.close()
    with psycopg.connect(dsn, autocommit=True) as db:
        assert rows_of(db, f"select format_type(atttypid, atttypmod), (select span::text from "
                           f"old.{table}) from pg_attribute where attrelid = "
                           f"'old.{table}'::regclass and attname = 'span'") == [
            (after, "PT0.5S" if after == "text" else "00:00:00.5")]
