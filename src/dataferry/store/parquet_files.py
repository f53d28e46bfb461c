"""Writing a stream of record batches as zstd Parquet files, hashed as they are written.

These choices keep the writer cheap enough to run alongside a fast reader (measured on 1M
rows of int64, int32, decimal, float64, md5 text, bool and two timestamps: 35.0 MB in
0.35 s with pyarrow's defaults, 33.3 MB in 0.27 s with these):

- **Dictionary encoding only where values repeat.** pyarrow builds a dictionary for every
  column until its page passes 1 MiB; for keys, measurements, hashes and timestamps that
  is hashing work thrown away, and the dictionary pages make the file larger. The first
  batch of each file decides, per column (``dictionary_columns``). The values of a list
  of flat values are judged the same way, and also by whether their dictionary would fit
  its page for a whole row group (a list has several values a row): the wide table of
  ``bench/postgres_types.py`` (text[] and int4[] among 20 columns) encodes in 0.55 s CPU
  and 59.6 MB per 500K rows instead of 0.61 s and 62.1 MB.
- **Delta encodings for the other integers, times and strings** (``column_encodings``):
  ``DELTA_BINARY_PACKED`` for integer, date, time and timestamp columns and
  ``DELTA_LENGTH_BYTE_ARRAY`` for strings and binaries (flat, or the values of lists)
  leave zstd much less to do than plain pages: 1M rows in 0.13 s and 26.0 MB instead of 0.21 s and 33.3 MB. Both are
  standard Parquet encodings that Spark, DuckDB, Polars, delta-rs and pyarrow read.
- **Plain pages for JSON text.** JSON (a column declared ``json``) is long, structured
  text that zstd compresses as well from plain pages as from delta-length ones, and plain
  pages cost the writer less: 1M rows of ``json`` of about 80 bytes in 0.19 s instead of
  0.24 s, 19.0 MiB both. Other text keeps ``DELTA_LENGTH_BYTE_ARRAY``: for text without
  that structure (hashes, codes) plain pages are 8 to 19% larger.
- **Row groups of 256K rows.** A row group is encoded when it is complete, so its size is
  how much encoding is left after the last batch arrives, and how many batches are held.
  With dictionaries only where they pay, smaller groups barely change the size (33.3 MB
  at 256K rows, 33.4 MB at 50K, 33.3 MB at 1M) while 1M-row groups left 0.27 s of
  encoding after the last read at 1M rows.
- **Row groups encoded on lanes** (``lanes.Lanes``; ``FERRY_WRITE_LANES``, default 2 on
  two cores or more). One thread encoding and compressing was the slowest step of an
  ingest of long text (``json``, ``jsonb``, ``text[]``) while the reading thread waited on
  it; pyarrow's writer releases the GIL, so a second lane uses the second core. A lane
  writes its own files (its own hashing sink, its encodings from its own first batch,
  rolled at ``TARGET_FILE_BYTES``), and a complete row group goes to the first idle lane,
  lane 0 first: where lane 0 keeps up, or there is a single row group, it is one file as
  with one lane. The files are listed by the first row group each holds; rows of a
  version are a set, and with two lanes a file holds every other row group.
- **Memory stays bounded** as it was with one writer: each lane holds at most one row
  group and the writer gathers one more, and together they hold at most
  ``WRITE_BUDGET_BYTES`` (64 MiB, what one row group could hold before: row groups end at
  256K rows or 64 MiB of Arrow data), a lane alone being allowed one group past it by a
  batch, plus each open file's 1 MiB write buffer and pyarrow's pages of the group a lane
  encodes. Narrow rows thus run on two lanes (256K rows of ``json`` are about 23 MiB);
  wide rows (1 MiB values, 64 MiB a group) are gathered and encoded one group at a time.
  Measured (``bench/memory.py --rows 100000``, 2026-12-07 17:30, load 3.4 to 4.7):
  ``ingest-big`` (500 x 1 MiB ``jsonb``) peaked at 352 and 358 MiB with a budget of two
  groups against 336 and 337 MiB before, hence one group.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataferry.errors import StoreError
from dataferry.faults import crash_point
from dataferry.model.types import METADATA_KEY
from dataferry.store.disk import is_no_room, no_room
from dataferry.store.hashing import FileDigest, HashingWriter
from dataferry.store.lanes import Lanes
from dataferry.store.manifest import FileEntry

TARGET_FILE_BYTES = 256 << 20
ROW_GROUP_ROWS = 1 << 18
ROW_GROUP_BYTES = 64 << 20
"""A row group is written once this many rows or bytes are buffered (bounds memory)."""
WRITE_BUDGET_BYTES = ROW_GROUP_BYTES
"""What the lanes encode and the row group being gathered may hold together: what one
row group held before there were lanes. Narrow rows fit two or three row groups (256K
rows of ``json``: 23 MiB); wide rows, whose row groups end at ``ROW_GROUP_BYTES``, are
gathered and encoded one group at a time, as with one lane."""
DICTIONARY_MAX_DISTINCT = 0.9
SAMPLE_ROWS = 4096
"""A flat column gets a dictionary unless more than ``DICTIONARY_MAX_DISTINCT`` of the
first ``SAMPLE_ROWS`` values of a file differ: in that sample a column with 20,000 distinct
values shows about 90% distinct, and one with 5,000 about 68%. Counting costs ~0.3 ms per
column (16 ms at 65,536 rows)."""
DICTIONARY_PAGE_BYTES = 1 << 20
"""pyarrow's dictionary page limit: past it a column chunk falls back to plain pages."""
WRITE_BUFFER = 1 << 20
"""Bytes gathered before the hashing file sees them: few large writes, few GIL round trips."""


def dictionary_columns(schema: pa.Schema, sample: pa.RecordBatch) -> list[str]:
    """The Parquet column paths worth dictionary encoding, judged on ``sample``.

    A flat column, or the values of a list of flat values, qualifies when at most
    ``DICTIONARY_MAX_DISTINCT`` of its non-null sampled values are distinct (or it has
    none); the leaves of other nested columns (structs, maps, lists of those) always do,
    as pyarrow's default (their values are not sampled).
    """
    sample = sample.slice(0, SAMPLE_ROWS)
    chosen: list[str] = []
    nested: list[pa.Field] = []
    for index, field in enumerate(schema):
        leaf = _list_leaf(field)
        if leaf is not None:
            if _list_values_repeat(sample.column(index)):
                chosen.append(leaf)
        elif pa.types.is_nested(field.type):
            nested.append(field)
        elif _repeats(sample.column(index)):
            chosen.append(field.name)
    if nested:
        chosen += _leaf_paths(pa.schema(nested))
    return chosen


def column_encodings(schema: pa.Schema, sample: pa.RecordBatch) -> tuple[list[str], dict[str, str]]:
    """The columns to dictionary-encode and the delta encodings of the others (flat
    columns and the values of lists of flat values)."""
    dictionary = dictionary_columns(schema, sample)
    chosen = set(dictionary)
    encodings: dict[str, str] = {}
    for field in schema:
        path, kind = field.name, field.type
        leaf = _list_leaf(field)
        if leaf is not None:
            path, kind = leaf, field.type.value_type
        if path in chosen or (leaf is None and _is_json(field)):
            continue  # a dictionary, or plain pages for JSON text
        if (pa.types.is_integer(kind) or pa.types.is_date(kind) or pa.types.is_time(kind)
                or pa.types.is_timestamp(kind)):
            encodings[path] = "DELTA_BINARY_PACKED"
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) \
                or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            encodings[path] = "DELTA_LENGTH_BYTE_ARRAY"
    return dictionary, encodings


def _is_json(field: pa.Field) -> bool:
    """Whether ``field`` holds JSON text (the store tags the columns declared ``json``)."""
    return (field.metadata or {}).get(METADATA_KEY.encode()) == b"json"


def _list_leaf(field: pa.Field) -> str | None:
    """The Parquet path of the values of a list of flat values (pyarrow's writer names
    them ``<column>.list.element``), else None."""
    kind = field.type
    if (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and not pa.types.is_nested(
            kind.value_type) and not pa.types.is_dictionary(kind.value_type):
        return f"{field.name}.list.element"
    return None


def _repeats(column: pa.Array) -> bool:
    """Whether few enough of ``column``'s values differ for a dictionary to pay."""
    valid = len(column) - column.null_count
    if valid == 0:
        return True
    try:
        distinct = pc.count_distinct(column).as_py()
    except pa.ArrowNotImplementedError:  # a type compute cannot hash: pyarrow's default
        return True
    return bool(distinct <= valid * DICTIONARY_MAX_DISTINCT)


def _list_values_repeat(column: pa.Array) -> bool:
    """Whether a dictionary pays for the values of a sampled list column: they repeat
    (``_repeats``) and the dictionary of a row group would stay below its page limit,
    counting every sampled distinct value again for each sample's worth of rows. A list
    holds several values a row, so its dictionary can outgrow the page and pyarrow falls
    back to plain pages mid-chunk (1M rows of ``[n, n % 1000, n % 7]``: 3.9 MB and twice
    the time with the dictionary, 1.5 MB with delta encoding)."""
    values = column.flatten()
    if not _repeats(values):
        return False
    try:
        distinct = pc.unique(values.drop_null())
    except pa.ArrowNotImplementedError:  # a type compute cannot hash: pyarrow's default
        return True
    return bool(distinct.nbytes * ROW_GROUP_ROWS < DICTIONARY_PAGE_BYTES * max(len(column), 1))


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """The dotted Parquet paths of every leaf column, as pyarrow's writer names them."""
    buffer = pa.BufferOutputStream()
    pq.ParquetWriter(buffer, schema).close()
    parquet = pq.read_metadata(pa.BufferReader(buffer.getvalue())).schema
    return [parquet.column(i).path for i in range(len(parquet))]


class _File:
    """One Parquet file being written: the hashing sink, a write buffer and the writer."""

    def __init__(self, directory: Path, schema: pa.Schema, algorithm: str,
                 sample: pa.RecordBatch, first_group: int) -> None:
        self.sink = HashingWriter(directory / f"part-{uuid.uuid4()}.zstd.parquet", algorithm)
        self.stream = pa.output_stream(self.sink, buffer_size=WRITE_BUFFER)
        dictionary, encodings = column_encodings(schema, sample)
        self.writer = pq.ParquetWriter(self.stream, schema, compression="zstd",
                                       write_statistics=True,
                                       use_dictionary=dictionary, column_encoding=encodings)
        self.rows = 0
        self.first_group = first_group

    def close(self) -> FileDigest:
        """Finish the file, flush it to disk and return its digest."""
        self.writer.close()
        self.stream.flush()
        self.sink.close(fsync=True)
        return self.sink.digest()


@dataclass
class _RowGroup:
    """A complete row group, numbered in the order the reader gave its rows."""

    number: int
    batches: list[pa.RecordBatch]
    rows: int


@dataclass
class _Written:
    """A finished file and the number of the first row group it holds."""

    first_group: int
    entry: FileEntry
    digest: FileDigest


class _Lane:
    """One lane's files: the open one and those it finished, rolled at
    ``TARGET_FILE_BYTES``. Each file takes its column encodings from its first batch."""

    def __init__(self, directory: Path, schema: pa.Schema, algorithm: str) -> None:
        self.directory, self.schema, self.algorithm = directory, schema, algorithm
        self.current: _File | None = None
        self.finished: list[_Written] = []

    def write(self, group: _RowGroup) -> None:
        if self.current is None:
            self.current = _File(self.directory, self.schema, self.algorithm,
                                 group.batches[0], group.number)
        self.current.writer.write_table(pa.Table.from_batches(group.batches, self.schema),
                                        row_group_size=group.rows)
        self.current.rows += group.rows
        if group.number == 0:
            crash_point("write-file")
        if self.current.sink.tell() >= TARGET_FILE_BYTES:
            self.finish()

    def finish(self) -> None:
        """Close the open file, if any, and keep its entry."""
        current = self.current
        if current is None:
            return
        digest = current.close()  # if it fails, ``remove`` abandons the file
        self.current = None
        self.finished.append(_Written(current.first_group, FileEntry(
            current.sink.path.name, digest.size, digest.hash, current.rows,
            digest.chunk_size, digest.chunks_hash(self.algorithm)), digest))

    def remove(self) -> None:
        """Abandon the open file and delete the finished ones (they belong to no version)."""
        if self.current is not None:
            self.current.sink.abandon()
            self.current = None
        for written in self.finished:
            (self.directory / written.entry.path).unlink(missing_ok=True)
        self.finished.clear()


def write_lanes() -> int:
    """How many lanes encode row groups (``FERRY_WRITE_LANES``; default 2 where there are
    two cores or more, else 1)."""
    given = os.environ.get("FERRY_WRITE_LANES", "").strip()
    if not given:
        return 2 if (os.cpu_count() or 1) >= 2 else 1
    try:
        count = int(given)
    except ValueError:
        count = 0
    if count < 1:
        raise StoreError(f"FERRY_WRITE_LANES={given!r} is not a number of lanes: set it to a "
                         "whole number of 1 or more (1 writes one file at a time), or unset it",
                         public=True)
    return count


def write_files(
    directory: Path, reader: pa.RecordBatchReader, algorithm: str,
    on_rows: Callable[[int], None] | None,
) -> list[tuple[FileEntry, FileDigest]]:
    """Stream batches into zstd Parquet files, hashing every byte as it is written.

    The files are listed by the first row group each holds. On any error no file is left:
    the open ones are abandoned and the finished ones deleted.
    """
    schema = reader.schema
    lanes = [_Lane(directory, schema, algorithm) for _ in range(write_lanes())]
    pool: Lanes[_RowGroup] = Lanes(len(lanes), lambda lane, group: lanes[lane].write(group),
                                   lambda lane: lanes[lane].finish(), "ferry-write",
                                   WRITE_BUDGET_BYTES)
    pending: list[pa.RecordBatch] = []
    pending_rows = pending_bytes = 0
    groups = 0
    try:
        for batch in reader:
            pool.check()
            if batch.num_rows == 0:
                continue
            pool.make_room(pending_bytes + batch.nbytes)
            pending.append(batch)
            pending_rows += batch.num_rows
            pending_bytes += batch.nbytes
            if on_rows is not None:
                on_rows(batch.num_rows)
            if pending_rows >= ROW_GROUP_ROWS or pending_bytes >= ROW_GROUP_BYTES:
                pool.submit(_RowGroup(groups, pending, pending_rows), pending_bytes)
                groups += 1
                pending, pending_rows, pending_bytes = [], 0, 0
        if pending:
            pool.submit(_RowGroup(groups, pending, pending_rows), pending_bytes)
        del pending
        pool.close()
    except BaseException as error:
        first = pool.stop(error)
        # These files belong to no version yet: remove them now rather than leave them
        # for gc (after a full disk, they would keep it full).
        for lane in lanes:
            lane.remove()
        if is_no_room(first):
            raise no_room(directory) from None
        if first is error:
            raise
        raise first from None
    written = sorted((w for lane in lanes for w in lane.finished), key=lambda w: w.first_group)
    return [(w.entry, w.digest) for w in written]
