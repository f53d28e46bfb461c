"""Discover a PostgreSQL schema: tables and views, their columns as ``PostgresSource``
reads them, primary keys, unique and other indexes, enum values, composite columns
(which the source reads as JSON objects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.postgres.connection import Server, ident, qualified
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.connectors.postgres.types import holds
from dataferry.discover import typemap
from dataferry.discover.live import LiveColumn, LiveTable, probe
from dataferry.errors import SourceError
from dataferry.model.spec import PostgresSource as PostgresSpec
from dataferry.model.types import ListType, Primitive

_RELATIONS = """
select c.oid::int8, c.relname, c.relkind in ('v', 'm') from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where n.nspname = %s and c.relkind in ('r', 'p', 'v', 'm', 'f') and not c.relispartition
order by c.relname
"""
_INDEXES = """
select i.indrelid::int8, i.indisprimary, i.indisunique and i.indpred is null,
       array_agg(a.attname::text order by k.ord), bool_and(a.attnotnull)
from pg_index i cross join unnest(i.indkey) with ordinality as k(attnum, ord)
join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
where i.indrelid = any(%s::oid[]) and i.indexprs is null
group by i.indrelid, i.indexrelid, i.indisprimary, i.indisunique, i.indpred is null
"""
_ENUMS = """
select a.attrelid::int8, a.attname::text, array_agg(e.enumlabel::text order by e.enumsortorder)
from pg_attribute a join pg_enum e on e.enumtypid = a.atttypid
where a.attrelid = any(%s::oid[]) and a.attnum > 0 and not a.attisdropped
group by a.attrelid, a.attname
"""
_COMPOSITES = """
select a.attrelid::int8, a.attname::text from pg_attribute a
join pg_type t on t.oid = a.atttypid
where a.attrelid = any(%s::oid[]) and a.attnum > 0 and not a.attisdropped and t.typtype = 'c'
"""


def tables(spec: PostgresSpec, schema: str | None, only: list[str] | None) -> list[LiveTable]:
    """Every table and view of ``schema`` (default: the connection's current schema)."""
    source = PostgresSource("discover", spec, Path("."))
    server = Server(spec, "ferry discover")
    try:
        with server.connect() as connection:
            if schema is None:
                row = connection.execute("select current_schema()").fetchone()
                schema = str(row[0]) if row and row[0] else "public"
            relations = connection.execute(_RELATIONS, (schema,)).fetchall()
            found = _pick(relations, only, schema)
            oids = [oid for oid, _, _ in found]
            indexes: dict[int, list[Any]] = {}
            for oid, *index in connection.execute(_INDEXES, (oids,)):
                indexes.setdefault(int(oid), []).append(index)
            enums: dict[int, dict[str, list[str]]] = {}
            for oid, column, values in connection.execute(_ENUMS, (oids,)):
                enums.setdefault(int(oid), {})[str(column)] = list(values)
            composite = {(int(oid), str(column))
                         for oid, column in connection.execute(_COMPOSITES, (oids,))}
            return [_table(source, schema, name, view, indexes.get(oid, []), enums.get(oid, {}),
                           {c for o, c in composite if o == oid})
                    for oid, name, view in found]
    except psycopg.Error as exc:
        raise server.error(exc, "reading the catalog of") from None
    finally:
        source.close()


def _pick(relations: list[Any], only: list[str] | None,
          schema: str) -> list[tuple[int, str, bool]]:
    if only is None:
        return [(int(o), str(n), bool(v)) for o, n, v in relations]
    by_name = {str(n): (int(o), str(n), bool(v)) for o, n, v in relations}
    missing = [t for t in only if t not in by_name]
    if missing:
        raise SourceError(f"schema {schema} has no table {missing[0]!r} (it has "
                          f"{', '.join(by_name) or 'none'})", public=True)
    return [by_name[t] for t in only]


def _table(source: PostgresSource, schema: str, name: str, view: bool, indexes: list[Any],
           enums: dict[str, list[str]], composite: set[str]) -> LiveTable:
    table = f"{_part(schema)}.{_part(name)}"
    live = source.columns(table, probe(table=table))
    columns = [typemap.declared(c, Primitive("json"), f"composite type {c.native_type}: its "
                                "fields as a JSON object") if c.name in composite
               else _column(c, tuple(enums.get(c.name) or ())) for c in live]
    found = LiveTable(name, table, columns, view=view, relation=qualified(schema, name),
                      quote=ident)
    for primary, unique, names, not_null in indexes:
        names = [str(n) for n in names]
        if primary:
            found.primary_key = names
        elif unique and not_null:
            found.unique.append(names)
        found.indexed.add(names[0])
    return found


def _part(name: str) -> str:
    """A table name part as ``split_table`` reads it back (quoted unless plain lower case)."""
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return ident(name)


def _column(column: SourceColumn, values: tuple[str, ...]) -> LiveColumn:
    native = column.native_type
    if values:
        return typemap.declared(column, Primitive("string"), f"enum {native}", values)
    if native in ("json", "jsonb"):
        return typemap.declared(column, Primitive("json"))
    held = holds(native)
    if held is not None:
        return typemap.declared(column, held)
    if native == "numeric":
        return typemap.as_text(column, "numeric without a precision: read as its exact text; "
                                       "declare decimal(p,s) if you know p and s")
    if native.endswith("[]") and native[:-2] in ("json", "jsonb"):
        return typemap.declared(column, ListType(Primitive("json")))
    mapped = typemap.from_arrow(column)
    if mapped.type == "string" and native not in ("text", "name", '"char"') and \
            not native.startswith(("character", "bpchar")):
        return typemap.as_text(column, f"{native} is read as PostgreSQL's text of it")
    return mapped
