"""Bind a SQL transformer's query over empty inputs: the columns it yields, or why it fails.

``ferry check`` uses this to find what would fail at run time without any data: the
query is bound by DuckDB against empty tables that have exactly the schema ``transform``
registers for each input (the declared types as the store decodes them, masked columns
as text), under the same names (``view_names``) and the same lock-down, on one in-memory
connection for the whole model. Binding a query takes about a millisecond; a query of
several statements (``create temp table ...; select ...``) runs them, on a connection
of its own so nothing it creates is seen by the next transformer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import duckdb
import pyarrow as pa

from dataferry.engine.transform import lock_down
from dataferry.model.spec import Column
from dataferry.store.storage import decode_batch, store_schema

FailureKind = Literal["syntax", "table", "column", "alias", "other"]


@dataclass(frozen=True)
class OutputColumn:
    """One column the query yields: its name, DuckDB's type name and the Arrow field."""

    name: str
    duckdb_type: str
    field: pa.Field


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
    return pa.schema([pa.field(f.name, pa.string(), f.nullable) if f.name in masked else f
                      for f in decoded])


class QueryBinder:
    """One locked-down in-memory DuckDB connection that binds queries over empty inputs."""

    def __init__(self) -> None:
        self.db = _locked_connection()

    def close(self) -> None:
        self.db.close()

    def bind(self, sql: str, inputs: Mapping[str, pa.Schema]) -> list[OutputColumn] | BindFailure:
        """The columns ``sql`` yields when ``inputs`` (view name -> schema) are its tables."""
        try:
            statements = self.db.extract_statements(sql)
        except duckdb.Error as exc:
            return _failure(exc, self.db, sql)
        if not statements:
            return BindFailure("syntax", "the SQL is empty: give a query (select ...)")
        single = len(statements) == 1 and statements[0].type == duckdb.StatementType.SELECT
        db = self.db if single else _locked_connection()
        try:
            for name, schema in inputs.items():
                db.register(name, schema.empty_table())
            try:
                relation = db.sql(sql)
                if relation is None:
                    return BindFailure("other", "the SQL's last statement is not a query: it "
                                       "yields no rows (end it with select ...)")
                names, types = relation.columns, [str(t) for t in relation.types]
                arrow = relation.limit(0).to_arrow_table().schema
            except duckdb.Error as exc:
                return _failure(exc, db, sql)
            return [OutputColumn(name, duck, arrow.field(index))
                    for index, (name, duck) in enumerate(zip(names, types, strict=True))]
        finally:
            if single:
                for name in inputs:
                    db.unregister(name)
            else:
                db.close()


def _locked_connection() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(":memory:")
    lock_down(db)
    return db


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
