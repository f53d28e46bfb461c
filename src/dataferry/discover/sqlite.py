"""Discover a SQLite file: tables and views, their declared column types, primary keys
and indexes.

SQLite columns have only a declared type name (an *affinity*); discover maps the usual
names to the model type they mean (``DATETIME`` -> timestamp, ``DECIMAL(10,2)`` ->
decimal(10,2), ``BOOLEAN`` -> bool, ``JSON`` -> json...). Many SQLite files keep dates,
decimals and JSON in ``TEXT`` columns: for a text (or typeless) column, discover looks
at its first ``SAMPLE_ROWS`` values and proposes timestamp_tz, timestamp, date, uuid,
json or decimal when every one of them is such a text (``sample.py``); for a NUMERIC
or untyped column holding only numbers, int64 or float64. The ingest then
converts each value to that type and names the row of a value that does not fit.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.sqlite.source import SqliteSource, quote, sqlite_error
from dataferry.connectors.sqlite.types import BLOB, INTEGER, NUMERIC, REAL, TEXT, affinity
from dataferry.discover import typemap
from dataferry.discover.live import LiveColumn, LiveTable, probe
from dataferry.discover.sample import SAMPLE_ROWS, text_type
from dataferry.errors import SourceError
from dataferry.model.spec import SqliteSource as SqliteSpec
from dataferry.model.types import Decimal, Primitive

_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
_BY_NAME = {
    "bool": "bool", "boolean": "bool", "date": "date", "time": "time",
    "datetime": "timestamp", "timestamp": "timestamp", "timestamptz": "timestamp_tz",
    "timestamp with time zone": "timestamp_tz", "json": "json", "jsonb": "json",
    "uuid": "uuid", "float": "float64", "double": "float64", "double precision": "float64",
    "real": "float64",
}


def tables(spec: SqliteSpec, only: list[str] | None) -> list[LiveTable]:
    """Every table and view of the file (SQLite's own ``sqlite_*`` tables excepted)."""
    source = SqliteSource("discover", spec, Path("."))
    con = source._connect()
    try:
        relations = [(str(n), t == "view") for n, t in con.execute(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
        names = dict(relations)
        if only is not None:
            missing = [t for t in only if t not in names]
            if missing:
                raise SourceError(f"{spec.path} has no table {missing[0]!r} (it has "
                                  f"{', '.join(names) or 'none'})", public=True)
            names = {t: names[t] for t in only}
        result = []
        for name, view in names.items():
            query_only = "." in name  # the source reads a dot as schema.table
            live = source.columns(name, probe(query=f"SELECT * FROM {quote(name)}")
                                  if query_only else probe(table=name))
            columns = [_refined(con, name, _column(c)) for c in live]
            table = LiveTable(name, name, columns, view=view, query_only=query_only,
                              relation=quote(name), quote=quote)
            _keys(con, table)
            result.append(table)
        return result
    except sqlite3.Error as error:
        raise sqlite_error(error, f"ferry discover: {spec.path}") from None
    finally:
        con.close()


def _keys(con: sqlite3.Connection, table: LiveTable) -> None:
    info = con.execute(f"PRAGMA table_info({quote(table.name)})").fetchall()
    table.primary_key = [str(r[1]) for r in sorted(info, key=lambda r: r[5]) if r[5]]
    not_null = {str(r[1]) for r in info if r[3]} | set(table.primary_key)
    if table.primary_key:
        table.indexed.add(table.primary_key[0])
    for index in con.execute(f"PRAGMA index_list({quote(table.name)})").fetchall():
        columns = [str(r[2]) for r in con.execute(f"PRAGMA index_info({quote(index[1])})")
                   if r[2] is not None]
        if not columns:
            continue
        table.indexed.add(columns[0])
        if index[2] and index[3] != "pk" and set(columns) <= not_null:
            table.unique.append(columns)


def _refined(con: sqlite3.Connection, table: str, column: LiveColumn) -> LiveColumn:
    """A text, NUMERIC or untyped column's type from its values (module docstring)."""
    kind = affinity(column.source.native_type)
    if column.type != "string" or kind not in (TEXT, NUMERIC, ""):
        return column
    values = [row[0] for row in con.execute(
        f"SELECT {quote(column.name)} FROM {quote(table)} "
        f"WHERE {quote(column.name)} IS NOT NULL LIMIT {SAMPLE_ROWS}")]
    what = column.source.native_type or "untyped"
    if values and kind != TEXT and all(isinstance(v, int | float) for v in values):
        integers = all(isinstance(v, int) for v in values)
        return typemap.declared(column.source, Primitive("int64" if integers else "float64"),
                                f"{what} column: every sampled value is "
                                f"{'an integer' if integers else 'a number'}")
    if not values or not all(isinstance(v, str) for v in values):
        return column
    text = text_type(values)
    if text is None:
        return column
    return typemap.declared(column.source, text, f"{what} column: every sampled value is "
                                                 f"{text} text")


def _column(column: SourceColumn) -> LiveColumn:
    native = " ".join(column.native_type.lower().split())
    if native in ("", "(none)"):
        return typemap.as_text(column, "no declared type: read as text")
    if native in _BY_NAME:
        return typemap.declared(column, Primitive(_BY_NAME[native]))
    if match := _DECIMAL.match(native):
        precision, scale = int(match[1]), int(match[2] or 0)
        if 1 <= precision <= 76 and scale <= precision:
            return typemap.declared(column, Decimal(precision, scale))
    kind = affinity(column.native_type)
    if kind == INTEGER:
        return typemap.declared(column, Primitive("int64"))
    if kind == REAL:
        return typemap.declared(column, Primitive("float64"))
    if kind == TEXT:
        return typemap.declared(column, Primitive("string"))
    if kind == BLOB:
        return typemap.declared(column, Primitive("binary"))
    return typemap.as_text(column, f"{column.native_type} (NUMERIC affinity): read as text; "
                                   "declare decimal(p,s) or float64 if it holds numbers")
