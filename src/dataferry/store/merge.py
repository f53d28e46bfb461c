"""Merge (upsert by primary key): new rows in one new file, replaced rows marked deleted.

deltalake's merge is general and, on two cores, slow for the common ingest case (a
small change set into a large table: 16 s for 10,000 changes into 1M rows). This one:

1. spills the incoming rows to a staging Parquet file (bounded memory), keeping the last
   row per key;
2. with DuckDB, finds the rows that are new or differ from the stored ones and where the
   stored rows they replace are (file and row position). With a cursor column (the
   incremental captures) a stored row differs exactly when its cursor value does, so only
   the key and cursor columns of the stored files are read; otherwise whole rows are
   compared;
3. writes the new and changed rows as one new file and gives each touched file a
   deletion vector naming its replaced rows (merge-on-read, see ``deletion_vectors``).
   A file whose deleted rows would pass half of it is rewritten without them instead
   (copy-on-write), so readers never skip more rows than they read; with deletion
   vectors off every touched file is rewritten.

A merge may also delete keys (``deleted``: the keys a change log says were deleted,
e.g. ``capture: cdc``): the stored rows with those keys (and no incoming row) join the
deletion vectors, as replaced rows do.

A *complete* merge (``complete=True``: a snapshot of a keyed dataset, or a ``--full``
re-read) takes the incoming rows as the whole new table: stored rows whose key is not
among them are deleted too (their positions join the deletion vectors), so the version
is the keyed difference from the head. Its incoming keys must be unique, as a replace's.
The incoming rows go into a DuckDB table rather than a staging file (they are read twice:
the key check and one full outer join with the stored rows). One that would replace or
delete more than half of the stored rows writes the incoming rows anew instead and
removes every stored file: a replace, with the difference's counts, costs less then.

Nothing is committed here. Rows identical to the stored ones change nothing, so an
incremental re-read of the lag window, or an unchanged snapshot, publishes no new version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyroaring import BitMap

from dataferry.store import deletion_vectors
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.duck import cast_batches, ident, spilling, text
from dataferry.store.hashing import FileDigest
from dataferry.store.manifest import FileEntry
from dataferry.store.parquet_files import write_files
from dataferry.store.primary_key import unique_in, violation
from dataferry.store.scan import FileScan, file_scans, relation

REWRITE_FRACTION = 0.5
"""A file is rewritten once more than this share of its rows would be deleted."""


@dataclass
class MergeResult:
    written: list[tuple[FileEntry, FileDigest]]
    """New data files (the changed rows, and rewritten files)."""
    removed: list[FileEntry]
    """Files no longer part of the version (rewritten ones)."""
    revised: list[FileEntry]
    """Files that stay, with a new deletion vector (the entries as they are now)."""
    replaced: list[FileEntry]
    """The previous entries of ``revised`` files (with their old vectors, if any)."""
    inserted: int
    updated: int
    deleted: int = 0
    """Stored rows whose key the incoming rows lack (complete merges only)."""


def merge_files(dataset: DatasetStore, head: Version, reader: pa.RecordBatchReader,
                key: list[str], algorithm: str,
                on_rows: Callable[[int], None] | None = None, *,
                cursor: str | None = None, merge_on_read: bool = True,
                complete: bool = False, unique: bool = False,
                deleted: pa.RecordBatchReader | None = None,
                known_changes: bool = False) -> MergeResult:
    """Write the files of ``head`` merged with ``reader``'s rows; nothing is committed.

    ``deleted``: keys (the key columns only, in the stored form) whose stored rows are
    deleted, unless ``reader`` has a row with that key (not with ``complete``).
    ``known_changes``: every incoming row is a change (a change log says so), so stored
    rows are matched by key alone and only the key columns of the stored files are read.

    ``complete``: ``reader`` holds the whole new table, so stored keys it lacks are deleted.
    ``unique``: the caller guarantees a complete ``reader`` has one row per key (a source
    with a unique constraint on it), so it is not checked again.
    """
    columns = reader.schema.names
    entries = dataset.active_files(head.number)
    scans = file_scans(dataset.path, entries)
    by_path = {scan.path: (entry, scan) for entry, scan in zip(entries, scans, strict=True)}
    with tempfile.TemporaryDirectory(prefix="ferry-merge-") as work:
        staging = Path(work) / "staging.parquet"
        staged = 0 if complete else _stage(reader, staging, on_rows)
        if not complete and not staged and deleted is None:
            return MergeResult([], [], [], [], 0, 0)
        # Less than the default: the incoming rows, their source and the written files
        # take their share beside it (10% of 8M rows changed: 602 MiB at 256 MB).
        with spilling("ferry-merge-", "192MB") as db:
            cols = ", ".join(ident(c) for c in columns)
            current = relation(db, scans, positions=True)
            if complete:
                _load(db, reader, on_rows)
                if not unique:
                    unique_in(db, dataset.ref, key, "s")  # a whole table: one row per key
                _difference(db, current, columns, key)
            else:
                _latest_per_key(db, staging, columns, key, cursor)
                incoming_duplicates(db, dataset.ref, key, columns,
                                    cursor if _orders_by(cursor, columns, key) else None)
                _changed(db, current, columns, key, cursor, known_changes)
                if deleted is not None:
                    _deleted(db, current, deleted, key)
            inserted, updated = db.execute(
                "select count(*) filter (where _file is null), "
                "count(*) filter (where _file is not null) from changed").fetchall()[0]
            dropped = int(db.execute("select count(*) from replaced").fetchall()[0][0]) - updated
            if not inserted and not updated and not dropped:
                return MergeResult([], [], [], [], 0, 0)
            schema = reader.schema
            if complete and updated + dropped > head.manifest.rows * REWRITE_FRACTION:
                # Most stored rows go: writing the snapshot anew costs less than marking them.
                out = db.sql(f"select {cols} from s").to_arrow_reader(65_536)
                anew = write_files(dataset.path, pa.RecordBatchReader.from_batches(
                    schema, cast_batches(out, schema)), algorithm, None)
                return MergeResult(anew, list(entries), [], [], int(inserted), int(updated),
                                   dropped)
            deleted = _replaced_positions(db)
            revise, rewrite = _plan(deleted, by_path, merge_on_read)
            written: list[tuple[FileEntry, FileDigest]] = []
            if inserted or updated:
                out = db.sql(f"select {cols} from changed").to_arrow_reader(65_536)
                written += write_files(dataset.path, pa.RecordBatchReader.from_batches(
                    schema, cast_batches(out, schema)), algorithm, None)
            if rewrite:
                written += rewrite_files(db, dataset.path, rewrite, schema, algorithm)
    vectors = deletion_vectors.write_file(dataset.path, revise, algorithm) if revise else {}
    revised = [replace(by_path[path][0], deletion_vector=vectors[path].to_json())
               for path in revise]
    return MergeResult(
        written, [by_path[scan.path][0] for scan in rewrite], revised,
        [by_path[path][0] for path in revise], int(inserted), int(updated), dropped)


def rewrite_files(db: duckdb.DuckDBPyConnection, directory: Path, scans: Sequence[FileScan],
                  schema: pa.Schema, algorithm: str) -> list[tuple[FileEntry, FileDigest]]:
    """Write the live rows of ``scans`` (their deleted rows left out) as new files of
    ``schema`` (copy-on-write; ``compact`` uses it too). A column the files lack (added to
    the dataset after they were written) is null."""
    kept = relation(db, scans)
    if kept is None:
        return []
    present = set(db.sql(f"select * from {kept} limit 0").columns)
    cols = ", ".join(ident(c) if c in present else f"null as {ident(c)}" for c in schema.names)
    out = db.sql(f"select {cols} from {kept}").to_arrow_reader(65_536)
    return write_files(directory, pa.RecordBatchReader.from_batches(
        schema, cast_batches(out, schema)), algorithm, None)


def incoming_duplicates(db: duckdb.DuckDBPyConnection, dataset: str, key: Sequence[str],
                        columns: Sequence[str], cursor: str | None) -> None:
    """Refuse two different rows with one key in the incoming rows (``staged``).

    ``s`` holds one row per key: the latest by ``cursor`` (else the last read). A row
    that shares its key with it is the same row read again (identical, or older by the
    cursor: the lag re-reads rows) and is dropped; one that differs from it with the same
    cursor value (or without a cursor) is a second row with that key at the source, and
    which to keep cannot be known: ``KeyViolation``.
    """
    staged, kept = (int(db.execute(f"select count(*) from {t}").fetchall()[0][0])
                    for t in ("staged", "s"))
    if staged == kept:
        return
    on = " and ".join(f"t.{ident(k)} is not distinct from s.{ident(k)}" for k in key)
    same = f"t.{ident(cursor)} is not distinct from s.{ident(cursor)}" if cursor else "true"
    differs = " or ".join(f"t.{ident(c)} is distinct from s.{ident(c)}"
                          for c in columns if c not in key) or "false"
    keys = ", ".join(f"s.{ident(k)}" for k in key)
    example = "struct_pack(" + ", ".join(f"{ident(k)} := s.{ident(k)}::varchar"
                                         for k in key) + ")"
    groups, rows, found = db.execute(f"""select count(distinct ({keys})), count(*) + count(
            distinct ({keys})), min({example}) from staged t join s on {on}
            where {same} and ({differs})""").fetchall()[0]
    if groups:
        tie = f" and the same {cursor}" if cursor else ""
        raise violation(dataset, key, int(groups), int(rows), dict(found or {}),
                        f"the data holds different rows with the same key{tie}; fix the "
                        "source data or the primary key")


def _orders_by(cursor: str | None, columns: Sequence[str], key: Sequence[str]) -> bool:
    """Whether the cursor column tells which of two rows with one key is the latest."""
    return cursor is not None and cursor in columns and cursor not in key


def _latest_per_key(db: duckdb.DuckDBPyConnection, staging: Path, columns: Sequence[str],
                    key: Sequence[str], cursor: str | None) -> None:
    """Tables ``staged`` (the staging file's rows, numbered as read) and ``s`` (one row per
    key: the latest by ``cursor``, else the last read)."""
    keys = ", ".join(ident(k) for k in key)
    cols = ", ".join(ident(c) for c in columns)
    latest = (f"{ident(cursor)} desc nulls last, "
              if cursor is not None and _orders_by(cursor, columns, key) else "")
    db.execute(f"""create temp table staged as select *, row_number() over () as _rn
        from read_parquet({text(str(staging))})""")
    db.execute(f"""create temp table s as select {cols} from staged
        qualify row_number() over (partition by {keys} order by {latest}_rn desc) = 1""")


def _changed(db: duckdb.DuckDBPyConnection, current: str | None, columns: Sequence[str],
             key: Sequence[str], cursor: str | None, known_changes: bool = False) -> None:
    """Tables ``changed`` (rows of ``s`` new or different from the stored ones, with where
    the stored row is: ``_file``, ``_pos``) and ``replaced`` (those stored positions)."""
    compared = list(key) if known_changes else _compared(columns, key, cursor)
    if current is None:
        db.execute("create temp table changed as select *, null::varchar as _file, "
                   "null::bigint as _pos from s")
    else:
        on = " and ".join(f"c.{ident(k)} is not distinct from s.{ident(k)}" for k in key)
        differs = "true" if known_changes else _differs(db, [c for c in compared
                                                            if c not in key])
        wanted = ", ".join(["filename", "file_row_number", *map(ident, compared)])
        db.execute(f"""create temp table changed as
            select s.*, c.filename as _file, c.file_row_number as _pos
            from s left join (select {wanted} from {current}) c on {on}
            where c.filename is null or {differs}""")
    db.execute("create temp view replaced as select _file, _pos from changed "
               "where _file is not null")


def _deleted(db: duckdb.DuckDBPyConnection, current: str | None,
             deleted: pa.RecordBatchReader, key: Sequence[str]) -> None:
    """Widen view ``replaced`` with the stored rows whose key is in ``deleted`` (loaded as
    table ``d``, which spills past DuckDB's memory limit) and not among the incoming rows."""
    db.register("_ferry_deleted", deleted)
    db.execute("create temp table d as select distinct * from _ferry_deleted")
    db.unregister("_ferry_deleted")
    if current is None:
        return
    keys = ", ".join(ident(k) for k in key)
    on_d = " and ".join(f"c.{ident(k)} is not distinct from d.{ident(k)}" for k in key)
    on_s = " and ".join(f"c.{ident(k)} is not distinct from s.{ident(k)}" for k in key)
    db.execute(f"""create temp table gone as
        select c.filename as _file, c.file_row_number as _pos
        from (select filename, file_row_number, {keys} from {current}) c
        semi join d on {on_d} anti join s on {on_s}""")
    db.execute("create or replace temp view replaced as select _file, _pos from changed "
               "where _file is not null union all select _file, _pos from gone")


def _load(db: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader,
          on_rows: Callable[[int], None] | None) -> None:
    """The incoming rows as DuckDB table ``s`` (it spills to disk past its memory limit)."""
    def counted() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if on_rows is not None:
                on_rows(batch.num_rows)
            yield batch

    db.register("_ferry_incoming", pa.RecordBatchReader.from_batches(reader.schema, counted()))
    db.execute("create temp table s as select * from _ferry_incoming")
    db.unregister("_ferry_incoming")


def _difference(db: duckdb.DuckDBPyConnection, current: str | None, columns: Sequence[str],
                key: Sequence[str]) -> None:
    """Tables ``changed`` (rows of ``s`` new or different from the stored ones, with where
    the stored row is: ``_file``, ``_pos``) and ``replaced`` (positions of the stored rows
    that change or whose key ``s`` lacks), in one pass over the stored files."""
    if current is None:
        db.execute("create temp table changed as select *, null::varchar as _file, "
                   "null::bigint as _pos from s")
        db.execute("create temp view replaced as select _file, _pos from changed where false")
        return
    on = " and ".join(f"c.{ident(k)} is not distinct from s.{ident(k)}" for k in key)
    differs = _differs(db, [c for c in columns if c not in key])
    wanted = ", ".join(["filename", "file_row_number", *map(ident, columns)])
    first = ident(key[0])
    db.execute(f"""create temp table delta as
        select s.*, c.filename as _file, c.file_row_number as _pos, s.{first} is null as _gone
        from s full outer join (select {wanted} from {current}) c on {on}
        where c.filename is null or s.{first} is null or {differs}""")
    db.execute("create temp view changed as select * exclude (_gone) from delta "
               "where not _gone")
    db.execute("create temp view replaced as select _file, _pos from delta "
               "where _file is not null")


def _stage(reader: pa.RecordBatchReader, staging: Path,
           on_rows: Callable[[int], None] | None) -> int:
    rows = 0
    with pq.ParquetWriter(staging, reader.schema, compression="lz4") as writer:
        for batch in reader:  # a row group each: the writer would buffer 1M rows, however wide
            writer.write_table(pa.Table.from_batches([batch]))
            rows += batch.num_rows
            if on_rows is not None:
                on_rows(batch.num_rows)
    return rows


def _differs(db: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> str:
    """SQL true where stored row ``c`` and incoming row ``s`` differ in one of ``columns``.

    SQL's equality takes -0.0 for 0.0, so a float column also compares its sign, and a
    nested column holding floats compares its text (which shows the sign)."""
    types = dict(db.execute("select column_name, column_type from (describe s)").fetchall())
    tests = []
    for column in columns:
        name, t = ident(column), str(types.get(column, "")).upper()
        test = f"c.{name} is distinct from s.{name}"
        if t in ("FLOAT", "DOUBLE", "REAL"):
            test += f" or signbit(c.{name}) is distinct from signbit(s.{name})"
        elif ("FLOAT" in t or "DOUBLE" in t) and any(n in t for n in ("[]", "STRUCT", "MAP")):
            test += f" or c.{name}::varchar is distinct from s.{name}::varchar"
        tests.append(test)
    return " or ".join(f"({test})" for test in tests) or "false"


def _compared(columns: Sequence[str], key: Sequence[str], cursor: str | None) -> list[str]:
    """The stored columns that tell whether an incoming row differs from the stored one."""
    if _orders_by(cursor, columns, key):
        assert cursor is not None
        return [*key, cursor]
    return list(columns)


def _replaced_positions(db: duckdb.DuckDBPyConnection) -> dict[str, BitMap]:
    """File -> positions of the stored rows that changed rows replace (streamed)."""
    out: dict[str, BitMap] = {}
    batches = db.sql("select _file, _pos from replaced order by _file, _pos"
                     ).to_arrow_reader(1 << 20)
    for batch in batches:
        files = batch.column(0)
        positions = batch.column(1).to_numpy()
        for name in files.unique().to_pylist():
            mask = pc.equal(files, name).to_numpy(zero_copy_only=False)
            out.setdefault(name, BitMap()).update(positions[mask].astype("uint32"))
    return out


def _plan(deleted: dict[str, BitMap], by_path: dict[str, tuple[FileEntry, FileScan]],
          merge_on_read: bool) -> tuple[dict[str, BitMap], list[FileScan]]:
    """Which touched files get a deletion vector (path -> all its deleted rows) and which
    are rewritten (their scans, with every row to leave out)."""
    revise: dict[str, BitMap] = {}
    rewrite: list[FileScan] = []
    for path, positions in deleted.items():
        entry, scan = by_path[path]
        combined = positions | scan.deleted if scan.deleted is not None else positions
        if merge_on_read and len(combined) <= entry.rows * REWRITE_FRACTION:
            revise[path] = combined
        else:
            rewrite.append(FileScan(path, deleted=combined))
    return revise, rewrite
