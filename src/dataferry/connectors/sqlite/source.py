"""Read datasets from a SQLite database file (``kind: sqlite``, ``path:`` relative to the model).

The file is opened read-only. Rows stream with ``cursor.fetchmany`` in batches of
``ReadRequest.batch_rows``; one SELECT statement sees one consistent snapshot of the file.
How SQLite values become Arrow values is in ``types.py``.

Incremental reads (``cursor:``) select ``cursor >= since``. A ``since`` that is a
``datetime``, or ISO 8601 text, is compared by instant with ``julianday()``, so text with
``T`` or a space, with or without an offset (text without one is UTC), compares correctly
(to the millisecond: the lag makes the re-read window wide anyway); a ``date`` is
compared as ``YYYY-MM-DD`` text; numbers and other text as they are. A cursor column
holding numbers compared with a ``datetime`` is taken to hold Unix seconds.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal as PyDecimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.naming import local_path, query_tables
from dataferry.connectors.sqlite.types import INTEGER, REAL, affinity, is_nested, read_type
from dataferry.connectors.sqlite.values import UnfitValue, to_arrow
from dataferry.errors import FerryError, SourceError, TransientError
from dataferry.model.spec import SourceDataset
from dataferry.model.spec import SqliteSource as SqliteSourceSpec
from dataferry.model.types import DataType, TypeParseError, parse_type

_PROBE = "_ferry_probe"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
BUSY_SECONDS = 10.0
"""How long a read waits for a writer's lock before it is a ``TransientError``."""


def quote(name: str) -> str:
    """A safely quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """``schema.table`` or ``table``, each part quoted."""
    schema, dot, table = name.partition(".")
    return f"{quote(schema)}.{quote(table)}" if dot else quote(name)


def sqlite_error(error: sqlite3.Error, what: str,
                 kind: type[FerryError] = SourceError) -> FerryError:
    """A ``TransientError`` for locks and busy files, else a terminal error of ``kind``.

    SQLite's text may quote a value (a constraint, a failed conversion): the public text
    names the error code only (``SQLITE_CONSTRAINT_CHECK``).
    """
    text = str(error)
    code = getattr(error, "sqlite_errorname", None) or type(error).__name__
    if "locked" in text or "busy" in text:
        return TransientError(f"{what}: the database is locked ({text})",
                              public=f"{what}: the database is locked ({code})")
    return kind(f"{what}: {text}", public=f"{what}: {code}")


class SqliteSource(SourceConnector):
    """Reads the tables and queries of one SQLite database file."""

    kind = "sqlite"

    @classmethod
    def lineage_inputs(cls, spec: Any, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        namespace = "sqlite://" + local_path(spec.path, model_root)
        if dataset_spec.query and not dataset_spec.table:
            return [LineageName(namespace, table)
                    for _, _, table in query_tables(dataset_spec.query, "sqlite")]
        return [LineageName(namespace, dataset_spec.table or dataset.rpartition(".")[2])]

    def __init__(self, name: str, spec: Any, model_root: Path) -> None:
        super().__init__(name, spec, model_root)
        assert isinstance(spec, SqliteSourceSpec)
        self.path = (model_root / spec.path).resolve()

    def _connect(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise SourceError(f"source {self.name}: SQLite file {self.path} does not exist",
                              public=True)
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_SECONDS,
                                  isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise sqlite_error(error, f"source {self.name}: cannot open {self.path}") from None
        return con

    def _relation(self, dataset: str, spec: SourceDataset) -> str:
        if spec.query:
            return f"({spec.query.strip().rstrip(';')})"
        return quote_table(spec.table or dataset.rpartition(".")[2])

    def _native_columns(self, con: sqlite3.Connection, dataset: str,
                        spec: SourceDataset) -> list[tuple[str, str, bool]]:
        """(name, declared type, nullable) of the table's or query's columns."""
        if spec.query:
            query = spec.query.strip().rstrip(";")
            con.execute(f"CREATE TEMP VIEW {_PROBE} AS {query}")
            try:
                rows = con.execute(f"PRAGMA temp.table_info({_PROBE})").fetchall()
            finally:
                con.execute(f"DROP VIEW temp.{_PROBE}")
        else:
            table = spec.table or dataset.rpartition(".")[2]
            schema, dot, name = table.partition(".")
            pragma = f"PRAGMA {quote(schema)}.table_info({quote(name)})" if dot else \
                f"PRAGMA table_info({quote(table)})"
            rows = con.execute(pragma).fetchall()
            if not rows:
                raise SourceError(f"source {self.name}: dataset {dataset}: table {table!r} "
                                  f"does not exist in {self.path}", public=True)
        return [(row[1], row[2] or "", not row[3]) for row in rows]

    def _describe(self, con: sqlite3.Connection, dataset: str,
                  spec: SourceDataset) -> list[tuple[str, str, bool, DataType | None]]:
        try:
            natives = self._native_columns(con, dataset, spec)
        except sqlite3.Error as error:
            raise sqlite_error(error, f"source {self.name}: dataset {dataset}") from None
        return [(n, native, nullable, _declared(spec, n)) for n, native, nullable in natives]

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """The live columns; ``arrow_type`` is what ``read`` produces given the model's types."""
        con = self._connect()
        try:
            described = self._describe(con, dataset, spec)
        finally:
            con.close()
        return [SourceColumn(n, native or "(none)", read_type(native, declared), nullable)
                for n, native, nullable, declared in described]

    def read(self, request: ReadRequest) -> ReadResult:
        """Stream the declared columns the table or query has (``cursor >= since`` if given)."""
        spec = request.spec
        con = self._connect()
        try:
            described = self._describe(con, request.dataset, spec)
        except BaseException:
            con.close()
            raise
        wanted = set(request.columns) or {n for n, *_ in described}
        chosen = [c for c in described if c[0] in wanted]
        natives = {n: native for n, native, *_ in described}
        select = ", ".join(quote(n) for n, *_ in chosen) or "*"
        sql = f"SELECT {select} FROM {self._relation(request.dataset, spec)} AS src"
        params: list[Any] = []
        if request.since is not None and spec.cursor:
            condition, param = since_condition(quote(spec.cursor), natives.get(spec.cursor, ""),
                                               request.since)
            sql += f" WHERE {condition}"
            params.append(param)
        schema = pa.schema([pa.field(n, read_type(native, declared), nullable)
                            for n, native, nullable, declared in chosen])
        nested = [declared if is_nested(declared) and native_allows_json(native) else None
                  for _, native, _, declared in chosen]
        where = f"source {self.name}: dataset {request.dataset}"
        batches = _stream(con, sql, params, schema, nested, request.batch_rows, where)
        return ReadResult(reader=pa.RecordBatchReader.from_batches(schema, batches))


def _declared(spec: SourceDataset, name: str) -> DataType | None:
    column = spec.columns.get(name)
    if column is None:
        return None
    try:
        return parse_type(column.type)
    except TypeParseError:
        return None


def native_allows_json(native: str) -> bool:
    return affinity(native) not in (INTEGER, REAL, "BLOB")


def since_condition(column: str, native: str, since: Any) -> tuple[str, Any]:
    """The WHERE condition and its parameter for ``column >= since`` (module docstring)."""
    numeric = affinity(native) in (INTEGER, REAL)
    if isinstance(since, str) and not numeric and _ISO_DATE.match(since):
        try:  # ISO text (the ingest hands back text cursors as text): compare as instants
            return f"julianday({column}) >= julianday(?)", _utc_text(datetime.fromisoformat(since))
        except ValueError:
            return f"{column} >= ?", since
    if isinstance(since, datetime):
        if numeric:
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)
            return f"{column} >= ?", moment.timestamp()
        return f"julianday({column}) >= julianday(?)", _utc_text(since)
    if isinstance(since, date):
        return f"{column} >= ?", since.isoformat()
    if isinstance(since, PyDecimal):
        return f"{column} >= ?", float(since) if affinity(native) in (INTEGER, REAL) else str(since)
    return f"{column} >= ?", since


def _utc_text(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ")


def _stream(con: sqlite3.Connection, sql: str, params: list[Any], schema: pa.Schema,
            nested: list[DataType | None], batch_rows: int, where: str) -> Iterator[pa.RecordBatch]:
    try:
        cursor = con.execute(sql, params)
        while rows := cursor.fetchmany(batch_rows):
            columns = list(zip(*rows, strict=True))
            arrays = []
            for index, field in enumerate(schema):
                try:
                    arrays.append(to_arrow(list(columns[index]), field.type, nested[index]))
                except UnfitValue as error:
                    raise SourceError(f"{where}: column {field.name!r}: {error}",
                                      public=f"{where}: column {field.name!r}: a value does "
                                             f"not fit its declared type") from None
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
    except sqlite3.Error as error:
        raise sqlite_error(error, where) from None
    finally:
        con.close()
