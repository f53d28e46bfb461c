"""The SQLite source and sink on database files in a temporary folder."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.sqlite import source as source_module
from dataferry.connectors.sqlite.sink import SqliteSink
from dataferry.connectors.sqlite.source import SqliteSource
from dataferry.errors import SinkError, SourceError, TransientError
from dataferry.model.load import load_model
from dataferry.model.scaffold import create_example
from dataferry.model.spec import SourceDataset
from dataferry.model.spec import SqliteSink as SinkSpec
from dataferry.model.spec import SqliteSource as SourceSpec
from dataferry.store.conform import Conformer
from tests.connectors.embedded import (
    ALL_TYPES,
    all_types_batch,
    all_types_delivery,
    check_kill,
    conform_all,
    delivery,
    first,
    make_sink,
    run_two_versions,
    schema,
)

SPEC = {"kind": "sqlite", "path": "out/target.db"}


def read_target(root: Path) -> Any:
    def read(table: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(root / "out" / "target.db") as con:
            rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
        # history keeps valid_from/valid_to as ISO 8601 text: compare them as instants
        return [tuple(datetime.fromisoformat(v) if isinstance(v, str) and v[:2] == "20"
                      and "+00:00" in v else v for v in row) for row in rows]
    return read


@pytest.mark.parametrize("mode", ["replace", "merge", "append", "history"])
def test_two_versions_in_every_mode(tmp_path: Path, mode: str) -> None:
    run_two_versions(make_sink(SPEC, tmp_path), mode, read_target(tmp_path))
    with sqlite3.connect(tmp_path / "out" / "target.db") as con:
        loads = con.execute("SELECT dataset, table_name, version, mode FROM _ferry_loads").fetchall()
        extra_indexes = con.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                    "AND name LIKE '_ferry_key_%'").fetchall()
    assert loads == [("shop.items", "items", 2, mode)]
    assert extra_indexes == []  # a table the sink made has its key as INTEGER PRIMARY KEY


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_killed_delivery_changes_nothing_and_reruns_once(tmp_path: Path, mode: str) -> None:
    check_kill(SPEC, tmp_path, mode, read_target(tmp_path))


def _source(root: Path, path: str = "out/target.db") -> SqliteSource:
    return SqliteSource("shop.db", SourceSpec(kind="sqlite", path=path), root)


def test_every_type_round_trips_through_sink_and_source(tmp_path: Path) -> None:
    sink = SqliteSink("shop.reporting", SinkSpec(kind="sqlite", path="out/target.db"), tmp_path)
    assert sink.deliver(all_types_delivery()) == 3
    spec = SourceDataset(table="all_types", columns={n: t for n, t, _ in ALL_TYPES})
    read = _source(tmp_path).read(ReadRequest("shop.all", spec, [n for n, _, _ in ALL_TYPES],
                                              batch_rows=2))
    assert conform_all(read.reader.read_all()).equals(all_types_batch())
    with sqlite3.connect(tmp_path / "out" / "target.db") as con:
        row = dict(zip([d[1] for d in con.execute("PRAGMA table_info(all_types)")],
                       con.execute("SELECT * FROM all_types WHERE id = 1").fetchone(), strict=True))
    # documented storage forms
    assert row["dec"] == 12.5 and row["u64"] == "0" and row["b"] == 1
    assert row["wide"] == "1234567890123456789012345678901234567890.0123456789"
    assert row["tz"] == "2024-01-01 01:02:03.000004+00:00"
    assert row["ts"] == "2024-01-01 01:02:03.000004" and row["t"] == "23:59:59.999999"
    assert row["ls"] == '["a","b"]' and row["m"] == '{"k":1,"l":null}'
    assert row["st"] == '{"a":1,"b":["1.25"],"c":"x"}' and row["u"] == ALL_TYPES[24][2][0]


def _native_db(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.executescript("""
            CREATE TABLE things (id INTEGER PRIMARY KEY, ratio REAL, label VARCHAR(10),
              raw BLOB, amount NUMERIC, loose, flag BOOLEAN, seen DATETIME NOT NULL,
              tags TEXT, attrs TEXT);
            INSERT INTO things VALUES (1, 0.5, 'a', x'00ff', '12.50', 7, 1,
              '2026-01-01 10:00:00', '["x","y"]', '{"k":"v"}');
            INSERT INTO things VALUES (2, 2, 'b', NULL, 3, 'text', 0,
              '2026-01-02T10:00:00Z', '[]', NULL);
        """)


THINGS = {"id": "int64", "ratio": "float64", "label": "string", "raw": "binary",
          "amount": "decimal(12,2)", "loose": "string", "flag": "bool",
          "seen": "timestamp_tz", "tags": "list<string>", "attrs": "map<string,string>"}


def test_source_maps_sqlite_types_to_arrow(tmp_path: Path) -> None:
    _native_db(tmp_path / "src.db")
    spec = SourceDataset(table="things", columns=THINGS, primary_key=["id"])
    source = _source(tmp_path, "src.db")
    columns = {c.name: c for c in source.columns("shop.things", spec)}
    assert columns["id"].arrow_type == pa.int64() and columns["ratio"].arrow_type == pa.float64()
    assert columns["label"].native_type == "VARCHAR(10)" and columns["raw"].arrow_type == pa.binary()
    assert columns["amount"].arrow_type == pa.string() and columns["flag"].arrow_type == pa.bool_()
    assert columns["tags"].arrow_type == pa.list_(pa.string())
    assert columns["seen"].nullable is False and columns["loose"].native_type == "(none)"
    table = source.read(ReadRequest("shop.things", spec, list(THINGS))).reader.read_all()
    assert table.to_pylist()[1] == {
        "id": 2, "ratio": 2.0, "label": "b", "raw": None, "amount": "3", "loose": "text",
        "flag": False, "seen": "2026-01-02T10:00:00Z", "tags": [], "attrs": None}
    assert table.column("amount").to_pylist()[0] == "12.5"  # NUMERIC affinity made it a REAL
    conformed = Conformer("shop.things", spec.columns, ["id"]).conform(table)
    assert conformed.column("seen").to_pylist() == [datetime(2026, 1, 1, 10, tzinfo=UTC),
                                                     datetime(2026, 1, 2, 10, tzinfo=UTC)]
    assert conformed.column("attrs").to_pylist() == [[("k", "v")], None]


def test_query_dataset_and_its_columns(tmp_path: Path) -> None:
    _native_db(tmp_path / "src.db")
    spec = SourceDataset(query="select id, label || '!' as shout, ratio from things;",
                         columns={"id": "int64", "shout": "string", "ratio": "float64"})
    source = _source(tmp_path, "src.db")
    assert [(c.name, c.native_type) for c in source.columns("shop.q", spec)] == [
        ("id", "INTEGER"), ("shout", "(none)"), ("ratio", "REAL")]
    rows = source.read(ReadRequest("shop.q", spec, ["id", "shout"])).reader.read_all()
    assert rows.to_pylist() == [{"id": 1, "shout": "a!"}, {"id": 2, "shout": "b!"}]


def test_incremental_reads_since_and_late_rows(tmp_path: Path) -> None:
    db = tmp_path / "src.db"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE events (id INTEGER, at TEXT)")
        con.executemany("INSERT INTO events VALUES (?, ?)",
                        [(i, (start + timedelta(minutes=i)).isoformat()) for i in range(10)])
    spec = SourceDataset(table="events", capture="incremental", cursor="at",
                         columns={"id": "int64", "at": "timestamp_tz"})
    source = _source(tmp_path, "src.db")

    def ids(since: Any) -> list[int]:
        table = source.read(ReadRequest("shop.events", spec, ["id", "at"], since=since))
        return sorted(table.reader.read_all().column("id").to_pylist())

    assert ids(start + timedelta(minutes=7)) == [7, 8, 9]
    # a zone other than UTC and the other ISO spelling compare as instants
    assert ids((start + timedelta(minutes=8)).astimezone(
        __import__("zoneinfo").ZoneInfo("Pacific/Auckland"))) == [8, 9]
    with sqlite3.connect(db) as con:  # committed late, with an old cursor value
        con.execute("INSERT INTO events VALUES (99, '2026-01-01 00:06:30')")
    last_seen = start + timedelta(minutes=9)
    assert ids(last_seen - timedelta(minutes=5)) == [4, 5, 6, 7, 8, 9, 99]
    # the ingest hands text cursors back as text, in any ISO spelling
    assert ids("2026-01-01T00:06:00+00:00") == [6, 7, 8, 9, 99]
    assert ids("2026-01-01 02:06:31+02:00") == [7, 8, 9]
    assert ids(None) == [*range(10), 99]


def test_missing_file_table_and_locked_database(tmp_path: Path, monkeypatch: Any) -> None:
    spec = SourceDataset(table="nope", columns={"id": "int64"})
    with pytest.raises(SourceError, match="does not exist"):
        _source(tmp_path, "missing.db").columns("shop.x", spec)
    _native_db(tmp_path / "src.db")
    with pytest.raises(SourceError, match="'nope' does not exist"):
        _source(tmp_path, "src.db").read(ReadRequest("shop.x", spec, ["id"]))
    monkeypatch.setattr(source_module, "BUSY_SECONDS", 0.05)
    writer = sqlite3.connect(tmp_path / "src.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        things = SourceDataset(table="things", columns=THINGS)
        with pytest.raises(TransientError, match="locked"):
            _source(tmp_path, "src.db").read(ReadRequest("shop.t", things, list(THINGS)))
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_example_model_reads_from_the_bundled_database(tmp_path: Path) -> None:
    create_example(tmp_path / "acme")
    eco = load_model(tmp_path / "acme").ecosystem
    assert eco is not None
    shopdb = eco.teams["shop"].sources["shopdb"]
    source = SqliteSource("shop.shopdb", shopdb, tmp_path / "acme")
    for name, dataset in shopdb.datasets.items():
        read = source.read(ReadRequest(f"shop.{name}", dataset, list(dataset.columns)))
        table = Conformer(f"shop.{name}", dataset.columns, dataset.primary_key).conform_reader(
            read.reader).read_all()
        assert table.num_rows > 0
    products = shopdb.datasets["products"]
    first_row = Conformer("shop.products", products.columns).conform(
        source.read(ReadRequest("shop.products", products, list(products.columns)))
        .reader.read_all()).to_pylist()[0]
    assert isinstance(first_row["attributes"], list) and first_row["attributes"][0][0] == "colour"
    assert first_row["dimensions"] == {"width": 1.0, "height": 2.0, "depth": 0.5}
    customers = shopdb.datasets["customers"]
    tags = source.read(ReadRequest("shop.customers", customers, ["id", "tags"])).reader.read_all()
    assert all(len(t) == 2 for t in tags.column("tags").to_pylist())


def test_evolution_and_incompatible_tables(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    db = tmp_path / "out" / "target.db"
    sink.deliver(first("append"))
    with sqlite3.connect(db) as con:
        con.execute('CREATE INDEX by_name ON items (name)')
    # version 2 adds a column and widens qty from int32 to decimal(20,2) (TEXT in SQLite)
    columns = [("id", "int64", False), ("name", "string", True), ("qty", "decimal(20,2)", True),
               ("note", "string", True)]
    row_schema = schema(columns)
    batch = pa.RecordBatch.from_pylist(
        [{"id": 9, "name": "z", "qty": __import__("decimal").Decimal("1.50"), "note": "new"}],
        schema=row_schema)
    assert sink.deliver(delivery("append", 2, 1, [batch], row_schema, columns=columns)) == 1
    with sqlite3.connect(db) as con:
        types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(items)")}
        assert types["qty"] == "TEXT" and types["note"] == "TEXT"
        assert con.execute("SELECT qty, note FROM items WHERE id IN (1, 9) ORDER BY id"
                           ).fetchall() == [("1", None), ("1.50", "new")]
        assert con.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                           "AND name = 'by_name'").fetchall() == [("by_name",)]
        con.execute("CREATE TABLE clash (id INTEGER, name BLOB, qty INTEGER)")
    with pytest.raises(SinkError, match="table 'clash' column 'name'"):
        sink.deliver(delivery("merge", 1, None, [], schema(columns[:3], [pa.field(
            "_ferry_op", pa.string())]), columns=columns[:3], table="clash"))
    assert sink.applied_version("shop.items", "clash") is None


def test_replace_keeps_views_and_merge_adds_a_key_index(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    db = tmp_path / "out" / "target.db"
    sink.deliver(first("replace"))
    with sqlite3.connect(db) as con:
        con.execute("CREATE VIEW big AS SELECT * FROM items WHERE qty > 1")
        con.execute("CREATE TABLE legacy (id INTEGER, name TEXT, qty INTEGER)")
        con.execute("INSERT INTO legacy VALUES (2, 'old', 0)")
    sink.deliver(delivery("replace", 2, 1, [], schema([("id", "int64", False),
                                                       ("name", "string", True),
                                                       ("qty", "int32", True)])))
    legacy = first("merge")
    legacy.table = "legacy"
    assert sink.deliver(legacy) == 3
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM big").fetchone() == (0,)
        assert con.execute("SELECT * FROM legacy ORDER BY id").fetchall() == [
            (1, "a", 1), (2, "b", 2), (3, "c", 3)]
        indexes = con.execute("SELECT tbl_name FROM sqlite_master WHERE type = 'index' "
                              "AND name LIKE '_ferry_key_%'").fetchall()
    assert indexes == [("legacy",)]
