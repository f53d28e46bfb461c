"""Discover a DuckDB file: tables and views, their columns as ``DuckdbSource`` reads
them, primary keys, unique constraints and indexes, ENUM values."""

from __future__ import annotations

from pathlib import Path

import duckdb

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.duckdb.source import DuckdbSource, duckdb_error
from dataferry.connectors.duckdb.types import quote
from dataferry.discover import typemap
from dataferry.discover.live import LiveColumn, LiveTable, probe
from dataferry.errors import SourceError
from dataferry.model.spec import DuckdbSource as DuckdbSpec
from dataferry.model.types import Decimal, Primitive

_HUGE = ("HUGEINT", "UHUGEINT", "INT128", "UINT128")


def tables(spec: DuckdbSpec, schema: str | None, only: list[str] | None) -> list[LiveTable]:
    """Every table and view of ``schema`` (default ``main``) of the file."""
    schema = schema or "main"
    source = DuckdbSource("discover", spec, Path("."))
    con = source._connect()
    try:
        relations = con.execute(
            "SELECT table_name, false FROM duckdb_tables() WHERE schema_name = ? "
            "AND database_name = current_database() UNION ALL "
            "SELECT view_name, true FROM duckdb_views() WHERE schema_name = ? AND NOT internal "
            "AND database_name = current_database() ORDER BY 1", [schema, schema]).fetchall()
        names = {str(n): bool(v) for n, v in relations}
        if only is not None:
            missing = [t for t in only if t not in names]
            if missing:
                raise SourceError(f"schema {schema} of {spec.path} has no table {missing[0]!r} "
                                  f"(it has {', '.join(names) or 'none'})", public=True)
            names = {t: names[t] for t in only}
        constraints = con.execute(
            "SELECT table_name, constraint_type, constraint_column_names FROM "
            "duckdb_constraints() WHERE schema_name = ? AND database_name = current_database() "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'NOT NULL')", [schema]).fetchall()
        indexes = con.execute(
            "SELECT table_name, expressions FROM duckdb_indexes() WHERE schema_name = ? "
            "AND database_name = current_database()", [schema]).fetchall()
    except duckdb.Error as error:
        raise duckdb_error(error, f"ferry discover: {spec.path}") from None
    finally:
        con.close()
    result = []
    for name, view in names.items():
        # The source quotes each dot-separated part of table: itself.
        table = name if schema == "main" else f"{schema}.{name}"
        relation = f"{quote(schema)}.{quote(name)}"
        query_only = "." in name or "." in schema
        live = source.columns(table, probe(query=f"select * from {relation}") if query_only
                              else probe(table=table))
        found = LiveTable(name, table, [_column(c) for c in live], view=view,
                          relation=relation, quote=quote, query_only=query_only)
        not_null = {str(c) for t, kind, cs in constraints if t == name and kind == "NOT NULL"
                    for c in cs}
        for t, kind, columns in constraints:
            columns = [str(c) for c in columns]
            if t != name or kind == "NOT NULL":
                continue
            if kind == "PRIMARY KEY":
                found.primary_key = columns
            elif set(columns) <= not_null:
                found.unique.append(columns)
            found.indexed.add(columns[0])
        for t, expressions in indexes:
            first = str(expressions).strip("[]'\" ").split(",")[0].strip("'\" ")
            if t == name and first in {c.name for c in live}:
                found.indexed.add(first)
        result.append(found)
    return result


def _column(column: SourceColumn) -> LiveColumn:
    native = column.native_type.upper()
    values = typemap.enum_values(column.native_type)
    if values:
        return typemap.declared(column, Primitive("string"), "ENUM", values)
    if native == "UUID":
        return typemap.declared(column, Primitive("uuid"))
    if native == "JSON":
        return typemap.declared(column, Primitive("json"))
    if native == "INTERVAL":
        return typemap.declared(column, Primitive("interval"))
    if native in _HUGE:
        return typemap.declared(column, Decimal(39, 0), f"{native}: 39 digits hold every value")
    mapped = typemap.from_arrow(column)
    if mapped.type == "string" and not native.startswith(("VARCHAR", "TEXT", "STRING", "CHAR")):
        return typemap.as_text(column, f"{column.native_type} is read as its text")
    return mapped
