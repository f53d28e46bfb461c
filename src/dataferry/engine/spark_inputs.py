"""A transformer's inputs as Spark DataFrames: a stored version's live rows, exactly.

Spark reads the version's own Parquet files, listed by the store (its signed manifests,
not a directory listing), so it sees exactly the version the transform pinned and
verified. Delta's Spark connector (``delta-spark``) is not needed: its jars come from
Maven, which not every cluster reaches. Deleted rows are dropped the way Delta readers
do: each file with a deletion vector is read with Spark's ``_metadata.row_index`` (the
row's position in its file, Spark 3.5 and later) and anti-joined with the positions its
vector deletes, which Spark reads from a small Parquet file of (file, position) pairs.

Inputs are staged instead (streamed from the store through Arrow into a Parquet file in
the run's work directory, bounded memory) when Spark cannot read the files as they are:
an input with masked columns (the keyed hash is computed here, the key never goes to
Spark's executors), a partitioned one (its values live in the paths), a clone holding
only some columns, or file names the anti-join could confuse.

Either way Spark sees the store's form of the columns, which is what any Delta reader
sees: unsigned integers in the next wider signed type, ``time`` and ``uuid`` as text,
``float16`` as ``float``, ``timestamp`` as ``timestamp_ntz`` (docs/store.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dataferry.store import deletion_vectors
from dataferry.store.dataset import DatasetStore, Version, declared_types
from dataferry.store.manifest import FileEntry
from dataferry.store.scan import deleted_rows
from dataferry.store.storage import decode_batch

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
FILE, ROW = "_ferry_file", "_ferry_row"
Mask = Callable[[pa.Array], pa.Array]


def input_frame(session: SparkSession, dataset: DatasetStore, version: Version, *,
                masked: set[str], mask: Mask | None, work: Path) -> DataFrame:
    """The live rows of ``version`` of ``dataset`` as a DataFrame (see the module)."""
    files = dataset.active_files(version.number)
    if masked or not _readable_as_is(dataset, version, files):
        return _staged(session, dataset, version, masked, mask, work)
    return _direct(session, dataset, version, files, work)


def _readable_as_is(dataset: DatasetStore, version: Version, files: list[FileEntry]) -> bool:
    names = [Path(f.path).name for f in files]
    return (bool(files) and not any(f.partition_values for f in files)
            and dataset.held_columns(version, None) is None
            and len(set(names)) == len(names)
            and all(_PLAIN_NAME.fullmatch(name) for name in names))


def _direct(session: SparkSession, dataset: DatasetStore, version: Version,
            files: list[FileEntry], work: Path) -> DataFrame:
    from pyspark.sql import functions as F

    columns = dataset.arrow_schema(version).names
    frame = (session.read.option("mergeSchema", "true")
             .parquet(*[str(dataset.path / f.path) for f in files]))
    vectored = [f for f in files if f.deletion_vector]
    if vectored:
        deleted = session.read.parquet(str(_positions_file(dataset, vectored, work)))
        located = (frame
                   # the file's name: substring_index costs a third of regexp_extract's
                   # time per row (1M rows, local[2]); names are unique (_readable_as_is)
                   .withColumn(FILE, F.substring_index(F.col("_metadata.file_path"), "/", -1))
                   .withColumn(ROW, F.col("_metadata.row_index")))
        frame = located.join(F.broadcast(deleted), on=[FILE, ROW], how="left_anti")
    present = set(frame.columns)
    # A column the model added after every file was written: null (as the store reads it).
    return frame.select(*[F.col(f"`{c}`") if c in present else F.lit(None).alias(c)
                          for c in columns])


def _positions_file(dataset: DatasetStore, files: list[FileEntry], work: Path) -> Path:
    """A Parquet file of (file name, deleted row position) for files with vectors."""
    import pyarrow.parquet as pq

    names: list[pa.Array] = []
    positions: list[pa.Array] = []
    for entry in files:
        bitmap = deleted_rows(dataset.path, entry)
        if bitmap is None:
            continue
        array = pa.array(deletion_vectors.positions_array(bitmap), pa.int64())
        positions.append(array)
        names.append(pa.repeat(pa.scalar(Path(entry.path).name, pa.string()), len(array)))
    table = pa.table({FILE: pa.concat_arrays(names) if names else pa.array([], pa.string()),
                      ROW: pa.concat_arrays(positions) if positions else pa.array([], pa.int64())})
    path = work / f"deleted-{_safe(dataset.ref)}-{len(list(work.iterdir()))}.parquet"
    pq.write_table(table, path)
    return path


def _staged(session: SparkSession, dataset: DatasetStore, version: Version, masked: set[str],
            mask: Mask | None, work: Path) -> DataFrame:
    """The version streamed through Arrow into one Parquet file Spark reads."""
    import pyarrow.parquet as pq

    reader = dataset.reader(version)
    declared = declared_types(version.manifest.schema)
    schema = pa.schema([pa.field(f.name, pa.string(), f.nullable) if f.name in masked else f
                        for f in reader.schema])
    path = work / f"input-{_safe(dataset.ref)}-{len(list(work.iterdir()))}.parquet"
    with pq.ParquetWriter(path, schema) as writer:
        for batch in _masked_batches(reader, declared, masked, mask, schema):
            writer.write_batch(batch)
    return session.read.parquet(str(path))


def _masked_batches(reader: pa.RecordBatchReader, declared: dict[str, str], masked: set[str],
                    mask: Mask | None, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Stored batches with the ``masked`` columns replaced by their keyed hash, computed
    over the declared values (as the DuckDB transform and deliveries hash them)."""
    for batch in reader:
        if not masked:
            yield batch
            continue
        assert mask is not None
        decoded = decode_batch(batch, declared)
        arrays = [mask(decoded.column(name)) if name in masked else batch.column(name)
                  for name in batch.schema.names]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _safe(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", ref)
