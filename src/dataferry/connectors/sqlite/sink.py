"""Deliver dataset versions into a SQLite database file (``kind: sqlite``, ``path:``).

The file (relative to the model directory; parent folders are created) is written in one
transaction per delivery, opened with ``BEGIN IMMEDIATE`` so no other writer interleaves;
rows go in with ``executemany`` one batch at a time, and the ``_ferry_loads`` row is
written in the same transaction. A process killed mid-load leaves the file as it was.

- ``replace``: rows load into ``_ferry_stage_<table>``, then the target is dropped and the
  staging table renamed to it (``legacy_alter_table`` is on, so views over the target keep
  working); the table gets the model's primary key. Indexes a user added to the target are
  not carried over.
- ``merge``: ``INSERT .. ON CONFLICT (key) DO UPDATE`` for upserts, ``DELETE`` by key for
  deletes; the target needs a unique index on the key (created with the table, or added).
- ``append``: inserts, with the ``_ferry_version`` column.
- ``history``: per changed key, the current row (``valid_to IS NULL``) gets ``valid_to``
  = the version's creation time; upserts insert a new current row from that time.
  ``valid_from``/``valid_to`` are ISO 8601 UTC text like every timestamp_tz.

A version already recorded in ``_ferry_loads`` is not applied again (0 rows). A change set
(merge, append, history) built from another version than the table has is refused.
Values are stored as ``types.py`` describes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from dataferry.connectors.naming import local_path
from dataferry.connectors.sqlite.source import quote, sqlite_error
from dataferry.connectors.sqlite.tables import (
    LOADS_DDL,
    LOADS_UPSERT,
    TargetColumn,
    applied_version,
    create_table,
    ensure_unique_key,
    evolve_table,
    table_columns,
)
from dataferry.connectors.sqlite.types import TEXT, affinity, native_type
from dataferry.connectors.sqlite.values import bind_values
from dataferry.errors import SinkError
from dataferry.model.spec import SqliteSink as SqliteSinkSpec


def utc_text(moment: datetime) -> str:
    """A moment as the ISO 8601 UTC text timestamp_tz columns hold."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


class SqliteSink(SinkConnector):
    """Writes deliveries into the tables of one SQLite database file."""

    kind = "sqlite"

    @classmethod
    def lineage_output(cls, spec: Any, table: str, model_root: Path) -> LineageName | None:
        return LineageName("sqlite://" + local_path(spec.path, model_root), table)

    def __init__(self, consumer: str, spec: Any, model_root: Path) -> None:
        super().__init__(consumer, spec, model_root)
        assert isinstance(spec, SqliteSinkSpec)
        self.path = (model_root / spec.path).resolve()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA legacy_alter_table = ON")
        except sqlite3.Error as error:
            raise sqlite_error(error, f"sink {self.consumer}: cannot open {self.path}",
                               SinkError) from None
        return con

    def applied_version(self, dataset: str, table: str) -> int | None:
        """The version of ``dataset`` in ``table`` per ``_ferry_loads`` (None: none, no file)."""
        if not self.path.exists():
            return None
        con = self._connect()
        try:
            return applied_version(con, dataset, table)
        except sqlite3.Error as error:
            raise sqlite_error(error, f"sink {self.consumer}", SinkError) from None
        finally:
            con.close()

    def deliver(self, delivery: Delivery) -> int:
        """Apply the delivery and its ``_ferry_loads`` row in one transaction; rows delivered."""
        self.check(delivery)
        where = f"sink {self.consumer}: table {delivery.table!r}"
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(LOADS_DDL)
            if not check_versions(applied_version(con, delivery.dataset, delivery.table),
                                  delivery, where):
                con.execute("ROLLBACK")
                return 0
            if delivery.reload:
                _start_over(con, delivery)
            rows = _LOADERS[delivery.mode](con, delivery)
            con.execute(LOADS_UPSERT, (delivery.dataset, delivery.table, delivery.version,
                                       delivery.mode, rows, utc_text(datetime.now(UTC))))
            con.execute("COMMIT")
            return rows
        except sqlite3.Error as error:
            _rollback(con)
            raise sqlite_error(error, where, SinkError) from None
        except BaseException:
            _rollback(con)
            raise
        finally:
            con.close()


def _rollback(con: sqlite3.Connection) -> None:
    if con.in_transaction:
        con.execute("ROLLBACK")


def _start_over(con: sqlite3.Connection, delivery: Delivery) -> None:
    """Before a reload (``Delivery.reload``): empty a merge or append target; close the
    open rows of a history target (its past stays)."""
    table = quote(delivery.table)
    if delivery.mode in ("merge", "append"):
        if _exists(con, delivery.table):
            con.execute(f"DELETE FROM {table}")
    elif delivery.mode == "history" and _exists(con, delivery.table):
        con.execute(f"UPDATE {table} SET {quote(VALID_TO)} = ? WHERE {quote(VALID_TO)} IS NULL",
                    (utc_text(delivery.created_at),))


def _target_columns(delivery: Delivery) -> list[TargetColumn]:
    columns = [TargetColumn(n, native_type(t), t, nullable) for n, t, nullable in delivery.columns]
    if delivery.mode == "append":
        columns.append(TargetColumn(VERSION_COLUMN, "INTEGER", None))
    if delivery.mode == "history":
        columns += [TargetColumn(VALID_FROM, "TEXT", None, False),
                    TargetColumn(VALID_TO, "TEXT", None)]
    return columns


def _exists(con: sqlite3.Connection, table: str) -> bool:
    return bool(con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (table,)).fetchall())


def _prepare(con: sqlite3.Connection, delivery: Delivery) -> list[TargetColumn]:
    """Create or evolve the target of a merge, append or history delivery."""
    columns = _target_columns(delivery)
    table = delivery.table
    if not _exists(con, table):
        key = delivery.primary_key if delivery.mode == "merge" else []
        create_table(con, table, columns, key)
        if delivery.mode == "history":
            keys = ", ".join(quote(k) for k in [*delivery.primary_key, VALID_TO])
            con.execute(f"CREATE INDEX {quote('_ferry_current_' + table)} ON {quote(table)} "
                        f"({keys})")
    else:
        evolve_table(con, table, columns)
    if delivery.mode == "merge":
        ensure_unique_key(con, table, delivery.primary_key)
    return columns


def _text_columns(con: sqlite3.Connection, table: str) -> frozenset[str]:
    """Columns of an existing table declared with TEXT affinity: timestamps there keep the
    ``T`` form an earlier dataferry wrote (``types.py``)."""
    return frozenset(n for n, native, _, _ in table_columns(con, table)
                     if affinity(native) == TEXT)


def _rows(batch: pa.RecordBatch, delivery: Delivery, extra: tuple[str, ...] = (),
          text_columns: frozenset[str] = frozenset()) -> list[list[Any]]:
    """Bind values per column: the declared columns, then ``extra`` (ours, passed through)."""
    names = batch.schema.names
    out = []
    for name, t, _ in delivery.columns:
        if name not in names:
            raise SinkError(f"delivery of {delivery.dataset} has no column {name!r}")
        separator = "T" if name in text_columns else " "
        out.append(bind_values(batch.column(names.index(name)), t, separator))
    for name in extra:
        out.append(batch.column(names.index(name)).to_pylist())
    return out


def _insert_sql(table: str, names: list[str], suffix: str = "") -> str:
    cols = ", ".join(quote(n) for n in names)
    marks = ", ".join("?" for _ in names)
    return f"INSERT INTO {quote(table)} ({cols}) VALUES ({marks}){suffix}"


def _replace(con: sqlite3.Connection, delivery: Delivery) -> int:
    stage = f"_ferry_stage_{delivery.table}"
    con.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
    create_table(con, stage, _target_columns(delivery), delivery.primary_key)
    sql = _insert_sql(stage, [n for n, _, _ in delivery.columns])
    count = 0
    for batch in delivery.rows:
        con.executemany(sql, zip(*_rows(batch, delivery), strict=True))
        count += batch.num_rows
    con.execute(f"DROP TABLE IF EXISTS {quote(delivery.table)}")
    con.execute(f"ALTER TABLE {quote(stage)} RENAME TO {quote(delivery.table)}")
    return count


def _append(con: sqlite3.Connection, delivery: Delivery) -> int:
    _prepare(con, delivery)
    text = _text_columns(con, delivery.table)
    sql = _insert_sql(delivery.table, [n for n, _, _ in delivery.columns] + [VERSION_COLUMN])
    count = 0
    for batch in delivery.rows:
        if VERSION_COLUMN in batch.schema.names:
            values = _rows(batch, delivery, (VERSION_COLUMN,), text)
        else:
            values = [*_rows(batch, delivery, (), text), [delivery.version] * batch.num_rows]
        con.executemany(sql, zip(*values, strict=True))
        count += batch.num_rows
    return count


def _split(batch: pa.RecordBatch, delivery: Delivery, text_columns: frozenset[str]
           ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(upsert rows, delete keys) of a change-set batch, as bind tuples."""
    if OP_COLUMN not in batch.schema.names:
        raise SinkError(f"{delivery.mode} delivery of {delivery.dataset} has no {OP_COLUMN} column")
    values = _rows(batch, delivery, (), text_columns)
    ops = batch.column(batch.schema.names.index(OP_COLUMN)).to_pylist()
    names = [n for n, _, _ in delivery.columns]
    key_index = [names.index(k) for k in delivery.primary_key]
    rows = list(zip(*values, strict=True))
    upserts = [row for row, op in zip(rows, ops, strict=True) if op != "delete"]
    deletes = [tuple(row[i] for i in key_index) for row, op in zip(rows, ops, strict=True)
               if op == "delete"]
    return upserts, deletes


def _key_match(delivery: Delivery) -> str:
    return " AND ".join(f"{quote(k)} = ?" for k in delivery.primary_key)


def _merge(con: sqlite3.Connection, delivery: Delivery) -> int:
    _prepare(con, delivery)
    text = _text_columns(con, delivery.table)
    names = [n for n, _, _ in delivery.columns]
    updates = ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in names
                        if n not in delivery.primary_key)
    keys = ", ".join(quote(k) for k in delivery.primary_key)
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    upsert = _insert_sql(delivery.table, names, f" ON CONFLICT ({keys}) {action}")
    delete = f"DELETE FROM {quote(delivery.table)} WHERE {_key_match(delivery)}"
    count = 0
    for batch in delivery.rows:
        upserts, deletes = _split(batch, delivery, text)
        con.executemany(upsert, upserts)
        con.executemany(delete, deletes)
        count += batch.num_rows
    return count


def _history(con: sqlite3.Connection, delivery: Delivery) -> int:
    _prepare(con, delivery)
    text = _text_columns(con, delivery.table)
    names = [n for n, _, _ in delivery.columns]
    at = utc_text(delivery.created_at)
    close = (f"UPDATE {quote(delivery.table)} SET {quote(VALID_TO)} = ? "
             f"WHERE {_key_match(delivery)} AND {quote(VALID_TO)} IS NULL")
    insert = _insert_sql(delivery.table, [*names, VALID_FROM, VALID_TO])
    key_index = [names.index(k) for k in delivery.primary_key]
    count = 0
    for batch in delivery.rows:
        upserts, deletes = _split(batch, delivery, text)
        keys = [tuple(row[i] for i in key_index) for row in upserts] + deletes
        con.executemany(close, [(at, *key) for key in keys])
        con.executemany(insert, [(*row, at, None) for row in upserts])
        count += batch.num_rows
    return count


_LOADERS: dict[str, Callable[[sqlite3.Connection, Delivery], int]] = {
    "replace": _replace, "merge": _merge, "append": _append, "history": _history,
}
