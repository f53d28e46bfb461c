"""Small DuckDB helpers the store's SQL shares: quoting, file lists, spilling sessions."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # imported where used: a run reads its source before it needs DuckDB
    import duckdb


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def text(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def parquet_list(paths: Iterable[str]) -> str:
    """The SQL list literal of file paths for ``read_parquet([...])``."""
    return "[" + ", ".join(text(p) for p in paths) + "]"


MEMORY_LIMIT = "256MB"
"""DuckDB's share of a ferry process's memory (issue 13: the whole process stays under
600 MiB): Python, pyarrow and the batches in flight take about 250 MiB beside it. Joins,
sorts and tables past it spill to a temporary directory (``spilling``)."""


@contextmanager
def spilling(prefix: str, memory_limit: str = MEMORY_LIMIT
             ) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with a memory limit that spills to a temporary directory."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix=prefix) as spill:
        db = duckdb.connect()
        try:
            db.execute("set enable_progress_bar = false")  # stdout belongs to the command
            db.execute(f"set temp_directory = {text(spill)}")
            db.execute(f"set memory_limit = {text(memory_limit)}")
            yield db
        finally:
            db.close()


def cast_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """DuckDB's output batches with ``schema``'s exact types (and field metadata)."""
    for batch in batches:
        yield pa.RecordBatch.from_arrays(
            [batch.column(i).cast(schema.field(i).type) for i in range(len(schema))],
            schema=schema)
