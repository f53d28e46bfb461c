"""Tables of the SQLite sink: ``_ferry_loads``, creating and evolving target tables.

Everything here runs inside the delivery's transaction (SQLite DDL is transactional).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from dataferry.connectors.base import LOADS_TABLE
from dataferry.connectors.sqlite.source import quote
from dataferry.connectors.sqlite.types import BLOB, INTEGER, NUMERIC, REAL, TEXT, affinity
from dataferry.errors import SinkError
from dataferry.model.types import DataType, Decimal, Primitive, family

LOADS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {quote(LOADS_TABLE)} (dataset TEXT NOT NULL, "
    "table_name TEXT NOT NULL, version INTEGER NOT NULL, mode TEXT NOT NULL, "
    "rows INTEGER NOT NULL, loaded_at TEXT NOT NULL, PRIMARY KEY (dataset, table_name))"
)
LOADS_UPSERT = (
    f"INSERT INTO {quote(LOADS_TABLE)} (dataset, table_name, version, mode, rows, loaded_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset, table_name) DO UPDATE SET "
    "version = excluded.version, mode = excluded.mode, rows = excluded.rows, "
    "loaded_at = excluded.loaded_at"
)


@dataclass(frozen=True)
class TargetColumn:
    """A column the target table needs: its name, SQLite type and model type (None: ours)."""

    name: str
    native: str
    declared: DataType | None
    nullable: bool = True

    def ddl(self) -> str:
        return f"{quote(self.name)} {self.native}" + ("" if self.nullable else " NOT NULL")


def applied_version(con: sqlite3.Connection, dataset: str, table: str) -> int | None:
    """The version recorded in ``_ferry_loads`` (None when the table or row is missing)."""
    exists = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                         (LOADS_TABLE,)).fetchall()
    if not exists:
        return None
    row = con.execute(f"SELECT version FROM {quote(LOADS_TABLE)} WHERE dataset = ? "
                      "AND table_name = ?", (dataset, table)).fetchone()
    return None if row is None else int(row[0])


def table_columns(con: sqlite3.Connection, table: str) -> list[tuple[str, str, bool, int]]:
    """(name, declared type, nullable, position in the primary key) of an existing table."""
    rows = con.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return [(r[1], r[2] or "", not r[3], int(r[5])) for r in rows]


def create_table(con: sqlite3.Connection, table: str, columns: list[TargetColumn],
                 primary_key: list[str]) -> None:
    parts = [c.ddl() for c in columns]
    if primary_key:
        parts.append("PRIMARY KEY (" + ", ".join(quote(k) for k in primary_key) + ")")
    con.execute(f"CREATE TABLE {quote(table)} (" + ", ".join(parts) + ")")


def _fits(existing: str, column: TargetColumn) -> bool:
    """Whether values bound for ``column`` keep their exact value in an ``existing`` column."""
    have, need = affinity(existing), affinity(column.native)
    if have in (need, ""):
        return True
    textual = ("date", "time", "timestamp", "timestamp_tz", "uuid", "interval")
    if column.declared is not None and have == TEXT and need == NUMERIC:
        # The TEXT columns an earlier dataferry declared for these keep the values exactly.
        return family(column.declared) in (*textual, "json", "decimal")
    if need in (INTEGER, NUMERIC):  # integers and 0/1 survive INTEGER and NUMERIC affinity
        return have in (INTEGER, NUMERIC)
    if need == REAL:
        return have in (INTEGER, NUMERIC)
    # Text that never looks like a number keeps its form under NUMERIC affinity.
    return need == TEXT and have == NUMERIC and column.declared is not None \
        and family(column.declared) in textual


def _widens_from_integer(existing: str, column: TargetColumn) -> bool:
    """An INTEGER column that now holds decimals or uint64: rebuilt with TEXT."""
    declared = column.declared
    return affinity(existing) == INTEGER and affinity(column.native) == TEXT and (
        isinstance(declared, Decimal) or declared == Primitive("uint64"))


def evolve_table(con: sqlite3.Connection, table: str, columns: list[TargetColumn]) -> None:
    """Add missing columns (nullable) and widen integer columns to TEXT; else ``SinkError``.

    A column the model declares NOT NULL is added without the constraint, since the
    existing rows have no value for it.
    """
    existing = {name: native for name, native, _, _ in table_columns(con, table)}
    widen: dict[str, str] = {}
    for column in columns:
        have = existing.get(column.name)
        if have is None:
            con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} "
                        f"{column.native}")
        elif _widens_from_integer(have, column):
            widen[column.name] = column.native
        elif not _fits(have, column):
            declared = column.declared or column.native
            raise SinkError(
                f"table {table!r} column {column.name!r} is {have or 'untyped'} "
                f"({affinity(have) or BLOB} affinity), which cannot hold {declared} values "
                f"stored as {column.native}; drop or rename the table, or change its column")
    if widen:
        _rebuild(con, table, widen)


def _rebuild(con: sqlite3.Connection, table: str, widen: dict[str, str]) -> None:
    """SQLite's documented way to change column types: copy into a new table and rename."""
    old = table_columns(con, table)
    parts = [f"{quote(n)} {widen.get(n, native)}" + ("" if nullable else " NOT NULL")
             for n, native, nullable, _ in old]
    key = [n for n, *_, position in sorted(old, key=lambda c: c[3]) if position]
    if key:
        parts.append("PRIMARY KEY (" + ", ".join(quote(k) for k in key) + ")")
    extras = [sql for (sql,) in con.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL", (table,)).fetchall()]
    temporary = f"_ferry_widen_{table}"
    names = ", ".join(quote(n) for n, *_ in old)
    con.execute(f"DROP TABLE IF EXISTS {quote(temporary)}")
    con.execute(f"CREATE TABLE {quote(temporary)} (" + ", ".join(parts) + ")")
    con.execute(f"INSERT INTO {quote(temporary)} ({names}) SELECT {names} FROM {quote(table)}")
    con.execute(f"DROP TABLE {quote(table)}")
    con.execute(f"ALTER TABLE {quote(temporary)} RENAME TO {quote(table)}")
    for sql in extras:
        con.execute(sql)


def ensure_unique_key(con: sqlite3.Connection, table: str, primary_key: list[str]) -> None:
    """Merges need a unique index on the key (``ON CONFLICT``); add one if the table has none."""
    declared = [n for n, *_, position in sorted(table_columns(con, table), key=lambda c: c[3])
                if position]
    if sorted(declared) == sorted(primary_key):  # (an INTEGER PRIMARY KEY has no index)
        return
    indexes = con.execute(f"PRAGMA index_list({quote(table)})").fetchall()
    for index in indexes:
        if index[2]:  # unique
            cols = [r[2] for r in con.execute(f"PRAGMA index_info({quote(index[1])})").fetchall()]
            if sorted(cols) == sorted(primary_key):
                return
    name = f"_ferry_key_{table}"
    keys = ", ".join(quote(k) for k in primary_key)
    try:
        con.execute(f"CREATE UNIQUE INDEX {quote(name)} ON {quote(table)} ({keys})")
    except sqlite3.IntegrityError as error:
        raise SinkError(f"table {table!r} has rows with the same primary key "
                        f"({', '.join(primary_key)}): {error}; merge needs unique keys",
                        public=f"table {table!r} has rows with the same primary key "
                               f"({', '.join(primary_key)}); merge needs unique keys") from None
