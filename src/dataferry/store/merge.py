"""Merge (upsert by primary key) as a copy-on-write rewrite of only the touched files.

deltalake's merge is general and, on two cores, slow for the common ingest case (a
small change set into a large table: 16 s for 10,000 changes into 1M rows). This one:

1. spills the incoming rows to a staging Parquet file (bounded memory), keeping the last
   row per key;
2. with DuckDB, finds the rows that are new or differ from the stored ones, and the data
   files holding the keys they replace;
3. rewrites only those files without the replaced rows, writes the changed rows as a new
   file (both hashed as they are written), and commits the removes and adds as one Delta
   transaction.

Rows that are identical to the stored ones change nothing, so an incremental re-read of
the lag window publishes no new version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.duck import cast_batches, ident, parquet_list, spilling, text
from dataferry.store.hashing import FileDigest
from dataferry.store.manifest import FileEntry
from dataferry.store.parquet_files import write_files


@dataclass
class MergeResult:
    written: list[tuple[FileEntry, FileDigest]]
    removed: list[FileEntry]
    inserted: int
    updated: int


def merge_files(dataset: DatasetStore, head: Version, reader: pa.RecordBatchReader,
                key: list[str], algorithm: str,
                on_rows: Callable[[int], None] | None = None) -> MergeResult:
    """Write the files of ``head`` merged with ``reader``'s rows; nothing is committed."""
    columns = reader.schema.names
    by_path = {str(dataset.path / f.path): f for f in dataset.active_files(head.number)}
    paths = list(by_path)
    with tempfile.TemporaryDirectory(prefix="ferry-merge-") as work:
        staging = Path(work) / "staging.parquet"
        rows = 0
        with pq.ParquetWriter(staging, reader.schema, compression="lz4") as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
                if on_rows is not None:
                    on_rows(batch.num_rows)
        if rows == 0:
            return MergeResult([], [], 0, 0)
        with spilling("ferry-merge-") as db:
            keys = ", ".join(ident(k) for k in key)
            cols = ", ".join(ident(c) for c in columns)
            on = " and ".join(f"c.{ident(k)} is not distinct from s.{ident(k)}" for k in key)
            differs = " or ".join(f"c.{ident(c)} is distinct from s.{ident(c)}"
                                  for c in columns if c not in key) or "false"
            db.execute(f"""create temp table s as select {cols} from (
                select *, row_number() over (partition by {keys} order by _rn desc) as _k
                from (select *, row_number() over () as _rn
                      from read_parquet({text(str(staging))}))) where _k = 1""")
            current_view = (f"read_parquet({parquet_list(paths)}, filename = true, "
                            "union_by_name = true)") if paths else None
            if current_view is None:
                db.execute(f"create temp table changed as select {cols}, true as _new from s")
                db.execute("create temp table touched (filename varchar)")
            else:
                db.execute(f"""create temp table changed as
                    select s.*, c.filename is null as _new, c.filename as _from
                    from s left join {current_view} c on {on}
                    where c.filename is null or {differs}""")
                db.execute("create temp table touched as select distinct _from as filename "
                           "from changed where _from is not null")
            inserted, updated = db.execute(
                "select count(*) filter (where _new), count(*) filter (where not _new) "
                "from changed").fetchone() or (0, 0)
            if not inserted and not updated:
                return MergeResult([], [], 0, 0)
            touched = [row[0] for row in db.execute("select filename from touched").fetchall()]
            kept = ""
            if touched:
                kept = (f"select {cols} from read_parquet({parquet_list(touched)}, union_by_name = true) c "
                        f"where not exists (select 1 from changed s where {on}) union all ")
            query = f"{kept}select {cols} from changed"
            out = db.sql(query).to_arrow_reader(65_536)
            schema = reader.schema

            written = write_files(
                dataset.path,
                pa.RecordBatchReader.from_batches(schema, cast_batches(out, schema)),
                algorithm, None)
    removed = [by_path[p] for p in touched if p in by_path]
    return MergeResult(written, removed, int(inserted), int(updated))
