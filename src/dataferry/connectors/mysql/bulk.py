"""Bulk-write Arrow record batches into a MariaDB table, in the caller's transaction.

Two paths, both sending whole batches, never a row per round trip:

- ``LOAD DATA LOCAL INFILE`` (when the server allows it, ``@@local_infile``): one
  statement for all the rows, read from a named pipe that a thread fills batch by batch
  with CSV from Arrow's C++ writer (every value quoted, quotes doubled, ``NULL`` bare,
  binary as hex through ``UNHEX``), so rendering overlaps the server's work
  (``pipe.py``). The fastest path (``bench/mariadb_flow.py``).
  ``LOCAL`` turns data errors into warnings, so any warning fails the load with the
  server's words.
- multi-row ``INSERT`` statements of up to 4 MiB (``REPLACE`` for staging tables), the
  SQL text built column-wise by Arrow (``NO_BACKSLASH_ESCAPES``: only quotes doubled).

The connection's ``local_infile`` permission is on only while our own statement runs,
so a server cannot ask for a client file at any other time.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pymysql

from dataferry.connectors.mysql.connection import ident
from dataferry.connectors.mysql.encode import Form, form_of, render
from dataferry.connectors.mysql.pipe import Feeder, named_pipe
from dataferry.errors import SinkError
from dataferry.model.types import DataType

STATEMENT_BYTES = 4 << 20
PIECE_BYTES = 16 << 20
_CSV = pcsv.WriteOptions(include_header=False, quoting_style="all_valid", null_string="NULL")


@dataclass(frozen=True)
class Column:
    """A batch column and the declared type it is written as (same name in the table)."""

    name: str
    type: DataType


class Loader:
    """Writes batches into tables over one connection (opened with ``local_infile=True``)."""

    def __init__(self, connection: pymysql.Connection, *, load_data: bool,
                 max_packet: int = STATEMENT_BYTES * 4) -> None:
        self.connection = connection
        self.load_data = load_data
        connection._local_infile = False  # only while a LOAD DATA of ours runs
        self._limit = min(STATEMENT_BYTES, max_packet - (64 << 10))

    def write(self, table: str, label: str, columns: Sequence[Column],
              batches: Iterable[pa.RecordBatch], *, replace: bool = False) -> int:
        """Insert every row of ``batches`` into ``table`` (qualified, quoted SQL name;
        ``label`` names it in errors); ``replace``: a later row replaces an earlier one with
        the same key. Returns the rows written; does not commit."""
        if self.load_data:
            return self._load(table, label, columns, _pieces(batches), replace)
        rows = 0
        for batch in _pieces(batches):
            if batch.num_rows == 0:
                continue
            self._insert(table, columns, _render(batch, columns, label), replace)
            rows += batch.num_rows
        return rows

    def _load(self, table: str, label: str, columns: Sequence[Column],
              batches: Iterable[pa.RecordBatch], replace: bool) -> int:
        """One ``LOAD DATA LOCAL INFILE`` of every batch, streamed through a named pipe
        (``pipe.py``) by a thread that renders the next rows while the server loads."""
        names = [f"c{i}" for i in range(len(columns))]

        def csv(batch: pa.RecordBatch) -> pa.Buffer:
            out = pa.BufferOutputStream()
            texts = _render(batch, columns, label)
            pcsv.write_csv(pa.Table.from_arrays(texts, names=names), out, _CSV)
            return out.getvalue()

        targets, assignments = [], []
        for i, column in enumerate(columns):
            if form_of(column.type) is Form.HEX:
                targets.append(f"@v{i}")
                assignments.append(f"{ident(column.name)} = UNHEX(@v{i})")
            else:
                targets.append(ident(column.name))
        with named_pipe("ferry-mysql-") as path:
            sql = (f"LOAD DATA LOCAL INFILE {self.connection.escape(path)} "
                   f"{'REPLACE ' if replace else ''}INTO TABLE {table} CHARACTER SET utf8mb4 "
                   "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                   "LINES TERMINATED BY '\n' "
                   f"({', '.join(targets)})"
                   + (f" SET {', '.join(assignments)}" if assignments else ""))
            feeder = Feeder(path, batches, csv)
            feeder.start()
            self.connection._local_infile = True
            try:
                with self.connection.cursor() as cursor:
                    cursor.execute(sql)
                    if feeder.error is None and cursor.warning_count:
                        _raise_warnings(cursor, label)
            finally:
                self.connection._local_infile = False
                feeder.finish()
        if feeder.error is not None:  # the rows stopped early: the load is incomplete
            raise feeder.error
        return feeder.rows

    def _insert(self, table: str, columns: Sequence[Column], texts: list[pa.Array],
                replace: bool) -> None:
        literals = [_literals(text, form_of(c.type)) for text, c in zip(texts, columns, strict=True)]
        rows = pc.binary_join_element_wise("(", pc.binary_join_element_wise(*literals, ","), ")", "")
        ends = pc.cumulative_sum(pc.add(pc.binary_length(rows), 1)).to_pylist()
        head = (f"{'REPLACE' if replace else 'INSERT'} INTO {table} "
                f"({', '.join(ident(c.name) for c in columns)}) VALUES ").encode()
        start, done = 0, 0
        with self.connection.cursor() as cursor:
            while start < len(rows):
                end = max(bisect.bisect_right(ends, done + self._limit), start + 1)
                chunk = rows.slice(start, end - start)
                joined = pc.binary_join(pa.ListArray.from_arrays([0, len(chunk)], chunk), ",")
                cursor.execute(head + joined[0].as_buffer().to_pybytes())
                start, done = end, ends[end - 1]


def _pieces(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, those over ``PIECE_BYTES`` sliced: rendering makes a few copies of
    each, so wide rows must not arrive all at once."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        rows = max(1, batch.num_rows * PIECE_BYTES // max(batch.nbytes, 1))
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _render(batch: pa.RecordBatch, columns: Sequence[Column], label: str) -> list[pa.Array]:
    return [render(batch.column(c.name), c.type, f"{label} column {c.name!r}") for c in columns]


def _literals(text: pa.Array, form: Form) -> pa.Array:
    """SQL literals for rendered values (session mode ``NO_BACKSLASH_ESCAPES``)."""
    if form is Form.TEXT:
        text = pc.binary_join_element_wise("'", pc.replace_substring(text, "'", "''"), "'", "")
    elif form is Form.HEX:
        text = pc.binary_join_element_wise("X'", text, "'", "")
    return pc.fill_null(text, "NULL")


def _raise_warnings(cursor: pymysql.cursors.Cursor, label: str) -> None:
    cursor.execute("SHOW WARNINGS LIMIT 3")
    found = [f"{level}: {message}" for level, _, message in cursor.fetchall() if level != "Note"]
    if found:
        raise SinkError(f"{label}: the load failed: " + "; ".join(found)
                        + " (nothing of this delivery was applied)",
                        public=f"{label}: the load failed with {len(found)} warning(s) "
                               "(nothing of this delivery was applied)")
