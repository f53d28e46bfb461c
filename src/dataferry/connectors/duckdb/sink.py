"""Deliver dataset versions into a DuckDB database file (``kind: duckdb``, ``path:``, ``schema:``).

The file (relative to the model directory; parent folders are created) is opened for the
delivery and closed after it, so other processes can read it between deliveries. A new
file is written in the sink's ``storage_version:`` (default ``v1.1.0``: DuckDB 1.1 and
every later release open it, whatever DuckDB dataferry runs on); an existing file keeps
the storage version it was created with. The
optional ``schema:`` is created. The rows stream from the delivery's Arrow reader into
``INSERT .. SELECT`` / ``MERGE`` statements that cast each column to its DuckDB type
(``types.py``); the ``_ferry_loads`` row is written in the transaction that makes the
rows visible. A process killed mid-load leaves the target and ``_ferry_loads`` as they
were (DuckDB never makes an uncommitted transaction durable).

- ``replace``: the rows go into the staging table ``<table>__ferry_new`` in committed
  pieces, one delivery batch each, with a ``CHECKPOINT`` after each (DuckDB keeps what a
  transaction writes in memory until it commits and checkpoints, so one transaction
  would hold the whole table); then one transaction drops the target, renames the
  staging table to it (metadata only) and records the load. A crash between pieces
  leaves a staging table that the next replace drops and fills again.
- ``merge`` (one transaction, as ``append`` and ``history``): ``MERGE INTO`` the target
  on the primary key: deletes, updates, inserts.
  (No PRIMARY KEY constraint is declared: DuckDB's index would slow bulk loads.)
- ``append``: ``INSERT``, keeping ``_ferry_version``.
- ``history``: the change set is staged in a table, current rows of changed keys get
  ``valid_to`` = the version's creation time, upserts become new current rows.

A version already recorded in ``_ferry_loads`` is not applied again (0 rows); a change
set built from another version than the table has is refused.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataferry.connectors.base import (
    OP_COLUMN,
    VALID_FROM,
    VALID_TO,
    VERSION_COLUMN,
    Delivery,
    LineageName,
    SinkConnector,
    check_versions,
)
from dataferry.connectors.duckdb.source import duckdb_error
from dataferry.connectors.duckdb.tables import Target, TargetColumn, run
from dataferry.connectors.duckdb.types import native_type, quote
from dataferry.connectors.naming import local_path
from dataferry.connectors.parquet.types import (
    file_field,
    sink_field,
    to_file_array,
    to_sink_form,
)
from dataferry.errors import SinkError
from dataferry.faults import crash_point
from dataferry.intervals import IntervalError, native_intervals
from dataferry.model.spec import DuckdbSink as DuckdbSinkSpec


@dataclass
class Counted:
    """The delivery's rows in file form (``parquet.types``), counted as DuckDB reads them."""

    reader: pa.RecordBatchReader
    rows: int = 0


def file_form(delivery: Delivery, parquet: bool = False) -> Counted:
    """Delivery batches with declared columns in their portable Arrow form (``parquet``:
    the parquet sink's form, uuid and json as extension types), plus the ``_ferry_op`` /
    ``_ferry_version`` columns when present."""
    extras = [(n, t) for n, t in ((OP_COLUMN, pa.string()), (VERSION_COLUMN, pa.int64()))
              if n in delivery.rows.schema.names]
    field_of, convert = (sink_field, to_sink_form) if parquet else (file_field, to_file_array)
    fields = [field_of(n, t) for n, t, _ in delivery.columns]
    if not parquet:  # the parquet sink keeps intervals as their tagged ISO 8601 text
        # Intervals go in as Arrow intervals (DuckDB cannot cast ISO 8601 text to INTERVAL).
        fields = [f.with_type(native_intervals(pa.array([], f.type), t).type)
                  for f, (_, t, _) in zip(fields, delivery.columns, strict=True)]
    schema = pa.schema(fields + [pa.field(n, t) for n, t in extras])
    counted = Counted(pa.RecordBatchReader.from_batches(schema, iter(())))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in delivery.rows:
            names = batch.schema.names
            arrays = []
            for name, t, _ in delivery.columns:
                if name not in names:
                    raise SinkError(f"delivery of {delivery.dataset} has no column {name!r}")
                array = convert(batch.column(names.index(name)), t)
                try:
                    arrays.append(array if parquet else native_intervals(array, t))
                except IntervalError as error:
                    raise SinkError(f"delivery of {delivery.dataset}: column {name!r}: the "
                                    f"value at row {error.index} {error.problem}") from None
            arrays += [batch.column(names.index(n)).cast(t) for n, t in extras]
            counted.rows += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    counted.reader = pa.RecordBatchReader.from_batches(schema, batches())
    return counted


class DuckdbSink(SinkConnector):
    """Writes deliveries into the tables of one DuckDB database file."""

    kind = "duckdb"

    @classmethod
    def lineage_output(cls, spec: Any, table: str, model_root: Path) -> LineageName | None:
        return LineageName("duckdb://" + local_path(spec.path, model_root),
                           f"{spec.schema_ or 'main'}.{table}")

    def __init__(self, consumer: str, spec: Any, model_root: Path) -> None:
        super().__init__(consumer, spec, model_root)
        assert isinstance(spec, DuckdbSinkSpec)
        self.path = (model_root / spec.path).resolve()
        self.target = Target(spec.schema_)
        self.storage_version = spec.storage_version

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path), config={
                "storage_compatibility_version": self.storage_version})
            con.execute("set enable_progress_bar = false")
            run(con, "SET TimeZone = 'UTC'")
            return con
        except duckdb.Error as error:
            raise duckdb_error(error, f"sink {self.consumer}: cannot open {self.path}",
                               SinkError) from None

    def applied_version(self, dataset: str, table: str) -> int | None:
        """The version of ``dataset`` in ``table`` per ``_ferry_loads`` (None: none, no file)."""
        if not self.path.exists():
            return None
        con = self._connect()
        try:
            return self.target.applied_version(con, dataset, table)
        except duckdb.Error as error:
            raise duckdb_error(error, f"sink {self.consumer}", SinkError) from None
        finally:
            con.close()

    def deliver(self, delivery: Delivery) -> int:
        """Apply the delivery and its ``_ferry_loads`` row (module doc); rows delivered."""
        self.check(delivery)
        where = f"sink {self.consumer}: table {delivery.table!r}"
        con = self._connect()
        try:
            if delivery.mode == "replace":
                return _staged_replace(con, self.target, delivery, where)
            return self._in_one_transaction(con, delivery, where)
        except duckdb.Error as error:
            _rollback(con)
            raise duckdb_error(error, where, SinkError) from None
        except BaseException:
            _rollback(con)
            raise
        finally:
            con.close()

    def _in_one_transaction(self, con: duckdb.DuckDBPyConnection, delivery: Delivery,
                            where: str) -> int:
        view = f"_ferry_rows_{uuid.uuid4().hex}"
        json_ok = _has_json(con)
        if not _begin(con, self.target, delivery, where):
            return 0
        counted = file_form(delivery)
        con.register(view, counted.reader)
        load = _Load(con, self.target, delivery, view, json_ok)
        if delivery.reload:
            _start_over(load)
        _LOADERS[delivery.mode](load)
        self.target.record(con, delivery.dataset, delivery.table, delivery.version,
                           delivery.mode, counted.rows)
        run(con, "COMMIT")
        return counted.rows


def _begin(con: duckdb.DuckDBPyConnection, target: Target, delivery: Delivery,
           where: str) -> bool:
    """Open the transaction that records the delivery; False (rolled back): nothing to do."""
    run(con, "BEGIN TRANSACTION")
    target.create_schema(con)
    target.create_loads(con)
    applied = target.applied_version(con, delivery.dataset, delivery.table)
    if not check_versions(applied, delivery, where):
        run(con, "ROLLBACK")
        return False
    return True


def _staged_replace(con: duckdb.DuckDBPyConnection, target: Target, delivery: Delivery,
                    where: str) -> int:
    """A replace in committed pieces (module doc): the staging table takes one delivery
    batch (~16 MiB, ``store/batching.py``) per transaction, each followed by a CHECKPOINT
    (``CHECKPOINT_REWRITE_BYTES``) so DuckDB writes it out and lets it go; one last
    transaction swaps the staging table in and records the load. A crash before that leaves the target and ``_ferry_loads``
    as they were, plus a staging table the next replace drops."""
    json_ok = _has_json(con)
    if not _begin(con, target, delivery, where):
        return 0
    stage_name = stage_table(delivery.table)
    stage = target.name(stage_name)
    load = _Load(con, target, delivery, "", json_ok)
    run(con, f"DROP TABLE IF EXISTS {stage}")
    target.create(con, stage_name, load.columns())
    run(con, "COMMIT")
    counted = file_form(delivery)
    row_bytes = 0.0
    for batch in counted.reader:
        row_bytes = max(row_bytes, batch.nbytes / max(batch.num_rows, 1))
        view = f"_ferry_rows_{uuid.uuid4().hex}"
        con.register(view, pa.Table.from_batches([batch]))
        try:
            run(con, "BEGIN TRANSACTION")
            run(con, f"INSERT INTO {stage} ({load.names()}) SELECT {load.casts()} "
                f"FROM {view} src")
            run(con, "COMMIT")
        finally:
            con.unregister(view)
        if (counted.rows % ROW_GROUP_ROWS) * row_bytes <= CHECKPOINT_REWRITE_BYTES:
            run(con, "CHECKPOINT")
        else:  # no automatic checkpoint either: it would rewrite the row group again
            run(con, "SET checkpoint_threshold = '1TB'")
        crash_point("duckdb-replace-piece")
    if not _begin(con, target, delivery, where):  # another process delivered meanwhile
        run(con, f"DROP TABLE IF EXISTS {stage}")
        return 0
    run(con, f"DROP TABLE IF EXISTS {load.table}")
    run(con, f"ALTER TABLE {stage} RENAME TO {quote(delivery.table)}")
    target.record(con, delivery.dataset, delivery.table, delivery.version, delivery.mode,
                  counted.rows)
    run(con, "COMMIT")
    return counted.rows


ROW_GROUP_ROWS = 122_880
"""Rows in a DuckDB row group (its storage default)."""

CHECKPOINT_REWRITE_BYTES = 64 << 20
"""A CHECKPOINT rewrites the table's last, partly filled row group whole, every value of
it held in memory at once: narrow rows cost a few MiB, 1 MiB rows up to the whole table
(500 of them took 2.8 GiB). A piece is checkpointed only while that rewrite stays under
this many bytes; past it the pieces are only committed (to the write-ahead log, no
automatic checkpoint) and the file is checkpointed when the delivery closes it, which
holds the rows written since the last checkpoint in memory, as one transaction did."""


def stage_table(table: str) -> str:
    """The staging table a replace of ``table`` fills before swapping it in."""
    return f"{table}__ferry_new"


def _has_json(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        run(con, "SELECT CAST(NULL AS JSON)")
        return True
    except duckdb.Error:
        return False


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # No transaction may be open (it failed before BEGIN, or DuckDB already aborted it).
    with contextlib.suppress(duckdb.Error):
        run(con, "ROLLBACK")


@dataclass
class _Load:
    con: duckdb.DuckDBPyConnection
    target: Target
    delivery: Delivery
    view: str
    json_ok: bool

    @property
    def table(self) -> str:
        return self.target.name(self.delivery.table)

    def columns(self) -> list[TargetColumn]:
        d = self.delivery
        columns = [TargetColumn(n, native_type(t, self.json_ok), t, nullable)
                   for n, t, nullable in d.columns]
        if d.mode == "append":
            columns.append(TargetColumn(VERSION_COLUMN, "BIGINT", None))
        if d.mode == "history":
            columns += [TargetColumn(VALID_FROM, "TIMESTAMPTZ", None, False),
                        TargetColumn(VALID_TO, "TIMESTAMPTZ", None)]
        return columns

    def prepare(self) -> bool:
        """Create (True) or evolve (False) the target of a merge, append or history load."""
        if not self.target.exists(self.con, self.delivery.table):
            self.target.create(self.con, self.delivery.table, self.columns())
            return True
        self.target.evolve(self.con, self.delivery.table, self.columns())
        return False

    def names(self) -> str:
        return ", ".join(quote(n) for n, _, _ in self.delivery.columns)

    def casts(self, alias: str = "src") -> str:
        """The declared columns of the registered rows, cast to their DuckDB types."""
        return ", ".join(f"CAST({alias}.{quote(n)} AS {native_type(t, self.json_ok)}) AS {quote(n)}"
                         for n, t, _ in self.delivery.columns)

    def keys_match(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}"
                            for k in self.delivery.primary_key)


def _start_over(load: _Load) -> None:
    """Before a reload (``Delivery.reload``): empty a merge or append target; close the
    open rows of a history target (its past stays)."""
    d, con = load.delivery, load.con
    if d.mode in ("merge", "append") and load.target.exists(con, d.table):
        run(con, f"DELETE FROM {load.table}")
    elif d.mode == "history" and load.target.exists(con, d.table):
        run(con, f"UPDATE {load.table} SET {quote(VALID_TO)} = CAST(? AS TIMESTAMPTZ) "
            f"WHERE {quote(VALID_TO)} IS NULL", [d.created_at.isoformat(sep=" ")])


def _append(load: _Load) -> None:
    load.prepare()
    d = load.delivery
    version = (f"coalesce(src.{quote(VERSION_COLUMN)}, {int(d.version)})"
               if VERSION_COLUMN in d.rows.schema.names else str(int(d.version)))
    run(load.con, f"INSERT INTO {load.table} ({load.names()}, {quote(VERSION_COLUMN)}) "
        f"SELECT {load.casts()}, {version} FROM {load.view} src")


def _merge(load: _Load) -> None:
    created = load.prepare()
    d = load.delivery
    op = f"src.{quote(OP_COLUMN)}"
    if created:
        run(load.con, f"INSERT INTO {load.table} ({load.names()}) SELECT {load.casts()} "
            f"FROM {load.view} src WHERE {op} <> 'delete'")
        return
    source = f"(SELECT {load.casts()}, {op} AS op FROM {load.view} src)"
    others = [n for n, _, _ in d.columns if n not in d.primary_key]
    update = ", ".join(f"{quote(n)} = s.{quote(n)}" for n in others)
    values = ", ".join(f"s.{quote(n)}" for n, _, _ in d.columns)
    sql = (f"MERGE INTO {load.table} t USING {source} s ON {load.keys_match('t', 's')} "
           "WHEN MATCHED AND s.op = 'delete' THEN DELETE ")
    if update:
        sql += f"WHEN MATCHED THEN UPDATE SET {update} "
    sql += f"WHEN NOT MATCHED AND s.op <> 'delete' THEN INSERT ({load.names()}) VALUES ({values})"
    run(load.con, sql)


def _history(load: _Load) -> None:
    load.prepare()
    d, con = load.delivery, load.con
    stage_name = f"_ferry_changes_{d.table}"
    stage = load.target.name(stage_name)
    at = d.created_at.isoformat(sep=" ")
    run(con, f"DROP TABLE IF EXISTS {stage}")
    run(con, f"CREATE TABLE {stage} AS SELECT {load.casts()}, src.{quote(OP_COLUMN)} AS op "
        f"FROM {load.view} src")
    run(con, f"UPDATE {load.table} t SET {quote(VALID_TO)} = CAST(? AS TIMESTAMPTZ) FROM {stage} s "
        f"WHERE {load.keys_match('t', 's')} AND t.{quote(VALID_TO)} IS NULL", [at])
    run(con, f"INSERT INTO {load.table} ({load.names()}, {quote(VALID_FROM)}, {quote(VALID_TO)}) "
        f"SELECT {load.names()}, CAST(? AS TIMESTAMPTZ), NULL FROM {stage} WHERE op <> 'delete'",
        [at])
    run(con, f"DROP TABLE {stage}")


_LOADERS: dict[str, Callable[[_Load], None]] = {
    "merge": _merge, "append": _append, "history": _history,
}
