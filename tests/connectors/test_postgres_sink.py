"""PostgreSQL sink against the real server on 127.0.0.1:5432.

The module makes its own database and each test writes into its own schema. Every mode
delivers version 1, then a change set as version 2, then the same version again (no
change, no duplicates); every declared type lands in its native column; tables evolve or
fail clearly; a delivery killed half way (SIGKILL) leaves the target and ``_ferry_loads``
unchanged, and its re-run applies it exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN, Delivery
from dataferry.connectors.postgres.sink import PostgresSink
from dataferry.errors import SinkError, TransientError
from dataferry.model.spec import PostgresSink as SinkSpec
from dataferry.model.types import parse_type, to_arrow_field
from dataferry.store.storage import decode_batch, store_schema
from tests.connectors.pg_helpers import SECRET, free_port, rows_of, temporary_database

UID = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


# --- sink ---------------------------------------------------------------------------------

COLUMNS = [("id", "int64", False), ("name", "string", True), ("amount", "decimal(12,2)", True)]
T1 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
T2 = datetime(2024, 6, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    name = f"wh_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"drop schema if exists {name} cascade")


def sink(dsn: str, schema: str) -> PostgresSink:
    return PostgresSink("bi.wh", SinkSpec(kind="postgres", dsn=dsn, schema=schema), Path("."))


def delivery(mode: str, rows: list[dict[str, Any]], version: int, previous: int | None,
             *, columns: list[tuple[str, str, bool]] = COLUMNS, key: tuple[str, ...] = ("id",),
             table: str = "customers", created_at: datetime = T1,
             batch: int = 2) -> Delivery:
    fields = [to_arrow_field(n, parse_type(t), nullable) for n, t, nullable in columns]
    if mode in ("merge", "history"):
        fields.append(pa.field(OP_COLUMN, pa.string(), False))
    if mode == "append":
        fields.append(pa.field(VERSION_COLUMN, pa.int64(), False))
    data = pa.Table.from_pylist(rows, schema=pa.schema(fields))
    return Delivery(dataset="crm.customers", consumer="bi.wh", table=table, mode=mode,
                    columns=[(n, parse_type(t), nullable) for n, t, nullable in columns],
                    primary_key=list(key), version=version, previous=previous,
                    created_at=created_at, rows=data.to_reader(max_chunksize=batch))


def loads(db: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return rows_of(db, f"select dataset, table_name, version, mode, rows "
                       f"from {schema}._ferry_loads")


V1 = [{"id": 1, "name": "a", "amount": Decimal("1.00")},
      {"id": 2, "name": "b", "amount": Decimal("2.00")},
      {"id": 3, "name": "c", "amount": Decimal("3.00")}]
CHANGE = [{"id": 1, "name": "A", "amount": Decimal("1.50"), OP_COLUMN: "upsert"},
          {"id": 2, "name": None, "amount": None, OP_COLUMN: "delete"},
          {"id": 4, "name": "d", "amount": None, OP_COLUMN: "upsert"}]


def upserts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, OP_COLUMN: "upsert"} for row in rows]


def test_replace_swaps_the_whole_table(dsn: str, db: psycopg.Connection[Any],
                                       schema: str) -> None:
    target = sink(dsn, schema)
    assert target.applied_version("crm.customers", "customers") is None
    assert target.deliver(delivery("replace", V1, 1, None)) == 3
    assert target.applied_version("crm.customers", "customers") == 1
    db.execute(f"create role ferry_test_reader_{schema}")
    try:
        db.execute(f"grant select on {schema}.customers to ferry_test_reader_{schema}")
        v2 = [{**V1[0], "name": "A"}, V1[2], {"id": 4, "name": "d", "amount": None}]
        assert target.deliver(delivery("replace", v2, 2, 1)) == 3
        query = f"select id, name, amount from {schema}.customers order by id"
        expected = [(1, "A", Decimal("1.00")), (3, "c", Decimal("3.00")), (4, "d", None)]
        assert rows_of(db, query) == expected
        assert target.deliver(delivery("replace", v2, 2, 1)) == 0  # the same version again
        assert rows_of(db, query) == expected
        assert loads(db, schema) == [("crm.customers", "customers", 2, "replace", 3)]
        assert rows_of(db, f"select has_table_privilege('ferry_test_reader_{schema}', "
                           f"'{schema}.customers', 'select')") == [(True,)]
        key = rows_of(db, f"select pg_get_constraintdef(oid) from pg_constraint "
                          f"where conrelid = '{schema}.customers'::regclass")
        assert key == [("PRIMARY KEY (id)",)]
        assert rows_of(db, f"select count(*) from pg_tables where schemaname = '{schema}' "
                           "and tablename like '_ferry_new%'") == [(0,)]
    finally:
        db.execute(f"drop owned by ferry_test_reader_{schema}")
        db.execute(f"drop role ferry_test_reader_{schema}")


def test_replace_refills_a_table_that_views_depend_on(dsn: str, db: psycopg.Connection[Any],
                                                      schema: str) -> None:
    target = sink(dsn, schema)
    target.deliver(delivery("replace", V1, 1, None))
    db.execute(f"create view {schema}.names as select name from {schema}.customers")
    assert target.deliver(delivery("replace", V1[:1], 2, 1)) == 1
    assert rows_of(db, f"select * from {schema}.names") == [("a",)]


def test_merge_upserts_and_deletes_by_key(dsn: str, db: psycopg.Connection[Any],
                                          schema: str) -> None:
    target = sink(dsn, schema)
    assert target.deliver(delivery("merge", upserts(V1), 1, None)) == 3
    assert target.deliver(delivery("merge", CHANGE, 2, 1)) == 3
    query = f"select id, name, amount from {schema}.customers order by id"
    expected = [(1, "A", Decimal("1.50")), (3, "c", Decimal("3.00")), (4, "d", None)]
    assert rows_of(db, query) == expected
    assert target.deliver(delivery("merge", CHANGE, 2, 1)) == 0
    assert rows_of(db, query) == expected
    assert loads(db, schema) == [("crm.customers", "customers", 2, "merge", 3)]
    with pytest.raises(SinkError, match=r"has version 2 .* since version 1"):
        target.deliver(delivery("merge", CHANGE, 3, 1))
    key_only = [("id", "int64", False)]
    assert target.deliver(delivery("merge", [{"id": 9, OP_COLUMN: "upsert"}], 1, None,
                                   columns=key_only, table="keys")) == 1


def test_append_adds_rows_with_their_version(dsn: str, db: psycopg.Connection[Any],
                                             schema: str) -> None:
    target = sink(dsn, schema)
    first = [{**row, VERSION_COLUMN: 1} for row in V1]
    assert target.deliver(delivery("append", first, 1, None)) == 3
    added = [{"id": 4, "name": "d", "amount": None, VERSION_COLUMN: 2}]
    assert target.deliver(delivery("append", added, 2, 1)) == 1
    assert target.deliver(delivery("append", added, 2, 1)) == 0
    assert rows_of(db, f"select id, name, _ferry_version from {schema}.customers "
                       "order by id") == [(1, "a", 1), (2, "b", 1), (3, "c", 1), (4, "d", 2)]
    assert loads(db, schema) == [("crm.customers", "customers", 2, "append", 1)]


def test_history_keeps_every_version_of_a_key(dsn: str, db: psycopg.Connection[Any],
                                              schema: str) -> None:
    target = sink(dsn, schema)
    assert target.deliver(delivery("history", upserts(V1), 1, None, created_at=T1)) == 3
    assert target.deliver(delivery("history", CHANGE, 2, 1, created_at=T2)) == 3
    assert target.deliver(delivery("history", CHANGE, 2, 1, created_at=T2)) == 0
    assert rows_of(db, f"select id, name, valid_from, valid_to from {schema}.customers "
                       "order by id, valid_from") == [
        (1, "a", T1, T2), (1, "A", T2, None), (2, "b", T1, T2), (3, "c", T1, None),
        (4, "d", T2, None)]
    assert rows_of(db, f"select format_type(atttypid, atttypmod) from pg_attribute where "
                       f"attrelid = '{schema}.customers'::regclass and attname = 'valid_to'"
                       ) == [("timestamp with time zone",)]
    assert loads(db, schema) == [("crm.customers", "customers", 2, "history", 3)]


SINK_TYPES: list[tuple[str, str, Any, str, Any]] = [
    # name, declared type, value delivered, column type, value read back (psycopg)
    ("b", "bool", True, "boolean", True),
    ("i8", "int8", -128, "smallint", -128),
    ("i16", "int16", -32768, "smallint", -32768),
    ("i32", "int32", 2147483647, "integer", 2147483647),
    ("i64", "int64", -(2**63), "bigint", -(2**63)),
    ("u8", "uint8", 255, "smallint", 255),
    ("u16", "uint16", 65535, "integer", 65535),
    ("u32", "uint32", 2**32 - 1, "bigint", 2**32 - 1),
    ("u64", "uint64", 2**64 - 1, "numeric(20,0)", Decimal(2**64 - 1)),
    ("f16", "float16", 65504.0, "real", 65504.0),
    ("bf16", "bfloat16", -1.5, "real", -1.5),
    ("f8", "float8_e4m3", 448.0, "real", 448.0),
    ("f32", "float32", 0.5, "real", 0.5),
    ("f64", "float64", -1.7976931348623157e308, "double precision", -1.7976931348623157e308),
    ("d12", "decimal(12,2)", Decimal("-9999999999.99"), "numeric(12,2)",
     Decimal("-9999999999.99")),
    ("d50", "decimal(50,2)", Decimal("1" * 48 + ".25"), "numeric(50,2)",
     Decimal("1" * 48 + ".25")),
    ("s", "string", "héllo 🌍 ∑\n\"'\\", "text", "héllo 🌍 ∑\n\"'\\"),
    ("s5", "string(5)", "ünï😀x", "character varying(5)", "ünï😀x"),
    ("bin", "binary", b"\x00\xff", "bytea", b"\x00\xff"),
    ("dt", "date", date(2024, 2, 29), "date", date(2024, 2, 29)),
    ("tm", "time", clock(23, 59, 59, 999999), "time without time zone",
     clock(23, 59, 59, 999999)),
    ("ts", "timestamp", datetime(1970, 1, 1, 0, 0, 0, 1), "timestamp without time zone",
     datetime(1970, 1, 1, 0, 0, 0, 1)),
    ("tz", "timestamp_tz", datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
     "timestamp with time zone", datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
    ("u", "uuid", str(UID), "uuid", UID),
    ("js", "json", '{"a": [1, 2.5, null], "b": "ü"}', "jsonb",
     {"a": [1, 2.5, None], "b": "ü"}),
    ("li", "list<int64>", [1, None, 3], "bigint[]", [1, None, 3]),
    ("ls", "list<string(5)>", ["ab", None], "character varying(5)[]", ["ab", None]),
    ("lu", "list<uuid>", [str(UID)], "uuid[]", [UID]),
    ("ld", "list<decimal(10,2)>", [Decimal("1.50")], "numeric(10,2)[]", [Decimal("1.50")]),
    ("lt", "list<timestamp_tz>", [datetime(2024, 1, 1, tzinfo=UTC)],
     "timestamp with time zone[]", [datetime(2024, 1, 1, tzinfo=UTC)]),
    ("ll", "list<list<int32>>", [[1], [2, 3], []], "jsonb", [[1], [2, 3], []]),
    ("lj", "list<json>", ['{"q": 1}', "[1]"], "jsonb", [{"q": 1}, [1]]),
    ("m", "map<string,decimal(5,2)>", [("k", Decimal("1.25"))], "jsonb", {"k": "1.25"}),
    ("st", "struct<a:int64, b:binary, j:json, d:date>",
     {"a": 1, "b": b"\x01", "j": '{"z": [true]}', "d": date(2024, 1, 1)}, "jsonb",
     {"a": 1, "b": "AQ==", "j": {"z": [True]}, "d": "2024-01-01"}),
]


def test_every_declared_type_lands_in_its_native_column(dsn: str, db: psycopg.Connection[Any],
                                                        schema: str) -> None:
    columns = [("id", "int64", False), *((n, t, True) for n, t, _, _, _ in SINK_TYPES)]
    types = {n: t for n, t, _ in columns}
    # The Arrow form deliveries have: what the engine's decode of the store gives.
    empty = pa.RecordBatch.from_pylist([], schema=store_schema(columns))
    delivered = decode_batch(empty, types).schema
    rows = [{"id": 1, **{n: v for n, _, v, _, _ in SINK_TYPES}}, {"id": 2}]
    data = pa.Table.from_pylist(rows, schema=delivered)
    target = sink(dsn, schema)
    assert target.deliver(Delivery(
        dataset="crm.all", consumer="bi.wh", table="all_types", mode="replace",
        columns=[(n, parse_type(t), nullable) for n, t, nullable in columns],
        primary_key=["id"], version=1, previous=None, created_at=T1,
        rows=data.to_reader())) == 2
    natives = dict(rows_of(db, "select attname::text, format_type(atttypid, atttypmod) from "
                               f"pg_attribute where attrelid = '{schema}.all_types'::regclass "
                               "and attnum > 0"))
    assert natives == {"id": "bigint", **{n: native for n, _, _, native, _ in SINK_TYPES}}
    names = ", ".join(n for n, _, _, _, _ in SINK_TYPES)
    first, second = rows_of(db, f"select {names} from {schema}.all_types order by id")
    assert dict(zip([n for n, *_ in SINK_TYPES], first, strict=True)) == {
        n: back for n, _, _, _, back in SINK_TYPES}
    assert set(second) == {None}


def test_tables_evolve_or_fail_clearly(dsn: str, db: psycopg.Connection[Any],
                                       schema: str) -> None:
    target = sink(dsn, schema)
    narrow = [("id", "int64", False), ("a", "int32", True), ("s", "string(5)", True)]
    target.deliver(delivery("merge", [{"id": 1, "a": 5, "s": "abc", OP_COLUMN: "upsert"}],
                            1, None, columns=narrow))
    wide = [("id", "int64", False), ("a", "int64", True), ("s", "string", True),
            ("c", "decimal(10,2)", True)]
    change = [{"id": 2, "a": 2**40, "s": "longer text", "c": Decimal("1.25"),
               OP_COLUMN: "upsert"}]
    assert target.deliver(delivery("merge", change, 2, 1, columns=wide)) == 1
    query = (f"select format_type(atttypid, atttypmod) from pg_attribute where attrelid = "
             f"'{schema}.customers'::regclass and attnum > 0 order by attnum")
    assert [t for (t,) in rows_of(db, query)] == ["bigint", "bigint", "text", "numeric(10,2)"]
    assert rows_of(db, f"select id, a, s, c from {schema}.customers order by id") == [
        (1, 5, "abc", None), (2, 2**40, "longer text", Decimal("1.25"))]
    narrower = [("id", "int64", False), ("a", "int16", True)]  # fits the wider column
    assert target.deliver(delivery("merge", [{"id": 3, "a": 7, OP_COLUMN: "upsert"}], 3, 2,
                                   columns=narrower)) == 1
    retyped = [("id", "int64", False), ("a", "string", True)]
    with pytest.raises(SinkError, match=f"table {schema}.customers: column a is bigint, "
                                        "which cannot hold the declared string"):
        target.deliver(delivery("merge", [{"id": 1, "a": "x", OP_COLUMN: "upsert"}], 4, 3,
                                columns=retyped))
    required = [("id", "int64", False), ("n", "int64", False)]
    with pytest.raises(SinkError, match=r"new column n .* not nullable"):
        target.deliver(delivery("merge", [{"id": 1, "n": 1, OP_COLUMN: "upsert"}], 4, 3,
                                columns=required))
    assert target.applied_version("crm.customers", "customers") == 3
    db.execute(f"create table {schema}.keyless (id bigint, name text, amount numeric(12,2))")
    with pytest.raises(SinkError, match="no primary key or unique index on"):
        target.deliver(delivery("merge", upserts(V1), 1, None, table="keyless"))
    with pytest.raises(SinkError, match=r"unique|duplicate"):
        target.deliver(delivery("replace", [V1[0], V1[0]], 1, None, table="dupes"))


def test_unreachable_sink_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_PG_PASSWORD", SECRET)
    port = free_port()
    target = PostgresSink("bi.wh", SinkSpec(kind="postgres",
                                            dsn=f"postgresql://loader@127.0.0.1:{port}/wh",
                                            password="${env:FERRY_TEST_PG_PASSWORD}"),
                          Path("."))
    with pytest.raises(TransientError) as caught:
        target.deliver(delivery("replace", V1, 1, None))
    assert "bi.wh" in str(caught.value) and SECRET not in str(caught.value)


# --- a delivery killed half way -----------------------------------------------------------

KILLED = """
import sys, time
from datetime import datetime, timezone
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc
from dataferry.connectors.base import Delivery
from dataferry.connectors.postgres.sink import PostgresSink
from dataferry.model.spec import PostgresSink as Spec
from dataferry.model.types import parse_type
dsn, schema, mode, pause = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "pause"
ROWS, BATCH = 100_000, 10_000
def batches():
    for start in range(0, ROWS, BATCH):
        ids = pa.array(range(start, start + BATCH), pa.int64())
        arrays = [ids, pc.cast(ids, pa.string()), pc.cast(pc.cast(ids, pa.int32()), pa.decimal128(12, 2))]
        names = ["id", "name", "amount"]
        if mode in ("merge", "history"):
            arrays.append(pa.array(["upsert"] * BATCH)); names.append("_ferry_op")
        if mode == "append":
            arrays.append(pa.array([2] * BATCH, pa.int64())); names.append("_ferry_version")
        yield pa.RecordBatch.from_arrays(arrays, names=names)
        if pause:
            print("loading", flush=True)
            time.sleep(60)
first = next(batches())
sink = PostgresSink("bi.wh", Spec(kind="postgres", dsn=dsn, schema=schema), Path("."))
columns = [("id", parse_type("int64"), False), ("name", parse_type("string"), True),
           ("amount", parse_type("decimal(12,2)"), True)]
print(sink.deliver(Delivery("crm.customers", "bi.wh", "customers", mode, columns, ["id"], 2, 1,
                            datetime(2024, 6, 2, tzinfo=timezone.utc),
                            pa.RecordBatchReader.from_batches(first.schema, batches()))))
"""


@pytest.mark.parametrize("mode", ["replace", "merge", "append", "history"])
def test_killed_delivery_changes_nothing_and_reruns_once(
        dsn: str, db: psycopg.Connection[Any], schema: str, mode: str) -> None:
    target = sink(dsn, schema)
    first = {"merge": upserts(V1), "history": upserts(V1),
             "append": [{**row, VERSION_COLUMN: 1} for row in V1]}.get(mode, V1)
    target.deliver(delivery(mode, first, 1, None))
    table = f"select * from {schema}.customers order by 1, 2"
    before = rows_of(db, table)
    command = [sys.executable, "-c", KILLED, dsn, schema, mode]
    child = subprocess.Popen([*command, "pause"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "loading"
        copying = ("select count(*) from pg_stat_activity where datname = current_database() "
                   "and query ilike 'copy%%' and state = 'active'")
        for _ in range(100):  # the child's COPY is under way
            if rows_of(db, copying)[0][0]:
                break
            time.sleep(0.05)
        assert rows_of(db, copying)[0][0] >= 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert rows_of(db, table) == before
    assert loads(db, schema) == [("crm.customers", "customers", 1, mode, 3)]
    rerun = subprocess.run([*command, "go"], capture_output=True, text=True, check=True)
    assert rerun.stdout.strip() == "100000"
    counts = {"replace": 100_000, "merge": 100_000, "append": 100_003, "history": 100_003}
    count = f"select count(*), count(distinct id) from {schema}.customers"
    assert rows_of(db, count)[0][0] == counts[mode]
    assert loads(db, schema) == [("crm.customers", "customers", 2, mode, 100_000)]
    again = subprocess.run([*command, "go"], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "0" and rows_of(db, count)[0][0] == counts[mode]


def test_a_failing_delivery_stream_rolls_back(dsn: str, db: psycopg.Connection[Any],
                                              schema: str) -> None:
    target = sink(dsn, schema)
    odd = 'Odd "Name"; drop'
    target.deliver(delivery("merge", upserts(V1), 1, None, table=odd))
    good = delivery("merge", CHANGE, 2, 1, table=odd, batch=1)

    def broken() -> Iterator[pa.RecordBatch]:
        yield good.rows.read_next_batch()
        raise ValueError("the store could not decode a row")

    failing = delivery("merge", CHANGE, 2, 1, table=odd)
    failing.rows = pa.RecordBatchReader.from_batches(good.rows.schema, broken())
    with pytest.raises(ValueError, match="could not decode"):
        target.deliver(failing)
    quoted = f'{schema}."Odd ""Name""; drop"'
    assert rows_of(db, f"select id, name from {quoted} order by id") == [
        (1, "a"), (2, "b"), (3, "c")]
    assert target.applied_version("crm.customers", odd) == 1
    assert target.deliver(delivery("merge", CHANGE, 2, 1, table=odd)) == 3
    assert rows_of(db, f"select id, name from {quoted} order by id") == [
        (1, "A"), (3, "c"), (4, "d")]


def test_a_refused_row_is_one_sentence_with_its_sqlstate(dsn: str, db: psycopg.Connection[Any],
                                                          schema: str) -> None:
    """The server's reason, then its SQLSTATE once: no ". ." left by ADBC's trailer."""
    target = sink(dsn, schema)
    target.deliver(delivery("merge", upserts(V1), 1, None))
    db.execute(f"alter table {schema}.customers add constraint positive check (amount > 0)")
    refused = [{"id": 9, "name": "z", "amount": Decimal("-1.00"), OP_COLUMN: "upsert"}]
    with pytest.raises(SinkError) as caught:
        target.deliver(delivery("merge", refused, 2, 1))
    message = str(caught.value)
    assert ". ." not in message and "SQLSTATE: " not in message, message
    assert message.count("23514") == 1, message
    assert message.endswith('violates check constraint "positive" DETAIL: Failing row '
                            "contains (9, z, -1.00). (SQLSTATE 23514)"), message
