"""The sink's tables: ``_ferry_loads``, and each target created, evolved or checked.

Everything here runs inside the delivery's transaction, so a table created or altered for
a delivery that then fails is rolled back with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import adbc_driver_postgresql.dbapi as adbc

from dataferry.connectors.base import LOADS_TABLE
from dataferry.connectors.postgres.connection import ident, literal, qualified
from dataferry.connectors.postgres.types import native_type, widened_type, writable
from dataferry.errors import SinkError
from dataferry.model.types import DataType

Column = tuple[str, DataType, bool]  # declared name, type, nullable
Extra = tuple[str, str, bool]  # name, native type, not null


class Session:
    """Runs SQL on the delivery's ADBC cursor (one transaction until commit)."""

    def __init__(self, cursor: adbc.Cursor) -> None:
        self.cursor = cursor

    def run(self, statement: str) -> None:
        self.cursor.execute(statement)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        self.cursor.execute(query)
        return list(self.cursor.fetchall())


@dataclass
class Target:
    """An existing table: its columns (name -> ``format_type`` text) in order."""

    schema: str
    name: str
    columns: dict[str, str]
    not_null: set[str]
    unique: list[set[str]] = field(default_factory=list)  # column sets of unique indexes

    @property
    def where(self) -> str:
        return f"table {self.schema}.{self.name}"

    def find(self, name: str) -> str | None:
        """The column for a declared name: exact, else the only one equal ignoring case."""
        if name in self.columns:
            return name
        folded = [c for c in self.columns if c.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None


def ensure_loads(session: Session, schema: str) -> None:
    session.run(f"create schema if not exists {ident(schema)}")
    session.run(
        f"create table if not exists {qualified(schema, LOADS_TABLE)} ("
        "dataset text not null, table_name text not null, version bigint not null, "
        "mode text not null, rows bigint not null, loaded_at timestamptz not null, "
        "primary key (dataset, table_name))")


def applied_version(session: Session, schema: str, dataset: str, table: str) -> int | None:
    """The version ``_ferry_loads`` records for (dataset, table), None when none."""
    exists = session.rows(f"select to_regclass({literal(qualified(schema, LOADS_TABLE))})")
    if exists[0][0] is None:
        return None
    found = session.rows(
        f"select version from {qualified(schema, LOADS_TABLE)} "
        f"where dataset = {literal(dataset)} and table_name = {literal(table)}")
    return int(found[0][0]) if found else None


def record_load(session: Session, schema: str, dataset: str, table: str, version: int,
                mode: str, rows: int) -> None:
    session.run(
        f"insert into {qualified(schema, LOADS_TABLE)} as l "
        "(dataset, table_name, version, mode, rows, loaded_at) values ("
        f"{literal(dataset)}, {literal(table)}, {version}, {literal(mode)}, {rows}, now()) "
        "on conflict (dataset, table_name) do update set version = excluded.version, "
        "mode = excluded.mode, rows = excluded.rows, loaded_at = excluded.loaded_at")


def describe(session: Session, schema: str, name: str) -> Target | None:
    """The table ``schema.name`` as it is now, or None when there is none."""
    regclass = f"to_regclass({literal(qualified(schema, name))})"
    columns = session.rows(
        "select attname::text, format_type(atttypid, atttypmod), attnotnull "
        f"from pg_attribute where attrelid = {regclass} and attnum > 0 "
        "and not attisdropped order by attnum")
    if not columns:
        return None
    unique = session.rows(
        "select array_agg(a.attname::text) from pg_index i "
        "cross join unnest(i.indkey) as k(attnum) "
        "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum "
        f"where i.indrelid = {regclass} and i.indisunique and i.indpred is null "
        "group by i.indexrelid")
    return Target(schema, name, {str(n): str(t) for n, t, _ in columns},
                  {str(n) for n, _, not_null in columns if not_null},
                  [set(names) for (names,) in unique])


def create(session: Session, schema: str, name: str, columns: list[Column],
           extra: list[Extra], key: list[str]) -> None:
    """Create ``schema.name`` with the declared columns' native types (``key``: primary)."""
    parts = [f"{ident(n)} {native_type(t)}{'' if nullable else ' not null'}"
             for n, t, nullable in columns]
    parts += [f"{ident(n)} {native}{' not null' if not_null else ''}"
              for n, native, not_null in extra]
    if key:
        parts.append(f"primary key ({', '.join(ident(k) for k in key)})")
    session.run(f"create table {qualified(schema, name)} ({', '.join(parts)})")


def ensure(session: Session, schema: str, name: str, columns: list[Column],
           extra: list[Extra], key: list[str]) -> Target:
    """The target table, created when missing, else evolved to hold the delivery: a new
    nullable column is added, a narrower type widened (``ALTER COLUMN TYPE``), NOT NULL
    dropped from a column now declared nullable. Raises ``SinkError`` for a new NOT NULL
    column, a type it cannot widen, or (with ``key``) no unique index on the key.
    """
    target = describe(session, schema, name)
    if target is None:
        create(session, schema, name, columns, extra, key)
        target = describe(session, schema, name)
        assert target is not None
        return target
    table = qualified(schema, name)
    for column, t, nullable in columns:
        actual = target.find(column)
        if actual is None:
            if not nullable:
                raise SinkError(
                    f"{target.where}: the delivery has a new column {column} ({t}) that is "
                    "not nullable, but the table's rows have no value for it; declare it "
                    "nullable, or drop the table so the next delivery reloads it", public=True)
            session.run(f"alter table {table} add column {ident(column)} {native_type(t)}")
            target.columns[column] = native_type(t)
            continue
        native = target.columns[actual]
        if not writable(t, native):
            wider = widened_type(t, native)
            if wider is None:
                raise SinkError(
                    f"{target.where}: column {actual} is {native}, which cannot hold the "
                    f"declared {t}; change the column, or drop the table so the next "
                    "delivery recreates it", public=True)
            session.run(f"alter table {table} alter column {ident(actual)} type {wider} "
                        f"using {ident(actual)}::{wider}")
            target.columns[actual] = wider
        if nullable and actual in target.not_null and actual not in key:
            session.run(f"alter table {table} alter column {ident(actual)} drop not null")
            target.not_null.discard(actual)
    for column, native, _ in extra:
        if target.find(column) is None:
            if column in key:
                raise SinkError(f"{target.where} has no column {column}: it was not made by "
                                "a history delivery; drop it or deliver to another table",
                                public=True)
            session.run(f"alter table {table} add column {ident(column)} {native}")
            target.columns[column] = native
    if key:
        wanted = {target.find(k) or k for k in key}
        if wanted not in target.unique:
            raise SinkError(
                f"{target.where} has no primary key or unique index on "
                f"({', '.join(sorted(wanted))}), which the delivery needs to find rows by key;"
                " add one, or drop the table so the next delivery creates it", public=True)
    return target


def dependents(session: Session, schema: str, name: str) -> bool:
    """Whether views or foreign keys depend on the table (then it cannot be swapped)."""
    regclass = f"to_regclass({literal(qualified(schema, name))})"
    found = session.rows(
        "select exists (select 1 from pg_depend d join pg_rewrite r on r.oid = d.objid "
        f"where d.refobjid = {regclass} and r.ev_class <> d.refobjid) "
        f"or exists (select 1 from pg_constraint where confrelid = {regclass})")
    return bool(found[0][0])


def copy_grants(session: Session, schema: str, source: str, target: str) -> None:
    """Give ``target`` the privileges granted on ``source`` (its owner's excepted)."""
    grants = session.rows(
        "select case when a.grantee = 0 then 'public' else quote_ident(r.rolname) end, "
        "a.privilege_type, a.is_grantable from pg_class c cross join aclexplode(c.relacl) a "
        "left join pg_roles r on r.oid = a.grantee "
        f"where c.oid = to_regclass({literal(qualified(schema, source))}) "
        "and a.grantee <> c.relowner")
    for grantee, privilege, grantable in grants:
        option = " with grant option" if grantable else ""
        session.run(f"grant {privilege} on {qualified(schema, target)} to {grantee}{option}")
