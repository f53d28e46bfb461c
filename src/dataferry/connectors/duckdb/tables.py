"""Tables of the DuckDB sink: ``_ferry_loads``, creating and evolving target tables.

Everything here runs inside the delivery's transaction (DuckDB DDL is transactional).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from dataferry.connectors.base import LOADS_TABLE
from dataferry.connectors.duckdb.types import quote
from dataferry.errors import SinkError
from dataferry.model.types import (
    DataType,
    UnsupportedArrowTypeError,
    describe_change,
    from_arrow_field,
)


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
        ) -> list[tuple[object, ...]]:
    """Run one statement to its end (DuckDB 2 keeps an unread result open otherwise)."""
    return con.execute(sql, params).fetchall()


@dataclass(frozen=True)
class TargetColumn:
    """A column the target needs: name, DuckDB type, model type (None: ours), nullable."""

    name: str
    native: str
    declared: DataType | None
    nullable: bool = True

    def ddl(self) -> str:
        return f"{quote(self.name)} {self.native}" + ("" if self.nullable else " NOT NULL")


class Target:
    """The schema a sink writes into, and qualified names in it."""

    def __init__(self, schema: str | None) -> None:
        self.schema = schema

    def name(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}" if self.schema else quote(table)

    def create_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        if self.schema:
            run(con, f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")

    def exists(self, con: duckdb.DuckDBPyConnection, table: str) -> bool:
        rows = run(con, "SELECT 1 FROM duckdb_tables() WHERE table_name = ? AND schema_name = "
                   "coalesce(?, current_schema()) AND database_name = current_database()",
                   [table, self.schema])
        return bool(rows)

    def create_loads(self, con: duckdb.DuckDBPyConnection) -> None:
        run(con, f"CREATE TABLE IF NOT EXISTS {self.name(LOADS_TABLE)} (dataset VARCHAR NOT NULL, "
            "table_name VARCHAR NOT NULL, version BIGINT NOT NULL, mode VARCHAR NOT NULL, "
            "rows BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL, "
            "PRIMARY KEY (dataset, table_name))")

    def applied_version(self, con: duckdb.DuckDBPyConnection, dataset: str,
                        table: str) -> int | None:
        if not self.exists(con, LOADS_TABLE):
            return None
        rows = run(con, f"SELECT version FROM {self.name(LOADS_TABLE)} WHERE dataset = ? "
                   "AND table_name = ?", [dataset, table])
        return int(rows[0][0]) if rows else None  # type: ignore[call-overload]

    def record(self, con: duckdb.DuckDBPyConnection, dataset: str, table: str, version: int,
               mode: str, rows: int) -> None:
        run(con, f"INSERT INTO {self.name(LOADS_TABLE)} VALUES (?, ?, ?, ?, ?, current_timestamp) "
            "ON CONFLICT (dataset, table_name) DO UPDATE SET version = excluded.version, "
            "mode = excluded.mode, rows = excluded.rows, loaded_at = excluded.loaded_at",
            [dataset, table, version, mode, rows])

    def create(self, con: duckdb.DuckDBPyConnection, table: str,
               columns: list[TargetColumn]) -> None:
        run(con, f"CREATE TABLE {self.name(table)} (" + ", ".join(c.ddl() for c in columns) + ")")

    def evolve(self, con: duckdb.DuckDBPyConnection, table: str,
               columns: list[TargetColumn]) -> None:
        """Add missing columns (nullable) and widen types with ALTER COLUMN; else ``SinkError``."""
        existing = {str(n): str(t) for n, t in run(
            con, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND "
            "schema_name = coalesce(?, current_schema()) AND database_name = current_database()",
            [table, self.schema])}
        for column in columns:
            have = existing.get(column.name)
            target = f"ALTER TABLE {self.name(table)}"
            if have is None:
                run(con, f"{target} ADD COLUMN {quote(column.name)} {column.native}")
                continue
            if have == canonical(con, column.native):
                continue
            problem = self._change(con, table, column)
            if problem:
                raise SinkError(f"table {table!r} column {column.name!r} is {have}, which "
                                f"cannot become {column.native} ({problem}); drop or rename "
                                "the table, or change its column")
            try:
                run(con, f"{target} ALTER COLUMN {quote(column.name)} SET DATA TYPE "
                    f"{column.native}")
            except duckdb.Error as error:
                raise SinkError(f"table {table!r} column {column.name!r}: cannot widen {have} "
                                f"to {column.native}: {str(error).splitlines()[0]}") from None

    def _change(self, con: duckdb.DuckDBPyConnection, table: str,
                column: TargetColumn) -> str | None:
        """None when the existing column's type widens to the column's model type."""
        if column.declared is None:
            return "it is a column dataferry keeps"
        schema = con.sql(f"SELECT {quote(column.name)} FROM {self.name(table)} LIMIT 0"
                         ).to_arrow_table().schema
        try:
            have = from_arrow_field(schema.field(0))
        except UnsupportedArrowTypeError as error:
            return str(error)
        return describe_change(have, column.declared)


_CANONICAL: dict[str, str] = {}


def canonical(con: duckdb.DuckDBPyConnection, native: str) -> str:
    """DuckDB's own spelling of a type, as ``duckdb_columns()`` shows it."""
    if native not in _CANONICAL:
        _CANONICAL[native] = str(run(con, f"SELECT typeof(CAST(NULL AS {native}))")[0][0])
    return _CANONICAL[native]
