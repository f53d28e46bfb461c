"""MariaDB CDC (``capture: cdc`` on ``kind: mysql``) against a private ``mariadbd`` with the
row-based binlog on (``mariadb_server.py``; never the shared server on 3306).

The first read is a consistent snapshot with its binlog position; later reads return the
committed changes after a position, one per key (inserts, updates, key changes, deletes;
rolled-back and still-open work absent); rows read from the binlog equal a snapshot read
of the same rows, type for type; a reader SIGKILLed mid-read loses and duplicates
nothing; a purged position and a server not set up for CDC say what to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.mysql import MysqlSource
from dataferry.connectors.mysql.cdc_fold import UPSERT, ChangeFold
from dataferry.errors import SourceError
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import MysqlSource as SourceSpec
from tests.connectors.mariadb_server import PrivateServer, start_private_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    yield from start_private_server()


@pytest.fixture
def database(server: PrivateServer) -> Iterator[str]:
    yield from server.database("cdc")


def source(server: PrivateServer, database: str, user: str = "root") -> MysqlSource:
    spec = SourceSpec(kind="mysql", dsn=server.dsn(database, user))
    return MysqlSource("shop.db", spec, Path("."))


def dataset(columns: dict[str, str], key: list[str], table: str = "items") -> SourceDataset:
    return SourceDataset(table=table, capture="cdc", primary_key=key,
                         columns={n: Column(type=t, nullable=n not in key)
                                  for n, t in columns.items()})


ITEMS = dataset({"id": "int64", "name": "string", "qty": "int32"}, ["id"])
ITEMS_DDL = "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(50), qty INT)"


def changes(src: MysqlSource, spec: SourceDataset, state: dict[str, Any] | None
            ) -> tuple[ChangeSet, dict[Any, dict[str, Any]], list[Any]]:
    """The change set, its upserts by key and its deleted keys (sorted)."""
    found = src.read_changes(ReadRequest("shop.items", spec, list(spec.columns), state=state,
                                         batch_rows=7))
    try:
        key = spec.primary_key[0]
        upserts = {row[key]: row for row in found.upserts.read_all().to_pylist()}
        deleted = ([] if found.deleted_keys is None
                   else sorted(r[key] for r in found.deleted_keys.read_all().to_pylist()))
    finally:
        found.close()
    return found, upserts, deleted


def test_the_first_read_is_a_snapshot_with_its_binlog_position(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2)",
                   database=database)
    src = source(server, database)
    first, rows, deleted = changes(src, ITEMS, None)
    assert first.snapshot is True and deleted == []
    assert rows == {1: {"id": 1, "name": "a", "qty": 1}, 2: {"id": 2, "name": "b", "qty": 2}}
    position = first.position
    assert position["binlog_file"].startswith("binlog.") and position["binlog_pos"] > 4
    assert position["gtid"]  # e.g. "0-1-7"
    assert position["lag_bytes"] == 0 and position["lag_seconds"] == 0
    json.dumps(position)  # recorded in the manifest as it is
    first.acknowledge()

    server.execute("INSERT INTO items VALUES (3, 'c', 3)", database=database)
    second, rows, deleted = changes(src, ITEMS, position)
    assert second.snapshot is False
    assert rows == {3: {"id": 3, "name": "c", "qty": 3}} and deleted == []
    third, rows, deleted = changes(src, ITEMS, second.position)
    assert rows == {} and deleted == [] and third.position["binlog_pos"] == \
        second.position["binlog_pos"]


def test_changes_fold_to_one_per_key_and_only_committed_work_appears(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3),"
                   " (5, 'e', 5)", database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.execute(
        "INSERT INTO items VALUES (4, 'd', 4)",
        "UPDATE items SET qty = 20 WHERE id = 2",
        "UPDATE items SET qty = 21, name = 'B' WHERE id = 2",  # changed twice: its last value
        "DELETE FROM items WHERE id = 3",
        "UPDATE items SET id = 10 WHERE id = 1",  # a key change: 1 deleted, 10 upserted
        "BEGIN", "INSERT INTO items VALUES (99, 'never', 0)", "UPDATE items SET qty = 0",
        "ROLLBACK",
        "DELETE FROM items WHERE id = 5", "INSERT INTO items VALUES (5, 'E', 50)",  # re-inserted
        "BEGIN", "INSERT INTO items VALUES (6, 'f', 6)", "DELETE FROM items WHERE id = 4",
        "COMMIT",
        "CREATE TABLE other (id INT PRIMARY KEY)", "INSERT INTO other VALUES (1)",
        database=database)
    found, rows, deleted = changes(src, ITEMS, start.position)
    assert rows == {
        2: {"id": 2, "name": "B", "qty": 21},
        10: {"id": 10, "name": "a", "qty": 1},
        5: {"id": 5, "name": "E", "qty": 50},
        6: {"id": 6, "name": "f", "qty": 6},
    }
    assert deleted == [1, 3, 4]
    assert found.position["gtid"] != start.position["gtid"]
    table = {r[0]: r for r in server.execute("SELECT id, name, qty FROM items",
                                             database=database)}
    assert sorted(table) == [2, 5, 6, 10]


def test_a_transaction_open_across_a_read_comes_whole_in_the_next(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    with server.connect(database) as writer, writer.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO items VALUES (7, 'open', 7)")
        server.execute("INSERT INTO items VALUES (8, 'other', 8)", database=database)
        middle, rows, _ = changes(src, ITEMS, start.position)
        assert rows == {8: {"id": 8, "name": "other", "qty": 8}}
        cursor.execute("INSERT INTO items VALUES (9, 'open', 9)")
        cursor.execute("COMMIT")
    _, rows, _ = changes(src, ITEMS, middle.position)
    assert rows == {7: {"id": 7, "name": "open", "qty": 7}, 9: {"id": 9, "name": "open", "qty": 9}}


def test_a_fold_never_keeps_half_a_transaction() -> None:
    fold = ChangeFold()
    try:
        fold.upsert((1,), (1, "a"))
        fold.commit()
        fold.upsert((2,), (2, "b"))
        fold.delete((1,))
        fold.rollback()  # the read ended before this transaction's commit
        assert [row for batch in fold.rows(UPSERT, 10) for row in batch] == [(1, "a")]
    finally:
        fold.close()


ALL_TYPES_DDL = """
CREATE TABLE all_types (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  ti TINYINT, flag TINYINT(1), si SMALLINT UNSIGNED, mi MEDIUMINT UNSIGNED, i INT,
  bi BIGINT UNSIGNED, d DECIMAL(12,2), wide DECIMAL(50,10), f FLOAT, db DOUBLE,
  b1 BIT(1), b12 BIT(12), y YEAR, c CHAR(3), v VARCHAR(20), t TEXT, lat VARCHAR(10)
  CHARACTER SET latin1, e ENUM('red','green'), s SET('a','b','c'), j JSON,
  u UUID, bin VARBINARY(8), blb BLOB, dt DATE, tm TIME(6), dtm DATETIME(6),
  ts TIMESTAMP(6) NULL
)"""
ALL_TYPES_ROWS = [
    "(1, -128, 1, 65535, 16777215, -2147483648, 18446744073709551615, 12.50, "
    "'1234567890123456789012345678901234567890.0123456789', 1.25, 0.1, b'1', b'101010101010', "
    "2024, 'abc', 'héllo wörld', 'long text', 'été', 'green', 'c,a', '{\"k\": [1, 2.5]}', "
    "'0b3c2f8e-9d6a-4c1e-8f7a-2a1b3c4d5e6f', x'00ff10', x'deadbeef', '2024-02-29', "
    "'23:59:59.999999', '2024-01-01 01:02:03.000004', '2024-06-01 12:00:00.5')",
    "(2, NULL, 0, 0, 0, 2147483647, 0, -9999999999.99, '-0.0000000001', -3.0e38, -1e308, "
    "b'0', b'0', 1901, '', '', '', '', 'red', '', '[]', "
    "'fd436bf8-f201-11f1-8bcb-02fc00000001', x'', x'', '1970-01-01', '00:00:00', "
    "'1969-07-20 20:17:40', '1970-01-01 00:00:01')",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]
ALL_TYPES = dataset(
    {"id": "uint32", "ti": "int8", "flag": "bool", "si": "uint16", "mi": "uint32",
     "i": "int32", "bi": "uint64", "d": "decimal(12,2)", "wide": "decimal(50,10)",
     "f": "float32", "db": "float64", "b1": "bool", "b12": "uint64", "y": "int16",
     "c": "string", "v": "string", "t": "string", "lat": "string", "e": "string",
     "s": "string", "j": "json", "u": "uuid", "bin": "binary", "blb": "binary", "dt": "date",
     "tm": "time", "dtm": "timestamp", "ts": "timestamp_tz"}, ["id"], table="all_types")


def test_rows_read_from_the_binlog_equal_a_snapshot_read(
        server: PrivateServer, database: str) -> None:
    server.execute(ALL_TYPES_DDL, database=database)
    src = source(server, database)
    start = src.read_changes(ReadRequest("shop.all", ALL_TYPES, list(ALL_TYPES.columns)))
    assert start.upserts.read_all().num_rows == 0
    server.execute(*(f"INSERT INTO all_types VALUES {row}" for row in ALL_TYPES_ROWS),
                   database=database)
    request = ReadRequest("shop.all", ALL_TYPES, list(ALL_TYPES.columns),
                          state=start.position)
    inserted = src.read_changes(request)
    from_binlog = inserted.upserts.read_all().sort_by("id")
    snapshot = src.read(ReadRequest("shop.all", ALL_TYPES, list(ALL_TYPES.columns))
                        ).reader.read_all().sort_by("id")
    assert from_binlog.schema == snapshot.schema
    for name in snapshot.column_names:
        assert from_binlog.column(name).to_pylist() == snapshot.column(name).to_pylist(), name
    # Updated and deleted rows (before images decoded too) read the same way.
    server.execute("UPDATE all_types SET v = 'changed', id = 20 WHERE id = 2",
                   "DELETE FROM all_types WHERE id = 1", database=database)
    later = src.read_changes(ReadRequest("shop.all", ALL_TYPES, list(ALL_TYPES.columns),
                                         state=inserted.position))
    assert later.deleted_keys is not None
    assert sorted(later.deleted_keys.read_all().column("id").to_pylist()) == [1, 2]
    row = later.upserts.read_all().to_pylist()
    after = src.read(ReadRequest("shop.all", ALL_TYPES, list(ALL_TYPES.columns))
                     ).reader.read_all().to_pylist()
    assert row == [r for r in after if r["id"] == 20]
    for found in (start, inserted, later):
        found.close()


def test_a_purged_position_says_a_full_snapshot_is_needed(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.execute("FLUSH BINARY LOGS")
    newest = server.execute("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + 30
    while start.position["binlog_file"] in {r[0] for r in server.execute("SHOW BINARY LOGS")}:
        # A file InnoDB's binlog checkpoint still needs is kept; it is released shortly.
        assert time.monotonic() < deadline, "the server kept the old binlog"
        server.execute(f"PURGE BINARY LOGS TO '{newest}'")
        time.sleep(0.2)
    with pytest.raises(SourceError, match=r"purged.*ferry run --full shop.items"):
        changes(src, ITEMS, start.position)
    [problem] = src.change_problems("shop.items", ITEMS, position=start.position)  # check --connect
    assert problem.message.startswith(
        f"shop.items: cdc capture: the binlog file {start.position['binlog_file']} holding "
        "the position of the latest version was purged by the server")
    assert "run `ferry run --full shop.items`" in problem.message


def test_change_problems_name_each_setting_grant_and_the_missing_key(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "CREATE TABLE nokey (id BIGINT, name VARCHAR(5))",
                   database=database)
    src = source(server, database)
    assert src.change_problems("shop.items", ITEMS) == []
    user = f"u{uuid.uuid4().hex[:8]}"
    server.execute(f"CREATE USER '{user}'@'%'", f"GRANT SELECT ON {database}.* TO '{user}'@'%'")
    server.execute("SET GLOBAL binlog_row_image = 'MINIMAL'",
                   "SET GLOBAL binlog_format = 'MIXED'")
    try:
        limited = source(server, database, user)
        problems = limited.change_problems("shop.nokey", dataset(
            {"id": "int64", "name": "string"}, ["id"], table="nokey"))
    finally:
        server.execute("SET GLOBAL binlog_row_image = 'FULL'", "SET GLOBAL binlog_format = 'ROW'",
                       f"DROP USER '{user}'@'%'")
    text = "\n".join(p.message for p in problems)
    assert "binlog_format is MIXED; set binlog_format=ROW" in text
    assert "binlog_row_image is MINIMAL" in text
    assert "REPLICATION SLAVE and REPLICATION CLIENT" in text
    assert [(p.code, p.severity) for p in problems].count(("missing-primary-key", "error")) == 1
    assert {p.code for p in problems} == {"missing-primary-key", "unreachable"}
    assert "nokey has no primary key" in text
    assert src.change_problems("shop.items", dataset({"id": "int64"}, ["id"]).model_copy(
        update={"capture": "snapshot"})) == []


# --- a reader killed mid-read, under concurrent writes --------------------------------------

_CHILD = """
import json, sys, time
from pathlib import Path
from dataferry.connectors.base import ReadRequest
from dataferry.connectors.mysql import MysqlSource
from dataferry.model.spec import MysqlSource as Spec, SourceDataset
args = json.loads(sys.argv[1])
spec = SourceDataset.model_validate(args["dataset"])
src = MysqlSource("shop.db", Spec(kind="mysql", dsn=args["dsn"]), Path("."))
found = src.read_changes(ReadRequest("shop.items", spec, list(spec.columns),
                                     state=args["state"], batch_rows=3))
for i, batch in enumerate(found.upserts):
    Path(args["marker"]).write_text("reading")
    time.sleep(60)
"""


def _apply(head: dict[int, tuple[Any, ...]], found: ChangeSet) -> None:
    """What the engine does with a change set: deletes, then upserts, one version."""
    if found.snapshot:
        head.clear()
    if found.deleted_keys is not None:
        for row in found.deleted_keys.read_all().to_pylist():
            head.pop(row["id"], None)
    for row in found.upserts.read_all().to_pylist():
        head[row["id"]] = (row["id"], row["name"], row["qty"])
    found.close()
    found.acknowledge()


def test_reads_killed_or_not_under_concurrent_writes_match_the_source(
        server: PrivateServer, database: str, tmp_path: Path) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES " + ", ".join(
        f"({i}, 'n{i}', {i})" for i in range(200)), database=database)
    stop = threading.Event()
    written: list[int] = []
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with server.connect(database) as connection, connection.cursor() as cursor:
                n = 0
                while not stop.is_set():
                    n += 1
                    cursor.execute("BEGIN")
                    cursor.execute(f"INSERT INTO items VALUES ({1000 + n}, 'w', {n})")
                    cursor.execute(f"UPDATE items SET qty = qty + 1 WHERE id = {n % 200}")
                    cursor.execute(f"DELETE FROM items WHERE id = {1000 + n - 3}")
                    cursor.execute(f"UPDATE items SET id = {100_000 + n} WHERE id = {n % 250}")
                    cursor.execute("ROLLBACK" if n % 7 == 0 else "COMMIT")
                    written.append(n)
        except BaseException as exc:
            failed.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    src = source(server, database)
    head: dict[int, tuple[Any, ...]] = {}
    try:
        first = src.read_changes(ReadRequest("shop.items", ITEMS, list(ITEMS.columns)))
        state = first.position
        _apply(head, first)
        for round_ in range(4):
            time.sleep(0.3)
            if round_ == 1:
                _kill_mid_read(server.dsn(database), state, tmp_path)
            found = src.read_changes(ReadRequest("shop.items", ITEMS, list(ITEMS.columns),
                                                 state=state, batch_rows=50))
            state = found.position  # recorded with the version, after it is published
            _apply(head, found)
    finally:
        stop.set()
        writer.join()
    _apply(head, src.read_changes(ReadRequest("shop.items", ITEMS, list(ITEMS.columns),
                                              state=state)))
    table = {int(r[0]): (int(r[0]), r[1], int(r[2])) for r in server.execute(
        "SELECT id, name, qty FROM items", database=database)}
    assert not failed, failed
    assert len(written) > 50  # transactions committed (and rolled back) during the reads
    assert head == table


def _kill_mid_read(dsn: str, state: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.unlink(missing_ok=True)
    args = json.dumps({"dsn": dsn, "state": state, "marker": str(marker),
                       "dataset": ITEMS.model_dump(mode="json")})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, args], cwd=REPO, env=env,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if child.poll() is not None:
                assert child.stderr is not None
                raise AssertionError(f"the read ended early: {child.stderr.read()!r}")
            assert time.monotonic() < deadline, "the child never read a batch"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def test_a_query_dataset_cannot_be_captured(server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    spec = SourceDataset(query="SELECT * FROM items", capture="cdc", primary_key=["id"],
                         columns={"id": Column(type="int64", nullable=False)})
    with pytest.raises(SourceError, match="give table:"):
        source(server, database).read_changes(ReadRequest("shop.q", spec, ["id"]))


def test_rows_are_arrow_batches(server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.execute("INSERT INTO items VALUES " + ", ".join(f"({i}, 'x', {i})" for i in range(20)),
                   database=database)
    found = src.read_changes(ReadRequest("shop.items", ITEMS, list(ITEMS.columns),
                                         state=start.position, batch_rows=7))
    sizes = [batch.num_rows for batch in found.upserts]
    found.close()
    assert sizes == [7, 7, 6]
    assert isinstance(found.upserts.schema, pa.Schema)


TEAM = """\
team: shop
zone: eu
owners: [shop@acme.example]
sources:
  maria:
    kind: mysql
    dsn: {dsn}
    datasets:
      items:
        table: items
        capture: cdc
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
      loose:
        table: loose
        capture: cdc
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
"""


def test_check_connect_reports_what_cdc_needs(server: PrivateServer, database: str,
                                              model: Callable[..., Path],
                                              ferry: Callable[..., Any]) -> None:
    server.execute(ITEMS_DDL, "CREATE TABLE loose (id BIGINT)", database=database)
    root = model({"teams/shop/shop.yaml": TEAM.format(dsn=server.dsn(database))})
    server.execute("SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        check = ferry("check", "--connect", "--model", root, "--json")
    finally:
        server.execute("SET GLOBAL binlog_format = 'ROW'")
    assert check.code == 1, check
    findings = {(f["code"], f["severity"], f["message"]) for f in json.loads(check.out)["findings"]}
    assert ("missing-primary-key", "error",
            f"shop.loose: cdc capture: table {database}.loose has no primary key: binlog rows "
            "of a table without one cannot be told apart; add a PRIMARY KEY on the declared "
            "primary_key columns") in findings
    assert any(code == "unreachable" and severity == "warning" and message.startswith(
        "shop.items: cdc capture: binlog_format is STATEMENT; set binlog_format=ROW")
        for code, severity, message in findings), findings
    server.execute("ALTER TABLE loose ADD PRIMARY KEY (id)", database=database)
    assert ferry("check", "--connect", "--model", root).code == 0


def test_a_server_whose_events_lack_column_metadata_is_refused(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.execute("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
    try:
        with pytest.raises(SourceError, match="binlog_row_metadata is MINIMAL; set "
                                              "binlog_row_metadata=FULL"):
            changes(src, ITEMS, start.position)
    finally:
        server.execute("SET GLOBAL binlog_row_metadata = 'FULL'")


def test_columns_added_or_dropped_between_reads_are_drift(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "INSERT INTO items VALUES (1, 'a', 1)", database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.execute("INSERT INTO items VALUES (2, 'b', 2)",
                   "ALTER TABLE items ADD COLUMN note VARCHAR(10) AFTER id",
                   "INSERT INTO items VALUES (3, 'new', 'c', 3)",
                   "UPDATE items SET qty = 10 WHERE id = 1", database=database)
    found, rows, _ = changes(src, ITEMS, start.position)
    assert rows == {1: {"id": 1, "name": "a", "qty": 10}, 2: {"id": 2, "name": "b", "qty": 2},
                    3: {"id": 3, "name": "c", "qty": 3}}  # the new column: ignored until declared
    server.execute("ALTER TABLE items DROP COLUMN qty", "INSERT INTO items VALUES (4, '', 'd')",
                   database=database)
    with pytest.raises(SourceError, match="'qty'"):
        changes(src, ITEMS, found.position)


def test_an_idle_tables_reads_move_on_past_binlog_without_its_events(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, "CREATE TABLE busy (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
                   database=database)
    src = source(server, database)
    start, _, _ = changes(src, ITEMS, None)
    server.execute(*["INSERT INTO busy (v) VALUES (1)"] * 5, "FLUSH BINARY LOGS",
                   *["INSERT INTO busy (v) VALUES (2)"] * 5, database=database)
    idle, rows, deleted = changes(src, ITEMS, start.position)  # nothing for items
    assert rows == {} and deleted == []
    assert idle.position["binlog_file"] != start.position["binlog_file"]
    idle.acknowledge()  # no version published: the head keeps start.position
    server.execute("INSERT INTO busy (v) VALUES (3)", database=database)
    deadline = time.monotonic() + 30
    while start.position["binlog_file"] in {r[0] for r in server.execute("SHOW BINARY LOGS")}:
        assert time.monotonic() < deadline, "the server kept the old binlog"
        server.execute(f"PURGE BINARY LOGS TO '{idle.position['binlog_file']}'")
        time.sleep(0.2)
    # The head's position is purged, but the binlog after it had nothing for the table.
    assert src.change_problems("shop.items", ITEMS, position=start.position) == []
    server.execute("INSERT INTO items VALUES (1, 'a', 1)", database=database)
    found, rows, _ = changes(src, ITEMS, start.position)
    assert rows == {1: {"id": 1, "name": "a", "qty": 1}}
    found.acknowledge()  # it had an event of the table: noted nothing
    again, rows, _ = changes(src, ITEMS, idle.position)  # e.g. the version was lost
    assert rows == {1: {"id": 1, "name": "a", "qty": 1}}


def test_a_user_without_replication_grants_is_refused_before_the_snapshot(
        server: PrivateServer, database: str) -> None:
    server.execute(ITEMS_DDL, database=database)
    user = f"u{uuid.uuid4().hex[:8]}"
    server.execute(f"CREATE USER '{user}'@'%'", f"GRANT SELECT ON {database}.* TO '{user}'@'%'")
    try:
        with pytest.raises(SourceError, match=r"lacks REPLICATION SLAVE and REPLICATION "
                                              r"CLIENT ON \*\.\*: GRANT"):
            changes(source(server, database, user), ITEMS, None)
        role = f"r{uuid.uuid4().hex[:8]}"
        server.execute(f"CREATE ROLE {role}", f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* "
                       f"TO {role}", f"GRANT {role} TO '{user}'@'%'",
                       f"SET DEFAULT ROLE {role} FOR '{user}'@'%'")
        first, _, _ = changes(source(server, database, user), ITEMS, None)  # through a role
        server.execute("INSERT INTO items VALUES (1, 'a', 1)", database=database)
        _, rows, _ = changes(source(server, database, user), ITEMS, first.position)
        assert rows == {1: {"id": 1, "name": "a", "qty": 1}}
        server.execute(f"DROP ROLE {role}")
    finally:
        server.execute(f"DROP USER '{user}'@'%'")


def test_a_server_without_the_binlog_is_refused_and_reported() -> None:
    servers = start_private_server(options=())  # no --log-bin
    plain = next(servers)
    try:
        plain.execute("CREATE DATABASE shop")
        plain.execute(ITEMS_DDL, database="shop")
        src = source(plain, "shop")
        with pytest.raises(SourceError, match="the binlog is off: start MariaDB with log_bin"):
            src.read_changes(ReadRequest("shop.items", ITEMS, list(ITEMS.columns)))
        [problem] = src.change_problems("shop.items", ITEMS)
        assert (problem.code, problem.severity) == ("unreachable", "warning")
        assert problem.message.startswith("shop.items: cdc capture: the binlog is off")
    finally:
        servers.close()
