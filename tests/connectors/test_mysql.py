"""MariaDB source against the real server on 127.0.0.1:3306 (sink: test_mysql_sink.py).

The module makes its own database (``ferry_test_<random>``) and drops it at the end.
Every type a user meets round-trips to the expected Arrow values (and through conform);
incremental reads with ``since`` and late rows; live columns of tables and queries;
values without an exact Arrow form, missing tables, unreachable servers and wrong
passwords fail with the right error class and without the secret.
"""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.mysql import MysqlSource
from dataferry.errors import SourceError, TransientError
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import MysqlSource as SourceSpec
from dataferry.store.conform import Conformer
from tests.conftest import require_service

SERVER = "mysql://root@127.0.0.1:3306"
SECRET = "s3cret-Value!"


def admin(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", user="root", password="", database=database,
                           autocommit=True, charset="utf8mb4")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    require_service("mariadb")
    name = f"ferry_test_{uuid.uuid4().hex[:10]}"
    with admin() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield name
    finally:
        with admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")


def run(database: str, *statements: str) -> list[tuple[Any, ...]]:
    with admin(database) as connection, connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
        return list(cursor.fetchall())


def source(database: str, password: str | None = None, dsn: str | None = None) -> MysqlSource:
    spec = SourceSpec(kind="mysql", dsn=dsn or f"{SERVER}/{database}", password=password)
    return MysqlSource("crm.db", spec, Path("."))


def dataset(columns: dict[str, str], **keys: Any) -> SourceDataset:
    return SourceDataset(columns={n: Column(type=t) for n, t in columns.items()}, **keys)


def read(src: MysqlSource, spec: SourceDataset, since: Any = None,
         batch_rows: int = 65_536) -> pa.Table:
    result = src.read(ReadRequest("crm.t", spec, list(spec.columns), since=since,
                                  batch_rows=batch_rows))
    return result.reader.read_all()


TYPES_DDL = """
CREATE TABLE all_types (
  id INT NOT NULL PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, biu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d10 DECIMAL(10,2), f FLOAT, db DOUBLE,
  b1 BIT(1), b10 BIT(10), bo BOOLEAN,
  ch CHAR(5), vc VARCHAR(100), tx TEXT, bl BLOB, vb VARBINARY(16),
  dt DATE, tm TIME(6), dtm DATETIME(6), ts TIMESTAMP(6) NULL, yr YEAR, js JSON,
  en ENUM('small','large'), st SET('a','b','c'), u UUID
) CHARACTER SET utf8mb4
"""
UID = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
D65 = Decimal("-12345678901234567890123456789012345.123456789012345678901234567890")
TEXT = "héllo 🎉 世界 \"quoted\" 'single' back\\slash\nnew line\ttab"
ROWS = [
    f"""(1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
    -9223372036854775808, 18446744073709551615, '{D65}', 12345678.90, 16777215,
    1.2345678901234567e-300, 1, b'1111111111', TRUE, 'ab', 'vårt 👩‍👩‍👧',
    '{pymysql.converters.escape_string(TEXT)}', x'00ff0a', x'', '1000-01-01', '23:59:59.999999',
    '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155,
    '{{"a": [1, 2.5, "x"]}}', 'large', 'a,c', '{UID}')""",
    "(2" + ", NULL" * 31 + ")",
    """(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0.000000000000000000000000000001', -0.01, 1.2345678,
    -0.0, 0, 0, FALSE, '', '', '', x'', x'', '2024-02-29', '00:00:00', '2024-02-29 12:00:00',
    '1970-01-01 00:00:01', 1901, '[]', 'small', '', '00000000-0000-0000-0000-000000000000')""",
]
EXPECTED_TYPES = {
    "id": pa.int32(), "ti": pa.int8(), "tiu": pa.uint8(), "si": pa.int16(),
    "siu": pa.uint16(), "mi": pa.int32(), "miu": pa.uint32(), "i": pa.int32(),
    "iu": pa.uint32(), "bi": pa.int64(), "biu": pa.uint64(), "d65": pa.decimal256(65, 30),
    "d10": pa.decimal128(10, 2), "f": pa.float32(), "db": pa.float64(), "b1": pa.bool_(),
    "b10": pa.uint64(), "bo": pa.int8(), "ch": pa.string(), "vc": pa.string(),
    "tx": pa.string(), "bl": pa.binary(), "vb": pa.binary(), "dt": pa.date32(),
    "tm": pa.time64("us"), "dtm": pa.timestamp("us"), "ts": pa.timestamp("us", tz="UTC"),
    "yr": pa.int16(), "js": pa.string(), "en": pa.string(), "st": pa.string(),
    "u": pa.string(),
}
ROW_1 = {
    "id": 1, "ti": -128, "tiu": 255, "si": -32768, "siu": 65535, "mi": -8388608,
    "miu": 16777215, "i": -2147483648, "iu": 4294967295, "bi": -(2**63), "biu": 2**64 - 1,
    "d65": D65, "d10": Decimal("12345678.90"), "f": 16777215.0,
    "db": 1.2345678901234567e-300, "b1": True, "b10": 1023, "bo": 1, "ch": "ab",
    "vc": "vårt 👩‍👩‍👧", "tx": TEXT, "bl": b"\x00\xff\n", "vb": b"", "dt": date(1000, 1, 1),
    "tm": time(23, 59, 59, 999999), "dtm": datetime(9999, 12, 31, 23, 59, 59, 999999),
    "ts": datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC), "yr": 2155,
    "js": '{"a": [1, 2.5, "x"]}', "en": "large", "st": "a,c", "u": str(UID),
}


def float32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


@pytest.fixture(scope="module")
def types_table(database: str) -> str:
    run(database, "SET time_zone = '+00:00'", TYPES_DDL,
        "INSERT INTO all_types VALUES " + ", ".join(ROWS))
    return "all_types"


def test_every_type_reads_as_its_exact_arrow_value(database: str, types_table: str) -> None:
    src = source(database)
    spec = dataset(dict.fromkeys(EXPECTED_TYPES, "string"), table=types_table)
    table = read(src, spec).sort_by("id")
    src.close()
    assert {f.name: f.type for f in table.schema} == EXPECTED_TYPES
    rows = table.to_pylist()
    assert rows[0] == ROW_1
    assert rows[1] == {"id": 2, **dict.fromkeys(list(EXPECTED_TYPES)[1:])}
    third = rows[2]
    assert third["f"] == float32(1.2345678) and third["d10"] == Decimal("-0.01")
    assert third["d65"] == Decimal("1E-30") and third["tm"] == time(0, 0)
    assert (third["b1"], third["b10"], third["bo"], third["st"], third["bl"]) == (
        False, 0, 0, "", b"")
    assert third["ts"] == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def test_source_values_conform_to_declared_types(database: str, types_table: str) -> None:
    declared = {"id": "int64", "biu": "uint64", "d65": "decimal(65,30)", "f": "float32",
                "b1": "bool", "bo": "bool", "vc": "string(20)", "bl": "binary",
                "dt": "date", "tm": "time", "dtm": "timestamp", "ts": "timestamp_tz",
                "yr": "int32", "js": "json", "u": "uuid", "en": "string"}
    # Not the all-NULL row: conform (store/conform.py) rejects a NULL integer for bool.
    spec = dataset(declared, query=f"SELECT * FROM {types_table} WHERE id <> 2",
                   primary_key=["id"])
    out = Conformer("crm.t", spec.columns, ["id"]).conform(
        read(source(database), spec).sort_by("id").to_batches()[0]).to_pylist()
    assert out[0]["u"] == UID.bytes and out[0]["bo"] is True and out[0]["b1"] is True
    assert out[0]["d65"] == D65 and out[0]["biu"] == 2**64 - 1
    assert out[0]["ts"] == ROW_1["ts"] and out[0]["js"] == ROW_1["js"]
    assert out[0]["tm"] == ROW_1["tm"] and out[0]["f"] == 16777215.0
    assert out[1]["bo"] is False and out[1]["u"] == bytes(16)


def test_columns_report_the_live_schema(database: str, types_table: str) -> None:
    run(database, "CREATE TABLE live (id BIGINT PRIMARY KEY, name VARCHAR(20) NOT NULL)")
    src = source(database)
    spec = dataset({"id": "int64"}, table="live")
    assert [(c.name, c.native_type, c.arrow_type, c.nullable) for c in src.columns(
        "crm.live", spec)] == [("id", "bigint(20)", pa.int64(), False),
                               ("name", "varchar(20)", pa.string(), False)]
    run(database, "ALTER TABLE live ADD COLUMN score DECIMAL(12,2), ADD COLUMN doc JSON, "
        "MODIFY name VARCHAR(20) NULL")
    assert [(c.name, c.native_type, c.arrow_type, c.nullable)
            for c in src.columns("crm.live", spec)[1:]] == [
        ("name", "varchar(20)", pa.string(), True),
        ("score", "decimal(12,2)", pa.decimal128(12, 2), True),
        ("doc", "json", pa.string(), True)]
    every = src.columns("crm.t", dataset({"id": "int64"}, table=f"{database}.{types_table}"))
    assert {c.name: c.arrow_type for c in every} == EXPECTED_TYPES
    assert {c.name: c.native_type for c in every}["u"] == "uuid"


def test_query_dataset_reads_declared_columns(database: str, types_table: str) -> None:
    query = (f"SELECT id, f AS ratio, d10 * 2 AS twice, CONCAT(vc, '!') AS shout, ts "
             f"FROM {types_table} WHERE id <> 2;")
    src = source(database)
    spec = dataset({"id": "int64", "ratio": "float32", "twice": "decimal(12,2)",
                    "shout": "string"}, query=query)
    live = {c.name: (c.arrow_type, c.native_type) for c in src.columns("crm.q", spec)}
    assert live["ratio"] == (pa.float32(), "float")
    assert live["twice"] == (pa.decimal128(11, 2), "decimal(11,2)")  # 10 digits x 1 digit
    table = read(src, spec).sort_by("id")
    assert table.column_names == ["id", "ratio", "twice", "shout"]
    assert table.to_pylist()[1] == {"id": 3, "ratio": float32(1.2345678),
                                    "twice": Decimal("-0.02"), "shout": "!"}


def test_values_without_an_exact_arrow_form_are_errors(database: str) -> None:
    run(database, "SET SESSION sql_mode = ''",
        "CREATE TABLE odd (id INT PRIMARY KEY, dur TIME, day DATE, at DATETIME)",
        "INSERT INTO odd VALUES (1, '-01:30:00', '2024-01-01', NULL), "
        "(2, '100:00:00', '0000-00-00', '0000-00-00 00:00:00')")
    src = source(database)
    with pytest.raises(SourceError, match=r"column 'dur' .*'-01:30:00'.*TIME_TO_SEC"):
        read(src, dataset({"id": "int64", "dur": "time"}, table="odd"))
    with pytest.raises(SourceError, match=r"column 'day' holds '0000-00-00'.*zero dates"):
        read(src, dataset({"id": "int64", "day": "date"}, table="odd"))
    with pytest.raises(SourceError, match=r"column 'at' holds '0000-00-00 00:00:00'"):
        read(src, dataset({"at": "timestamp"}, table="odd"))
    fixed = dataset({"id": "int64", "day": "date"},
                    query="SELECT id, NULLIF(day, '0000-00-00') AS day FROM odd")
    assert read(src, fixed).sort_by("id").column("day").to_pylist() == [date(2024, 1, 1), None]


def test_missing_table_and_column_are_terminal(database: str) -> None:
    src = source(database)
    with pytest.raises(SourceError, match=r"crm\.t.*doesn't exist \(error 1146\)"):
        read(src, dataset({"id": "int64"}, table="nowhere"))
    run(database, "CREATE TABLE cursorless (id INT PRIMARY KEY)")
    spec = dataset({"id": "int64"}, table="cursorless", capture="incremental", cursor="missing")
    with pytest.raises(SourceError, match="cursor column 'missing' is not in the source"):
        read(src, spec, since=1)


def test_incremental_reads_since_and_late_rows(database: str) -> None:
    run(database, "CREATE TABLE events (id INT PRIMARY KEY, at TIMESTAMP(6) NOT NULL, "
        "local DATETIME(6) NOT NULL)",
        "SET time_zone = '+05:00'",  # the source reads in UTC whatever the writer used
        "INSERT INTO events VALUES (1, '2024-06-01 12:00:00', '2024-06-01 12:00:00'), "
        "(2, '2024-06-01 13:00:00', '2024-06-01 13:00:00')")
    src = source(database)
    spec = dataset({"id": "int64", "at": "timestamp_tz"}, table="events",
                   capture="incremental", cursor="at", primary_key=["id"])
    everything = read(src, spec).sort_by("id").column("at").to_pylist()
    assert everything == [datetime(2024, 6, 1, 7, tzinfo=UTC), datetime(2024, 6, 1, 8, tzinfo=UTC)]
    since = datetime(2024, 6, 1, 8, 30, tzinfo=timezone(timedelta(hours=1)))  # 07:30 UTC
    assert read(src, spec, since=since).column("id").to_pylist() == [2]
    # A writer commits late a row whose cursor is older than the last one read.
    writer = admin(database)
    writer.autocommit(False)
    with writer.cursor() as cursor:
        cursor.execute("INSERT INTO events VALUES (3, '2024-06-01 07:59:00', '2024-06-01')")
    assert read(src, spec, since=datetime(2024, 6, 1, 8, tzinfo=UTC)).num_rows == 1
    writer.commit()
    writer.close()
    lagged = datetime(2024, 6, 1, 8, tzinfo=UTC) - timedelta(minutes=5)
    assert sorted(read(src, spec, since=lagged).column("id").to_pylist()) == [2, 3]
    naive = dataset({"id": "int64", "local": "timestamp"}, table="events", cursor="local",
                    capture="incremental")
    assert read(src, naive, since=datetime(2024, 6, 1, 12, 30)).column("id").to_pylist() == [2]
    query = dataset({"id": "int64", "local": "timestamp"}, cursor="local", capture="incremental",
                    query="SELECT id, local FROM events WHERE DATE_FORMAT(local, '%H') LIKE '1%'")
    assert read(src, query, since=datetime(2024, 6, 1, 12, 30)).column("id").to_pylist() == [2]


def test_a_transaction_open_longer_than_the_lag_is_warned_about(database: str) -> None:
    """MariaDB cannot find a late commit afterwards: the read says so while it can."""
    import time as clock

    run(database, "CREATE TABLE slow (id INT PRIMARY KEY, at DATETIME(6) NOT NULL)",
        "INSERT INTO slow VALUES (1, NOW(6))")
    spec = dataset({"id": "int64", "at": "timestamp"}, table="slow",
                   capture="incremental", cursor="at")
    request = ReadRequest("crm.slow", spec, ["id", "at"], since=datetime(2000, 1, 1),
                          lag_seconds=1.0)
    src = source(database)
    try:
        quiet = src.read(request)
        quiet.reader.read_all()
        assert quiet.warnings == []
        with admin(database) as holder, holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO slow VALUES (2, NOW(6))")
            clock.sleep(2.2)
            try:
                warned = src.read(request)
                warned.reader.read_all()
            finally:
                cursor.execute("COMMIT")
    finally:
        src.close()
    [warning] = warned.warnings
    assert "crm.slow" in warning and "longer than the lag" in warning and "lag:" in warning


def test_reads_stream_in_bounded_batches(database: str) -> None:
    run(database, "CREATE TABLE many (id INT PRIMARY KEY, v VARCHAR(10))",
        "INSERT INTO many SELECT seq, CONCAT('v', seq) FROM seq_1_to_2500")
    result = source(database).read(ReadRequest("crm.many", dataset({"id": "int64"},
                                                                     table="many"),
                                               ["id"], batch_rows=1000))
    assert [batch.num_rows for batch in result.reader] == [1000, 1000, 500]


def test_columns_connectorx_cannot_read_are_read_all_the_same(database: str) -> None:
    """GEOMETRY has no ConnectorX type: the whole read goes through PyMySQL instead."""
    run(database, "CREATE TABLE shapes (id INT PRIMARY KEY, p POINT, f FLOAT)",
        "INSERT INTO shapes VALUES (1, POINT(1, 2), 1.5), (2, NULL, NULL)")
    stored = run(database, "SELECT p FROM shapes WHERE id = 1")[0][0]
    table = read(source(database), dataset({"id": "int64", "p": "binary", "f": "float32"},
                                           table="shapes"))
    assert table.to_pylist() == [{"id": 1, "p": stored, "f": 1.5},
                                 {"id": 2, "p": None, "f": None}]


def test_wide_rows_come_in_batches_bounded_by_bytes(database: str) -> None:
    """1 MB rows: a batch holds about 8 MiB, not the 65,536 rows a narrow table gets."""
    run(database, "CREATE TABLE wide (id INT PRIMARY KEY, body LONGTEXT)",
        "INSERT INTO wide SELECT seq, REPEAT(CHAR(64 + seq % 26), 1000000) "
        "FROM seq_1_to_80", "ANALYZE TABLE wide")
    spec = dataset({"id": "int64", "body": "string"}, table="wide")
    result = source(database).read(ReadRequest("crm.wide", spec, ["id", "body"]))
    sizes = [batch.num_rows for batch in result.reader]
    assert sum(sizes) == 80 and max(sizes) <= 9


def test_fresh_wide_rows_are_measured_not_taken_from_stale_statistics(database: str) -> None:
    """Right after a load InnoDB's AVG_ROW_LENGTH still describes the empty table (19 KB
    for 300 rows of 2 MiB): batches sized by it held the whole table (a 2.4 GiB peak).
    The long columns of the first rows are measured instead: about 8 MiB a batch."""
    run(database, "CREATE TABLE fresh (id INT PRIMARY KEY, body LONGTEXT)",
        "INSERT INTO fresh SELECT seq, REPEAT(CHAR(64 + seq % 26), 1000000) "
        "FROM seq_1_to_60")
    spec = dataset({"id": "int64", "body": "string"}, table="fresh")
    result = source(database).read(ReadRequest("crm.fresh", spec, ["id", "body"]))
    sizes = [batch.num_rows for batch in result.reader]
    assert sum(sizes) == 60 and max(sizes) <= 9


def test_unreachable_server_is_transient_without_the_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_MYSQL_PASSWORD", SECRET)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = source("x", password="${env:FERRY_TEST_MYSQL_PASSWORD}",
                 dsn=f"mysql://reader@127.0.0.1:{port}/shop")
    with pytest.raises(TransientError) as caught:
        read(src, dataset({"id": "int64"}, table="orders"))
    message = str(caught.value)
    assert f"reader@127.0.0.1:{port}/shop" in message and "crm.db" in message
    assert SECRET not in message and "retried later" not in message  # the runner says


def test_wrong_password_is_terminal_without_the_secret(
        database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user = f"ferry_{uuid.uuid4().hex[:8]}"
    run(database, "CREATE TABLE guarded (id INT PRIMARY KEY, v INT)",
        f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-one'",
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-one'",
        f"GRANT SELECT ON {database}.* TO '{user}'@'%'",
        f"GRANT SELECT ON {database}.* TO '{user}'@'localhost'")
    try:
        monkeypatch.setenv("FERRY_TEST_MYSQL_PASSWORD", SECRET)
        src = source(database, password="${env:FERRY_TEST_MYSQL_PASSWORD}",
                     dsn=f"mysql://{user}@127.0.0.1:3306/{database}")
        with pytest.raises(SourceError) as caught:
            src.columns("crm.g", dataset({"id": "int64"}, table="guarded"))
        assert not isinstance(caught.value, TransientError)
        assert "Access denied" in str(caught.value) and SECRET not in str(caught.value)
        monkeypatch.setenv("FERRY_TEST_MYSQL_PASSWORD", "right-one")
        assert [c.name for c in src.columns("crm.g", dataset({"id": "int64"},
                                                              table="guarded"))] == ["id", "v"]
        inline = source(database, dsn=f"mysql://{user}:{SECRET}@127.0.0.1:3306/{database}")
        with pytest.raises(SourceError) as caught:
            inline.columns("crm.g", dataset({"id": "int64"}, table="guarded"))
        assert SECRET not in str(caught.value)
    finally:
        run(database, f"DROP USER IF EXISTS '{user}'@'%'", f"DROP USER IF EXISTS '{user}'@'localhost'")


def test_connectorx_errors_never_show_the_url_or_password() -> None:
    from dataferry.connectors.mysql.arrow_stream import _scrub, url_of
    from dataferry.connectors.mysql.connection import parse_dsn

    url = url_of(parse_dsn(f"{SERVER}/crm", "source crm.db", SourceError), SECRET)
    text = _scrub(f"cannot connect with {url}: password {SECRET} or {url.split('@')[0]}", url)
    assert SECRET not in text and "s3cret-Value%21" not in text and "root" in text
