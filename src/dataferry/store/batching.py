"""How many rows make a record batch of bounded bytes, judged from the files' footers.

A batch of 65,536 rows is 4 MB of narrow rows and 128 GB of 2 MB ones. Readers of stored
rows (deliveries, exports, transforms) size their batches by bytes instead: the widest
row group of the files read gives the bytes a row takes in memory (its columns'
uncompressed size over its rows), and a batch gets ``BATCH_BYTES`` of those rows.

A dictionary-encoded column's uncompressed size (dictionary and indices) undercounts its
decoded values when they repeat. The store dictionary-encodes only columns whose values
repeat (``parquet_files``), in practice narrow ones, so the error stays small.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from pathlib import Path

import pyarrow as pa

from dataferry.store.manifest import FileEntry

BATCH_BYTES = 16 << 20
"""What a batch of stored rows may hold in memory, about."""
MAX_BATCH_ROWS = 65_536
SAMPLED_FILES = 32
WIDE_ROW_BYTES = 64 << 10
"""Rows this wide are not carried whole through a DuckDB join: it holds long strings in
memory it cannot spill (a join of 800 rows of 1 MiB ran out of 256 MB), so comparisons
use digests of the text columns (``changes.change_set``) or are not made
(``difference.difference_by_key``)."""
"""Footers read at most: the files with the most bytes a row (by their stored size)."""


def batch_rows(directory: Path, files: Sequence[FileEntry],
               columns: Collection[str] | None = None) -> int:
    """Rows per batch so that a batch of ``columns`` (None: all) of ``files`` holds about
    ``BATCH_BYTES``: at least 1, at most ``MAX_BATCH_ROWS``."""
    return rows_for(row_width(directory, files, columns))


def rows_for(width: float) -> int:
    """Rows per batch of rows of ``width`` bytes (``batch_rows``)."""
    if width <= 0:
        return MAX_BATCH_ROWS
    return max(1, min(MAX_BATCH_ROWS, int(BATCH_BYTES // width)))


def row_width(directory: Path, files: Sequence[FileEntry],
              columns: Collection[str] | None = None) -> float:
    """The most bytes a row of ``columns`` of ``files`` takes in memory, about (0: no rows)."""
    sampled = heapq.nlargest(SAMPLED_FILES, (f for f in files if f.rows),
                             key=lambda f: f.size / f.rows)
    return max((row_bytes(directory / f.path, columns) for f in sampled), default=0.0)


def row_bytes(path: Path, columns: Collection[str] | None = None) -> float:
    """The most bytes a row of ``columns`` takes uncompressed in any row group of the
    Parquet file at ``path`` (0 for a file without rows)."""
    import pyarrow.parquet as pq  # not before a run's first read (tests/cli/test_run_imports)

    file = pq.ParquetFile(path)
    metadata = file.metadata
    leaves = [index for index, name in enumerate(_leaf_owners(file.schema_arrow))
              if columns is None or name in columns]
    widest = 0.0
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        if row_group.num_rows:
            size = sum(row_group.column(i).total_uncompressed_size for i in leaves)
            widest = max(widest, size / row_group.num_rows)
    return widest


def _leaf_owners(schema: pa.Schema) -> list[str]:
    """For each Parquet leaf column, in order, the name of the top-level field it is in."""
    return [field.name for field in schema for _ in range(_leaves(field.type))]


def _leaves(kind: pa.DataType) -> int:
    if isinstance(kind, pa.StructType):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if isinstance(kind, pa.MapType):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _leaves(kind.value_type)
    return 1
