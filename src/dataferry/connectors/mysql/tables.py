"""Target tables of the MariaDB sink: create, check and evolve them; ``_ferry_loads``.

A delivery's columns are created with ``types.native_type``. An existing table is checked
column by column: a type that already holds every delivered value is kept; a narrower
one is widened (``ALTER TABLE .. MODIFY COLUMN``, e.g. INT -> BIGINT, VARCHAR(10) ->
VARCHAR(20)); a new nullable column is added (``ADD COLUMN``); anything else (a type of
another family, a new NOT NULL column, another primary key) is a ``SinkError`` naming the
table and the column. DDL commits implicitly in MariaDB, so all of it runs before a
delivery's data transaction and is idempotent: a crashed delivery re-run finds it done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql

from dataferry.connectors.base import LOADS_TABLE
from dataferry.connectors.mysql.connection import MAX_IDENTIFIER, Server, ident, qualified
from dataferry.connectors.mysql.types import held_type, native_type
from dataferry.errors import SinkError
from dataferry.model.types import DataType, Primitive, String, describe_change, is_widening

Cursor = Any  # a PyMySQL cursor


@dataclass(frozen=True)
class TargetColumn:
    """A column a delivery writes: declared type, nullability, part of the key or not."""

    name: str
    type: DataType
    nullable: bool = True
    key: bool = False


@dataclass(frozen=True)
class Existing:
    name: str
    column_type: str
    nullable: bool
    is_json: bool


def aux_name(table: str, tag: str) -> str:
    """A helper table's name next to ``table`` (staging ``new``, swapped-out ``old``...),
    shortened with a hash when it would exceed MariaDB's 64 characters."""
    suffix = f"__ferry_{tag}"
    if len(table) + len(suffix) <= MAX_IDENTIFIER:
        return table + suffix
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    return f"{table[:MAX_IDENTIFIER - len(suffix) - 9]}_{digest}{suffix}"


def column_sql(column: TargetColumn, server: Server, *, nullable: bool | None = None) -> str:
    """``name TYPE [collation] NULL|NOT NULL`` for CREATE TABLE and ALTER TABLE."""
    native = native_type(column.type, key=column.key)
    if column.key and native.startswith("VARCHAR"):
        # Keys compare exactly: no case folding, trailing spaces significant.
        native += " CHARACTER SET utf8mb4 COLLATE " + (
            "utf8mb4_nopad_bin" if server.mariadb else "utf8mb4_bin")
    allow_null = column.nullable if nullable is None else nullable
    return f"{ident(column.name)} {native} {'NULL' if allow_null else 'NOT NULL'}"


def create_table(cursor: Cursor, name: str, columns: list[TargetColumn], server: Server, *,
                 primary_key: Sequence[str] = (), index: Sequence[str] = ()) -> None:
    """CREATE TABLE ``name`` (qualified SQL name) with InnoDB and utf8mb4."""
    parts = [column_sql(c, server) for c in columns]
    if primary_key:
        parts.append(f"PRIMARY KEY ({', '.join(ident(k) for k in primary_key)})")
    if index:
        parts.append(f"KEY `_ferry_key` ({', '.join(ident(k) for k in index)})")
    cursor.execute(f"CREATE TABLE {name} ({', '.join(parts)}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def existing_columns(cursor: Cursor, database: str, table: str) -> dict[str, Existing] | None:
    """The table's columns by lower-case name, None when it does not exist."""
    cursor.execute("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                   "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
    rows = cursor.fetchall()
    if not rows:
        return None
    checks = ""
    try:
        cursor.execute("SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                       "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
        checks = " ".join(str(c) for (c,) in cursor.fetchall()).lower()
    except pymysql.Error:  # MySQL has no TABLE_NAME there (and a real JSON type)
        checks = ""
    return {
        str(name).lower(): Existing(
            str(name), str(kind), nullable == "YES",
            str(kind).lower() == "json" or f"json_valid({ident(str(name)).lower()})" in checks)
        for name, kind, nullable in rows
    }


def primary_key_of(cursor: Cursor, database: str, table: str) -> list[str]:
    cursor.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                   "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' "
                   "ORDER BY ORDINAL_POSITION", (database, table))
    return [str(name) for (name,) in cursor.fetchall()]


def _fits(wanted: DataType | None, held: DataType | None) -> bool:
    """Whether a column holding ``held`` stores every value of ``wanted`` exactly."""
    if wanted is None or held is None:
        return wanted == held
    if wanted == held or is_widening(wanted, held):
        return True
    if wanted in (Primitive("json"), Primitive("interval")):  # JSON/ISO 8601 text as text
        return held == Primitive("string")
    if wanted == String(36) or wanted == Primitive("uuid"):  # a uuid as CHAR(36) or UUID
        return held == Primitive("uuid") or is_widening(String(36), held)
    return False


def plan_evolution(existing: dict[str, Existing], columns: list[TargetColumn], server: Server,
                   label: str) -> list[str]:
    """ALTER TABLE clauses that make an existing table hold the delivered columns.

    Raises ``SinkError`` naming ``label`` (the table) and the column when it cannot.
    """
    clauses = []
    for column in columns:
        native = native_type(column.type, key=column.key)
        found = existing.get(column.name.lower())
        if found is None:
            if not column.nullable:
                raise SinkError(
                    f"{label}: the delivery has a new column {column.name!r} ({column.type}) "
                    "that is not nullable, which cannot be added to a table with rows; "
                    "declare it nullable, or drop the table to reload it in full")
            clauses.append(f"ADD COLUMN {column_sql(column, server)}")
            continue
        wanted, held = held_type(native), held_type(found.column_type, found.is_json)
        # MariaDB's UUID type refuses some uuids the model accepts: it becomes CHAR(36)
        # (lossless: every UUID value has its canonical text).
        uuid_to_text = column.type == Primitive("uuid") and held == Primitive("uuid")
        widen = uuid_to_text or not _fits(wanted, held)
        if widen and not uuid_to_text and (
                held is None or wanted is None or not is_widening(held, wanted)):
            reason = (describe_change(held, wanted) if held is not None and wanted is not None
                      else "no declared type maps to it")
            raise SinkError(
                f"{label}: column {found.name!r} is {found.column_type} but the delivery needs "
                f"{native} for {column.type} ({reason}); change the column or drop the table "
                "to reload it in full")
        allow_null = (column.nullable or found.nullable) and not column.key  # keys stay NOT NULL
        if widen or (allow_null and not found.nullable):
            target = TargetColumn(found.name, column.type, column.nullable, column.key)
            definition = column_sql(target, server, nullable=allow_null)
            if not widen:  # keep the column's own type, only allow NULL
                definition = f"{ident(found.name)} {found.column_type} NULL"
            clauses.append(f"MODIFY COLUMN {definition}")
    return clauses


# --- _ferry_loads -------------------------------------------------------------------------


def ensure_loads(cursor: Cursor, database: str) -> None:
    """Create ``_ferry_loads`` (base.LOADS_TABLE) in ``database`` if missing."""
    cursor.execute(
        f"CREATE TABLE IF NOT EXISTS {qualified(database, LOADS_TABLE)} ("
        "`dataset` VARCHAR(255) NOT NULL, `table_name` VARCHAR(64) NOT NULL, "
        "`version` BIGINT NOT NULL, `mode` VARCHAR(16) NOT NULL, `rows` BIGINT NOT NULL, "
        "`loaded_at` DATETIME(6) NOT NULL, PRIMARY KEY (`dataset`, `table_name`)"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")


def loaded_version(cursor: Cursor, database: str, dataset: str, table: str, *,
                   lock: bool = False) -> int | None:
    """The version ``_ferry_loads`` records; ``lock`` holds the row until commit."""
    cursor.execute(f"SELECT `version` FROM {qualified(database, LOADS_TABLE)} "
                   "WHERE `dataset` = %s AND `table_name` = %s" + (" FOR UPDATE" if lock else ""),
                   (dataset, table))
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def record_load(cursor: Cursor, database: str, dataset: str, table: str, version: int,
                mode: str, rows: int) -> None:
    """Upsert the ``_ferry_loads`` row (in the caller's transaction)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    cursor.execute(
        f"INSERT INTO {qualified(database, LOADS_TABLE)} "
        "(`dataset`, `table_name`, `version`, `mode`, `rows`, `loaded_at`) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE `version` = VALUES(`version`), "
        "`mode` = VALUES(`mode`), `rows` = VALUES(`rows`), `loaded_at` = VALUES(`loaded_at`)",
        (dataset, table, version, mode, rows, now))
