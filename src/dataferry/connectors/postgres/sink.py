"""Deliver dataset versions into PostgreSQL tables, exactly once.

Every delivery runs in ONE transaction on one ADBC connection: rows are bulk loaded with
ADBC ingest (binary COPY) and applied, then the ``_ferry_loads`` row is upserted, then the
transaction commits. A delivery that dies half way (process killed, connection lost)
leaves the target and ``_ferry_loads`` as they were; one whose version the table already
has (or a later one) changes nothing. A transaction-scoped advisory lock per target
table serialises concurrent deliveries to it.

- ``replace``: load into a new table, then drop the old one and rename the new one into
  its place (grants copied). When views or foreign keys depend on the old table it is
  emptied and refilled from the new one instead (``delete`` + ``insert``), in the same
  transaction.
- ``merge``: load the change set into a temporary table, delete the rows whose
  ``_ferry_op`` is ``delete``, ``insert ... on conflict (key) do update`` the upserts.
- ``append``: COPY the added rows straight into the table with their ``_ferry_version``.
- ``history`` (SCD2): for every changed key, close the current row (``valid_to`` =
  the version's publication time) and, for upserts, insert the new current row with
  ``valid_from`` = that time and ``valid_to`` null; the primary key is (key, valid_from).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from dataferry.connectors.base import (
    LOADS_TABLE,
    OP_COLUMN,
    VALID_FROM,
    VALID_TO,
    VERSION_COLUMN,
    Delivery,
    LineageName,
    SinkConnector,
)
from dataferry.connectors.postgres import tables
from dataferry.connectors.postgres.connection import (
    Server,
    ident,
    lineage_server,
    literal,
    qualified,
)
from dataferry.connectors.postgres.tables import Column, Extra, Session, Target
from dataferry.connectors.postgres.types import native_type
from dataferry.connectors.postgres.writing import Encode, EncodeError, encoder
from dataferry.errors import SinkError
from dataferry.model.spec import AnySink
from dataferry.model.spec import PostgresSink as PostgresSinkSpec

MODES = ("replace", "merge", "append", "history")
# Naive timestamps are UTC; a lock held too long by readers fails the delivery as
# transient (55P03, retried) instead of queueing every later reader behind it.
_SESSION = ("set time zone 'UTC'", "set lock_timeout = '60s'")
_RACES = ("23505", "42P06", "42P07")  # unique violation, schema or table already exists
STAGE = "_ferry_stage"
MAX_NAME = 63  # PostgreSQL truncates longer identifiers


class PostgresSink(SinkConnector):
    """Writes deliveries into tables of one schema (``schema:``, default ``public``)."""

    kind = "postgres"

    @classmethod
    def lineage_output(cls, spec: AnySink, table: str, model_root: Path) -> LineageName | None:
        assert isinstance(spec, PostgresSinkSpec)
        found = lineage_server(spec)
        if found is None:
            return None
        namespace, database = found
        return LineageName(namespace, f"{database}.{spec.schema_ or 'public'}.{table}")

    def __init__(self, consumer: str, spec: AnySink, model_root: Path) -> None:
        super().__init__(consumer, spec, model_root)
        if not isinstance(spec, PostgresSinkSpec):
            raise SinkError(f"consumer {consumer}: expected a postgres sink, got {spec.kind}")
        self.schema = spec.schema_ or "public"
        self._server: Server | None = None

    @property
    def server(self) -> Server:
        if self._server is None:
            assert isinstance(self.spec, PostgresSinkSpec)
            self._server = Server(self.spec, f"consumer {self.consumer}")
        return self._server

    def applied_version(self, dataset: str, table: str) -> int | None:
        """The version of ``dataset`` that ``table`` has, from ``_ferry_loads``."""
        connection = self.server.connect_adbc(autocommit=True)
        try:
            with connection.cursor() as cursor:
                return tables.applied_version(Session(cursor), self.schema, dataset, table)
        except adbc_driver_manager.Error as exc:
            raise self.server.error(exc, f"reading {LOADS_TABLE} of") from None
        finally:
            connection.close()

    def deliver(self, delivery: Delivery) -> int:
        """Apply the delivery and its ``_ferry_loads`` row in one transaction; the number of
        rows received (0 when the table already had this version or a later one)."""
        d = delivery
        if d.mode not in MODES:
            raise SinkError(f"{d.consumer}: unknown delivery mode {d.mode!r} (one of "
                            f"{', '.join(MODES)})")
        if d.mode in ("merge", "history") and not d.primary_key:
            raise SinkError(f"{d.consumer}: {d.mode} delivery of {d.dataset} needs a primary "
                            "key; declare primary_key: on the dataset")
        for name in (d.table, *(c for c, _, _ in d.columns)):
            if len(name.encode()) > MAX_NAME:
                raise SinkError(f"{d.consumer}: name {name!r} is longer than PostgreSQL's "
                                f"{MAX_NAME} bytes; choose a shorter table: name")
        connection = self.server.connect_adbc(autocommit=False)
        cursor = connection.cursor()
        session = Session(cursor)
        try:
            for setting in _SESSION:
                session.run(setting)
            self._ensure_loads(connection, session)
            session.run("select pg_advisory_xact_lock(hashtextextended("
                        f"{literal(qualified(self.schema, d.table))}, 0))")
            applied = tables.applied_version(session, self.schema, d.dataset, d.table)
            if applied is not None and applied >= d.version and not d.reload:
                connection.rollback()
                return 0
            if d.reload:
                self._start_over(session, d)
            elif d.mode != "replace" and applied != d.previous:
                has = f"version {applied}" if applied is not None else "no version"
                since = f"version {d.previous}" if d.previous is not None else "the start"
                raise SinkError(
                    f"{d.consumer}: table {self.schema}.{d.table} has {has} of {d.dataset}, "
                    f"but the delivery holds the changes since {since}; run it again",
                    public=True)
            rows = _APPLY[d.mode](self, session, d)
            tables.record_load(session, self.schema, d.dataset, d.table, d.version, d.mode,
                               rows)
            connection.commit()
            return rows
        except adbc_driver_manager.Error as exc:
            _rollback(connection)
            raise self.server.error(
                exc, f"delivering {d.dataset} into table {self.schema}.{d.table} on") from None
        except BaseException:
            _rollback(connection)
            raise
        finally:
            cursor.close()
            connection.close()

    def _ensure_loads(self, connection: adbc.Connection, session: Session) -> None:
        """Create the schema and ``_ferry_loads`` when missing (committed on their own)."""
        for attempt in (1, 2):
            try:
                tables.ensure_loads(session, self.schema)
                connection.commit()
                return
            except adbc_driver_manager.Error as exc:
                # Two first deliveries at once: one of the CREATE ... IF NOT EXISTS loses.
                if attempt == 2 or getattr(exc, "sqlstate", "") not in _RACES:
                    raise
                connection.rollback()

    # --- modes -------------------------------------------------------------------------

    def _start_over(self, session: Session, d: Delivery) -> None:
        """Before a reload (``Delivery.reload``): empty a merge or append target (its
        grants, views and indexes stay); close the open rows of a history target."""
        target = tables.describe(session, self.schema, d.table)
        if target is None:
            return
        table = qualified(self.schema, d.table)
        if d.mode in ("merge", "append"):
            session.run(f"delete from {table}")
        elif d.mode == "history":
            valid_to = ident(_actual(target, VALID_TO))
            session.run(f"update {table} set {valid_to} = {literal(d.created_at)} "
                        f"where {valid_to} is null")

    def _replace(self, session: Session, d: Delivery) -> int:
        columns = _declared(d)
        suffix = hashlib.sha256(d.table.encode()).hexdigest()[:12]
        new = f"_ferry_new_{suffix}"
        tables.create(session, self.schema, new, columns, [], [])
        natives = {name: native_type(t) for name, t, _ in columns}
        rows = self._ingest(session, d, new, _plan(columns, natives))
        table, staged = qualified(self.schema, d.table), qualified(self.schema, new)
        old = tables.describe(session, self.schema, d.table)
        if old is not None and tables.dependents(session, self.schema, d.table):
            target = tables.ensure(session, self.schema, d.table, columns, [], [])
            names = ", ".join(ident(_actual(target, n)) for n, _, _ in columns)
            session.run(f"delete from {table}")
            session.run(f"insert into {table} ({names}) select "
                        f"{', '.join(ident(n) for n, _, _ in columns)} from {staged}")
            session.run(f"drop table {staged}")
            return rows
        if old is not None:
            tables.copy_grants(session, self.schema, d.table, new)
            session.run(f"drop table {table}")
        session.run(f"alter table {staged} rename to {ident(d.table)}")
        if d.primary_key:
            keys = ", ".join(ident(k) for k in d.primary_key)
            session.run(f"alter table {table} add primary key ({keys})")
        return rows

    def _append(self, session: Session, d: Delivery) -> int:
        columns = _declared(d)
        extra: list[Extra] = [(VERSION_COLUMN, "bigint", True)]
        target = tables.ensure(session, self.schema, d.table, columns, extra, [])
        return self._ingest(session, d, d.table, _plan(columns, target.columns, target),
                            version_column=_actual(target, VERSION_COLUMN))

    def _merge(self, session: Session, d: Delivery) -> int:
        columns = _declared(d)
        target = tables.ensure(session, self.schema, d.table, columns, [], d.primary_key)
        rows = self._stage(session, d, columns, target)
        table, names = qualified(self.schema, d.table), [n for n, _, _ in columns]
        keys = [_actual(target, k) for k in d.primary_key]
        match = " and ".join(f"t.{ident(k)} = s.{ident(s)}"
                             for k, s in zip(keys, d.primary_key, strict=True))
        session.run(f"delete from {table} as t using {STAGE} as s "
                    f"where s.{ident(OP_COLUMN)} = 'delete' and {match}")
        others = [_actual(target, n) for n in names if _actual(target, n) not in keys]
        action = ("do update set " + ", ".join(f"{ident(c)} = excluded.{ident(c)}"
                                               for c in others)) if others else "do nothing"
        session.run(
            f"insert into {table} ({', '.join(ident(_actual(target, n)) for n in names)}) "
            f"select {', '.join(ident(n) for n in names)} from {STAGE} "
            f"where {ident(OP_COLUMN)} = 'upsert' "
            f"on conflict ({', '.join(ident(k) for k in keys)}) {action}")
        return rows

    def _history(self, session: Session, d: Delivery) -> int:
        columns = _declared(d)
        extra: list[Extra] = [(VALID_FROM, "timestamp with time zone", True),
                              (VALID_TO, "timestamp with time zone", False)]
        key = [*d.primary_key, VALID_FROM]
        target = tables.ensure(session, self.schema, d.table, columns, extra, key)
        rows = self._stage(session, d, columns, target)
        table, names = qualified(self.schema, d.table), [n for n, _, _ in columns]
        at = literal(d.created_at)
        valid_from, valid_to = (ident(_actual(target, c)) for c in (VALID_FROM, VALID_TO))
        match = " and ".join(f"t.{ident(_actual(target, k))} = s.{ident(k)}"
                             for k in d.primary_key)
        session.run(f"update {table} as t set {valid_to} = {at} from {STAGE} as s "
                    f"where {match} and t.{valid_to} is null")
        session.run(
            f"insert into {table} ({', '.join(ident(_actual(target, n)) for n in names)}, "
            f"{valid_from}, {valid_to}) select {', '.join(ident(n) for n in names)}, {at}, "
            f"null from {STAGE} where {ident(OP_COLUMN)} = 'upsert'")
        return rows

    # --- loading -----------------------------------------------------------------------

    def _stage(self, session: Session, d: Delivery, columns: list[Column],
               target: Target) -> int:
        """Load the change set into a temporary table (dropped at commit); rows loaded."""
        natives = {n: target.columns[_actual(target, n)] for n, _, _ in columns}
        parts = [f"{ident(n)} {natives[n]}" for n, _, _ in columns]
        session.run(f"create temporary table {STAGE} ({', '.join(parts)}, "
                    f"{ident(OP_COLUMN)} text) on commit drop")
        plan = [*_plan(columns, natives), (OP_COLUMN, OP_COLUMN, encoder("text"))]
        rows = self._ingest(session, d, STAGE, plan, temporary=True)
        session.run(f"analyze {STAGE}")
        return rows

    def _ingest(self, session: Session, d: Delivery, table: str, plan: list[Load], *,
                temporary: bool = False, version_column: str | None = None) -> int:
        """COPY the delivery's rows into ``table`` (ADBC ingest, streamed batch by batch):
        ``plan`` maps delivered columns to table columns; ``version_column`` gets each
        row's ``_ferry_version`` (the delivery's version when the rows lack it)."""
        source = d.rows.schema
        missing = [name for name, _, _ in plan if source.get_field_index(name) < 0]
        if missing:
            raise SinkError(f"{d.consumer}: the delivery of {d.dataset} lacks column(s) "
                            f"{', '.join(missing)}")
        stamp = encoder("bigint")
        stamped = source.get_field_index(VERSION_COLUMN) >= 0
        names = [column for _, column, _ in plan] + ([version_column] if version_column else [])

        def convert(batch: pa.RecordBatch) -> pa.RecordBatch:
            arrays = []
            for name, _, encode in plan:
                try:
                    arrays.append(encode(batch.column(name)))
                except EncodeError as exc:
                    raise SinkError(f"{d.consumer}: table {self.schema}.{d.table}: column "
                                    f"{name} {exc}",
                                    public=f"{d.consumer}: table {self.schema}.{d.table}: "
                                           f"column {name}: a value cannot be encoded"
                                    ) from None
            if version_column:
                arrays.append(stamp(batch.column(VERSION_COLUMN)) if stamped
                              else pa.array([d.version] * batch.num_rows, pa.int64()))
            return pa.RecordBatch.from_arrays(arrays, names=names)

        schema = convert(pa.RecordBatch.from_pylist([], schema=source)).schema
        counted = [0]
        failures: list[Exception] = []

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for batch in d.rows:
                    counted[0] += batch.num_rows
                    yield convert(batch)
            except Exception as exc:  # re-raised below: ADBC only sees a failed stream
                failures.append(exc)
                raise

        reader = pa.RecordBatchReader.from_batches(schema, batches())
        try:
            session.cursor.adbc_ingest(table, reader, mode="append",
                                       db_schema_name=None if temporary else self.schema,
                                       temporary=temporary)
        except Exception:
            if failures:
                raise failures[0] from None
            raise
        return counted[0]


Load = tuple[str, str, Encode]
"""A delivered column, the table column it goes to, and its encoder."""


def _plan(columns: list[Column], natives: dict[str, str], target: Target | None = None
          ) -> list[Load]:
    """The load plan of ``columns`` into a table whose column types are ``natives``."""
    plan = []
    for name, t, _ in columns:
        column = _actual(target, name)
        plan.append((name, column, encoder(natives[column], t)))
    return plan


_APPLY: dict[str, Callable[[PostgresSink, Session, Delivery], int]] = {
    "replace": PostgresSink._replace, "merge": PostgresSink._merge,
    "append": PostgresSink._append, "history": PostgresSink._history,
}


def _declared(d: Delivery) -> list[Column]:
    return [c for c in d.columns if c[0] not in (OP_COLUMN, VERSION_COLUMN)]


def _actual(target: Target | None, name: str) -> str:
    found = target.find(name) if target is not None else None
    return found if found is not None else name


def _rollback(connection: adbc.Connection) -> None:
    # When the connection is gone the server has rolled back already.
    with contextlib.suppress(adbc_driver_manager.Error, RuntimeError):
        connection.rollback()
