"""Deliver dataset versions as folders of Parquet files (``kind: parquet``, ``path:``).

``path:`` (relative to the model directory) is a folder; each table is ``<path>/<table>/``,
a folder of ``part-*.parquet`` files that DuckDB (``read_parquet('<path>/<table>/*.parquet')``),
pandas, polars or Spark read directly. Column types: ``types.py``. There are no
transactions, so every version is written as a new complete snapshot and switched in
atomically; ``layout.py`` describes the folder and the switch. What each mode writes:

- ``replace``: the version's rows.
- ``append``: the previous snapshot's files (hard links, no copy) plus the version's
  rows, tagged with ``_ferry_version``. When the columns changed, the previous rows are
  rewritten into the new schema (new columns empty, widened types cast).
- ``merge``: the previous snapshot without the changed keys, plus the upserted rows.
- ``history``: the previous snapshot with ``valid_to`` set on the current rows of changed
  keys, plus the upserted rows as current rows (``valid_from`` = the version's creation
  time, ``valid_to`` empty); ``valid_from``/``valid_to`` are timestamp[us, UTC].

merge and history rewrite the whole table, computed by DuckDB with bounded memory: meant
for the table sizes a Parquet consumer folder has, not for billions of rows per version.

``_ferry_loads.json`` in the folder records, per table, the dataset, version, mode, rows
delivered and load time (and the snapshot, its columns and row count). A version already
recorded there is not applied again; a change set built from another version than the
table has is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.connectors.base import (
    VALID_FROM,
    VALID_TO,
    VERSION_COLUMN,
    Delivery,
    LineageName,
    SinkConnector,
    check_versions,
)
from dataferry.connectors.duckdb.sink import file_form
from dataferry.connectors.naming import local_path
from dataferry.connectors.parquet.files import SnapshotWriter
from dataferry.connectors.parquet.layout import Folder
from dataferry.connectors.parquet.rewrite import history_sql, merged_sql, stream
from dataferry.connectors.parquet.types import sink_field
from dataferry.errors import SinkError, TransientError
from dataferry.model.spec import ParquetSink as ParquetSinkSpec
from dataferry.model.types import DataType, describe_change, format_type, parse_type

Columns = list[tuple[str, DataType, bool]]


class ParquetSink(SinkConnector):
    """Writes deliveries as table folders of Parquet files under one folder."""

    kind = "parquet"

    @classmethod
    def lineage_output(cls, spec: Any, table: str, model_root: Path) -> LineageName | None:
        return LineageName("file", f"{local_path(spec.path, model_root)}/{table}")

    def __init__(self, consumer: str, spec: Any, model_root: Path) -> None:
        super().__init__(consumer, spec, model_root)
        assert isinstance(spec, ParquetSinkSpec)
        self.folder = Folder((model_root / spec.path).resolve())

    def applied_version(self, dataset: str, table: str) -> int | None:
        """The version of ``dataset`` in ``table`` per ``_ferry_loads.json`` (None: none)."""
        manifest = self.folder.manifest()
        entry = manifest.get(table)
        if manifest and self.folder.versions.is_dir():
            try:
                with self.folder.lock(wait=0):
                    self.folder.heal(self.folder.manifest())
            except TransientError:
                pass  # a delivery is under way: it heals the links itself
        if not entry or entry.get("dataset") != dataset:
            return None
        return int(entry["version"])

    def deliver(self, delivery: Delivery) -> int:
        """Write the version's snapshot, commit the manifest, switch the table's link."""
        self.check(delivery)
        folder, table = self.folder, delivery.table
        folder.check_table(table)
        where = f"sink {self.consumer}: table {table!r}"
        with folder.lock():
            manifest = folder.manifest()
            folder.heal(manifest)
            folder.collect(manifest)
            entry = manifest.get(table)
            applied = int(entry["version"]) if entry and entry.get("dataset") == delivery.dataset \
                else None
            if not check_versions(applied, delivery, where):
                return 0
            old = entry if applied is not None else None
            if old and delivery.mode == "history" and old.get("mode") != "history":
                raise SinkError(f"{where} holds {old.get('mode')} deliveries, not history; "
                                "remove the table folder to reload it as history")
            columns = _evolve(old, delivery, where)
            snapshot = folder.new_snapshot(table, delivery.version)
            counted = file_form(delivery, parquet=True)
            writer = SnapshotWriter(snapshot, _schema(columns, delivery.mode), delivery.version)
            try:
                self._write(delivery, old, columns, counted.reader, writer)
                writer.close()
            except (pa.ArrowException, OSError, duckdb.Error) as error:
                writer.abort()
                raise SinkError(f"{where}: {str(error).splitlines()[0]}",
                                public=f"{where}: writing failed ({type(error).__name__})"
                                ) from None
            except BaseException:
                writer.abort()
                raise
            manifest[table] = {
                "dataset": delivery.dataset, "version": delivery.version, "mode": delivery.mode,
                "rows": counted.rows, "loaded_at": datetime.now(UTC).isoformat(),
                "snapshot": folder.relative(snapshot),
                "previous": old.get("snapshot") if old else None,
                "columns": [[n, format_type(t), nullable] for n, t, nullable in columns],
                "table_rows": writer.rows,
            }
            folder.commit(manifest)
            folder.publish(table, folder.relative(snapshot))
            folder.collect(manifest)
            return counted.rows

    def _write(self, delivery: Delivery, old: dict[str, Any] | None, columns: Columns,
               rows: pa.RecordBatchReader, writer: SnapshotWriter) -> None:
        mode = delivery.mode
        old_files = self.folder.files(old["snapshot"]) if old else []
        if delivery.reload and mode in ("merge", "append"):
            old_files = []  # a reload starts these over; a history keeps its past
        if mode == "replace":
            writer.write(rows)
        elif mode == "append":
            if old and old_files and old.get("mode") == "append" \
                    and _stored_columns(old) == columns \
                    and pq.read_schema(old_files[0]).remove_metadata() == \
                    writer.schema.remove_metadata():  # (files before uuid/json extensions)
                writer.link(old_files)
            elif old_files:
                writer.write(_old_batches(old_files))
            writer.write(_tag_version(rows, delivery.version))
        else:
            with self.folder.scratch() as scratch:
                changes = scratch / "changes.parquet"
                with pq.ParquetWriter(changes, rows.schema) as staged:
                    for batch in rows:  # a row group each: the writer would buffer 1M rows
                        staged.write_table(pa.Table.from_batches([batch]))
                present = set(pq.read_schema(old_files[0]).names) if old_files else set()
                names = [n for n, _, _ in columns]
                if mode == "merge":
                    sql = merged_sql(old_files, present, changes, names, delivery.primary_key)
                else:
                    sql = history_sql(old_files, present, changes, names, delivery.primary_key,
                                      close_all=delivery.reload)
                at = delivery.created_at
                if at.tzinfo is None:
                    at = at.replace(tzinfo=UTC)
                writer.write(stream(sql, scratch, at.astimezone(UTC),
                                    files=[*old_files, changes]))


def _stored_columns(entry: dict[str, Any]) -> Columns:
    return [(str(n), parse_type(str(t)), bool(nullable)) for n, t, nullable in entry["columns"]]


def _evolve(old: dict[str, Any] | None, delivery: Delivery, where: str) -> Columns:
    """The snapshot's declared columns: the delivered ones, plus earlier ones kept (all but
    replace), with types widened; a change that is not a widening is a ``SinkError``."""
    delivered = list(delivery.columns)
    if old is None or delivery.mode == "replace":
        return delivered
    stored = _stored_columns(old)
    by_name = {n: (t, nullable) for n, t, nullable in delivered}
    out: Columns = []
    for name, have, _ in stored:
        if name not in by_name:
            out.append((name, have, True))
            continue
        want, nullable = by_name.pop(name)
        problem = describe_change(have, want)
        if problem:
            raise SinkError(f"{where}: column {name!r} is {have} in the files, which cannot "
                            f"become {want} ({problem}); deliver with mode replace to rewrite")
        out.append((name, want, nullable))
    return out + [(n, t, True) for n, (t, _) in by_name.items()]


def _schema(columns: Columns, mode: str) -> pa.Schema:
    fields = [sink_field(n, t, nullable) for n, t, nullable in columns]
    if mode == "append":
        fields.append(pa.field(VERSION_COLUMN, pa.int64()))
    if mode == "history":
        fields += [pa.field(VALID_FROM, pa.timestamp("us", tz="UTC"), False),
                   pa.field(VALID_TO, pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields)


def _old_batches(files: list[Path]) -> Iterator[pa.RecordBatch]:
    """The previous snapshot's rows, batch by batch (``SnapshotWriter`` fits them)."""
    for path in files:
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536)


def _tag_version(rows: pa.RecordBatchReader, version: int) -> Iterator[pa.RecordBatch]:
    for batch in rows:
        if VERSION_COLUMN in batch.schema.names:
            column = batch.column(batch.schema.names.index(VERSION_COLUMN))
            tagged = column.fill_null(version) if column.null_count else column
            batch = batch.drop_columns([VERSION_COLUMN])
            yield batch.append_column(VERSION_COLUMN, tagged.cast(pa.int64()))
        else:
            yield batch.append_column(VERSION_COLUMN, pa.array([version] * batch.num_rows,
                                                                pa.int64()))

