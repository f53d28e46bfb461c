"""Read MariaDB/MySQL tables and queries as streams of Arrow record batches.

A dataset is a ``table:`` (``database.table`` or a table of the dsn's database) or a
``query:``. The source first describes the relation (``SELECT .. LIMIT 0``: the server's
result metadata gives each column's type, precision and flags, for tables and queries
alike), then streams it with ConnectorX straight into Arrow batches (``arrow_stream.py``),
or, for what ConnectorX cannot read, with PyMySQL's unbuffered cursor (``SSCursor``),
building each batch column by column with vectorised Arrow casts (``decode.py``). Batches
hold about ``BATCH_BYTES`` whatever the row width. Types map as in ``types.py``.

``incremental`` capture reads ``WHERE cursor >= since``; the runner deduplicates by key.
``cdc`` capture reads the row-based binlog (``read_changes``, ``cdc.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pymysql
import pymysql.cursors

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.changes import ChangeProblem
from dataferry.connectors.mysql import arrow_stream
from dataferry.connectors.mysql.connection import (
    Dsn,
    classify,
    connect,
    ident,
    lineage_server,
    parse_dsn,
    qualified,
    secret_of,
    split_table,
)
from dataferry.connectors.mysql.decode import decode_column
from dataferry.connectors.mysql.types import FLOAT, ResultColumn, arrow_type, native_name
from dataferry.connectors.naming import read_tables
from dataferry.errors import FerryError, SourceError
from dataferry.model.spec import AnySource, SourceDataset
from dataferry.model.spec import MysqlSource as MysqlSourceSpec

if TYPE_CHECKING:
    from dataferry.connectors.changes import ChangeSet

SESSION = ("SET SESSION net_write_timeout = 3600",)
"""A slow consumer (e.g. a large store write) must not make the server drop the stream."""
BATCH_BYTES = 8 << 20
"""Wide rows: the ingest holds about seven batches at a time, beside ConnectorX's own
buffers and the row group being written. 300 rows of 2 MiB peaked at 602-616 MiB with
16 MiB batches, 490-498 MiB with 8 MiB (``bench/memory.py --only ingest-wide``); narrow
rows (under 128 bytes) still come 65,536 to a batch."""
VARIABLE_BYTES = 4096
"""How much of a TEXT/BLOB/VARCHAR column's declared width a row is assumed to use when
the table's average row length does not say more (``query:`` datasets)."""
SAMPLE_ROWS = 64
"""Rows whose long columns (declared wider than ``VARIABLE_BYTES``) are measured before a
table is read: ``AVG_ROW_LENGTH`` is InnoDB's estimate, stale until its statistics are
recalculated in the background (19 KB for 300 fresh rows of 2 MiB, read as one batch of
600 MB: a 2.4 GiB peak)."""


class MysqlSource(SourceConnector):
    """Reads the datasets of one ``kind: mysql`` source (MariaDB or MySQL)."""

    kind = "mysql"

    @classmethod
    def lineage_inputs(cls, spec: AnySource, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        assert isinstance(spec, MysqlSourceSpec)
        found = lineage_server(spec)
        if found is None:
            return []
        namespace, database = found
        tables = read_tables(dataset_spec.table, dataset_spec.query, "mysql", split_table)
        return [LineageName(namespace, f"{db}.{table}" if db else table)
                for db, table in ((schema or database or "", table) for _, schema, table in tables)]

    def __init__(self, name: str, spec: AnySource, model_root: Path) -> None:
        super().__init__(name, spec, model_root)
        if not isinstance(spec, MysqlSourceSpec):
            raise SourceError(f"source {name}: expected a mysql source spec, got {spec.kind}")
        self.mysql = spec
        self.what = f"source {name}"
        self._open: list[pymysql.Connection] = []

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """The live columns of the dataset's table or query (name, COLUMN_TYPE, Arrow type,
        nullability); JSON columns, which MariaDB keeps as checked LONGTEXT, say ``json``."""
        connection = self._connect()
        try:
            relation, table = self._relation(dataset, spec)
            fields = self._describe(connection, dataset, relation)
            natives = self._table_columns(connection, *table) if table else {}
        finally:
            connection.close()
        result = []
        for field in fields:
            native, nullable = natives.get(field.name, (native_name(field), field.nullable))
            result.append(SourceColumn(field.name, native, arrow_type(field), nullable))
        return result

    def read(self, request: ReadRequest) -> ReadResult:
        """Stream the dataset (declared columns only; ``cursor >= since`` when given)."""
        connection = self._connect()
        self._open.append(connection)
        try:
            relation, table = self._relation(request.dataset, request.spec)
            fields = self._describe(connection, request.dataset, relation)
            chosen = _choose(fields, request.columns)
            rows = batch_rows(connection, table, [f for f, _ in chosen], request.batch_rows)
            schema = pa.schema([pa.field(name, arrow_type(f)) for f, name in chosen])
            dsn = parse_dsn(self.mysql.dsn, self.what, SourceError)
            if arrow_stream.supports(dsn, [f for f, _ in chosen]):
                sql = self._select(request, relation, fields, chosen, connection,
                                   arrow_stream.expression)
                self._release(connection)
                batches = self._native(request, dsn, sql, chosen, schema, rows)
            else:
                sql = self._select(request, relation, fields, chosen, connection, _text)
                batches = self._batches(connection, request, sql, chosen, schema, rows)
        except BaseException:
            self._release(connection)
            raise
        return ReadResult(pa.RecordBatchReader.from_batches(schema, batches),
                          warnings=self._late_commit_warnings(request))

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        """``capture: cdc``: the changes since ``request.state`` from the row-based binlog
        (``cdc.py``); without a state, a consistent snapshot and its binlog position."""
        from dataferry.connectors.mysql.cdc import BinlogCapture

        return BinlogCapture(self).read_changes(request)

    def change_problems(self, dataset: str, spec: SourceDataset, *,
                        position: dict[str, Any] | None = None) -> list[ChangeProblem]:
        """Why ``capture: cdc`` cannot read this dataset (server settings, grants, a table
        without a primary key, the latest version's binlog ``position`` purged:
        ``cdc_check.py``); empty for other captures."""
        if spec.capture != "cdc":
            return []
        from dataferry.connectors.mysql.cdc import BinlogPosition, idle_scans
        from dataferry.connectors.mysql.cdc_check import change_problems

        _, table = self._relation(dataset, spec)
        if table is None:
            return [ChangeProblem("unreachable", f"{dataset}: cdc capture reads a table's "
                                  "changes: give table: (a query: dataset cannot be captured)")]
        connection = self._connect()
        try:
            start = BinlogPosition.of_state(position)
            if start is not None:  # as a read would resume (cdc_scans.py)
                position = idle_scans(connection, self, *table).skip(start).state(None, None)
            return change_problems(connection, *table, dataset=dataset, position=position)
        except pymysql.Error as exc:
            raise self._fail(exc, f"cannot check cdc for {dataset} on") from None
        finally:
            connection.close()

    def change_lag_bytes(self, dataset: str, *,
                         position: dict[str, Any] | None = None) -> int | None:
        """Binlog bytes written after ``position`` (the head's; None: it has none)."""
        from dataferry.connectors.mysql.cdc import BinlogPosition, binlog_behind, idle_scans

        start = BinlogPosition.of_state(position)
        spec = self.mysql.datasets.get(dataset.rpartition(".")[2])
        if start is None or spec is None:
            return None
        connection = self._connect()
        try:
            _, table = self._relation(dataset, spec)
            if table is not None:  # past what is known to hold none of it (cdc_scans.py)
                start = idle_scans(connection, self, *table).skip(start)
            return binlog_behind(connection, start)
        except pymysql.Error as exc:
            raise self._fail(exc, f"cannot measure the binlog lag of {dataset} on") from None
        finally:
            connection.close()

    def _late_commit_warnings(self, request: ReadRequest) -> list[str]:
        """A warning when a transaction older than the lag was open during an incremental
        read: a row it commits later with an older cursor is missed (MariaDB has no way
        to find it afterwards). Needs the PROCESS privilege to see other sessions'
        transactions (``information_schema.innodb_trx``); without it, says nothing."""
        if request.since is None or request.lag_seconds is None:
            return []
        try:
            connection = self._connect()
        except SourceError:
            return []
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET time_zone = 'SYSTEM'")  # innodb_trx keeps local times
                cursor.execute("SELECT TIMESTAMPDIFF(SECOND, MIN(t.trx_started), NOW()) "
                               "FROM information_schema.innodb_trx t "
                               "JOIN information_schema.processlist p "
                               "ON p.id = t.trx_mysql_thread_id "
                               "WHERE t.trx_mysql_thread_id <> CONNECTION_ID() "
                               "AND p.db = DATABASE()")
                row = cursor.fetchone()
        except pymysql.MySQLError:
            return []
        finally:
            connection.close()
        age = None if row is None or row[0] is None else int(row[0])  # raw: text
        if age is None or age <= request.lag_seconds:
            return []
        return [f"{request.dataset}: a transaction open for {age} s (longer than the lag, "
                f"{request.lag_seconds:g} s) was running during this read; rows it commits "
                f"with an older {request.spec.cursor} will not be read. Raise lag: above "
                "your longest write transaction, or run with --full to catch up"]

    def close(self) -> None:
        for connection in list(self._open):
            self._release(connection)

    # --- internals ---------------------------------------------------------------------

    def _connect(self) -> pymysql.Connection:
        return connect(self.mysql, self.what, raw=True, init=SESSION)

    def _release(self, connection: pymysql.Connection) -> None:
        if connection in self._open:
            self._open.remove(connection)
        with contextlib.suppress(pymysql.Error):  # a result still streaming: closed anyway
            connection.close()

    def _fail(self, exc: BaseException, doing: str) -> Exception:
        return classify(exc, self.mysql, self.what, secret_of(self.mysql, self.what), doing)

    def _relation(self, dataset: str, spec: SourceDataset
                  ) -> tuple[str, tuple[str, str] | None]:
        """The FROM clause, and (database, table) for a table dataset."""
        if spec.query:
            return f"({spec.query.strip().rstrip(';')}) AS `_ferry_q`", None
        if not spec.table:
            raise SourceError(f"{dataset}: a mysql dataset needs table: or query:")
        try:
            database, table = split_table(spec.table)
            database = database or parse_dsn(self.mysql.dsn, self.what, SourceError).database
            if database is None:
                raise SourceError(f"{dataset}: table {spec.table!r} names no database and the "
                                  "dsn has none; write database.table")
            return qualified(database, table), (database, table)
        except ValueError as exc:
            raise SourceError(f"{dataset}: {exc}") from None

    def _describe(self, connection: pymysql.Connection, dataset: str,
                  relation: str) -> list[ResultColumn]:
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {relation} LIMIT 0")
                return [ResultColumn.of(f) for f in cursor._result.fields]
        except pymysql.Error as exc:
            raise self._fail(exc, f"cannot describe {dataset} on") from None

    def _table_columns(self, connection: pymysql.Connection, database: str,
                       table: str) -> dict[str, tuple[str, bool]]:
        """COLUMN_TYPE and nullability per column; ``json`` for MariaDB's JSON columns."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
            columns = {name: (native, nullable == "YES")
                       for name, native, nullable in cursor.fetchall()}
            try:
                cursor.execute(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
                checks = " ".join(str(clause) for (clause,) in cursor.fetchall()).lower()
            except pymysql.Error:  # MySQL has no TABLE_NAME there; its JSON type is 'json'
                checks = ""
        for name, (native, nullable) in columns.items():
            if native == "longtext" and f"json_valid({ident(name).lower()})" in checks:
                columns[name] = ("json", nullable)
        return columns

    def _select(self, request: ReadRequest, relation: str, fields: list[ResultColumn],
                chosen: list[tuple[ResultColumn, str]], connection: pymysql.Connection,
                expression: Callable[[ResultColumn], str]) -> str:
        """The SELECT of the chosen columns (each read as ``expression`` says), with the
        incremental bound as an escaped literal."""
        items = []
        for field, name in chosen:
            item = expression(field)
            if item != ident(name):
                item += f" AS {ident(name)}"
            items.append(item)
        sql = f"SELECT {', '.join(items)} FROM {relation}"
        cursor = request.spec.cursor
        if request.since is None or cursor is None:
            return sql
        live = _find(fields, cursor)
        if live is None:
            raise SourceError(f"{request.dataset}: cursor column {cursor!r} is not in the "
                              f"source ({', '.join(f.name for f in fields)})", public=True)
        return f"{sql} WHERE {ident(live.name)} >= {connection.escape(_since(request.since))}"

    def _native(self, request: ReadRequest, dsn: Dsn, sql: str,
                chosen: list[tuple[ResultColumn, str]], schema: pa.Schema, rows: int
                ) -> Iterator[pa.RecordBatch]:
        """The rows read by ConnectorX (``arrow_stream.py``); a value it cannot convert is
        found and named by reading the same statement with PyMySQL."""
        secret = secret_of(self.mysql, self.what)
        url = arrow_stream.url_of(dsn, secret.reveal() if secret is not None else None)
        columns = [f for f, _ in chosen]
        try:
            yield from arrow_stream.stream(url, sql, ("SET time_zone = '+00:00'", *SESSION),
                                           columns, schema, rows,
                                           request.dataset)
        except arrow_stream.ConversionPanic as exc:
            connection = self._connect()
            self._open.append(connection)
            for _ in self._batches(connection, request, sql, chosen, schema, rows):
                pass  # raises naming the column and value
            raise SourceError(f"{request.dataset}: a value could not be read: {exc}") from None
        except (FerryError, GeneratorExit):
            raise
        except Exception as exc:
            raise self._fail(exc, f"reading {request.dataset} from") from None

    def _batches(self, connection: pymysql.Connection, request: ReadRequest, sql: str,
                 chosen: list[tuple[ResultColumn, str]], schema: pa.Schema,
                 batch: int) -> Iterator[pa.RecordBatch]:
        types = [f.type for f in schema]
        try:
            cursor = connection.cursor(pymysql.cursors.SSCursor)
            cursor.execute(sql)
            while True:
                rows = cursor.fetchmany(batch)
                if not rows:
                    break
                values = list(zip(*rows, strict=True))
                arrays = [decode_column(values[i], field, types[i], request.dataset)
                          for i, (field, _) in enumerate(chosen)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            cursor.close()
        except pymysql.Error as exc:
            raise self._fail(exc, f"reading {request.dataset} from") from None
        finally:
            self._release(connection)


def _text(field: ResultColumn) -> str:
    """How the PyMySQL path reads a column: as it is, but FLOAT as DOUBLE (the text
    protocol prints FLOAT with 6 digits only)."""
    if field.type_code == FLOAT:
        return f"CAST({ident(field.name)} AS DOUBLE)"
    return ident(field.name)


def batch_rows(connection: pymysql.Connection, table: tuple[str, str] | None,
               columns: list[ResultColumn], most: int) -> int:
    """Rows per batch so that a batch holds about ``BATCH_BYTES`` (memory stays bounded
    whatever the row width): the row size is the larger of the table's average
    (``AVG_ROW_LENGTH``, for table datasets) and the columns' declared widths, variable
    ones counted up to ``VARIABLE_BYTES``; at most ``most``."""
    width = sum(_assumed_bytes(c) for c in columns)
    if table is not None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT AVG_ROW_LENGTH FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", table)
            found = cursor.fetchone()
        if found is not None and found[0] is not None:
            width = max(width, int(found[0]))
        width = max(width, _sampled_width(connection, table, columns))
    return max(1, min(most, BATCH_BYTES // max(width, 1)))


def _assumed_bytes(column: ResultColumn) -> int:
    """A row's bytes in ``column`` as declared, a variable one's counted up to
    ``VARIABLE_BYTES``."""
    return min(max(column.length, 1), VARIABLE_BYTES)


def _sampled_width(connection: pymysql.Connection, table: tuple[str, str],
                   columns: list[ResultColumn]) -> int:
    """The widest of the first ``SAMPLE_ROWS`` rows of ``table``, its long columns
    measured (the others counted as declared, up to ``VARIABLE_BYTES``); 0 when it has no
    long column. Only the lengths cross the wire."""
    long = [c for c in columns if c.length > VARIABLE_BYTES]
    if not long:
        return 0
    rest = sum(_assumed_bytes(c) for c in columns if c not in long)
    measured = " + ".join(f"COALESCE(OCTET_LENGTH({ident(c.name)}), 0)" for c in long)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(w) FROM (SELECT {measured} AS w FROM "
                       f"{ident(table[0])}.{ident(table[1])} LIMIT {SAMPLE_ROWS}) AS sample")
        found = cursor.fetchone()
    return rest + int(found[0]) if found is not None and found[0] is not None else 0


def _find(fields: list[ResultColumn], name: str) -> ResultColumn | None:
    for field in fields:
        if field.name == name:
            return field
    for field in fields:
        if field.name.lower() == name.lower():
            return field
    return None


def _choose(fields: list[ResultColumn], declared: list[str]
            ) -> list[tuple[ResultColumn, str]]:
    """(live column, output name) for each declared column the source has (names match
    exactly, else ignoring case: MariaDB column names are case-insensitive); every column
    when nothing is declared or nothing matches (conform then names what is missing)."""
    chosen = []
    for name in declared:
        field = _find(fields, name)
        if field is not None:
            chosen.append((field, name))
    return chosen or [(f, f.name) for f in fields]


def _since(value: Any) -> Any:
    """The cursor bound as the session (time zone +00:00) compares it: aware datetimes in
    UTC without a zone (PyMySQL would drop the zone, not convert)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
