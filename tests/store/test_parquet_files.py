"""The store's Parquet writer: dictionaries only where values repeat, row groups that
stream, and hashes that match the bytes on disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataferry.model.types import parse_type, to_store_field
from dataferry.store import parquet_files
from dataferry.store.hashing import hash_file
from dataferry.store.parquet_files import dictionary_columns, write_files

ROWS = 20_000


def _table() -> pa.Table:
    return pa.table({
        "id": pa.array(range(ROWS), pa.int64()),
        "team": pa.array([f"team {i % 7}" for i in range(ROWS)]),
        "label": pa.array([f"label {i}" for i in range(ROWS)]),
        "empty": pa.nulls(ROWS, pa.string()),
        "tags": pa.array([[f"t{i}"] for i in range(ROWS)], pa.list_(pa.string())),
        "moods": pa.array([["sad", "ok", "happy"][i % 3:] for i in range(ROWS)],
                          pa.list_(pa.string())),
        "points": pa.array([{"x": i} for i in range(ROWS)], pa.struct([("x", pa.int64())])),
    })


def test_dictionaries_only_for_repeating_columns_and_list_values() -> None:
    table = _table()
    chosen = dictionary_columns(table.schema, table.to_batches()[0])
    # the values of "tags" all differ; the leaves of structs are not sampled
    assert chosen == ["team", "empty", "moods.list.element", "points.x"]


def test_list_values_whose_dictionary_would_overflow_get_delta_encoding(tmp_path: Path) -> None:
    """[n, n % 1000, n % 7] repeats within a sample, but a row group of them holds a
    distinct value for each row: its dictionary would pass the page limit."""
    rows = 300_000
    n = pa.array(range(rows), pa.int32())
    values = pa.array([[i, i % 1000, i % 7] for i in range(rows)], pa.list_(pa.int32()))
    table = pa.table({"id": n, "values": values})
    written = write_files(tmp_path, table.to_reader(max_chunksize=8192), "blake3", None)
    for entry, _ in written:  # two row groups: one file, or one a lane
        parquet = pq.ParquetFile(tmp_path / entry.path)
        column = parquet.metadata.row_group(0).column(1)
        assert column.path_in_schema == "values.list.element"
        assert "RLE_DICTIONARY" not in column.encodings
        assert "DELTA_BINARY_PACKED" in column.encodings
    back = pa.concat_tables(pq.read_table(tmp_path / entry.path) for entry, _ in written)
    assert back.sort_by("id").equals(table.cast(back.schema))


def test_written_files_use_the_chosen_encodings_and_hash_their_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parquet_files, "ROW_GROUP_ROWS", 4096)
    monkeypatch.setenv("FERRY_WRITE_LANES", "1")  # one file: its row groups are the subject
    table = _table()
    seen: list[int] = []
    written = write_files(tmp_path, table.to_reader(max_chunksize=1000), "blake3", seen.append)
    assert sum(seen) == ROWS and len(written) == 1
    entry, digest = written[0]
    path = tmp_path / entry.path
    assert (entry.rows, entry.size, entry.hash) == (ROWS, path.stat().st_size, digest.hash)
    assert hash_file(path, "blake3") == digest
    parquet = pq.ParquetFile(path)
    assert parquet.read().equals(table)
    meta = parquet.metadata
    # a group is written once 4096 rows are buffered: 5 batches of 1000 each time
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [5000] * 4
    encodings = {meta.row_group(0).column(i).path_in_schema:
                 meta.row_group(0).column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["team"]
    assert "RLE_DICTIONARY" not in encodings["id"]
    assert "RLE_DICTIONARY" not in encodings["label"]
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_json_text_gets_plain_pages_and_other_text_delta_lengths(tmp_path: Path) -> None:
    json_field = to_store_field("doc", parse_type("json"))
    table = pa.table({"id": pa.array(range(ROWS), pa.int64()),
                      "doc": pa.array([f'{{"id": {i}, "tags": ["x", {i % 7}]}}'
                                       for i in range(ROWS)]),
                      "label": pa.array([f"label {i}" for i in range(ROWS)])},
                     schema=pa.schema([pa.field("id", pa.int64()), json_field,
                                       pa.field("label", pa.string())]))
    (entry, _), = write_files(tmp_path, table.to_reader(), "blake3", None)
    parquet = pq.ParquetFile(tmp_path / entry.path)
    assert parquet.read().equals(table)
    column = {parquet.metadata.row_group(0).column(i).path_in_schema:
              parquet.metadata.row_group(0).column(i).encodings for i in range(3)}
    assert "PLAIN" in column["doc"] and "DELTA_LENGTH_BYTE_ARRAY" not in column["doc"]
    assert "DELTA_LENGTH_BYTE_ARRAY" in column["label"]


def test_delta_encoded_files_read_back_in_duckdb_polars_and_pyarrow(tmp_path: Path) -> None:
    import datetime as dt

    import duckdb
    import polars as pl

    rows = 5000
    table = pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "small": pa.array([i * 7919 % 100_003 for i in range(rows)], pa.int32()),
        "day": pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(rows)]),
        "at": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i * 37)
                        for i in range(rows)], pa.timestamp("us", "UTC")),
        "clock": pa.array([dt.time(i % 24, i % 60) for i in range(rows)], pa.time64("us")),
        "text": pa.array([f"näme {i} 🚢" if i % 11 else None for i in range(rows)]),
        "blob": pa.array([bytes([i % 256]) * (i % 5) for i in range(rows)], pa.binary()),
        "names": pa.array([[f"n{i}", None] if i % 3 else None for i in range(rows)],
                          pa.list_(pa.string())),
    })
    written = write_files(tmp_path, table.to_reader(), "blake3", None)
    path = tmp_path / written[0][0].path
    encodings = {pq.ParquetFile(path).metadata.row_group(0).column(i).path_in_schema:
                 pq.ParquetFile(path).metadata.row_group(0).column(i).encodings
                 for i in range(len(table.schema))}
    assert "DELTA_BINARY_PACKED" in encodings["id"] and "DELTA_BINARY_PACKED" in encodings["at"]
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["text"]
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["names.list.element"]
    assert pq.read_table(path).equals(table)
    assert pl.read_parquet(path).to_arrow().cast(table.schema).equals(table)
    with duckdb.connect() as db:
        back = db.execute(f"select count(*), sum(id), count(text), max(text), "
                          f"sum(octet_length(blob)), max(names[1]), count(names) "
                          f"from '{path}'").fetchall()[0]
    expected = (rows, sum(range(rows)), sum(1 for i in range(rows) if i % 11),
                max(f"näme {i} 🚢" for i in range(rows) if i % 11),
                sum(i % 5 for i in range(rows)), max(f"n{i}" for i in range(rows) if i % 3),
                sum(1 for i in range(rows) if i % 3))
    assert back == expected
