"""MariaDB sink against the real server on 127.0.0.1:3306 (source: test_mysql.py).

Each test delivers into its own database (``ferry_test_<random>``, created by the sink,
dropped at the end). Every mode, through both bulk paths (LOAD DATA and INSERTs),
delivers version 1, then a change set as version 2, then the same version again; every
declared type lands in its native column and reads back exactly; tables evolve or fail
clearly; a delivery killed half way leaves target and ``_ferry_loads`` unchanged; a
replace killed right after its swap is repaired by the next ``applied_version``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN, Delivery
from dataferry.connectors.mysql import MysqlSink
from dataferry.errors import SinkError, TransientError
from dataferry.model.spec import MysqlSink as SinkSpec
from dataferry.model.types import parse_type
from tests.conftest import require_service

SERVER = "mysql://root@127.0.0.1:3306"
T1 = datetime(2024, 6, 1, tzinfo=UTC)
T2 = datetime(2024, 6, 2, tzinfo=UTC)
COLUMNS = [("id", "int64", False), ("name", "string", True), ("amount", "decimal(12,2)", True)]
V1 = [{"id": 1, "name": "ann", "amount": Decimal("10.50")},
      {"id": 2, "name": "bob", "amount": None},
      {"id": 3, "name": "cy 🎉", "amount": Decimal("-1.00")}]
V2 = [{"id": 1, "name": "ann'2", "amount": Decimal("11.00")},
      {"id": 3, "name": "cy 🎉", "amount": Decimal("-1.00")},
      {"id": 4, "name": "dee\n\"x\"", "amount": Decimal("0.01")}]
CHANGES = [{**V2[0], OP_COLUMN: "upsert"}, {"id": 2, "name": None, "amount": None,
                                            OP_COLUMN: "delete"},
           {**V2[2], OP_COLUMN: "upsert"}]


def admin(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", user="root", password="", database=database,
                           autocommit=True, charset="utf8mb4")


def rows_of(sql: str) -> list[tuple[Any, ...]]:
    with admin() as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


@pytest.fixture
def schema() -> Iterator[str]:
    """A database name for the sink to create; dropped after the test."""
    require_service("mariadb")
    name = f"ferry_test_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        rows_of(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(params=["load_data", "insert"])
def path(request: pytest.FixtureRequest) -> bool:
    """Which bulk path the sink uses: LOAD DATA LOCAL INFILE or multi-row INSERTs."""
    return bool(request.param == "load_data")


def sink(schema: str, load_data: bool | None = None, **spec: Any) -> MysqlSink:
    target = MysqlSink("bi.wh", SinkSpec.model_validate(
        {"kind": "mysql", "dsn": f"{SERVER}/mysql", "schema": schema, **spec}), Path("."))
    target.load_data = load_data
    return target


def delivery(mode: str, rows: list[dict[str, Any]], version: int, previous: int | None, *,
             columns: list[tuple[str, str, bool]] = COLUMNS, key: tuple[str, ...] = ("id",),
             table: str = "customers", created_at: datetime = T1,
             arrow: dict[str, pa.DataType] | None = None) -> Delivery:
    types = {"int64": pa.int64(), "string": pa.string(), "decimal(12,2)": pa.decimal128(12, 2),
             **(arrow or {})}
    fields = [pa.field(n, types.get(n, types.get(t)), nullable) for n, t, nullable in columns]
    if mode in ("merge", "history"):
        fields.append(pa.field(OP_COLUMN, pa.string(), False))
    if mode == "append":
        fields.append(pa.field(VERSION_COLUMN, pa.int64(), False))
    arrow_schema = pa.schema(fields)
    data = pa.Table.from_pylist(rows, schema=arrow_schema)
    return Delivery(
        dataset="crm.customers", consumer="bi.wh", table=table, mode=mode,
        columns=[(n, parse_type(t), nullable) for n, t, nullable in columns],
        primary_key=list(key), version=version, previous=previous, created_at=created_at,
        rows=pa.RecordBatchReader.from_batches(arrow_schema, data.to_batches(max_chunksize=2)))


def loads(schema: str) -> list[tuple[Any, ...]]:
    return rows_of(f"SELECT dataset, table_name, version, mode, `rows` "
                   f"FROM {schema}._ferry_loads ORDER BY 1, 2")


def tables(schema: str) -> list[str]:
    return sorted(r[0] for r in rows_of(f"SHOW TABLES FROM {schema}"))


def customers(schema: str, extra: str = "") -> list[tuple[Any, ...]]:
    return rows_of(f"SELECT id, name, amount{extra} FROM {schema}.customers ORDER BY 1, 2")


def as_tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["id"], r["name"], r["amount"]) for r in rows]


def test_replace_swaps_the_whole_table(schema: str, path: bool) -> None:
    target = sink(schema, path)
    assert target.applied_version("crm.customers", "customers") is None
    assert target.deliver(delivery("replace", V1, 1, None)) == 3
    assert customers(schema) == as_tuples(V1)
    assert target.deliver(delivery("replace", V2, 2, 1)) == 3
    assert customers(schema) == as_tuples(V2)
    assert target.deliver(delivery("replace", V2[:1], 2, 2)) == 0  # the same version again
    assert customers(schema) == as_tuples(V2)
    assert loads(schema) == [("crm.customers", "customers", 2, "replace", 3)]
    assert target.applied_version("crm.customers", "customers") == 2
    assert tables(schema) == ["_ferry_loads", "customers"]
    assert rows_of(f"SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE "
                   f"TABLE_SCHEMA = '{schema}' AND TABLE_NAME = 'customers'") == [("",)]
    target.close()


def test_merge_upserts_and_deletes_by_key(schema: str, path: bool) -> None:
    target = sink(schema, path)
    assert target.deliver(delivery("merge", [{**r, OP_COLUMN: "upsert"} for r in V1],
                                   1, None)) == 3
    assert customers(schema) == as_tuples(V1)
    assert target.deliver(delivery("merge", CHANGES, 2, 1)) == 3
    assert customers(schema) == as_tuples(V2)
    assert target.deliver(delivery("merge", CHANGES, 2, 1)) == 0
    assert customers(schema) == as_tuples(V2)
    assert loads(schema) == [("crm.customers", "customers", 2, "merge", 3)]
    # The last row of a key wins within a change set; keys compare exactly.
    mixed = [{"id": 5, "name": "a", "amount": None, OP_COLUMN: "upsert"},
             {"id": 5, "name": None, "amount": None, OP_COLUMN: "delete"},
             {"id": 1, "name": "first", "amount": None, OP_COLUMN: "upsert"},
             {"id": 1, "name": "last", "amount": None, OP_COLUMN: "upsert"}]
    target.deliver(delivery("merge", mixed, 3, 2))
    assert [r[:2] for r in customers(schema)] == [(1, "last"), (3, "cy 🎉"), (4, V2[2]["name"])]
    text_keys = [{"code": c, "n": i, OP_COLUMN: "upsert"} for i, c in enumerate(["a", "A", "a "])]
    target.deliver(delivery("merge", text_keys, 1, None, columns=[
        ("code", "string", False), ("n", "int64", True)], key=("code",), table="codes"))
    assert rows_of(f"SELECT HEX(code), n FROM {schema}.codes ORDER BY n") == [
        ("61", 0), ("41", 1), ("6120", 2)]


def test_append_adds_rows_with_their_version(schema: str, path: bool) -> None:
    target = sink(schema, path)
    target.deliver(delivery("append", [{**r, VERSION_COLUMN: 1} for r in V1], 1, None))
    added = [{**V2[2], VERSION_COLUMN: 2}, {**V2[0], VERSION_COLUMN: 2}]
    assert target.deliver(delivery("append", added, 2, 1)) == 2
    assert target.deliver(delivery("append", added, 2, 1)) == 0
    assert target.deliver(delivery("append", added, 1, None)) == 0  # older: already there
    expected = sorted([(r["id"], r["name"], r["amount"], 1) for r in V1]
                      + [(r["id"], r["name"], r["amount"], 2) for r in (V2[0], V2[2])])
    assert customers(schema, f", {VERSION_COLUMN}") == expected
    assert loads(schema) == [("crm.customers", "customers", 2, "append", 2)]


def test_history_keeps_every_version_of_a_key(schema: str, path: bool) -> None:
    target = sink(schema, path)
    target.deliver(delivery("history", [{**r, OP_COLUMN: "upsert"} for r in V1], 1, None))
    assert target.deliver(delivery("history", CHANGES, 2, 1, created_at=T2)) == 3
    assert target.deliver(delivery("history", CHANGES, 2, 1, created_at=T2)) == 0
    t1, t2 = T1.replace(tzinfo=None), T2.replace(tzinfo=None)
    assert customers(schema, ", valid_from, valid_to") == [
        (1, "ann", Decimal("10.50"), t1, t2), (1, "ann'2", Decimal("11.00"), t2, None),
        (2, "bob", None, t1, t2), (3, "cy 🎉", Decimal("-1.00"), t1, None),
        (4, V2[2]["name"], Decimal("0.01"), t2, None)]
    assert loads(schema) == [("crm.customers", "customers", 2, "history", 3)]
    assert rows_of(f"SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                   f"WHERE TABLE_SCHEMA = '{schema}' AND COLUMN_NAME LIKE 'valid%' "
                   "ORDER BY 1") == [("valid_from", "datetime(6)", "NO"),
                                     ("valid_to", "datetime(6)", "YES")]


TYPES: list[tuple[str, str, pa.DataType, Any, str]] = [
    # name, declared type, natural Arrow type, value, expected COLUMN_TYPE
    ("k", "string(20)", pa.string(), "key 1", "varchar(20)"),
    ("b", "bool", pa.bool_(), True, "tinyint(1)"),
    ("i8", "int8", pa.int8(), -128, "tinyint(4)"),
    ("u8", "uint8", pa.uint8(), 255, "tinyint(3) unsigned"),
    ("i16", "int16", pa.int16(), -32768, "smallint(6)"),
    ("u16", "uint16", pa.uint16(), 65535, "smallint(5) unsigned"),
    ("i32", "int32", pa.int32(), -(2**31), "int(11)"),
    ("u32", "uint32", pa.uint32(), 2**32 - 1, "int(10) unsigned"),
    ("i64", "int64", pa.int64(), -(2**63), "bigint(20)"),
    ("u64", "uint64", pa.uint64(), 2**64 - 1, "bigint(20) unsigned"),
    ("f16", "float16", pa.float32(), 65504.0, "float"),
    ("f32", "float32", pa.float32(), 1.2345677614212036, "float"),
    ("f64", "float64", pa.float64(), 1.2345678901234567e-300, "double"),
    ("d10", "decimal(10,2)", pa.decimal128(10, 2), Decimal("-12345678.90"), "decimal(10,2)"),
    ("d65", "decimal(65,30)", pa.decimal256(65, 30), Decimal("1E-30"), "decimal(65,30)"),
    ("d70", "decimal(70,5)", pa.decimal256(70, 5), Decimal("-1" + "0" * 64 + ".00001"),
     "varchar(73)"),
    ("s", "string", pa.string(), "é 🎉 'q' \"dq\" \\ \n\r\t,;\x00 NULL", "longtext"),
    ("s300", "string(300)", pa.string(), "x" * 300, "text"),
    ("bin", "binary", pa.binary(), bytes(range(256)), "longblob"),
    ("dt", "date", pa.date32(), date(1000, 1, 1), "date"),
    ("tm", "time", pa.time64("us"), time(23, 59, 59, 999999), "time(6)"),
    ("ts", "timestamp", pa.timestamp("us"), datetime(9999, 12, 31, 23, 59, 59, 999999),
     "datetime(6)"),
    ("tz", "timestamp_tz", pa.timestamp("us", tz="UTC"),
     datetime(2024, 6, 1, 12, 0, 0, 1, tzinfo=UTC), "datetime(6)"),
    ("u", "uuid", pa.string(), "123e4567-e89b-12d3-a456-426614174000", "char(36)"),
    ("js", "json", pa.string(), '{"a": [1, 2.5]}', "longtext"),
    ("li", "list<int32>", pa.list_(pa.int32()), [1, None, 3], "longtext"),
    ("mp", "map<string,decimal(5,2)>", pa.map_(pa.string(), pa.decimal128(5, 2)),
     [("a", Decimal("1.50"))], "longtext"),
    ("st", "struct<a:int32, b:list<string>, t:timestamp_tz>",
     pa.struct([("a", pa.int32()), ("b", pa.list_(pa.string())),
                ("t", pa.timestamp("us", tz="UTC"))]),
     {"a": 1, "b": ["x"], "t": datetime(2024, 1, 1, tzinfo=UTC)}, "longtext"),
]
READ_BACK = {
    "b": 1, "tz": datetime(2024, 6, 1, 12, 0, 0, 1), "tm": timedelta(seconds=86399.999999), "d70": "-1" + "0" * 64 + ".00001",
    "li": "[1,null,3]", "mp": '{"a":"1.50"}', "st": '{"a":1,"b":["x"],"t":"2024-01-01T00:00:00+00:00"}',
}


def test_every_declared_type_lands_in_its_native_column(schema: str, path: bool) -> None:
    columns = [(n, t, True) for n, t, _, _, _ in TYPES]
    arrow = {n: a for n, _, a, _, _ in TYPES}
    row = {n: v for n, _, _, v, _ in TYPES}
    empty = {n: None for n, _, _, _, _ in TYPES} | {"k": "key 2"}
    target = sink(schema, path)
    target.deliver(delivery("replace", [row, empty], 1, None, columns=columns, key=("k",),
                            table="typed", arrow=arrow))
    found = dict(rows_of(f"SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                         f"WHERE TABLE_SCHEMA = '{schema}' AND TABLE_NAME = 'typed'"))
    assert found == {n: native for n, _, _, _, native in TYPES}
    names = ", ".join(f"CAST({n} AS DOUBLE)" if n in ("f16", "f32") else n
                      for n, _, _, _, _ in TYPES)
    with admin(schema) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM typed ORDER BY k")
        first, second = cursor.fetchall()
    expected = {n: READ_BACK.get(n, v) for n, v in row.items()}
    assert dict(zip(row, first, strict=True)) == expected
    assert second == ("key 2", *[None] * (len(TYPES) - 1))
    assert rows_of(f"SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA "
                   f"= '{schema}' AND TABLE_NAME = 'typed' AND COLUMN_NAME = 'k'") == [
        ("utf8mb4_nopad_bin",)]
    assert rows_of(f"SELECT JSON_VALID(js) FROM {schema}.typed WHERE k = 'key 1'") == [(1,)]


def test_tables_evolve_or_fail_clearly(schema: str) -> None:
    target = sink(schema)
    narrow = [("id", "int32", False), ("name", "string(10)", False), ("amount", "decimal(10,2)", True)]
    target.deliver(delivery("merge", [{**V1[0], OP_COLUMN: "upsert"}], 1, None, columns=narrow,
                            arrow={"int32": pa.int32(), "string(10)": pa.string(),
                                   "decimal(10,2)": pa.decimal128(10, 2)}))
    wide = [("id", "int64", False), ("name", "string(20)", True), ("amount", "decimal(12,2)", True),
            ("note", "string", True)]
    row = {"id": 2**40, "name": "x" * 20, "amount": Decimal("1234567890.12"), "note": "new",
           OP_COLUMN: "upsert"}
    target.deliver(delivery("merge", [row], 2, 1, columns=wide,
                            arrow={"string(20)": pa.string()}))
    assert rows_of(f"SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                   f"WHERE TABLE_SCHEMA = '{schema}' AND TABLE_NAME = 'customers' "
                   "ORDER BY ORDINAL_POSITION") == [
        ("id", "bigint(20)", "NO"), ("name", "varchar(20)", "YES"),
        ("amount", "decimal(12,2)", "YES"), ("note", "longtext", "YES")]
    assert len(customers(schema)) == 2
    text = [("id", "int64", False), ("amount", "string", True)]
    with pytest.raises(SinkError, match=r"bi\.wh: table .*\.customers: column 'amount' is "
                                        r"decimal\(12,2\) .*type family changed"):
        target.deliver(delivery("merge", [], 3, 2, columns=text))
    required = [*COLUMNS, ("n", "int64", False)]
    with pytest.raises(SinkError, match=r"new column 'n' .* not nullable"):
        target.deliver(delivery("merge", [], 3, 2, columns=required))
    with pytest.raises(SinkError, match=r"primary key is \(id\) but the delivery's key is \(name\)"):
        target.deliver(delivery("merge", [], 3, 2, key=("name",)))
    assert target.applied_version("crm.customers", "customers") == 2
    nullable_key = [("id", "int64", True), *wide[1:]]  # the model's default: nullable
    assert target.deliver(delivery("merge", [], 3, 2, columns=nullable_key,
                                   arrow={"string(20)": pa.string()})) == 0
    assert rows_of(f"SELECT IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                   f"'{schema}' AND TABLE_NAME = 'customers' AND COLUMN_NAME = 'id'") == [("NO",)]


# Any 128-bit value is a uuid to the model; MariaDB's UUID type refuses a version nibble
# 8-f with a variant nibble 0-7 ("Incorrect uuid value"): issue 12, point 8.
ANY_UUIDS = ["12345678-1234-8234-0234-123456789abc", "ffffffff-ffff-ffff-7fff-ffffffffffff",
             "00000000-0000-0000-0000-000000000000", "123e4567-e89b-12d3-a456-426614174000"]
UUID_COLUMNS = [("id", "uuid", False), ("ref", "uuid", True)]


def uuid_rows(values: list[str]) -> list[dict[str, Any]]:
    return [{"id": uuid.UUID(v).bytes, "ref": uuid.UUID(v).bytes, OP_COLUMN: "upsert"}
            for v in values]


def test_every_uuid_the_model_accepts_is_delivered(schema: str, path: bool) -> None:
    target = sink(schema, path)
    for mode, table in (("merge", "merged"), ("history", "kept")):
        target.deliver(delivery(mode, uuid_rows(ANY_UUIDS), 1, None, columns=UUID_COLUMNS,
                                table=table, arrow={"uuid": pa.binary(16)}))
        assert rows_of(f"SELECT id, ref FROM {schema}.{table} ORDER BY id") == sorted(
            (v, v) for v in ANY_UUIDS)
    target.close()


def test_an_existing_uuid_column_becomes_text_and_takes_any_uuid(schema: str) -> None:
    """Tables made by earlier versions (MariaDB's UUID type) are changed on the next delivery."""
    rows_of(f"CREATE DATABASE {schema}")
    rows_of(f"CREATE TABLE {schema}.merged (id UUID NOT NULL PRIMARY KEY, ref UUID NULL)")
    rows_of(f"INSERT INTO {schema}.merged VALUES ('{ANY_UUIDS[3]}', NULL)")
    target = sink(schema)
    target.deliver(delivery("merge", uuid_rows(ANY_UUIDS[:3]), 1, None, columns=UUID_COLUMNS,
                            table="merged", arrow={"uuid": pa.binary(16)}))
    assert rows_of(f"SELECT id, ref FROM {schema}.merged ORDER BY id") == sorted(
        [(v, v) for v in ANY_UUIDS[:3]] + [(ANY_UUIDS[3], None)])
    assert rows_of(f"SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                   f"WHERE TABLE_SCHEMA = '{schema}' AND TABLE_NAME = 'merged' "
                   "ORDER BY ORDINAL_POSITION") == [("id", "char(36)", "NO"),
                                                    ("ref", "char(36)", "YES")]
    target.close()


def test_values_mariadb_cannot_hold_fail_the_delivery(schema: str, path: bool) -> None:
    target = sink(schema, path)
    target.deliver(delivery("replace", V1, 1, None))
    floats = [("id", "int64", False), ("x", "float64", True)]
    with pytest.raises(SinkError, match=r"column 'x' holds NaN"):
        target.deliver(delivery("replace", [{"id": 1, "x": float("nan")}], 2, 1,
                                columns=floats, arrow={"float64": pa.float64()}))
    with pytest.raises(SinkError, match=r"(?i)duplicate"):
        target.deliver(delivery("replace", [V2[0], V2[0]], 2, 1))
    with pytest.raises(SinkError, match=r"(?i)short.*(too long|truncated) for column 'name'"):
        target.deliver(delivery("append", [{"id": 1, "name": "é" * 11, "amount": None,
                                            VERSION_COLUMN: 2}], 2, 1, table="short",
                                columns=[("id", "int64", False), ("name", "string(10)", True),
                                         ("amount", "decimal(12,2)", True)],
                                arrow={"string(10)": pa.string()}))
    assert customers(schema) == as_tuples(V1)
    assert loads(schema) == [("crm.customers", "customers", 1, "replace", 3)]


def test_unreachable_sink_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_MYSQL_PASSWORD", "s3cret-Value!")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = MysqlSink("bi.wh", SinkSpec(kind="mysql", dsn=f"mysql://loader@127.0.0.1:{port}/wh",
                                         password="${env:FERRY_TEST_MYSQL_PASSWORD}"), Path("."))
    with pytest.raises(TransientError) as caught:
        target.deliver(delivery("replace", V1, 1, None))
    assert "bi.wh" in str(caught.value) and "s3cret-Value!" not in str(caught.value)


# --- deliveries killed half way -------------------------------------------------------------

CHILD = """
import sys, time
from datetime import datetime, timezone
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc
from dataferry.connectors.base import Delivery
from dataferry.connectors.mysql import MysqlSink
from dataferry.model.spec import MysqlSink as Spec
from dataferry.model.types import parse_type
schema, mode, pause = sys.argv[1], sys.argv[2], sys.argv[3] == "pause"
ROWS, BATCH = 60_000, 20_000
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
        if pause:  # the first batch is written: die in the middle of the load
            print("loading", flush=True)
            time.sleep(60)
first = next(batches())
sink = MysqlSink("bi.wh", Spec(kind="mysql", dsn="mysql://root@127.0.0.1:3306/mysql",
                               schema=schema), Path("."))
columns = [("id", parse_type("int64"), False), ("name", parse_type("string"), True),
           ("amount", parse_type("decimal(12,2)"), True)]
print(sink.deliver(Delivery("crm.customers", "bi.wh", "customers", mode, columns, ["id"], 2, 1,
                            datetime(2024, 6, 2, tzinfo=timezone.utc),
                            pa.RecordBatchReader.from_batches(first.schema, batches()))))
"""
FIRST = {"merge": [{**r, OP_COLUMN: "upsert"} for r in V1],
         "history": [{**r, OP_COLUMN: "upsert"} for r in V1],
         "append": [{**r, VERSION_COLUMN: 1} for r in V1], "replace": V1}


def child(schema: str, mode: str, how: str, crash_at: str | None = None,
          ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRY_CRASH_AT": crash_at or ""}
    return subprocess.run([sys.executable, "-c", CHILD, schema, mode, how], capture_output=True,
                          text=True, env=env, check=False)


@pytest.mark.parametrize("mode", ["replace", "merge", "append", "history"])
def test_killed_delivery_changes_nothing_and_reruns_once(schema: str, mode: str) -> None:
    sink(schema).deliver(delivery(mode, FIRST[mode], 1, None))
    table = f"SELECT * FROM {schema}.customers ORDER BY 1, 2"
    before = rows_of(table)
    process = subprocess.Popen([sys.executable, "-c", CHILD, schema, mode, "pause"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "loading"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert rows_of(table) == before
    assert loads(schema) == [("crm.customers", "customers", 1, mode, 3)]
    rerun = child(schema, mode, "go")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == "60000"
    counts = {"replace": 60_000, "merge": 60_000, "append": 60_003, "history": 60_003}
    count = f"SELECT COUNT(*) FROM {schema}.customers"
    assert rows_of(count)[0][0] == counts[mode]
    assert loads(schema) == [("crm.customers", "customers", 2, mode, 60_000)]
    again = child(schema, mode, "go")
    assert again.stdout.strip() == "0" and rows_of(count)[0][0] == counts[mode]
    assert tables(schema) == ["_ferry_loads", "customers"]


def test_replace_killed_after_its_swap_is_finished_by_the_next_reader(schema: str) -> None:
    target = sink(schema)
    target.deliver(delivery("replace", V1, 1, None))
    marked = child(schema, "replace", "go", crash_at="mysql-replace-marked")
    assert marked.returncode == -signal.SIGKILL
    assert customers(schema) == as_tuples(V1) and target.applied_version(
        "crm.customers", "customers") == 1  # the swap had not happened: nothing changed
    swapped = child(schema, "replace", "go", crash_at="mysql-replace-swapped")
    assert swapped.returncode == -signal.SIGKILL
    assert rows_of(f"SELECT COUNT(*) FROM {schema}.customers") == [(60_000,)]
    assert loads(schema) == [("crm.customers", "customers", 1, "replace", 3)]  # lagging
    assert sink(schema).applied_version("crm.customers", "customers") == 2  # repaired
    assert loads(schema) == [("crm.customers", "customers", 2, "replace", 60_000)]
    assert tables(schema) == ["_ferry_loads", "customers"]
    assert child(schema, "replace", "go").stdout.strip() == "0"


def test_an_interval_is_its_iso_8601_text_and_an_interval_key_works(schema: str) -> None:
    """MariaDB has no interval type: the text, in LONGTEXT (VARCHAR for a key)."""
    columns = [("id", "interval", False), ("span", "interval", True)]
    rows = [{"id": "P1D", "span": "P1Y2M-3DT4H5M6.5S", OP_COLUMN: "upsert"},
            {"id": "PT1S", "span": None, OP_COLUMN: "upsert"}]
    target = sink(schema)
    arrow = {"interval": pa.string()}
    assert target.deliver(delivery("merge", rows, 1, None, columns=columns, arrow=arrow)) == 2
    again = [{"id": "PT1S", "span": "PT-0.000001S", OP_COLUMN: "upsert"}]
    assert target.deliver(delivery("merge", again, 2, 1, columns=columns, arrow=arrow)) == 1
    assert rows_of(f"SELECT id, span FROM {schema}.customers ORDER BY 1") == [
        ("P1D", "P1Y2M-3DT4H5M6.5S"), ("PT1S", "PT-0.000001S")]
    assert rows_of(f"SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE "
                   f"TABLE_SCHEMA = '{schema}' AND TABLE_NAME = 'customers' ORDER BY 1") == [
        ("id", "varchar"), ("span", "longtext")]
    target.close()
