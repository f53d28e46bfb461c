"""Readers of the parquet sink's files know uuid and json columns (issue 14 point 6): the
files carry the Parquet UUID and JSON logical types (Arrow's ``arrow.uuid`` and
``arrow.json`` extensions), which pyarrow, DuckDB and polars read."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN
from tests.connectors.embedded import ALL_TYPES, all_types_delivery, delivery, make_sink, schema

SPEC = {"kind": "parquet", "path": "out/lake"}
U1, U2 = (uuid.UUID(v) for v in ALL_TYPES[24][2][:2])
COLUMNS = [("id", "int64", False), ("u", "uuid", True), ("j", "json", True)]


def _files(root: Path, table: str) -> list[Path]:
    return sorted((root / "out" / "lake" / table).glob("*.parquet"))


def test_pyarrow_sees_the_logical_and_extension_types(tmp_path: Path) -> None:
    assert make_sink(SPEC, tmp_path).deliver(all_types_delivery()) == 3
    [path] = _files(tmp_path, "all_types")
    parquet = pq.ParquetFile(path).schema_arrow, pq.ParquetFile(path).schema
    arrow, columns = parquet
    assert arrow.field("u").type == pa.uuid()
    assert arrow.field("j").type == pa.json_(pa.string())
    logical = {columns.column(i).name: str(columns.column(i).logical_type)
               for i in range(len(columns))}
    assert logical["u"] == "UUID" and logical["j"] == "JSON"
    table = pq.read_table(path)
    assert table.column("u").to_pylist() == [U1, U2, None]
    assert table.column("j").to_pylist()[:2] == ['{"a":[1,2.5,"x"],"b":null}', "[]"]


def test_duckdb_reads_uuid_and_json_columns(tmp_path: Path) -> None:
    assert make_sink(SPEC, tmp_path).deliver(all_types_delivery()) == 3
    pattern = str(tmp_path / "out" / "lake" / "all_types" / "*.parquet")
    con = duckdb.connect()
    try:
        types = dict(con.execute(f"SELECT column_name, column_type FROM "
                                 f"(DESCRIBE SELECT u, j FROM read_parquet('{pattern}'))"
                                 ).fetchall())
        rows = con.execute(f"SELECT u, j->>'$.a[2]' FROM read_parquet('{pattern}') ORDER BY id"
                           ).fetchall()
    finally:
        con.close()
    assert types == {"u": "UUID", "j": "JSON"}
    assert rows == [(U1, "x"), (U2, None), (None, None)]


def test_polars_reads_the_files(tmp_path: Path) -> None:
    assert make_sink(SPEC, tmp_path).deliver(all_types_delivery()) == 3
    frame = pl.read_parquet(_files(tmp_path, "all_types")[0])
    assert frame["u"].to_list() == [U1.bytes, U2.bytes, None]  # polars has no uuid type
    assert frame["j"].to_list()[:2] == ['{"a":[1,2.5,"x"],"b":null}', "[]"]


def _batch(rows: list[tuple[object, ...]], extra: pa.Field) -> tuple[pa.RecordBatch, pa.Schema]:
    row_schema = schema(COLUMNS, [extra])
    names = row_schema.names
    batch = pa.RecordBatch.from_pylist([dict(zip(names, r, strict=True)) for r in rows],
                                       schema=row_schema)
    return batch, row_schema


def test_merges_keep_the_types_and_older_text_files_are_rewritten(tmp_path: Path) -> None:
    sink = make_sink(SPEC, tmp_path)
    op = pa.field(OP_COLUMN, pa.string())
    batch, rows = _batch([(1, U1.bytes, '{"a":1}', "upsert"), (2, U2.bytes, None, "upsert")], op)
    assert sink.deliver(delivery("merge", 1, None, [batch], rows, columns=COLUMNS)) == 2
    batch, rows = _batch([(2, None, "[1]", "upsert"), (3, U1.bytes, "2", "upsert")], op)
    assert sink.deliver(delivery("merge", 2, 1, [batch], rows, columns=COLUMNS)) == 2
    merged = pq.read_table(_files(tmp_path, "items")).sort_by("id")
    assert merged.schema.field("u").type == pa.uuid()
    assert merged.schema.field("j").type == pa.json_(pa.string())
    assert merged.column("u").to_pylist() == [U1, None, U1]
    assert merged.column("j").to_pylist() == ['{"a":1}', "[1]", "2"]

    # An append table whose files an earlier dataferry wrote with uuid and json as text:
    # the next version rewrites them, so every file of the table has the same schema.
    version = pa.field(VERSION_COLUMN, pa.int64())
    batch, rows = _batch([(1, U1.bytes, '{"a":1}', 1)], version)
    assert sink.deliver(delivery("append", 1, None, [batch], rows, columns=COLUMNS,
                                 table="log")) == 1
    [old] = _files(tmp_path, "log")
    text = pq.read_table(old)
    text = text.set_column(1, text.schema.field("u").with_type(pa.string()),
                           pa.array([str(U1)], pa.string()))
    text = text.set_column(2, text.schema.field("j").with_type(pa.string()),
                           text.column("j").chunk(0).storage)
    old.unlink()  # a hard link of the snapshot's file: write a new one in its place
    pq.write_table(text, old)
    batch, rows = _batch([(2, U2.bytes, None, 2)], version)
    assert sink.deliver(delivery("append", 2, 1, [batch], rows, columns=COLUMNS,
                                 table="log")) == 1
    files = _files(tmp_path, "log")
    assert {pq.read_schema(f).field("u").type for f in files} == {pa.uuid()}
    assert pq.read_table(files).sort_by("id").column("u").to_pylist() == [U1, U2]
