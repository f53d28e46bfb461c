"""Fetching only some columns of a Parquet file (``ferry clone --columns a,b``).

The file is made a sparse file of its full size; the 1 MiB chunks that cover its footer
(the last 8 bytes give the footer's length) are fetched first, then those that cover the
column chunks of the wanted columns. Every chunk is fetched whole, by Range, and checked
against the file's signed chunk list before it is written: a partial chunk could not be.
The chunks verified so far are listed beside the file (``<file>.held``), so a re-run
after an interruption or a lying peer fetches none of them again.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow.parquet as pq

from dataferry.store.hashing import hash_bytes

ReadRange = Callable[[int, int], bytes]
"""Bytes start..end (exclusive) of the file on the peer."""


class ChunkMismatch(ValueError):
    """A fetched chunk does not match the signed chunk list."""


class SparseFile:
    """One data file being filled chunk by chunk, each verified."""

    def __init__(self, path: Path, size: int, chunk_size: int, chunks: list[str],
                 algorithm: str, read: ReadRange) -> None:
        self.path, self.size, self.chunk_size = path, size, chunk_size
        self.chunks, self.algorithm, self.read = chunks, algorithm, read
        self.held: set[int] = set()
        self.record = path.with_name(path.name + ".held")
        """The chunks verified so far, kept for a re-run after an interruption."""
        if path.is_file() and path.stat().st_size == size and self.record.is_file():
            try:
                self.held = {int(n) for n in json.loads(self.record.read_bytes())}
            except (ValueError, TypeError):
                self.held = set()
        if not self.held:
            with path.open("wb") as handle:
                handle.truncate(size)  # a sparse file: holes read as zeros

    def chunk_range(self, first: int, end: int) -> range:
        """The chunk numbers covering bytes first..end (exclusive)."""
        return range(first // self.chunk_size, (max(end, first + 1) - 1) // self.chunk_size + 1)

    def fetch(self, numbers: Iterable[int]) -> None:
        """Fetch the chunks not held yet, a run of adjacent ones per Range request."""
        wanted = sorted(set(numbers) - self.held)
        runs: list[list[int]] = []
        for number in wanted:
            if runs and runs[-1][-1] == number - 1:
                runs[-1].append(number)
            else:
                runs.append([number])
        with self.path.open("r+b") as handle:
            for run in runs:
                start = run[0] * self.chunk_size
                end = min((run[-1] + 1) * self.chunk_size, self.size)
                data = self.read(start, end)
                try:
                    for number in run:
                        offset = number * self.chunk_size - start
                        piece = data[offset: offset + self.chunk_size]
                        if hash_bytes(self.algorithm, piece) != self.chunks[number]:
                            raise ChunkMismatch(f"chunk {number}")
                        handle.seek(number * self.chunk_size)
                        handle.write(piece)
                        self.held.add(number)
                finally:  # what verified stays, also when a later chunk did not
                    handle.flush()
                    os.fsync(handle.fileno())
                    self.record.write_text(json.dumps(sorted(self.held)))


def fetch_columns(path: Path, size: int, chunk_size: int, chunks: list[str], algorithm: str,
                  columns: Iterable[str], read: ReadRange) -> list[int]:
    """Fill ``path`` with the footer and ``columns``' column chunks; returns the chunk
    numbers held. Raises ``ChunkMismatch`` for a chunk that does not verify."""
    sparse = SparseFile(path, size, chunk_size, chunks, algorithm, read)
    sparse.fetch(sparse.chunk_range(size - 8, size))
    with path.open("rb") as handle:
        handle.seek(size - 8)
        footer = struct.unpack("<I", handle.read(4))[0]
    sparse.fetch(sparse.chunk_range(max(size - 8 - footer, 0), size))
    wanted = set(columns)
    metadata = pq.ParquetFile(path).metadata
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            if column.path_in_schema.split(".")[0] not in wanted:
                continue
            start = column.data_page_offset
            if column.has_dictionary_page and column.dictionary_page_offset:
                start = min(start, column.dictionary_page_offset)
            sparse.fetch(sparse.chunk_range(start, start + column.total_compressed_size))
    return sorted(sparse.held)
