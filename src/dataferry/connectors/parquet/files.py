"""Writing a snapshot's Parquet files: batches in, files of bounded size out, all fsynced."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.connectors.parquet.layout import fsync_path
from dataferry.connectors.parquet.types import to_sink_array

ROWS_PER_FILE = 1_000_000
ROW_GROUP_ROWS = 128 * 1024
ROW_GROUP_BYTES = 32 << 20
"""A row group also ends once its rows hold this many bytes in memory (wide rows)."""


def fit(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``: columns by name, cast to the field types (uuid and json
    text to their extension types), missing ones null."""
    names = batch.schema.names
    arrays = []
    for field in schema:
        if field.name in names:
            arrays.append(to_sink_array(batch.column(names.index(field.name)), field.type))
        else:
            arrays.append(pa.nulls(batch.num_rows, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class SnapshotWriter:
    """Writes ``part-v<version>-NNNNN.parquet`` files into one snapshot folder."""

    def __init__(self, folder: Path, schema: pa.Schema, version: int) -> None:
        self.folder, self.schema, self.version = folder, schema, version
        self.rows = 0
        self._paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._file_rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def _open(self) -> pq.ParquetWriter:
        path = self.folder / f"part-v{self.version}-{len(self._paths):05d}.parquet"
        self._paths.append(path)
        self._file_rows = 0
        return pq.ParquetWriter(path, self.schema, compression="snappy")

    def write(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Append batches (fitted to the schema); a file is closed after ROWS_PER_FILE rows."""
        for batch in batches:
            batch = fit(batch, self.schema)
            offset = 0
            while offset < batch.num_rows:
                room = ROWS_PER_FILE - self._file_rows - self._pending_rows
                piece = batch.slice(offset, min(batch.num_rows - offset, room))
                self._pending.append(piece)
                self._pending_rows += piece.num_rows
                self._pending_bytes += piece.nbytes
                self.rows += piece.num_rows
                offset += piece.num_rows
                if (self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES
                        or self._file_rows + self._pending_rows >= ROWS_PER_FILE):
                    self._flush()
                if self._file_rows >= ROWS_PER_FILE:
                    self._close_file()

    def _flush(self) -> None:
        """Write the pending rows as one row group. pyarrow's writer would hold a row group
        of ROW_GROUP_ROWS rows however wide they are: wide rows end theirs by bytes."""
        if not self._pending:
            return
        if self._writer is None:
            self._writer = self._open()
        self._writer.write_table(pa.Table.from_batches(self._pending),
                                 row_group_size=ROW_GROUP_ROWS)
        self._file_rows += self._pending_rows
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._file_rows = 0

    def link(self, files: Iterable[Path]) -> None:
        """Add existing files (of the same schema) by hard link, or copy where links fail."""
        for source in files:
            target = self.folder / source.name
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
            self._paths.append(target)
            self.rows += pq.ParquetFile(target).metadata.num_rows

    def abort(self) -> None:
        """Stop writing after a failure (the snapshot folder is collected later)."""
        self._pending = []
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Finish the files (an empty one if there are no rows, so readers see the schema)
        and flush them and the folder to disk."""
        self._flush()
        if self._writer is None and not self._paths:
            self._writer = self._open()
        self._close_file()
        for path in self._paths:
            fsync_path(path)
        fsync_path(self.folder)
        return list(self._paths)
