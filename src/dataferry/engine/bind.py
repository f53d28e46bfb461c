"""Bind a SQL transformer's query over empty inputs: the columns it yields, or why it fails.

``ferry check`` uses this to find what would fail at run time without any data: the
query is bound by DuckDB against empty tables that have exactly the schema ``transform``
registers for each input (the declared types as the store decodes them, masked columns
as text), under the same names (``view_names``) and the same lock-down, on one in-memory
connection for the whole model. A query of several statements (``create temp table ...;
select ...``) runs them, on a connection of its own so nothing it creates is seen by the
next transformer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

from dataferry.connectors.duckdb.types import quote
from dataferry.intervals import native_intervals
from dataferry.model.spec import Column
from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    StructType,
    parse_type,
)
from dataferry.store.storage import decode_batch, store_schema

FailureKind = Literal["syntax", "table", "column", "alias", "other"]

_OWN_WITH = re.compile(r"\bwith\b", re.IGNORECASE)
"""A query that may name tables of its own (a word ``with`` anywhere, in a string or a
comment too: such a query is bound over views, which is never wrong)."""


@dataclass(frozen=True)
class OutputColumn:
    """One column the query yields: its name, DuckDB's type name and the dataferry type
    the run hands to the store (None for NULL, which fits any type, and when no dataferry
    type holds it: ``supported`` is then False, e.g. TIME WITH TIME ZONE)."""

    name: str
    duckdb_type: str
    type: DataType | None
    supported: bool = True


@dataclass(frozen=True)
class BindFailure:
    """Why the query does not bind. ``name`` is the table, column or alias DuckDB did not
    find (for those kinds); ``offset`` a character offset into the SQL, when DuckDB says."""

    kind: FailureKind
    message: str
    name: str | None = None
    offset: int | None = None


def input_schema(columns: Mapping[str, Column], masked: set[str]) -> pa.Schema:
    """The schema an input has in a transformer's SQL: the declared columns decoded as
    ``transform`` reads them from the store, the ``masked`` ones as text (a keyed hash)."""
    stored = store_schema(columns)
    declared = {name: column.type for name, column in columns.items()}
    decoded = decode_batch(pa.RecordBatch.from_pylist([], schema=stored), declared).schema
    schema = pa.schema([pa.field(f.name, pa.string(), f.nullable) if f.name in masked else f
                        for f in decoded])
    return sql_input(pa.RecordBatch.from_pylist([], schema=schema), declared, masked).schema


def sql_input(batch: pa.RecordBatch, declared: Mapping[str, str], masked: set[str]
              ) -> pa.RecordBatch:
    """A decoded input batch as a SQL transformer sees it: interval columns (ISO 8601 text
    in the store, also nested) as Arrow intervals, so they reach DuckDB as INTERVAL (it
    cannot cast ISO 8601 text); masked columns stay the text of their hash."""
    fields, arrays = list(batch.schema), list(batch.columns)
    for index, field in enumerate(fields):
        kind = declared.get(field.name)
        if kind is not None and field.name not in masked and "interval" in kind:
            arrays[index] = native_intervals(arrays[index], parse_type(kind))
            fields[index] = field.with_type(arrays[index].type)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _without_trailing_semicolons(sql: str) -> str:
    """``sql`` (one statement) without the semicolons that end it."""
    query = sql.rstrip()
    while query.endswith(";"):
        query = query[:-1].rstrip()
    return query


class QueryBinder:
    """Binds queries over empty inputs on one locked-down in-memory DuckDB connection.

    Each distinct input schema becomes one empty table, created once. A query is bound
    as the run sees it (``bind_over_views``): its inputs are views over those tables
    under the names the transform gives them, created in a transaction that is rolled
    back after binding, so the next query sees none of them. Creating and dropping the
    views is most of that (about 1 ms a query), so ``bind`` first tries the query under
    a ``WITH`` that names the tables as its inputs (about 0.3 ms), when that cannot
    differ from the views: see ``bind``.
    """

    def __init__(self) -> None:
        self.db = _locked_connection()
        self.tables: dict[pa.Schema, str] = {}

    def close(self) -> None:
        self.db.close()

    def bind(self, sql: str, inputs: Mapping[str, pa.Schema]) -> list[OutputColumn] | BindFailure:
        """The columns ``sql`` yields when ``inputs`` (view name -> schema) are its tables.

        The same answer as ``bind_over_views``. A query that binds as
        ``WITH <input> AS (SELECT * FROM <its table>), ... (<query>)`` yields the columns
        it yields over views of those names: views are seen wherever a ``WITH``'s names
        are, the parentheses keep its column names (duplicates too), and a comment after
        the query ends before them (trailing semicolons are left out; anything else
        fails to parse). A query that has a ``WITH`` of its own is not tried (DuckDB
        lets the outer ``WITH`` win a name both give, where a query's own name hides a
        view's), and one that fails under the ``WITH`` is bound again over views, so
        that its finding is the run's own.
        """
        try:
            statements = self.db.extract_statements(sql)
        except duckdb.Error as exc:
            return _failure(exc, self.db, sql)
        if not statements:
            return BindFailure("syntax", "the SQL is empty: give a query (select ...)")
        if len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT:
            if _OWN_WITH.search(sql) is None:
                bound = self._bind_with(sql, inputs)
                if bound is not None:
                    return bound
            return self.bind_over_views(sql, inputs)
        # Several statements run (DuckDB returns the last one's rows), on a connection of
        # their own, so that nothing they do outlives this query.
        own = QueryBinder()
        try:
            return own.bind_over_views(sql, inputs)
        finally:
            own.close()

    def _bind_with(self, sql: str,
                   inputs: Mapping[str, pa.Schema]) -> list[OutputColumn] | None:
        """The columns of ``sql`` under a ``WITH`` of its inputs; None when it does not
        bind that way (or its inputs cannot be made: ``bind_over_views`` says why)."""
        try:
            tables = {name: self._table(schema) for name, schema in inputs.items()}
            ctes = ", ".join(f"{quote(name)} AS (SELECT * FROM {quote(table)})"
                             for name, table in tables.items())
            query = _without_trailing_semicolons(sql)
            relation = self.db.sql(f"WITH {ctes} (\n{query}\n)" if ctes else query)
        except duckdb.Error:
            return None
        if relation is None:
            return None
        return [_output_column(name, t)
                for name, t in zip(relation.columns, relation.types, strict=True)]

    def bind_over_views(self, sql: str,
                        inputs: Mapping[str, pa.Schema]) -> list[OutputColumn] | BindFailure:
        """The columns of ``sql`` (a query, or statements ending with one) with its inputs
        as views, as a run registers them: its columns or why it does not bind."""
        try:
            views = {name: self._table(schema) for name, schema in inputs.items()}
        except duckdb.Error as exc:  # e.g. decimal(p > 38): DuckDB reads none of its rows
            detail = str(exc).split("\n", 1)[0].partition(": ")[2]
            return BindFailure("other", f"DuckDB cannot read its inputs' columns ({detail}); "
                               "a SQL transformer cannot read this input, a Python one can")
        db = self.db
        db.execute("begin")
        try:
            for name, table in views.items():
                db.execute(f"create temp view {quote(name)} as select * from {quote(table)}")
            try:
                relation = db.sql(sql)
                if relation is None:
                    return BindFailure("other", "the SQL's last statement is not a query: it "
                                       "yields no rows (end it with select ...)")
                return [_output_column(name, t)
                        for name, t in zip(relation.columns, relation.types, strict=True)]
            except duckdb.Error as exc:
                return _failure(exc, db, sql)
        finally:
            db.execute("rollback")

    def _table(self, schema: pa.Schema) -> str:
        """The empty table of ``schema`` (one per distinct schema: inputs often share one).

        Raises duckdb.Error when DuckDB cannot make it; nothing is then remembered, so
        the next query over the same schema meets the same error, not a missing table."""
        name = self.tables.get(schema)
        if name is not None:
            return name
        name = f"__ferry_input_{len(self.tables)}"
        columns = [_duckdb_type(f.type) for f in schema]
        try:
            if not all(columns):
                raise duckdb.Error("a column has no DuckDB type name")
            # DDL is four times as fast as reading the empty Arrow table
            self.db.execute(f"create table {quote(name)} (" + ", ".join(
                f"{quote(f.name)} {t}" for f, t in zip(schema, columns, strict=True)) + ")")
        except duckdb.Error:
            # As the run registers it (which also takes names DDL refuses, e.g. two
            # columns that differ only in case)
            self.db.register("__ferry_new_input", schema.empty_table())
            try:
                self.db.execute(f"create table {quote(name)} as "
                                "select * from __ferry_new_input")
            finally:
                self.db.unregister("__ferry_new_input")
        self.tables[schema] = name
        return name


_ARROW_TO_DUCKDB = {
    pa.bool_(): "BOOLEAN", pa.int8(): "TINYINT", pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT",
    pa.float32(): "FLOAT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR", pa.binary(): "BLOB", pa.large_binary(): "BLOB",
    pa.date32(): "DATE", pa.time64("us"): "TIME", pa.timestamp("us"): "TIMESTAMP",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}


def _duckdb_type(t: pa.DataType) -> str | None:
    """The type DuckDB reads an Arrow column of type ``t`` as (None: let DuckDB say)."""
    if t in _ARROW_TO_DUCKDB:
        return _ARROW_TO_DUCKDB[t]
    if pa.types.is_decimal128(t) and t.precision <= 38:
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        item = _duckdb_type(t.value_type)
        return f"{item}[]" if item else None
    if pa.types.is_struct(t):
        fields = [(f.name, _duckdb_type(f.type)) for f in t]
        if all(ft for _, ft in fields):
            return "STRUCT(" + ", ".join(f"{quote(n)} {ft}" for n, ft in fields) + ")"
    if pa.types.is_map(t):
        key, item = _duckdb_type(t.key_type), _duckdb_type(t.item_type)
        return f"MAP({key}, {item})" if key and item else None
    return None


def lock_down(db: duckdb.DuckDBPyConnection) -> None:
    """No file system access for the user's SQL, and no way to turn it back on: it sees
    its (masked) inputs only. The spill directory keeps working."""
    db.execute("set enable_external_access = false")
    db.execute("set lock_configuration = true")


def _locked_connection() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(":memory:")
    lock_down(db)
    return db


_PRIMITIVES = {
    "boolean": "bool", "tinyint": "int8", "smallint": "int16", "integer": "int32",
    "bigint": "int64", "utinyint": "uint8", "usmallint": "uint16", "uinteger": "uint32",
    "ubigint": "uint64", "float": "float32", "double": "float64", "varchar": "string",
    "blob": "binary", "date": "date", "time": "time", "timestamp": "timestamp",
    "timestamp_s": "timestamp", "timestamp_ms": "timestamp", "timestamp_ns": "timestamp",
    "timestamp with time zone": "timestamp_tz", "uuid": "uuid", "enum": "string",
    "interval": "interval",
}


class _Unsupported(Exception):
    pass


def _output_column(name: str, duck: DuckDBPyType) -> OutputColumn:
    try:
        return OutputColumn(name, str(duck), _stored_type(duck))
    except _Unsupported:
        return OutputColumn(name, str(duck), None, supported=False)


def _stored_type(duck: DuckDBPyType) -> DataType | None:
    """The dataferry type a DuckDB type reaches the store as (what its Arrow export
    conforms to: HUGEINT as decimal(38,0), JSON as text that is JSON)."""
    kind = duck.id
    if kind == "null":
        return None
    if str(duck) == "JSON":
        return Primitive("json")
    if kind in _PRIMITIVES:
        return Primitive(_PRIMITIVES[kind])
    if kind in ("hugeint", "uhugeint"):
        return Decimal(38, 0)
    children: dict[str, Any] = dict(duck.children) if kind in ("decimal", "list", "array", "struct", "map") \
        else {}
    if kind == "decimal":
        return Decimal(int(children["precision"]), int(children["scale"]))
    if kind in ("list", "array"):
        return ListType(_stored_type(children["child"]) or Primitive("string"))
    if kind == "map":
        return MapType(_stored_type(children["key"]) or Primitive("string"),
                       _stored_type(children["value"]) or Primitive("string"))
    if kind == "struct":
        return StructType(tuple((field, _stored_type(child) or Primitive("string"))
                                for field, child in children.items()))
    raise _Unsupported(str(duck))


_TABLE = re.compile(r'Table with name "?([^"!]+?)"? does not exist')
_COLUMN = re.compile(r'Referenced column "([^"]+)" not found')
_QUALIFIED = re.compile(r'Values list "([^"]+)" does not have a column named "([^"]+)"')
_ALIAS = re.compile(r'Referenced table "([^"]+)" not found')
_NAMED = re.compile(r'with name "?(\w+)"? does not exist')


def _failure(exc: duckdb.Error, db: duckdb.DuckDBPyConnection, sql: str) -> BindFailure:
    text = str(exc)
    first = text.split("\n", 1)[0]
    detail = first.partition(": ")[2] or first
    if isinstance(exc, duckdb.ParserException):
        return BindFailure("syntax", detail, offset=_syntax_offset(db, sql))
    if isinstance(exc, duckdb.CatalogException) and (match := _TABLE.search(first)):
        return BindFailure("table", detail, match.group(1))
    if (match := _COLUMN.search(first)) is not None:
        return BindFailure("column", detail, match.group(1))
    if (match := _QUALIFIED.search(first)) is not None:
        return BindFailure("column", detail, match.group(2))
    if (match := _ALIAS.search(first)) is not None:
        return BindFailure("alias", detail, match.group(1))
    if isinstance(exc, duckdb.PermissionException):
        return BindFailure("other", "it reads outside its inputs (" + detail + "); a "
                           "transformer's SQL sees only the tables of its inputs")
    hint = text.split("\n", 1)[1].strip() if "\n" in text else ""
    hint = hint if hint.startswith("Did you mean") else ""
    named = _NAMED.search(first)
    return BindFailure("other", detail + (f" ({hint})" if hint else ""),
                       named.group(1) if named else None)


def _syntax_offset(db: duckdb.DuckDBPyConnection, sql: str) -> int | None:
    """Where DuckDB's parser stopped, as a character offset (its position is in bytes)."""
    try:
        row = db.execute("select json_serialize_sql(?)", [sql]).fetchall()
        found = json.loads(row[0][0]).get("position")
    except (duckdb.Error, ValueError, IndexError, TypeError):
        return None
    if found is None:
        return None
    return len(sql.encode("utf-8")[:int(found)].decode("utf-8", errors="ignore"))
