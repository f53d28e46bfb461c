"""Discover a MariaDB/MySQL database: tables and views, their columns as ``MysqlSource``
reads them, primary keys, unique and other indexes, ENUM values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymysql

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.mysql.connection import (
    classify,
    connect,
    ident,
    parse_dsn,
    qualified,
    secret_of,
)
from dataferry.connectors.mysql.source import MysqlSource
from dataferry.connectors.mysql.types import held_type
from dataferry.discover import typemap
from dataferry.discover.live import LiveColumn, LiveTable, probe
from dataferry.errors import SourceError, UsageError
from dataferry.model.spec import MysqlSource as MysqlSpec
from dataferry.model.types import Primitive, String

_WHAT = "ferry discover"
_TEXT_TYPES = ("tinytext", "text", "mediumtext", "longtext")


def tables(spec: MysqlSpec, schema: str | None, only: list[str] | None) -> list[LiveTable]:
    """Every table and view of the database ``schema`` (default: the dsn's database)."""
    database = schema or parse_dsn(spec.dsn, _WHAT, SourceError).database
    if not database:
        raise UsageError("the DSN names no database; add it (mysql://user@host/database) "
                         "or give --schema DATABASE")
    source = MysqlSource("discover", spec, Path("."))
    connection = connect(spec, _WHAT)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME", (database,))
            relations = [(str(n), str(t) == "VIEW") for n, t in cursor.fetchall()]
            cursor.execute(
                "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, NULLABLE "
                "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
                "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", (database,))
            statistics = list(cursor.fetchall())
    except pymysql.Error as exc:
        raise classify(exc, spec, _WHAT, secret_of(spec, _WHAT),
                       "reading the catalog of") from None
    finally:
        connection.close()
    names = dict(relations)
    if only is not None:
        missing = [t for t in only if t not in names]
        if missing:
            raise SourceError(f"database {database} has no table {missing[0]!r} (it has "
                              f"{', '.join(names) or 'none'})", public=True)
        names = {t: names[t] for t in only}
    try:
        return [_table(source, database, name, view, statistics)
                for name, view in names.items()]
    finally:
        source.close()


def _table(source: MysqlSource, database: str, name: str, view: bool,
           statistics: list[Any]) -> LiveTable:
    table = f"{database}.{name}" if "." not in name and "`" not in name else \
        qualified(database, name)
    live = source.columns(table, probe(table=table))
    found = LiveTable(name, table, [_column(c) for c in live], view=view,
                      relation=qualified(database, name),
                      quote=ident)
    indexes: dict[str, tuple[bool, list[str], bool]] = {}
    for table_name, index, non_unique, column, nullable in statistics:
        if table_name != name:
            continue
        unique, columns, not_null = indexes.get(str(index), (not int(non_unique), [], True))
        indexes[str(index)] = (unique, [*columns, str(column)], not_null and nullable != "YES")
    for index, (unique, columns, not_null) in indexes.items():
        if index == "PRIMARY":
            found.primary_key = columns
        elif unique and not_null:
            found.unique.append(columns)
        found.indexed.add(columns[0])
    return found


def _column(column: SourceColumn) -> LiveColumn:
    native = column.native_type.lower()
    values = typemap.enum_values(native)
    if values:
        return typemap.declared(column, Primitive("string"), "ENUM", values)
    if native.startswith("set("):
        return typemap.as_text(column, "SET: read as its comma-separated text")
    if native.startswith(_TEXT_TYPES):
        return typemap.declared(column, Primitive("string"))
    held = held_type(native, native == "json")
    if held is not None:
        note = None
        if native.startswith("tinyint(1)"):
            note = "TINYINT(1) (BOOLEAN): declare bool if it holds only 0 and 1"
        if isinstance(held, String) and held.length > 10_485_760:
            held = Primitive("string")
        return typemap.declared(column, held, note)
    return typemap.from_arrow(column)
