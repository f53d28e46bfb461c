"""The DuckDB source and sink on database files in a temporary folder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.duckdb.source import DuckdbSource
from dataferry.errors import SinkError, SourceError, TransientError
from dataferry.model.spec import DuckdbSource as SourceSpec
from dataferry.model.spec import SourceDataset
from dataferry.store.conform import Conformer
from tests.connectors.embedded import (
    ALL_TYPES,
    BIG_BATCHES,
    BIG_ROWS,
    all_types_batch,
    all_types_delivery,
    big_delivery,
    check_kill,
    conform_all,
    delivery,
    first,
    kill_mid_delivery,
    make_sink,
    run_two_versions,
    schema,
)

SPEC = {"kind": "duckdb", "path": "out/target.duckdb", "schema": "reporting"}


def _query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [tuple(r.values()) for r in con.sql(sql).to_arrow_table().to_pylist()]
    finally:
        con.close()


def read_target(root: Path, schema_name: str = "reporting") -> Any:
    def read(table: str) -> list[tuple[Any, ...]]:
        return _query(root / "out" / "target.duckdb", f'SELECT * FROM "{schema_name}"."{table}"')
    return read


@pytest.mark.parametrize("mode", ["replace", "merge", "append", "history"])
def test_two_versions_in_every_mode(tmp_path: Path, mode: str) -> None:
    run_two_versions(make_sink(SPEC, tmp_path), mode, read_target(tmp_path))
    loads = _query(tmp_path / "out" / "target.duckdb",
                   "SELECT dataset, table_name, version, mode FROM reporting._ferry_loads")
    assert loads == [("shop.items", "items", 2, mode)]


@pytest.mark.parametrize("mode", ["append", "merge", "replace"])
def test_killed_delivery_changes_nothing_and_reruns_once(tmp_path: Path, mode: str) -> None:
    check_kill(SPEC, tmp_path, mode, read_target(tmp_path))


def test_replace_killed_between_committed_pieces_recovers_exactly(tmp_path: Path) -> None:
    """A replace commits its staging table piece by piece; killed after the first piece,
    the target and _ferry_loads are untouched, and the re-run neither duplicates nor
    loses a row nor leaves the staging table behind."""
    sink = make_sink(SPEC, tmp_path)
    assert sink.deliver(first("replace")) == 3
    before = sorted(read_target(tmp_path)("items"))
    kill_mid_delivery(SPEC, tmp_path, "replace")
    db = tmp_path / "out" / "target.duckdb"
    assert _query(db, 'SELECT count(*) FROM reporting."items__ferry_new"') == [(BIG_ROWS,)]
    assert sorted(read_target(tmp_path)("items")) == before
    assert make_sink(SPEC, tmp_path).applied_version("shop.items", "items") == 1
    assert make_sink(SPEC, tmp_path).deliver(big_delivery("replace")) == BIG_BATCHES * BIG_ROWS
    assert _query(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM reporting.items"
                  ) == [(BIG_BATCHES * BIG_ROWS, BIG_BATCHES * BIG_ROWS, 1000,
                         1000 + BIG_BATCHES * BIG_ROWS - 1)]
    assert _query(db, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'reporting' "
                  "ORDER BY 1") == [("_ferry_loads",), ("items",)]
    assert _query(db, "SELECT version, rows FROM reporting._ferry_loads") == [
        (2, BIG_BATCHES * BIG_ROWS)]


def _source(root: Path, path: str = "out/target.duckdb") -> DuckdbSource:
    return DuckdbSource("shop.wh", SourceSpec(kind="duckdb", path=path), root)


def test_every_type_round_trips_through_sink_and_source(tmp_path: Path) -> None:
    sink = make_sink({"kind": "duckdb", "path": "out/target.duckdb"}, tmp_path)
    assert sink.deliver(all_types_delivery()) == 3
    spec = SourceDataset(table="all_types", columns={n: t for n, t, _ in ALL_TYPES})
    source = _source(tmp_path)
    read = source.read(ReadRequest("shop.all", spec, [n for n, _, _ in ALL_TYPES], batch_rows=2))
    assert conform_all(read.reader.read_all()).equals(all_types_batch())
    natives = {c.name: c.native_type for c in source.columns("shop.all", spec)}
    assert natives["u64"] == "UBIGINT" and natives["dec"] == "DECIMAL(12,2)"
    assert natives["wide"] == "VARCHAR" and natives["tz"] == "TIMESTAMP WITH TIME ZONE"
    assert natives["u"] == "UUID" and natives["j"] == "JSON" and natives["f16"] == "FLOAT"
    assert natives["m"] == "MAP(VARCHAR, BIGINT)" and natives["lu"] == "UUID[]"
    assert natives["st"] == "STRUCT(a BIGINT, b DECIMAL(10,2)[], c VARCHAR)"


def _native_db(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("""
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TABLE things (id INTEGER NOT NULL, big HUGEINT, ubig UHUGEINT, span INTERVAL,
          m mood, "at" TIMESTAMPTZ, tags VARCHAR, stamp TIMESTAMP_NS);
        INSERT INTO things VALUES
          (1, 170141183460469231731687303715884105727, 340282366920938463463374607431768211455,
           INTERVAL 1 DAY, 'happy', TIMESTAMPTZ '2026-01-01 12:00:00+02', '["a","b"]',
           TIMESTAMP_NS '2026-01-01 00:00:00.123456'),
          (2, -1, 0, NULL, NULL, NULL, NULL, NULL);
    """).fetchall()
    con.close()


def test_source_hands_over_exact_values(tmp_path: Path) -> None:
    _native_db(tmp_path / "src.duckdb")
    columns = {"id": "int32", "big": "decimal(39,0)", "ubig": "string", "span": "string",
               "m": "string", "at": "timestamp_tz", "tags": "list<string>", "stamp": "timestamp"}
    spec = SourceDataset(table="things", columns=columns, primary_key=["id"])
    source = _source(tmp_path, "src.duckdb")
    live = {c.name: c for c in source.columns("shop.things", spec)}
    assert live["id"].nullable is False and live["big"].nullable is True
    assert live["big"].arrow_type == pa.string() and live["big"].native_type == "HUGEINT"
    assert live["at"].arrow_type == pa.timestamp("us", tz="UTC")
    assert live["tags"].arrow_type == pa.list_(pa.field("l", pa.string()))
    table = source.read(ReadRequest("shop.things", spec, list(columns))).reader.read_all()
    row = Conformer("shop.things", spec.columns, ["id"]).conform(table).to_pylist()[0]
    assert row["big"] == Decimal("170141183460469231731687303715884105727")
    assert row["ubig"] == "340282366920938463463374607431768211455"
    assert row["span"] == "1 day" and row["m"] == "happy" and row["tags"] == ["a", "b"]
    assert row["at"] == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_query_and_incremental_reads(tmp_path: Path) -> None:
    path = tmp_path / "src.duckdb"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    con = duckdb.connect(str(path))
    con.execute('CREATE TABLE events (id BIGINT, "at" TIMESTAMPTZ, local_at TIMESTAMP)').fetchall()
    for i in range(10):
        moment = start + timedelta(minutes=i)
        con.execute("INSERT INTO events VALUES (?, CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMP))",
                    [i, moment.isoformat(), moment.replace(tzinfo=None).isoformat()]).fetchall()
    con.close()
    source = _source(tmp_path, "src.duckdb")
    for cursor in ("at", "local_at"):
        spec = SourceDataset(query=f'select id, "{cursor}" from events;', capture="incremental",
                             cursor=cursor, columns={"id": "int64", cursor: "timestamp_tz"})

        def ids(since: Any, spec: SourceDataset = spec, cursor: str = cursor) -> list[int]:
            read = source.read(ReadRequest("shop.events", spec, ["id", cursor], since=since))
            return sorted(read.reader.read_all().column("id").to_pylist())

        assert ids(start + timedelta(minutes=7)) == [7, 8, 9]
        assert ids(None) == list(range(10))
    con = duckdb.connect(str(path))  # committed late, with an old cursor value
    con.execute("INSERT INTO events VALUES (99, TIMESTAMPTZ '2026-01-01 00:06:30+00', NULL)"
                ).fetchall()
    con.close()
    spec = SourceDataset(table="events", capture="incremental", cursor="at",
                         columns={"id": "int64", "at": "timestamp_tz"})
    read = source.read(ReadRequest("shop.events", spec, ["id", "at"],
                                   since=start + timedelta(minutes=4)))
    assert sorted(read.reader.read_all().column("id").to_pylist()) == [4, 5, 6, 7, 8, 9, 99]


def test_missing_file_and_table_and_a_locked_file(tmp_path: Path) -> None:
    spec = SourceDataset(table="nope", columns={"id": "int64"})
    with pytest.raises(SourceError, match="does not exist"):
        _source(tmp_path, "missing.duckdb").columns("shop.x", spec)
    _native_db(tmp_path / "src.duckdb")
    with pytest.raises(SourceError, match="nope"):
        _source(tmp_path, "src.duckdb").read(ReadRequest("shop.x", spec, ["id"]))
    # another process holds the file for writing
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
        "time.sleep(30)"), str(tmp_path / "src.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(TransientError, match="in use"):
            _source(tmp_path, "src.duckdb").columns("shop.x", spec)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_evolution_and_incompatible_tables(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    sink.deliver(first("append"))
    columns = [("id", "int64", False), ("name", "string", True), ("qty", "decimal(12,2)", True),
               ("note", "string", True)]
    row_schema = schema(columns)
    batch = pa.RecordBatch.from_pylist(
        [{"id": 9, "name": "z", "qty": Decimal("1.50"), "note": "new"}], schema=row_schema)
    assert sink.deliver(delivery("append", 2, 1, [batch], row_schema, columns=columns)) == 1
    path = tmp_path / "out" / "target.duckdb"
    assert _query(path, "SELECT data_type FROM duckdb_columns() WHERE table_name = 'items' "
                  "AND column_name IN ('qty', 'note') ORDER BY column_name") == [
        ("VARCHAR",), ("DECIMAL(12,2)",)]
    assert _query(path, "SELECT qty, note FROM reporting.items WHERE id IN (1, 9) ORDER BY id"
                  ) == [(Decimal("1.00"), None), (Decimal("1.50"), "new")]
    narrower = [("id", "int64", False), ("name", "string", True), ("qty", "int8", True)]
    with pytest.raises(SinkError, match="table 'items' column 'qty'"):
        sink.deliver(delivery("append", 3, 2, [], schema(narrower, [pa.field(
            "_ferry_version", pa.int64())]), columns=narrower))
    assert sink.applied_version("shop.items", "items") == 2


def test_schema_is_optional_and_created(tmp_path: Path) -> None:
    sink = make_sink({"kind": "duckdb", "path": "deep/er/t.duckdb"}, tmp_path)
    assert sink.applied_version("shop.items", "items") is None
    assert not (tmp_path / "deep").exists()
    sink.deliver(first("replace"))
    assert _query(tmp_path / "deep/er/t.duckdb", "SELECT count(*) FROM main.items") == [(3,)]
