"""Writing a stream of record batches as zstd Parquet files, hashed as they are written."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.faults import crash_point
from dataferry.store.hashing import FileDigest, HashingWriter
from dataferry.store.manifest import FileEntry

TARGET_FILE_BYTES = 256 << 20
ROW_GROUP_ROWS = 1 << 20
ROW_GROUP_BYTES = 64 << 20
"""A row group is written once this many rows or bytes are buffered (bounds memory)."""


def write_files(
    directory: Path, reader: pa.RecordBatchReader, algorithm: str,
    on_rows: Callable[[int], None] | None,
) -> list[tuple[FileEntry, FileDigest]]:
    """Stream batches into zstd Parquet files, hashing every byte as it is written."""
    out: list[tuple[FileEntry, FileDigest]] = []
    sink: HashingWriter | None = None
    writer: pq.ParquetWriter | None = None
    rows = 0
    first = True

    def finish() -> None:
        nonlocal sink, writer, rows
        if writer is None or sink is None:
            return
        writer.close()
        sink.close(fsync=True)
        digest = sink.digest()
        name = sink.path.name
        out.append((FileEntry(name, digest.size, digest.hash, rows, digest.chunk_size,
                              digest.chunks_hash(algorithm)), digest))
        sink, writer, rows = None, None, 0

    pending: list[pa.RecordBatch] = []
    pending_rows = pending_bytes = 0

    def flush() -> None:
        """Write the buffered batches as one row group (small row groups compress worse)."""
        nonlocal sink, writer, rows, first, pending_rows, pending_bytes
        if not pending:
            return
        if writer is None:
            sink = HashingWriter(directory / f"part-{uuid.uuid4()}.zstd.parquet", algorithm)
            writer = pq.ParquetWriter(sink, reader.schema, compression="zstd",
                                      write_statistics=True)
        assert sink is not None
        writer.write_table(pa.Table.from_batches(pending, reader.schema),
                           row_group_size=pending_rows)
        rows += pending_rows
        pending.clear()
        pending_rows = pending_bytes = 0
        if first:
            crash_point("write-file")
            first = False
        if sink.tell() >= TARGET_FILE_BYTES:
            finish()

    for batch in reader:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        pending_bytes += batch.nbytes
        if on_rows is not None:
            on_rows(batch.num_rows)
        if pending_rows >= ROW_GROUP_ROWS or pending_bytes >= ROW_GROUP_BYTES:
            flush()
    flush()
    finish()
    return out
