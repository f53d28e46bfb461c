"""The Parquet sink ends a row group by bytes as well as rows, so wide rows are not all
held in memory until a file closes."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.connectors.parquet.files import ROW_GROUP_BYTES, SnapshotWriter


def test_wide_rows_make_row_groups_of_bounded_bytes(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.int64()), ("doc", pa.string())])
    batches = [pa.RecordBatch.from_pydict(
        {"id": list(range(start, start + 10)),
         "doc": [os.urandom(1 << 19).hex() for _ in range(10)]}, schema=schema)
        for start in range(0, 100, 10)]  # 100 rows of 1 MiB, 10 a batch
    writer = SnapshotWriter(tmp_path, schema, 1)
    writer.write(batches)
    [path] = writer.close()
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == 100
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    assert len(groups) >= 100 * (1 << 20) // ROW_GROUP_BYTES
    assert max(g.total_byte_size for g in groups) <= ROW_GROUP_BYTES + (10 << 20)
    assert pq.read_table(path)["id"].to_pylist() == list(range(100))


def test_narrow_rows_keep_one_row_group(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.int64())])
    writer = SnapshotWriter(tmp_path, schema, 1)
    writer.write(pa.RecordBatch.from_pydict({"id": list(range(s, s + 1000))}, schema=schema)
                 for s in range(0, 50_000, 1000))
    [path] = writer.close()
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
