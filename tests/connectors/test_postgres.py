"""PostgreSQL source (and both sides' connections) against the real server on 127.0.0.1.

The module makes its own database (``ferry_test_<random>``) and drops it at the end.
Every type a user meets round-trips to the expected Arrow values (and through conform);
incremental reads with ``since``, rows committed late, live columns; an unreachable
server is transient and a refused login terminal, neither message showing the secret.
The sink's tests are in ``test_postgres_sink.py``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.postgres import connect
from dataferry.connectors.postgres.sink import PostgresSink
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.errors import SinkError, SourceError, TransientError
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import PostgresSink as SinkSpec
from dataferry.model.spec import PostgresSource as SourceSpec
from dataferry.store.conform import Conformer
from tests.connectors.pg_helpers import (
    SECRET,
    free_port,
    refusing_server,
    temporary_database,
)


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


def source(dsn: str, password: str | None = None) -> PostgresSource:
    return PostgresSource("crm.db", SourceSpec(kind="postgres", dsn=dsn, password=password),
                          Path("."))


def dataset(columns: dict[str, str], **keys: Any) -> SourceDataset:
    return SourceDataset(columns={n: Column(type=t) for n, t in columns.items()}, **keys)


def read(src: PostgresSource, spec: SourceDataset, since: Any = None,
         batch_rows: int = 65_536) -> pa.Table:
    result = src.read(ReadRequest("crm.t", spec, list(spec.columns), since=since,
                                  batch_rows=batch_rows))
    return result.reader.read_all()


# --- source: types ------------------------------------------------------------------------

TYPES_DDL = """
create type mood as enum ('happy', 'sad', 'ünïcode 😀');
create table all_types (
  id integer primary key, i2 smallint, i4 integer, i8 bigint,
  n38 numeric(38,10), n60 numeric(60,5), nfree numeric, n52 numeric(5,2),
  f4 real, f8 double precision, b boolean, t text, vc varchar(10), ch char(5), by bytea,
  d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
  js json, jb jsonb, u uuid, ai integer[], at text[], an numeric(10,2)[], au uuid[],
  mo mood, mos mood[], ip inet, mn money, bi bit(3), o oid);
insert into all_types values
 (1, -32768, -2147483648, 9223372036854775807,
  -1234567890123456789012345678.0123456789,
  123456789012345678901234567890123456789012345678901234.12345,
  3.14159265358979323846264338327950288419716939937510582097494459, -999.99,
  1.5, -2.5e300, true, E'héllo 🌍 ∑ 日本語\n\t"q" \\\\ ''', 'abc', 'ab', '\\x00ff10',
  '1900-01-01', '23:59:59.999999', '12:34:56+05:30', '1970-01-01 00:00:00.000001',
  '2024-01-02 03:04:05.123456+02', '1 year 2 months 3 days 04:05:06.789',
  '{"a": [1, 2.5, null]}', '{"b": {"c": "ü"}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{1,NULL,3}', '{"x",NULL,"ü y"}', '{1.50,NULL}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
  'ünïcode 😀', '{happy,sad}', '10.0.0.1/8', 12.34, B'101', 4000000000),
 (2, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
  null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
  null, null, null, null),
 (3, 0, 0, 0, 0, 0, 'NaN', 0, 'Infinity', 'NaN', false, '', '', '', '', '2024-02-29',
  '00:00', '00:00+00', '2024-02-29 12:00', '1960-06-30 23:59:59.5-08',
  '-1 day -00:00:01', '[]', '{}', '00000000-0000-0000-0000-000000000000', '{}', '{}',
  '{}', '{}', 'sad', '{}', '::1', -0.01, B'000', 0);
"""
UID = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
EXPECTED_TYPES = {
    "id": pa.int32(), "i2": pa.int16(), "i4": pa.int32(), "i8": pa.int64(),
    "n38": pa.decimal128(38, 10), "n60": pa.decimal256(60, 5), "nfree": pa.string(),
    "n52": pa.decimal128(5, 2), "f4": pa.float32(), "f8": pa.float64(), "b": pa.bool_(),
    "t": pa.string(), "vc": pa.string(), "ch": pa.string(), "by": pa.binary(),
    "d": pa.date32(), "tm": pa.time64("us"), "ttz": pa.string(), "ts": pa.timestamp("us"),
    "tstz": pa.timestamp("us", "UTC"), "iv": pa.string(), "js": pa.string(),
    "jb": pa.string(), "u": pa.binary(16), "ai": pa.list_(pa.int32()),
    "at": pa.list_(pa.string()), "an": pa.list_(pa.decimal128(10, 2)),
    "au": pa.list_(pa.binary(16)), "mo": pa.string(), "mos": pa.list_(pa.string()),
    "ip": pa.string(), "mn": pa.string(), "bi": pa.string(), "o": pa.int64(),
}
ROW_1 = {
    "id": 1, "i2": -32768, "i4": -2147483648, "i8": 9223372036854775807,
    "n38": Decimal("-1234567890123456789012345678.0123456789"),
    "n60": Decimal("123456789012345678901234567890123456789012345678901234.12345"),
    "nfree": "3.14159265358979323846264338327950288419716939937510582097494459",
    "n52": Decimal("-999.99"), "f4": 1.5, "f8": -2.5e300, "b": True,
    "t": 'héllo 🌍 ∑ 日本語\n\t"q" \\ \'', "vc": "abc", "ch": "ab   ", "by": b"\x00\xff\x10",
    "d": date(1900, 1, 1), "tm": time(23, 59, 59, 999999), "ttz": "12:34:56+05:30",
    "ts": datetime(1970, 1, 1, 0, 0, 0, 1),
    "tstz": datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC),
    "iv": "P1Y2M3DT4H5M6.789S", "js": '{"a": [1, 2.5, null]}', "jb": '{"b": {"c": "ü"}}',
    "u": UID.bytes, "ai": [1, None, 3], "at": ["x", None, "ü y"],
    "an": [Decimal("1.50"), None], "au": [UID.bytes], "mo": "ünïcode 😀",
    "mos": ["happy", "sad"], "ip": "10.0.0.1/8", "mn": "12.34", "bi": "101", "o": 4000000000,
}


@pytest.fixture(scope="module")
def types_table(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(TYPES_DDL)
    return "public.all_types"


def test_every_type_reads_as_its_exact_arrow_value(dsn: str, types_table: str) -> None:
    src = source(dsn)
    spec = dataset(dict.fromkeys(EXPECTED_TYPES, "string"), table=types_table)
    table = read(src, spec).sort_by("id")
    src.close()
    assert {f.name: f.type for f in table.schema} == EXPECTED_TYPES
    assert table.schema.field("u").metadata == {b"dataferry.type": b"uuid"}
    rows = table.to_pylist()
    assert rows[0] == ROW_1
    assert rows[1] == {"id": 2, **dict.fromkeys(list(EXPECTED_TYPES)[1:])}
    third = rows[2]
    assert third["nfree"] == "nan" and math.isinf(third["f4"]) and math.isnan(third["f8"])
    assert (third["t"], third["ch"], third["by"], third["ai"], third["an"]) == (
        "", "     ", b"", [], [])
    assert third["tstz"] == datetime(1960, 7, 1, 7, 59, 59, 500000, tzinfo=UTC)
    assert (third["iv"], third["js"], third["jb"], third["mn"]) == (
        "P-1DT-1S", "[]", "{}", "-0.01")


def test_arrays_domains_and_rows_read_exactly(dsn: str, db: psycopg.Connection[Any]) -> None:
    db.execute("""
        create domain positive as integer check (value > 0);
        create type pair as (a int, b text);
        create table arrays (a bool[], b bigint[], c float8[], d varchar(3)[], e bytea[],
          f date[], g timestamptz[], h jsonb[], i interval[], j char(2)[], k numeric[],
          l int2[], m real[], n timestamp[], o time[], p inet[], q money[], r oid[],
          s positive, t positive[], u pair);
        insert into arrays values ('{t,NULL}', '{9223372036854775807}', '{1.5,NaN}', '{abc}',
          '{"\\\\x00ff"}', '{2024-01-01}', '{"2024-01-01 00:00+00"}', ARRAY['{"a":1}'::jsonb],
          '{"1 day"}', '{a}', '{1.5,NaN}', '{1}', '{2.5}', '{"2024-01-01 01:02:03"}',
          '{01:02:03}', '{10.0.0.1}', '{1.25}', '{4000000000}', 7, '{7,8}', '(1,"x y")');
    """)
    src = source(dsn)
    names = [c.name for c in src.columns("crm.a", dataset({"a": "string"}, table="arrays"))]
    table = read(src, dataset(dict.fromkeys(names, "string"), table="arrays"))
    src.close()
    row = table.to_pylist()[0]
    assert math.isnan(row.pop("c")[1])
    assert row == {
        "a": [True, None], "b": [2**63 - 1], "d": ["abc"], "e": [b"\x00\xff"],
        "f": [date(2024, 1, 1)], "g": [datetime(2024, 1, 1, tzinfo=UTC)],
        "h": ['{"a": 1}'], "i": ["P1D"], "j": ["a "], "k": ["1.5", "nan"], "l": [1],
        "m": [2.5], "n": [datetime(2024, 1, 1, 1, 2, 3)], "o": [time(1, 2, 3)],
        "p": ["10.0.0.1/32"], "q": ["1.25"], "r": [4000000000], "s": 7, "t": [7, 8],
        "u": '{"a": 1, "b": "x y"}'}
    assert table.schema.field("s").type == pa.int32()
    assert table.schema.field("t").type == pa.list_(pa.int32())


def test_source_values_conform_to_declared_types(dsn: str, types_table: str) -> None:
    declared = {"id": "int64", "n38": "decimal(38,10)", "n60": "decimal(60,5)",
                "nfree": "string", "f4": "float32", "t": "string", "ch": "string(5)",
                "d": "date", "tm": "time", "tstz": "timestamp_tz", "iv": "string",
                "jb": "json", "u": "uuid", "ai": "list<int32>", "an": "list<decimal(10,2)>",
                "au": "list<uuid>", "mo": "string", "ttz": "string", "o": "int64"}
    src = source(dsn)
    spec = dataset(declared, table=types_table, primary_key=["id"])
    conformer = Conformer("crm.t", spec.columns, ["id"])
    out = conformer.conform(read(src, spec).sort_by("id").to_batches()[0]).to_pylist()
    assert out[0]["u"] == UID.bytes and out[0]["au"] == [UID.bytes]
    assert out[0]["n60"] == ROW_1["n60"] and out[0]["iv"] == "P1Y2M3DT4H5M6.789S"
    assert out[0]["tstz"] == ROW_1["tstz"] and out[0]["ai"] == [1, None, 3]
    as_text = dataset({"id": "int64", "u": "string", "au": "list<string>"}, table=types_table)
    texts = Conformer("crm.t", as_text.columns).conform(
        read(src, as_text).sort_by("id").to_batches()[0]).to_pylist()
    src.close()
    assert texts[0] == {"id": 1, "u": str(UID), "au": [str(UID)]}


def test_columns_report_the_live_schema(dsn: str, db: psycopg.Connection[Any],
                                        types_table: str) -> None:
    db.execute("create table live (id bigint primary key, name varchar(20) not null)")
    src = source(dsn)
    spec = dataset({"id": "int64"}, table="live")
    assert [(c.name, c.native_type, c.arrow_type, c.nullable) for c in src.columns(
        "crm.live", spec)] == [("id", "bigint", pa.int64(), False),
                               ("name", "character varying(20)", pa.string(), False)]
    db.execute("alter table live add column score numeric(12,2), alter column name drop "
               "not null")
    live = src.columns("crm.live", spec)
    assert [(c.name, c.arrow_type, c.nullable) for c in live[1:]] == [
        ("name", pa.string(), True), ("score", pa.decimal128(12, 2), True)]
    typed = {c.name: (c.native_type, c.arrow_type)
             for c in src.columns("crm.t", dataset({"id": "int64"}, table=types_table))}
    assert typed["n60"] == ("numeric(60,5)", pa.decimal256(60, 5))
    assert typed["mo"] == ("mood", pa.string()) and typed["an"][0] == "numeric(10,2)[]"
    src.close()


def test_query_dataset_reads_declared_columns(dsn: str, types_table: str) -> None:
    spec = dataset({"ID": "int64", "label": "string"},
                   query="select id, upper(t) as label, n52 from all_types order by id;")
    src = source(dsn)
    assert [(c.name, c.nullable) for c in src.columns("crm.q", spec)] == [
        ("id", False), ("label", True), ("n52", True)]
    table = read(src, spec)
    src.close()
    assert table.column_names == ["ID", "label"]
    assert table.column("ID").to_pylist() == [1, 2, 3]


def test_values_without_an_exact_arrow_form_are_errors(dsn: str,
                                                       db: psycopg.Connection[Any]) -> None:
    db.execute("create table odd (n numeric(10,2), ts timestamptz, d date, a int[], tm time)")
    src = source(dsn)
    cases = [("n", "insert into odd (n) values ('NaN')", "'nan'"),
             ("ts", "insert into odd (ts) values ('infinity')", "infinity"),
             ("d", "insert into odd (d) values ('-infinity')", "infinity"),
             ("a", "insert into odd (a) values ('{{1,2},{3,4}}')", "2-dimensional"),
             ("tm", "insert into odd (tm) values ('24:00')", "24:00:00")]
    for column, insert, words in cases:
        db.execute("truncate odd")
        db.execute(insert)
        with pytest.raises(SourceError, match=words) as caught:
            read(src, dataset({column: "string"}, table="odd"))
        assert f"column {column} " in str(caught.value)
    src.close()


def test_missing_table_and_column_are_terminal(dsn: str, types_table: str) -> None:
    src = source(dsn)
    with pytest.raises(SourceError, match="nope"):
        read(src, dataset({"id": "int64"}, table="public.nope"))
    with pytest.raises(SourceError, match="no column 'missing'"):
        read(src, dataset({"missing": "int64"}, table="all_types"))
    src.close()


# --- source: incremental ------------------------------------------------------------------


def test_incremental_reads_since_and_late_rows(dsn: str, db: psycopg.Connection[Any]) -> None:
    db.execute("create table events (id int primary key, updated_at timestamptz not null)")
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    db.execute("insert into events select g, %s + g * interval '1 minute' "
               "from generate_series(1, 10) g", (t0,))
    spec = dataset({"id": "int64", "updated_at": "timestamp_tz"}, table="events",
                   capture="incremental", cursor="updated_at")
    src = source(dsn)
    assert read(src, spec).num_rows == 10
    last = max(read(src, spec).column("updated_at").to_pylist())
    # A transaction that started earlier commits a row with an old cursor value.
    db.execute("insert into events values (11, %s)", (last - timedelta(minutes=3),))
    assert sorted(read(src, spec, since=last).column("id").to_pylist()) == [10]
    lagged = read(src, spec, since=last - timedelta(minutes=5))
    assert sorted(lagged.column("id").to_pylist()) == [5, 6, 7, 8, 9, 10, 11]
    naive = read(src, spec, since=(last - timedelta(minutes=1)).replace(tzinfo=None))
    assert sorted(naive.column("id").to_pylist()) == [9, 10]  # naive = UTC
    by_id = dataset({"id": "int64"}, table="events", capture="incremental", cursor="id")
    assert read(src, by_id, since=9).column("id").to_pylist() == [9, 10, 11]
    text = dataset({"id": "int64"}, query="select id, 'k' || id as k from events",
                   capture="incremental", cursor="k")
    assert read(src, text, since="k9").column("id").to_pylist() == [9]
    src.close()


def test_reads_stream_in_bounded_batches(dsn: str, db: psycopg.Connection[Any]) -> None:
    db.execute("create table many as select g as id, md5(g::text) as h "
               "from generate_series(1, 120000) g")
    src = source(dsn)
    result = src.read(ReadRequest("crm.many", dataset({"id": "int64", "h": "string"},
                                                      table="many"),
                                  ["id", "h"], batch_rows=10_000))
    sizes = [batch.num_rows for batch in result.reader]
    src.close()
    assert sum(sizes) == 120_000 and max(sizes) <= 10_000 and len(sizes) >= 12


# --- connections and secrets -------------------------------------------------------------


def test_unreachable_server_is_transient_without_the_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_PG_PASSWORD", SECRET)
    port = free_port()
    src = source(f"postgresql://reader@127.0.0.1:{port}/crm", "${env:FERRY_TEST_PG_PASSWORD}")
    with pytest.raises(TransientError) as caught:
        src.columns("crm.t", dataset({"id": "int64"}, table="t"))
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "crm.db" in message
    assert SECRET not in message and "Connection refused" in message


def test_wrong_password_is_terminal_without_the_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_PG_PASSWORD", SECRET)
    port = refusing_server()
    dsn = f"postgresql://reader@127.0.0.1:{port}/crm?sslmode=disable&gssencmode=disable"
    src = source(dsn, "${env:FERRY_TEST_PG_PASSWORD}")
    with pytest.raises(SourceError) as caught:
        read(src, dataset({"id": "int64"}, table="t"))
    assert not isinstance(caught.value, TransientError)
    assert "password authentication failed" in str(caught.value)
    assert SECRET not in str(caught.value)
    sink = PostgresSink("bi.wh", SinkSpec(kind="postgres", dsn=dsn,
                                          password="${env:FERRY_TEST_PG_PASSWORD}"), Path("."))
    with pytest.raises(SinkError) as sink_error:
        sink.applied_version("crm.t", "t")
    assert SECRET not in str(sink_error.value)


def test_connect_resolves_the_secret(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_PG_PASSWORD", SECRET)
    spec = SourceSpec(kind="postgres", dsn=dsn, password="${env:FERRY_TEST_PG_PASSWORD}")
    with connect(spec) as connection:
        assert connection.info.password == SECRET
        assert connection.execute("select 1").fetchone() == (1,)


def test_large_tables_read_in_parallel_ranges_from_one_snapshot(
    dsn: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataferry.connectors.postgres import ranges

    db.execute("create table big (id bigint primary key, v text)")
    db.execute("insert into big select g, md5(g::text) from generate_series(1, 20000) g")
    db.execute("analyze big")
    monkeypatch.setattr(ranges, "PARALLEL_MIN_ROWS", 1000)
    monkeypatch.setenv("FERRY_PG_READERS", "3")
    plans: list[object] = []
    real_plan = ranges.plan
    monkeypatch.setattr(ranges, "plan", lambda *a: plans.append(real_plan(*a)) or plans[-1])
    spec = dataset({"id": "int64", "v": "string"}, table="public.big", primary_key=["id"])
    src = source(dsn)
    result = src.read(ReadRequest("crm.big", spec, ["id", "v"]))
    # A change committed after the read started is not seen by any of the streams.
    batches = iter(result.reader)
    first = next(batches)
    db.execute("update big set v = 'changed' where id in (1, 10000, 20000)")
    db.execute("insert into big values (20001, 'late')")
    table = pa.Table.from_batches([first, *batches])
    assert sorted(table["id"].to_pylist()) == list(range(1, 20001))
    assert "changed" not in table["v"].to_pylist()
    assert src._reading == set()  # every range's connection was closed
    assert plans and plans[0] is not None and len(plans[0][1].bounds) == 3  # type: ignore[index]


def test_a_connection_killed_mid_read_is_transient(dsn: str,
                                                    db: psycopg.Connection[Any]) -> None:
    """pg_terminate_backend (a failover, a restart, an admin) in the middle of the COPY:
    a TransientError the runner retries, in one line, not an internal OSError."""
    db.execute("create table killed as select g as id, repeat(md5(g::text), 8) as h "
               "from generate_series(1, 400000) g")
    src = source(dsn)
    spec = dataset({"id": "int64", "h": "string"}, table="killed")
    result = src.read(ReadRequest("crm.killed", spec, ["id", "h"], batch_rows=1000))
    batches = iter(result.reader)
    next(batches)
    [(killed,)] = db.execute(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
        "where datname = current_database() and pid <> pg_backend_pid() "
        "and query ilike '%killed%'").fetchall()
    assert killed >= 1
    with pytest.raises(TransientError) as raised:
        for _ in batches:
            pass
    src.close()
    message = str(raised.value)
    assert "crm.killed" in message and "connection" in message and "\n" not in message
    assert raised.value.public is not None and "connection" in raised.value.public


def test_a_transaction_open_longer_than_the_lag_is_not_missed(
        dsn: str, db: psycopg.Connection[Any]) -> None:
    """The row of a transaction that began before ``cursor - lag`` and commits after the
    read: its updated_at is older than the next read's ``since``. The read that set the
    cursor records when the oldest open transaction began, and the next read goes back
    to it."""
    import time as clock

    db.execute("create table late (id int primary key, v text, "
               "updated_at timestamptz not null default now())")
    db.execute("insert into late (id, v) values (1, 'early')")
    spec = dataset({"id": "int64", "v": "string", "updated_at": "timestamp_tz"},
                   table="late", capture="incremental", cursor="updated_at",
                   primary_key=["id"])
    with psycopg.connect(dsn) as slow:  # a transaction: begun now, committed later
        slow.execute("insert into late (id, v) values (2, 'late')")
        clock.sleep(1.5)  # longer than the lag below
        db.execute("insert into late (id, v) values (3, 'after')")
        src = source(dsn)
        first = src.read(ReadRequest("crm.late", spec, list(spec.columns),
                                     since=datetime(2000, 1, 1, tzinfo=UTC)))
        seen = first.reader.read_all()
        state = first.state()
        src.close()
        assert sorted(seen["id"].to_pylist()) == [1, 3]
        slow.commit()
    cursor = max(seen["updated_at"].to_pylist())
    lag = timedelta(seconds=0.5)
    src = source(dsn)
    second = src.read(ReadRequest("crm.late", spec, list(spec.columns), state=state,
                                  since=cursor - lag))
    ids = sorted(second.reader.read_all()["id"].to_pylist())
    src.close()
    assert 2 in ids  # the late commit arrives
    assert state is not None and "pg_open_since" in state
