"""Reading the live rows of data files that may carry deletion vectors.

Everything in the store that reads a version's rows goes through here: DuckDB queries
(``relation``: checks, merges, change sets, deliveries) and plain Arrow streams
(``read_rows``: show, export, transforms). A file without a deletion vector is read as
it is; one with a vector is read with its row positions and the deleted ones skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pyroaring import BitMap

from dataferry.store import deletion_vectors
from dataferry.store.duck import parquet_list
from dataferry.store.manifest import FileEntry

if TYPE_CHECKING:  # loaded where used: a run reads its source before it needs them
    import duckdb

_names = itertools.count()


@dataclass(frozen=True)
class FileScan:
    """One data file to read: all its rows but ``deleted``, or only the rows in ``only``."""

    path: str
    deleted: BitMap | None = None
    only: BitMap | None = None


def file_scans(directory: Path, files: Sequence[FileEntry]) -> list[FileScan]:
    """The scans of a version's files, each with its deletion vector (if any) read."""
    return [FileScan(str(directory / entry.path), deleted_rows(directory, entry))
            for entry in files]


def deleted_rows(directory: Path, entry: FileEntry) -> BitMap | None:
    """The row positions a file's deletion vector removes (None: the file has none)."""
    if not entry.deletion_vector:
        return None
    vector = deletion_vectors.DeletionVector.from_json(entry.deletion_vector)
    return deletion_vectors.read(directory, vector)


def relation(db: duckdb.DuckDBPyConnection, scans: Sequence[FileScan], *,
             hive: bool = False, positions: bool = False) -> str | None:
    """A SQL subquery over the rows ``scans`` select (None when there is no file).

    Plain files are one ``read_parquet``; files with positions to skip or keep are read
    with their row numbers and joined (anti or semi) with a table of those positions,
    registered in ``db``. ``positions``: keep the columns ``filename`` and
    ``file_row_number`` that say where each row is.
    """
    options = ", union_by_name = true" + (", hive_partitioning = true" if hive else "")
    located = ", filename = true, file_row_number = true"
    plain = [s.path for s in scans if s.deleted is None and s.only is None]
    skipping = [s for s in scans if s.deleted is not None and s.only is None]
    keeping = [s for s in scans if s.only is not None]
    parts = []
    if plain:
        parts.append(f"select * from read_parquet({parquet_list(plain)}"
                     f"{located if positions else ''}{options})")
    for join, group in (("anti", skipping), ("semi", keeping)):
        if not group:
            continue
        table = f"_ferry_positions_{next(_names)}"
        db.register(table, _positions(group))
        files = parquet_list(s.path for s in group)
        columns = "*" if positions else "* exclude (filename, file_row_number)"
        parts.append(
            f"select {columns} from read_parquet({files}{located}{options}) p "
            f"{join} join {table} d on d.filename = p.filename and d.pos = p.file_row_number")
    if not parts:
        return None
    return "(" + " union all by name ".join(parts) + ")"


def _positions(scans: Sequence[FileScan]) -> pa.Table:
    names: list[pa.Array] = []
    positions: list[pa.Array] = []
    for scan in scans:
        bitmap = scan.only if scan.only is not None else scan.deleted
        assert bitmap is not None
        array = pa.array(deletion_vectors.positions_array(bitmap))
        positions.append(array)
        names.append(pa.repeat(pa.scalar(scan.path), len(array)).cast(pa.string()))
    return pa.table({"filename": pa.concat_arrays(names) if names else pa.array([], pa.string()),
                     "pos": pa.concat_arrays(positions) if positions else pa.array([], pa.int64())})


def read_rows(scans: Sequence[FileScan], schema: pa.Schema, columns: Sequence[str] | None = None,
              batch_size: int = 65_536) -> pa.RecordBatchReader:
    """The live rows of unpartitioned files as Arrow batches of ``schema`` (bounded memory)."""
    wanted = list(columns) if columns is not None else schema.names
    out_schema = pa.schema([schema.field(name) for name in wanted])

    import pyarrow.parquet as pq

    def batches() -> Iterator[pa.RecordBatch]:
        for scan in scans:
            deleted = deletion_vectors.positions_array(scan.deleted) if scan.deleted else None
            start = 0
            # Small batches are wide rows: read column chunks 1 MiB at a time, not whole.
            file = pq.ParquetFile(scan.path, buffer_size=(1 << 20) if batch_size < 65_536 else 0)
            present = [name for name in wanted if name in file.schema_arrow.names]
            for batch in file.iter_batches(batch_size, columns=present):
                rows = batch.num_rows
                if deleted is not None:
                    batch = batch.filter(pa.array(
                        deletion_vectors.live_mask(deleted, start, rows)))
                start += rows
                if batch.num_rows:  # columns added to the model later are null in old files
                    yield pa.RecordBatch.from_arrays(
                        [batch.column(name).cast(field.type) if name in present
                         else pa.nulls(batch.num_rows, field.type)
                         for name, field in zip(wanted, out_schema, strict=True)],
                        schema=out_schema)

    return pa.RecordBatchReader.from_batches(out_schema, batches())

