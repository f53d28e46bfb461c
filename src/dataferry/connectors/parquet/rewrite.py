"""New snapshots of merge and history tables, computed by DuckDB from files on disk.

The previous snapshot's files and the staged change set (a Parquet file with
``_ferry_op``) are joined by DuckDB with a memory limit and a spill folder, and the result
streams out as record batches: memory stays bounded whatever the table size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from dataferry.connectors.base import OP_COLUMN, VALID_FROM, VALID_TO
from dataferry.connectors.duckdb.types import quote
from dataferry.store.batching import MAX_BATCH_ROWS, row_bytes, rows_for
from dataferry.store.duck import MEMORY_LIMIT


def _files(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _old_column(name: str, present: set[str]) -> str:
    return f"o.{quote(name)}" if name in present else f"NULL AS {quote(name)}"


def _keys(key: Sequence[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in key)


def merged_sql(old: Sequence[Path], present: set[str], changes: Path, columns: Sequence[str],
               key: Sequence[str]) -> str:
    """Old rows whose key did not change, then the upserted rows."""
    new_rows = (f"SELECT {', '.join(f'c.{quote(n)}' for n in columns)} "
                f"FROM read_parquet({_files([changes])}) c WHERE c.{quote(OP_COLUMN)} <> 'delete'")
    if not old:
        return new_rows
    kept = ", ".join(_old_column(n, present) for n in columns)
    return (f"SELECT {kept} FROM read_parquet({_files(old)}, union_by_name = true) o "
            f"ANTI JOIN read_parquet({_files([changes])}) c ON {_keys(key, 'o', 'c')} "
            f"UNION ALL BY NAME {new_rows}")


def history_sql(old: Sequence[Path], present: set[str], changes: Path, columns: Sequence[str],
                key: Sequence[str], close_all: bool = False) -> str:
    """Old rows, the current ones of changed keys (every current one: ``close_all``, for
    a reload) closed at ``$at``; upserts opened at ``$at``."""
    new_rows = (f"SELECT {', '.join(f'c.{quote(n)}' for n in columns)}, "
                f"CAST($at AS TIMESTAMPTZ) AS {quote(VALID_FROM)}, "
                f"CAST(NULL AS TIMESTAMPTZ) AS {quote(VALID_TO)} "
                f"FROM read_parquet({_files([changes])}) c WHERE c.{quote(OP_COLUMN)} <> 'delete'")
    if not old:
        return new_rows
    kept = ", ".join(_old_column(n, present) for n in columns)
    changed = (f"(SELECT DISTINCT {', '.join(quote(k) for k in key)}, true AS hit "
               f"FROM read_parquet({_files([changes])}))")
    return (f"SELECT {kept}, o.{quote(VALID_FROM)}, CASE WHEN o.{quote(VALID_TO)} IS NULL AND "
            f"{'true' if close_all else 'c.hit'} THEN CAST($at AS TIMESTAMPTZ) ELSE o.{quote(VALID_TO)} END AS {quote(VALID_TO)} "
            f"FROM read_parquet({_files(old)}, union_by_name = true) o LEFT JOIN {changed} c "
            f"ON {_keys(key, 'o', 'c')} UNION ALL BY NAME {new_rows}")


def stream(sql: str, spill: Path, at: datetime | None = None, *,
           files: Sequence[Path] = ()) -> Iterator[pa.RecordBatch]:
    """Run ``sql`` in a fresh in-memory DuckDB and yield its rows (``$at`` bound if given),
    in batches of about ``batching.BATCH_BYTES`` of the widest rows of ``files``."""
    rows = rows_for(max((row_bytes(f) for f in files), default=0.0))
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false")
    try:
        for setting in (f"SET memory_limit = '{MEMORY_LIMIT}'", "SET TimeZone = 'UTC'",
                        "SET preserve_insertion_order = false",
                        "SET temp_directory = '" + str(spill).replace("'", "''") + "'"):
            con.execute(setting).fetchall()
        if rows < MAX_BATCH_ROWS:  # wide rows: one 64 MiB row group in memory at a time
            con.execute("SET threads = 1").fetchall()
        params = {"at": at.isoformat(sep=" ")} if at is not None and "$at" in sql else None
        reader = con.sql(sql, params=params).to_arrow_reader(rows)
        try:
            yield from reader
        finally:
            reader.close()
    finally:
        con.close()
