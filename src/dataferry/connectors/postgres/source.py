"""Read PostgreSQL tables and queries as Arrow record batches (ADBC over binary COPY).

A dataset with ``table: schema.table`` is read as ``select <declared columns> from
schema.table``; one with ``query:`` as ``select <declared columns> from (<query>) q``.
Incremental datasets add ``where <cursor> >= <since>`` (the value inlined as a literal so
the rows still stream over COPY). Memory stays bounded: ADBC decodes COPY data in record
batches of 4 to 16 MB (``batch_bytes``), handed on as they arrive. Each read runs on its own
connection in one statement, so it sees one consistent snapshot; sessions are read only, in
UTC, with intervals printed in ISO 8601.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.changes import ChangeProblem, ChangeSet
from dataferry.connectors.naming import read_tables
from dataferry.connectors.postgres import ranges
from dataferry.connectors.postgres.connection import (
    Server,
    ident,
    lineage_server,
    literal,
    qualified,
    split_table,
)
from dataferry.connectors.postgres.reading import (
    CATALOG_QUERY,
    UNIQUE_INDEXES_QUERY,
    BadValue,
    ColumnPlan,
    TypeInfo,
    plan_column,
)
from dataferry.errors import SourceError
from dataferry.model.spec import AnySource, SourceDataset
from dataferry.model.spec import PostgresSource as PostgresSourceSpec

BATCH_BYTES = 4 << 20
"""ADBC's batch size hint for a narrow result. Its default, 16 MB, is ~150,000 rows of a
narrow table: nothing reaches the store's writer for 0.1 s after the query starts, and the
last batch leaves as much work after the read ends. At 4 MB the first batch comes after
~0.03 s and the throughput is the same (1M rows of 8 columns: 0.6 s at 16, 4 or 1 MB)."""
BATCH_BYTES_PER_COLUMN = 1 << 20
MAX_BATCH_BYTES = 16 << 20
"""A wider result gets larger batches, up to 16 MB: conforming and encoding cost about
1 ms a batch for 20 columns whatever its rows (the wide table of
``bench/postgres_types.py`` came in 4 MB batches of 7,700 rows: 0.2 s of conform per
million rows at 4 MB, 0.1 s at 16 MB)."""


def batch_bytes(columns: int) -> int:
    """ADBC's batch size hint for a result of ``columns`` columns."""
    return min(MAX_BATCH_BYTES, max(BATCH_BYTES, columns * BATCH_BYTES_PER_COLUMN))


_SESSION = (
    "set default_transaction_read_only = on",
    "set time zone 'UTC'",
    "set intervalstyle = 'iso_8601'",
    "set extra_float_digits = 3",
)


class PostgresSource(SourceConnector):
    """Reads the datasets of one ``kind: postgres`` source (tables or queries)."""

    kind = "postgres"

    @classmethod
    def lineage_inputs(cls, spec: AnySource, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        assert isinstance(spec, PostgresSourceSpec)
        found = lineage_server(spec)
        if found is None:
            return []
        namespace, database = found
        tables = read_tables(dataset_spec.table, dataset_spec.query, "postgres", split_table,
                             fold=True)
        return [LineageName(namespace, f"{catalog or database}.{schema or 'public'}.{table}")
                for catalog, schema, table in tables]

    def __init__(self, name: str, spec: AnySource, model_root: Path) -> None:
        super().__init__(name, spec, model_root)
        if not isinstance(spec, PostgresSourceSpec):
            raise SourceError(f"source {name}: expected a postgres source, got {spec.kind}")
        self._server: Server | None = None
        self._catalog: psycopg.Connection[Any] | None = None
        self._reading: set[adbc.Connection] = set()

    @property
    def server(self) -> Server:
        if self._server is None:
            assert isinstance(self.spec, PostgresSourceSpec)
            self._server = Server(self.spec, f"source {self.name}")
        return self._server

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """Every live column of the dataset's table or query, in order."""
        return [SourceColumn(name, info.native, plan_column(name, name, info).field.type,
                             nullable)
                for name, info, nullable in self._live(dataset, spec)]

    def read(self, request: ReadRequest) -> ReadResult:
        """Stream the declared columns (``since``: only rows with ``cursor >= since``)."""
        return self.read_table(request)

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        """``capture: cdc``: the changes since ``request.state`` from the dataset's logical
        replication slot, or a snapshot consistent with a new slot (``cdc``)."""
        from dataferry.connectors.postgres.cdc import read_changes

        return read_changes(self, request)

    def change_problems(self, dataset: str, spec: SourceDataset, *,
                        position: dict[str, Any] | None = None) -> list[ChangeProblem]:
        """What keeps ``dataset`` from capturing cdc (``ferry check --connect``; the slot
        keeps the position, so ``position`` is not needed)."""
        from dataferry.connectors.postgres.cdc_slots import problems

        return problems(self, dataset, spec)

    def change_lag_bytes(self, dataset: str, *,
                         position: dict[str, Any] | None = None) -> int | None:
        """The WAL written since ``dataset``'s slot last confirmed (None: no slot; the slot
        keeps the position, so ``position`` is not needed)."""
        from dataferry.connectors.postgres.cdc_slots import lag_bytes

        return lag_bytes(self, dataset)

    def release_changes(self, datasets: list[str]) -> list[str]:
        """Drop the replication slots and publications of ``datasets`` (``cdc``)."""
        from dataferry.connectors.postgres.cdc_slots import release

        return release(self, datasets)

    def read_table(self, request: ReadRequest, snapshot: str | None = None) -> ReadResult:
        """``read``; with ``snapshot`` (an exported snapshot's name), the whole table as
        that snapshot sees it, in one stream (the snapshot is imported before this
        returns, so its exporter may end then)."""
        spec = request.spec
        live = {name: info for name, info, _ in self._live(request.dataset, spec)}
        sources = [_match(request.dataset, name, live) for name in request.columns]
        plans = [plan_column(name, source, live[source])
                 for name, source in zip(request.columns, sources, strict=True)]
        exprs = [f"{p.expr} as {ident(p.field.name)}" for p in plans]
        exprs += [f"array_ndims({ident(source)})"
                  for p, source in zip(plans, sources, strict=True) if p.dims_check]
        query = f"select {', '.join(exprs)} from {_relation(request.dataset, spec)}"
        # Taken before the read's own snapshot: a transaction that begins in between is
        # younger than anything the read could leave behind.
        open_since = self._oldest_open_transaction() if _tracks_late_commits(spec) else None
        if request.since is not None:
            if not spec.cursor:
                raise SourceError(f"{request.dataset}: an incremental read needs cursor:")
            cursor = ident(_match(request.dataset, spec.cursor, live))
            query += f" where {cursor} >= {literal(_reach_back(request))}"
        schema = pa.schema([p.field for p in plans])
        state = _LateCommits(open_since)
        unique = request.since is None and self._unique_key(request, live)
        parallel = None if snapshot else self._parallel(request, live, query, plans, schema)
        if parallel is not None:
            return ReadResult(pa.RecordBatchReader.from_batches(schema, parallel), state,
                              unique_key=unique)
        connection, statement = self._open(len(exprs), autocommit=snapshot is None)
        try:
            if snapshot is not None:
                statement.execute("set transaction isolation level repeatable read")
                statement.execute(f"set transaction snapshot {literal(snapshot)}")
            for setting in _SESSION:
                statement.execute(setting)
            statement.execute(query)
            stream = statement.fetch_record_batch()
        except adbc_driver_manager.Error as exc:
            statement.close()
            self._finish(connection)
            raise self.server.error(exc, f"reading {request.dataset} from") from None
        batches = self._batches(request, plans, stream, schema, (connection, statement))
        return ReadResult(pa.RecordBatchReader.from_batches(schema, batches), state,
                          unique_key=unique)

    def _unique_key(self, request: ReadRequest, live: dict[str, TypeInfo]) -> bool:
        """Whether the table has a unique constraint (or index) on some of the declared key
        columns, none of them declared a float type: then no two rows of a whole read
        share the key, also once conformed."""
        spec = request.spec
        if not spec.table or not spec.primary_key:
            return False
        # Conform may round a value into a float type (two distinct values into one).
        if any("float" in spec.columns[k].type for k in spec.primary_key if k in spec.columns):
            return False
        key = [_match(request.dataset, k, live) for k in spec.primary_key]
        assert self._catalog is not None  # opened by _live
        try:
            rows = self._catalog.execute(UNIQUE_INDEXES_QUERY,
                                         (_relation(request.dataset, spec),)).fetchall()
        except psycopg.Error:
            return False  # then the store checks the key itself
        finally:
            with contextlib.suppress(psycopg.Error):
                self._catalog.rollback()
        return any(set(columns) <= set(key) for (columns,) in rows)

    def _oldest_open_transaction(self) -> datetime | None:
        """When the oldest transaction open in the source's database began (None: none).

        Its rows, once committed, carry a cursor no older than that (``now()`` in a
        transaction is its start). Sessions of other roles show their ``xact_start`` only
        to a role with ``pg_read_all_stats``; without it they cannot be seen (see
        docs/connectors.md)."""
        with self.server.connect(autocommit=True) as connection:
            row = connection.execute(
                "select min(xact_start) from pg_stat_activity "
                "where datname = current_database() and pid <> pg_backend_pid() "
                "and xact_start is not null").fetchone()
        return None if row is None else row[0]

    def _parallel(self, request: ReadRequest, live: dict[str, TypeInfo], query: str,
                  plans: list[ColumnPlan], schema: pa.Schema) -> Iterator[pa.RecordBatch] | None:
        """A full read of a large table, as parallel COPY streams over key ranges."""
        spec = request.spec
        if request.since is not None or not spec.table or len(spec.primary_key) != 1:
            return None
        key = _match(request.dataset, spec.primary_key[0], live)
        coordinator = self.server.connect(autocommit=True)
        try:
            planned = ranges.plan(coordinator, _relation(request.dataset, spec), ident(key),
                                  live[key].oid)
        except psycopg.Error:
            planned = None
        if planned is None:
            coordinator.close()
            return None
        _, plan = planned

        def release() -> None:  # every reader holds the snapshot: the export may end
            with contextlib.suppress(psycopg.Error):
                coordinator.execute("rollback")
                coordinator.close()

        started = threading.Barrier(len(plan.bounds), action=release, timeout=120)

        def stream(low: int, high: int) -> Callable[[], Iterator[pa.RecordBatch]]:
            def run() -> Iterator[pa.RecordBatch]:
                connection, statement = self._open(len(plans) + sum(p.dims_check for p in plans),
                                                 autocommit=False)
                try:
                    statement.execute("set transaction isolation level repeatable read")
                    statement.execute(f"set transaction snapshot {literal(plan.snapshot)}")
                    for setting in _SESSION:
                        statement.execute(setting)
                    started.wait()
                    statement.execute(f"{query} where {ident(key)} between {low} and {high}")
                    arrow = statement.fetch_record_batch()
                except adbc_driver_manager.Error as exc:
                    statement.close()
                    self._finish(connection)
                    raise self.server.error(exc, f"reading {request.dataset} from") from None
                yield from self._batches(request, plans, arrow, schema, (connection, statement))

            return run

        return ranges.merged([stream(low, high) for low, high in plan.bounds], started)

    def _open(self, columns: int, *, autocommit: bool) -> tuple[adbc.Connection, adbc.Cursor]:
        """A reading connection (tracked for ``close``) and its cursor, with the batch size
        for a result of ``columns`` columns."""
        connection = self.server.connect_adbc(autocommit=autocommit)
        self._reading.add(connection)
        statement = connection.cursor()
        with contextlib.suppress(adbc_driver_manager.Error):  # a driver without the option
            statement.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(batch_bytes(columns))})
        return connection, statement

    def _batches(self, request: ReadRequest, plans: list[ColumnPlan],
                 stream: pa.RecordBatchReader, schema: pa.Schema,
                 session: tuple[adbc.Connection, adbc.Cursor]) -> Iterator[pa.RecordBatch]:
        connection, cursor = session  # the cursor owns the stream: keep it until the end
        dims = [i for i, p in enumerate(plans) if p.dims_check]
        try:
            for batch in stream:
                arrays = []
                for index, plan in enumerate(plans):
                    column = batch.column(index)
                    try:
                        arrays.append(_apply(plan, column))
                    except BadValue as exc:
                        raise SourceError(f"{request.dataset}: column {plan.field.name} "
                                          f"{exc}",
                                          public=f"{request.dataset}: column "
                                                 f"{plan.field.name}: a value does not fit "
                                                 "its declared type") from None
                for extra, index in enumerate(dims, start=len(plans)):
                    deepest = pc.max(batch.column(extra)).as_py()
                    if deepest is not None and deepest > 1:
                        raise SourceError(
                            f"{request.dataset}: column {plans[index].field.name} has a "
                            f"{deepest}-dimensional array, which an Arrow list cannot hold; "
                            "declare it json and read it with query: (to_jsonb(col))")
                out = pa.RecordBatch.from_arrays(arrays, schema=schema)
                for start in range(0, out.num_rows, request.batch_rows):
                    yield out.slice(start, request.batch_rows)
        except (adbc_driver_manager.Error, OSError) as exc:  # OSError: the stream broke
            raise self.server.error(exc, f"reading {request.dataset} from") from None
        finally:
            cursor.close()
            self._finish(connection)

    def _finish(self, connection: adbc.Connection) -> None:
        if connection in self._reading:
            self._reading.discard(connection)
            # The server may be gone already: nothing is left to release then.
            with contextlib.suppress(adbc_driver_manager.Error, RuntimeError):
                connection.close()

    def _live(self, dataset: str, spec: SourceDataset) -> list[tuple[str, TypeInfo, bool]]:
        """(name, type, nullable) of every column the table or query returns."""
        relation = _relation(dataset, spec)
        if self._catalog is None or self._catalog.closed:
            self._catalog = self.server.connect()
        try:
            with self._catalog.cursor() as cursor:
                cursor.execute(f"select * from {relation} limit 0")
                result = cursor.pgresult
                assert result is not None and cursor.description is not None
                names = [column.name for column in cursor.description]
                count = len(names)
                oids = [result.ftype(i) for i in range(count)]
                mods = [result.fmod(i) for i in range(count)]
                origins = [(result.ftable(i), result.ftablecol(i)) for i in range(count)]
                cursor.execute(CATALOG_QUERY, (oids, mods))
                version = self._catalog.info.server_version
                infos = [TypeInfo(int(oid), int(mod), str(native), str(kind), int(element),
                                  str(element_kind), version)
                         for oid, mod, native, kind, element, element_kind in cursor]
                cursor.execute(
                    "select a.attrelid::int8, a.attnum::int4 from pg_attribute a join unnest("
                    "%s::oid[], %s::int2[]) as o(r, n) on a.attrelid = o.r and a.attnum = o.n"
                    " where a.attnotnull",
                    ([t for t, _ in origins if t], [c for t, c in origins if t]))
                not_null = {(int(t), int(c)) for t, c in cursor}
        except psycopg.Error as exc:
            raise self.server.error(exc, f"describing {dataset} on") from None
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise SourceError(f"{dataset}: the query returns column(s) {', '.join(twice)} "
                              "more than once; give each column its own name")
        return [(name, info, (table, col) not in not_null)
                for name, info, (table, col) in zip(names, infos, origins, strict=True)]

    def close(self) -> None:
        """Close the catalog connection and any read still open."""
        for connection in list(self._reading):
            self._finish(connection)
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None


def _tracks_late_commits(spec: SourceDataset) -> bool:
    return spec.capture == "incremental" and spec.cursor is not None


class _LateCommits:
    """The state an incremental read records: when the oldest transaction then open in
    the database began (``pg_open_since``), so the next read reaches back to it."""

    def __init__(self, open_since: datetime | None) -> None:
        self.open_since = open_since

    def __call__(self) -> dict[str, Any] | None:
        if self.open_since is None:
            return None
        return {"pg_open_since": self.open_since.isoformat()}


def _reach_back(request: ReadRequest) -> Any:
    """``since``, moved back to when the oldest transaction open at the previous read
    began: a row it commits later has a cursor from then, which ``last - lag`` can pass.
    This re-reads a little more (rows are de-duplicated by key); it loses nothing."""
    since = request.since
    recorded = (request.state or {}).get("pg_open_since")
    if not isinstance(since, datetime) or not isinstance(recorded, str):
        return since
    try:
        open_since = datetime.fromisoformat(recorded)
    except ValueError:
        return since
    if (since.tzinfo is None) != (open_since.tzinfo is None):
        open_since = open_since.replace(tzinfo=None) if since.tzinfo is None else \
            open_since.replace(tzinfo=UTC)
    return min(since, open_since)


def _relation(dataset: str, spec: SourceDataset) -> str:
    if spec.table:
        try:
            schema, table = split_table(spec.table)
        except ValueError as exc:
            raise SourceError(f"{dataset}: {exc}") from None
        return qualified(schema, table) if schema else ident(table)
    if spec.query:
        return f"({spec.query.strip().rstrip(';')}) as _ferry_q"
    raise SourceError(f"{dataset}: a postgres dataset needs table: or query:")


def _match(dataset: str, name: str, live: dict[str, TypeInfo]) -> str:
    """The live column for a declared name: exact, else the one equal ignoring case."""
    if name in live:
        return name
    folded = [n for n in live if n.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise SourceError(f"{dataset}: the source has no column {name!r} (it has "
                      f"{', '.join(live) or 'no columns'}); update the model or the source",
                      public=True)


def _apply(plan: ColumnPlan, column: pa.Array) -> pa.Array:
    if plan.fix is not None:
        column = plan.fix(column)
    if column.type != plan.field.type:
        column = column.cast(plan.field.type)
    return column
