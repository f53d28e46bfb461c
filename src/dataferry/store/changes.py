"""The rows a sink needs to go from the version it has to a newer one.

All computed by DuckDB over the versions' Parquet files, streamed as record batches of
about ``batching.BATCH_BYTES`` (rows per batch from the files' row widths), so memory stays
bounded whatever the table size and row width:

- ``version_rows``: every row of a version (for ``replace``);
- ``change_set``: per primary key, ``upsert`` for rows added or changed since the old
  version and ``delete`` for rows removed (for ``merge`` and ``history``);
- ``added_rows``: rows added since the old version (for ``append``): by key when there is
  one, else the rows of the files added by the newer versions.

Each takes the columns to deliver, an optional SQL ``where`` (DuckDB dialect, applied to
the rows as stored) and returns batches in the store's types; ``storage.decode_batch``
turns them into the declared types.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import pyarrow as pa
from pyroaring import BitMap

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN
from dataferry.model.types import DataType, Primitive, String, parse_type
from dataferry.store.batching import (
    MAX_BATCH_ROWS,
    WIDE_ROW_BYTES,
    batch_rows,
    row_width,
    rows_for,
)
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.duck import cast_batches, ident, parquet_list, spilling
from dataferry.store.manifest import FileEntry
from dataferry.store.scan import FileScan, deleted_rows, file_scans, relation


@contextmanager
def _duckdb(rows: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A spilling DuckDB for batches of ``rows``; one thread when rows are wide (fewer than
    ``MAX_BATCH_ROWS`` a batch): each thread reads a whole row group of up to 64 MiB, and
    two of them of incompressible 1 MiB values ran out of the memory limit."""
    with spilling("ferry-changes-") as db:
        db.execute("set preserve_insertion_order = false")
        if rows < MAX_BATCH_ROWS:
            db.execute("set threads = 1")
        yield db


def version_view(dataset: DatasetStore, version: Version | None, name: str,
            db: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> None:
    """Create view ``name`` over a version's live rows (empty, with ``columns``, if None);
    partition columns of a partitioned dataset are read from the paths."""
    scans = dataset.scans(version) if version is not None else []
    hive = version is not None and bool(dataset.partition_columns(version))
    _view(db, name, relation(db, scans, hive=hive), columns)


def _view(db: duckdb.DuckDBPyConnection, name: str, source: str | None,
          columns: Sequence[str]) -> None:
    """View ``name`` over ``source`` with at least ``columns``: a column the files do not
    hold (added to the dataset by a later version than wrote them) reads as null."""
    if source is None:
        empty = ", ".join(f"null as {ident(c)}" for c in columns)
        db.execute(f"create or replace view {name} as select {empty} where false")
        return
    present = set(db.sql(f"select * from {source} limit 0").columns)
    added = "".join(f", null as {ident(c)}" for c in columns if c not in present)
    db.execute(f"create or replace view {name} as select *{added} from {source}")


def _stream(db: duckdb.DuckDBPyConnection, sql: str, rows: int) -> Iterator[pa.RecordBatch]:
    reader = db.sql(sql).to_arrow_reader(rows)
    yield from reader


def _row_width(dataset: DatasetStore, versions: Sequence[Version | None],
               columns: Sequence[str]) -> float:
    """The widest row of ``columns`` in ``versions``' files, about (``batching``)."""
    files = {f.path: f for v in versions if v is not None
             for f in dataset.active_files(v.number)}
    return row_width(dataset.path, list(files.values()), columns)


def _reader(sql_builder: str, dataset: DatasetStore, new: Version, old: Version | None,
            columns: Sequence[str], schema: pa.Schema, *,
            touched: bool = False) -> pa.RecordBatchReader:
    """Run ``sql_builder`` (over views ``a`` = old, ``b`` = new) lazily, in its own DuckDB.

    ``touched``: ``a`` and ``b`` hold only the rows of files that differ between the two
    versions (see ``touched_views``), enough for any comparison by primary key.
    """

    def batches() -> Iterator[pa.RecordBatch]:
        rows = rows_for(_row_width(dataset, [old, new], columns))
        with _duckdb(rows) as db:
            all_columns = [c["name"] for c in new.manifest.schema["columns"]]
            if touched:
                touched_views(dataset, old, new, db, all_columns)
            else:
                version_view(dataset, old, "a", db, all_columns)
                version_view(dataset, new, "b", db, all_columns)
            yield from cast_batches(_stream(db, sql_builder, rows), schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def touched_views(dataset: DatasetStore, old: Version | None, new: Version,
                  db: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> None:
    """Views ``a`` (rows of ``old`` that ``new`` does not hold in the same place) and ``b``
    (rows of ``new`` that ``old`` did not hold in the same place).

    A row whose key is in neither view is the same in both versions, so comparing ``a``
    with ``b`` by primary key gives every change. After an incremental version this reads
    the new file and the rows its deletion vectors removed, not the whole table.
    """
    before = {f.path: f for f in dataset.active_files(old.number, fetch=False)} if old else {}
    after = {f.path: f for f in dataset.active_files(new.number, fetch=False)}
    if dataset.remote is not None:  # in a bucket: only the files that differ are read
        dataset.remote.ensure([entry for side, other in ((before, after), (after, before))
                               for path, entry in side.items() if other.get(path) != entry])
    gone: list[FileEntry] = []
    came: list[FileEntry] = []
    newly_deleted: list[FileScan] = []
    for path, entry in before.items():
        now = after.get(path)
        if now is None or now.hash != entry.hash:
            gone.append(entry)
        elif now.deletion_vector != entry.deletion_vector:
            was, is_ = (deleted_rows(dataset.path, e) or BitMap() for e in (entry, now))
            if was.issubset(is_):  # vectors only grow: the difference is what was deleted
                newly_deleted.append(FileScan(str(dataset.path / path), only=is_ - was))
            else:
                gone.append(entry)
                came.append(now)
    came += [entry for path, entry in after.items()
             if path not in before or before[path].hash != entry.hash]
    hive = bool(dataset.partition_columns(new))
    _view(db, "a", relation(db, file_scans(dataset.path, gone) + newly_deleted, hive=hive),
          columns)
    _view(db, "b", relation(db, file_scans(dataset.path, came), hive=hive), columns)



def _select(columns: Sequence[str], alias: str) -> str:
    return ", ".join(f"{alias}.{ident(c)}" for c in columns)


def _where(where: str | None) -> str:
    """The need's filter (written against the dataset's columns), or no filter. It is
    re-rendered from its parse tree: one condition on the row, nothing after it."""
    from dataferry.model.lint import safe_where

    return f"({safe_where(where)})" if where else "true"


def version_rows(dataset: DatasetStore, version: Version, columns: Sequence[str],
                 where: str | None, schema: pa.Schema) -> pa.RecordBatchReader:
    """Every row of ``version`` (the delivered columns, filtered by ``where``)."""
    cols = ", ".join(ident(c) for c in columns)
    sql = f"select {cols} from b where {_where(where)}"
    return _reader(sql, dataset, version, None, columns, schema)


def change_set(dataset: DatasetStore, old: Version | None, new: Version, columns: Sequence[str],
               key: Sequence[str], where: str | None, schema: pa.Schema) -> pa.RecordBatchReader:
    """Rows to upsert or delete (``_ferry_op``) to turn ``old`` into ``new``, by ``key``.

    With a ``where``, a row that leaves the filtered set is a delete and one that enters
    it an upsert, so the target always holds exactly the filtered rows. ``a`` and ``b``
    are not materialized (DuckDB would, as each is read twice): the delete branch reads
    only their keys, and a materialized ``b`` of wide rows held every row in memory.
    """
    cols = ", ".join(ident(c) for c in columns)
    on = " and ".join(f"a.{ident(k)} is not distinct from b.{ident(k)}" for k in key)
    filtered_a = f"(select * from a where {_where(where)})"
    filtered_b = f"(select * from b where {_where(where)})"
    null_row = ", ".join(f"null as {ident(c)}" for c in columns if c not in key)
    keys_a = ", ".join(f"a.{ident(k)}" for k in key)
    sql = f"""
        with a as not materialized {filtered_a}, b as not materialized {filtered_b}
        select {cols}, 'upsert' as {OP_COLUMN} from ({_changed_rows(dataset, old, new,
                                                                    columns, key)})
        union all
        select {", ".join(ident(c) if c in key else f"null as {ident(c)}" for c in columns)},
               'delete' as {OP_COLUMN} from (
            select {keys_a}{", " + null_row if null_row else ""} from a
            left join b on {on} where b.{ident(key[0])} is null and a.{ident(key[0])} is not null
        )"""
    return _reader(sql, dataset, new, old, columns, schema, touched=True)


def _changed_rows(dataset: DatasetStore, old: Version | None, new: Version,
                  columns: Sequence[str], key: Sequence[str]) -> str:
    """SQL of the rows of ``b`` that ``a`` lacks or holds otherwise, by ``key``.

    Wide rows are compared by digest (``compared``), and only the keys of the rows that
    differ are joined back to ``b``: the join then holds digests, not the values.
    """
    on = " and ".join(f"a.{ident(k)} is not distinct from b.{ident(k)}" for k in key)
    differs = " or ".join(f"a.{ident(c)} is distinct from b.{ident(c)}"
                          for c in columns if c not in key) or "false"
    select = compared(dataset, [old, new], columns, key)
    if select is None:
        return f"select b.* from b left join a on {on} where a.{ident(key[0])} is null or {differs}"
    keys_b = ", ".join(f"b.{ident(k)}" for k in key)
    changed = (f"select {keys_b} from (select {select} from b) b "
               f"left join (select {select} from a) a on {on} "
               f"where a.{ident(key[0])} is null or {differs}")
    back = " and ".join(f"k.{ident(k)} is not distinct from b.{ident(k)}" for k in key)
    return f"select b.* from b semi join ({changed}) k on {back}"


def compared(dataset: DatasetStore, versions: Sequence[Version | None],
             columns: Sequence[str], key: Sequence[str]) -> str | None:
    """For rows of ``versions`` past ``batching.WIDE_ROW_BYTES``, the select list of
    ``key`` and ``columns`` to compare rows by: text and binary columns as their MD5
    (DuckDB holds long strings in a join in memory it cannot spill: 800 rows of 1 MiB ran
    out of 256 MB). None for narrower rows, compared as they are."""
    names = list(dict.fromkeys([*key, *columns]))
    if _row_width(dataset, versions, names) < WIDE_ROW_BYTES:
        return None
    types = {c["name"]: parse_type(c["type"]) for v in versions if v is not None
             for c in v.manifest.schema["columns"]}
    return ", ".join(f"md5({ident(c)}) as {ident(c)}" if c not in key and _textual(types[c])
                     else ident(c) for c in names)


def _textual(declared: DataType) -> bool:
    """Whether values of ``declared`` are text or bytes as stored (MD5 takes them)."""
    return isinstance(declared, String) or (
        isinstance(declared, Primitive) and declared.name in ("string", "json", "binary"))


def added_rows(dataset: DatasetStore, old: Version | None, new: Version, columns: Sequence[str],
               key: Sequence[str], where: str | None, schema: pa.Schema) -> pa.RecordBatchReader:
    """Rows of ``new`` that ``old`` did not have, tagged with ``_ferry_version`` = new."""
    cols = ", ".join(ident(c) for c in columns)
    version = int(new.number)
    if key:
        sql = (f"with a as not materialized (select * from a where {_where(where)}), "
               f"b as not materialized (select * from b where {_where(where)}) "
               f"select {_select(columns, 'c')}, {version}::bigint as {VERSION_COLUMN} "
               f"from ({_changed_rows(dataset, old, new, columns, key)}) c")
        return _reader(sql, dataset, new, old, columns, schema, touched=True)
    # No key: the rows of the files the newer versions added (exact for append-only data).
    old_files = {f.path for f in dataset.active_files(old.number, fetch=False)} if old else set()
    added = [f for f in dataset.active_files(new.number, fetch=False) if f.path not in old_files]
    if dataset.remote is not None:
        dataset.remote.ensure(added)
    paths = [str(dataset.path / f.path) for f in added]

    def batches() -> Iterator[pa.RecordBatch]:
        if not paths:
            return
        rows = batch_rows(dataset.path, added, columns)
        with _duckdb(rows) as db:
            hive = ", hive_partitioning = true" if dataset.partition_columns(new) else ""
            sql = (f"select {cols}, {version}::bigint as {VERSION_COLUMN} from read_parquet("
                   f"{parquet_list(paths)}, union_by_name = true{hive}) where {_where(where)}")
            yield from cast_batches(_stream(db, sql, rows), schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
