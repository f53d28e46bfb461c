"""Read datasets from a DuckDB database file (``kind: duckdb``, ``path:`` relative to the model).

The file is opened read-only (another process writing it at the same time makes the
open fail with a ``TransientError``: DuckDB allows one writer, or many readers). A dataset
is a ``table:`` (``schema.table`` allowed) or a ``query:``; rows stream from DuckDB's Arrow
export in batches of ``ReadRequest.batch_rows``. Incremental reads select
``cursor >= since`` with ``since`` bound as a parameter (a ``datetime`` with a zone is
compared as an instant). The session time zone is UTC. Types: ``types.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.duckdb.types import quote, source_cast
from dataferry.connectors.naming import local_path, query_tables
from dataferry.errors import FerryError, SourceError, TransientError
from dataferry.model.spec import DuckdbSource as DuckdbSourceSpec
from dataferry.model.spec import SourceDataset
from dataferry.model.types import DataType, TypeParseError, parse_type


def duckdb_error(error: Exception, what: str, kind: type[FerryError] = SourceError) -> FerryError:
    """A ``TransientError`` when the file is locked by another process, else ``kind``."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    code = type(error).__name__  # DuckDB's text may quote a value: the public text does not
    if "lock" in text.lower() or "conflict" in text.lower():
        return TransientError(f"{what}: the database is in use ({text})",
                              public=f"{what}: the database is in use ({code})")
    return kind(f"{what}: {text}", public=f"{what}: {code}")


def quote_table(name: str) -> str:
    """``schema.table`` or ``table``, each part quoted."""
    return ".".join(quote(part) for part in name.split(".", 2))


class DuckdbSource(SourceConnector):
    """Reads the tables and queries of one DuckDB database file."""

    kind = "duckdb"

    @classmethod
    def lineage_inputs(cls, spec: Any, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        namespace = "duckdb://" + local_path(spec.path, model_root)
        if dataset_spec.query and not dataset_spec.table:
            tables = query_tables(dataset_spec.query, "duckdb")
        else:
            parts = ["", "", *(dataset_spec.table or dataset.rpartition(".")[2]).split(".", 2)]
            tables = [(parts[-3], parts[-2], parts[-1])]
        return [LineageName(namespace, ".".join(p for p in (catalog, schema or "main", table) if p))
                for catalog, schema, table in tables]

    def __init__(self, name: str, spec: Any, model_root: Path) -> None:
        super().__init__(name, spec, model_root)
        assert isinstance(spec, DuckdbSourceSpec)
        self.path = (model_root / spec.path).resolve()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if not self.path.is_file():
            raise SourceError(f"source {self.name}: DuckDB file {self.path} does not exist",
                              public=True)
        try:
            con = duckdb.connect(str(self.path), read_only=True)
            con.execute("set enable_progress_bar = false")
            con.execute("SET TimeZone = 'UTC'").fetchall()
        except duckdb.Error as error:
            raise duckdb_error(error, f"source {self.name}: cannot open {self.path}") from None
        return con

    def _relation(self, dataset: str, spec: SourceDataset) -> str:
        if spec.query:
            return f"({spec.query.strip().rstrip(';')})"
        return quote_table(spec.table or dataset.rpartition(".")[2])

    def _describe(self, con: duckdb.DuckDBPyConnection, dataset: str,
                  spec: SourceDataset) -> list[tuple[str, str, bool]]:
        """(name, DuckDB type, nullable) of the table's or query's columns."""
        where = f"source {self.name}: dataset {dataset}"
        try:
            rows = con.execute(f"DESCRIBE SELECT * FROM {self._relation(dataset, spec)} AS src"
                               ).fetchall()
            nullable = {r[0]: True for r in rows}
            if spec.table and not spec.query:
                table = spec.table.split(".")
                info = con.execute(
                    "SELECT column_name, is_nullable FROM duckdb_columns() WHERE table_name = ? "
                    "AND (? IS NULL OR schema_name = ?)",
                    [table[-1], table[-2] if len(table) > 1 else None,
                     table[-2] if len(table) > 1 else None]).fetchall()
                nullable |= {n: bool(flag) for n, flag in info}
        except duckdb.CatalogException as error:
            raise SourceError(f"{where}: {str(error).splitlines()[0]}") from None
        except duckdb.Error as error:
            raise duckdb_error(error, where) from None
        return [(r[0], r[1], nullable[r[0]]) for r in rows]

    def _select(self, described: list[tuple[str, str, bool]], spec: SourceDataset,
                wanted: list[str]) -> str:
        chosen = [c for c in described if not wanted or c[0] in wanted]
        items = []
        for name, native, _ in chosen:
            cast = source_cast(native, _declared(spec, name))
            column = f"src.{quote(name)}"
            if cast is not None and native.upper() in ("VARCHAR", "JSON") and cast != "VARCHAR":
                column = f"CAST(CAST({column} AS JSON) AS {cast})"
            elif cast is not None:
                column = f"CAST({column} AS {cast})"
            items.append(f"{column} AS {quote(name)}")
        return ", ".join(items) or "*"

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """The live columns and the Arrow types ``read`` produces for them."""
        con = self._connect()
        try:
            described = self._describe(con, dataset, spec)
            select = self._select(described, spec, [])
            sql = f"SELECT {select} FROM {self._relation(dataset, spec)} AS src LIMIT 0"
            schema = con.sql(sql).to_arrow_table().schema
        except duckdb.Error as error:
            raise duckdb_error(error, f"source {self.name}: dataset {dataset}") from None
        finally:
            con.close()
        return [SourceColumn(n, native, schema.field(n).type, nullable)
                for n, native, nullable in described]

    def read(self, request: ReadRequest) -> ReadResult:
        """Stream the declared columns the table or query has (``cursor >= since`` if given)."""
        spec = request.spec
        where = f"source {self.name}: dataset {request.dataset}"
        con = self._connect()
        try:
            described = self._describe(con, request.dataset, spec)
            select = self._select(described, spec, request.columns)
            sql = f"SELECT {select} FROM {self._relation(request.dataset, spec)} AS src"
            params: list[Any] = []
            if request.since is not None and spec.cursor:
                natives = {n: t for n, t, _ in described}
                sql += f" WHERE src.{quote(spec.cursor)} >= " + _since_param(
                    natives.get(spec.cursor, ""), request.since, params)
            reader = con.sql(sql, params=params or None).to_arrow_reader(request.batch_rows)
        except duckdb.Error as error:
            con.close()
            raise duckdb_error(error, where) from None
        except BaseException:
            con.close()
            raise
        return ReadResult(reader=pa.RecordBatchReader.from_batches(
            reader.schema, _stream(con, reader, where)))


def _declared(spec: SourceDataset, name: str) -> DataType | None:
    column = spec.columns.get(name)
    if column is None:
        return None
    try:
        return parse_type(column.type)
    except TypeParseError:
        return None


def _since_param(native: str, since: Any, params: list[Any]) -> str:
    """The bound right-hand side of ``cursor >= since``; datetimes go over as ISO text."""
    if isinstance(since, datetime):
        zoned = "TIME ZONE" in native.upper() or native.upper() == "TIMESTAMPTZ"
        if since.tzinfo is not None and not zoned:
            since = since.astimezone(UTC).replace(tzinfo=None)
        params.append(since.isoformat(sep=" "))
        return "CAST(? AS TIMESTAMPTZ)" if zoned else "CAST(? AS TIMESTAMP)"
    params.append(since)
    return "?"


def _stream(con: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader,
            where: str) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except duckdb.Error as error:
        raise duckdb_error(error, where) from None
    finally:
        reader.close()
        con.close()
