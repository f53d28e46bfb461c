"""Deliver dataset versions into MariaDB/MySQL tables, exactly once.

The target database is the sink's ``schema:`` (default: the dsn's database), created if
missing, with ``_ferry_loads`` recording the version each table has. Modes:

- ``replace``: staging table + atomic ``RENAME TABLE`` with a pending marker that makes a
  crash at any point repairable (``replace.py`` says how);
- ``merge``: the change set is bulk-loaded into a staging table (keyed, so the last row
  per key wins), then one InnoDB transaction runs ``INSERT .. SELECT .. ON DUPLICATE KEY
  UPDATE`` for upserts, a ``DELETE .. JOIN`` for deletes and the ``_ferry_loads`` upsert;
- ``append``: one transaction bulk-loads the rows (keeping ``_ferry_version``) and
  upserts ``_ferry_loads``;
- ``history`` (SCD2): change set staged as for merge; one transaction closes the current
  row of every changed key (``valid_to`` = the version's time), inserts the upserted
  rows as current (``valid_from`` = the version's time, ``valid_to`` NULL) and upserts
  ``_ferry_loads``. ``valid_from``/``valid_to`` are DATETIME(6) in UTC.

A process killed in a data transaction leaves nothing (the server rolls it back). A
version already applied is skipped (0 rows), and so is an older one for every mode but
``replace``. Deliveries to one table are serialised with ``GET_LOCK``. Table DDL
(create, evolve: ``tables.py``) runs before the data transaction, since MariaDB DDL
commits by itself; it is idempotent, so a re-run after a crash finds it done.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pymysql

from dataferry.connectors.base import (
    OP_COLUMN,
    VALID_FROM,
    VALID_TO,
    VERSION_COLUMN,
    Delivery,
    LineageName,
    SinkConnector,
)
from dataferry.connectors.mysql.bulk import Column, Loader
from dataferry.connectors.mysql.connection import (
    Server,
    classify,
    connect,
    ident,
    lineage_server,
    parse_dsn,
    qualified,
    secret_of,
    server_of,
)
from dataferry.connectors.mysql.replace import repair, replace
from dataferry.connectors.mysql.tables import (
    TargetColumn,
    aux_name,
    create_table,
    ensure_loads,
    existing_columns,
    loaded_version,
    plan_evolution,
    primary_key_of,
    record_load,
)
from dataferry.errors import SinkError, TransientError
from dataferry.model.spec import AnySink
from dataferry.model.spec import MysqlSink as MysqlSinkSpec
from dataferry.model.types import Primitive, String

SESSION = (
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_BACKSLASH_ESCAPES'",
)
"""Strict: a value that does not fit fails the load instead of being truncated."""
LOCK_SECONDS = 60


class MysqlSink(SinkConnector):
    """Writes deliveries into one ``kind: mysql`` sink (MariaDB or MySQL)."""

    kind = "mysql"
    load_data: bool | None = None
    """Use LOAD DATA LOCAL INFILE: None = when the server allows it; False = INSERTs."""

    @classmethod
    def lineage_output(cls, spec: AnySink, table: str, model_root: Path) -> LineageName | None:
        assert isinstance(spec, MysqlSinkSpec)
        found = lineage_server(spec)
        if found is None:
            return None
        namespace, database = found
        database = spec.schema_ or database
        return LineageName(namespace, f"{database}.{table}" if database else table)

    def __init__(self, consumer: str, spec: AnySink, model_root: Path) -> None:
        super().__init__(consumer, spec, model_root)
        if not isinstance(spec, MysqlSinkSpec):
            raise SinkError(f"consumer {consumer}: expected a mysql sink spec, got {spec.kind}")
        self.mysql = spec
        self.what = f"consumer {consumer}"
        database = spec.schema_ or parse_dsn(spec.dsn, self.what, SinkError).database
        if not database:
            raise SinkError(f"{self.what}: the mysql sink needs schema: or a database in its dsn")
        try:
            ident(database)
        except ValueError as exc:
            raise SinkError(f"{self.what}: schema: {exc}") from None
        self.database = database
        self._connection: pymysql.Connection | None = None
        self._server: Server | None = None

    def applied_version(self, dataset: str, table: str) -> int | None:
        """The version ``_ferry_loads`` records for ``table`` (after finishing a replace
        that crashed after its swap); None when nothing was delivered yet."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                               "AND TABLE_NAME = '_ferry_loads'", (self.database,))
                if cursor.fetchone() is None:
                    return None
                repair(connection, self.database, dataset, table)
                version = loaded_version(cursor, self.database, dataset, table)
            connection.commit()
            return version
        except pymysql.Error as exc:
            raise self._fail(exc, f"reading the applied version of {table} on") from None

    def deliver(self, delivery: Delivery) -> int:
        """Apply ``delivery`` exactly once (module doc); returns the rows written."""
        connection = self._connect()
        label = f"{self.what}: table {self.database}.{delivery.table}"
        try:
            _check_names(delivery, label)
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS {ident(self.database)} "
                               "CHARACTER SET utf8mb4")
                ensure_loads(cursor, self.database)
            connection.select_db(self.database)  # multi-table DELETE needs a default database
            self._lock(delivery.table)
            try:
                return self._deliver(delivery, label)
            finally:
                with contextlib.suppress(pymysql.Error):  # a lost connection frees it too
                    self._unlock(delivery.table)
        except pymysql.Error as exc:
            _rollback(connection)
            raise self._fail(exc, f"delivering {delivery.dataset} to {delivery.table} on") from None
        except BaseException:
            _rollback(connection)
            raise

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(pymysql.Error):
                self._connection.close()
            self._connection = None

    # --- internals ---------------------------------------------------------------------

    def _connect(self) -> pymysql.Connection:
        if self._connection is None:
            self._connection = connect(self.mysql, self.what, local_infile=True, database="",
                                       init=SESSION)
            self._connection._local_infile = False  # the Loader allows it per statement
            self._server = server_of(self._connection)
        return self._connection

    def _fail(self, exc: BaseException, doing: str) -> Exception:
        return classify(exc, self.mysql, self.what, secret_of(self.mysql, self.what), doing)

    def _lock_name(self, table: str) -> str:
        return "ferry_" + hashlib.sha256(f"{self.database}.{table}".encode()).hexdigest()[:40]

    def _lock(self, table: str) -> None:
        with self._connect().cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, %s)", (self._lock_name(table), LOCK_SECONDS))
            row = cursor.fetchone()
        if row is None or row[0] != 1:
            raise TransientError(f"{self.what}: another delivery to {self.database}.{table} "
                                 f"held its lock for {LOCK_SECONDS}s")

    def _unlock(self, table: str) -> None:
        with self._connect().cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (self._lock_name(table),))
            cursor.fetchall()

    def _deliver(self, delivery: Delivery, label: str) -> int:
        connection, server, database = self._connect(), self._server, self.database
        assert server is not None
        table = delivery.table
        repair(connection, database, delivery.dataset, table)
        with connection.cursor() as cursor:
            applied = loaded_version(cursor, database, delivery.dataset, table)
        connection.commit()
        if _already(applied, delivery):
            return 0
        keys = {k.lower() for k in delivery.primary_key}
        columns = [TargetColumn(n, t, nullable, n.lower() in keys)
                   for n, t, nullable in delivery.columns]
        use_load_data = server.local_infile if self.load_data is None else self.load_data
        loader = Loader(connection, load_data=use_load_data, max_packet=server.max_packet)
        if delivery.mode == "replace":
            return replace(connection, server, loader, database, delivery.dataset, table,
                           delivery.version, columns, delivery.primary_key, delivery.rows, label)
        if delivery.mode == "append":
            columns.append(TargetColumn(VERSION_COLUMN, Primitive("int64"), False))
            self._ensure_table(table, columns, [], [], label)
            applied = self._locked_version(delivery)
            if _already(applied, delivery):
                connection.rollback()
                return 0
            if delivery.reload:
                self._start_over(delivery)
            written = loader.write(qualified(database, table), label,
                                   [Column(c.name, c.type) for c in columns], delivery.rows)
            return self._commit(delivery, written)
        if delivery.mode in ("merge", "history"):
            return self._apply_changes(delivery, columns, loader, label)
        raise SinkError(f"{label}: unknown delivery mode {delivery.mode!r}")

    def _ensure_table(self, table: str, columns: list[TargetColumn], primary_key: list[str],
                      index: list[str], label: str) -> None:
        """Create the target, or check and evolve it (``tables.py``)."""
        connection, server = self._connect(), self._server
        assert server is not None
        with connection.cursor() as cursor:
            existing = existing_columns(cursor, self.database, table)
            if existing is None:
                create_table(cursor, qualified(self.database, table), columns, server,
                             primary_key=primary_key, index=index)
                return
            if primary_key:
                found = primary_key_of(cursor, self.database, table)
                if [k.lower() for k in found] != [k.lower() for k in primary_key]:
                    raise SinkError(
                        f"{label}: the table's primary key is ({', '.join(found) or 'none'}) "
                        f"but the delivery's key is ({', '.join(primary_key)}); merge needs "
                        "them equal: fix the table or drop it to reload it in full")
            clauses = plan_evolution(existing, columns, server, label)
            if clauses:
                cursor.execute(f"ALTER TABLE {qualified(self.database, table)} "
                               + ", ".join(clauses))

    def _apply_changes(self, delivery: Delivery, columns: list[TargetColumn], loader: Loader,
                       label: str) -> int:
        connection, server, database = self._connect(), self._server, self.database
        assert server is not None
        key = delivery.primary_key
        if not key:
            raise SinkError(f"{label}: {delivery.mode} delivery needs a primary key")
        target = qualified(database, delivery.table)
        if delivery.mode == "merge":
            self._ensure_table(delivery.table, columns, key, [], label)
        else:
            stamps = [TargetColumn(VALID_FROM, Primitive("timestamp_tz"), False),
                      TargetColumn(VALID_TO, Primitive("timestamp_tz"), True)]
            self._ensure_table(delivery.table, columns + stamps, [], key, label)
        stage = qualified(database, aux_name(delivery.table, "chg"))
        staged = [TargetColumn(c.name, c.type, not c.key, c.key) for c in columns]
        staged.append(TargetColumn(OP_COLUMN, String(6), False))
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {stage}")
                create_table(cursor, stage, staged, server, primary_key=key)
            written = loader.write(stage, label, [Column(c.name, c.type) for c in staged],
                                   delivery.rows, replace=True)
            connection.commit()
            if _already(self._locked_version(delivery), delivery):
                connection.rollback()
                return 0
            if delivery.reload:
                self._start_over(delivery)
            names = ", ".join(ident(c.name) for c in columns)
            join = " AND ".join(f"t.{ident(k)} = s.{ident(k)}" for k in key)
            upserts = f"FROM {stage} WHERE {ident(OP_COLUMN)} = 'upsert'"
            with connection.cursor() as cursor:
                if delivery.mode == "merge":
                    updates = [c for c in columns if not c.key] or columns[:1]
                    assign = ", ".join(f"{ident(c.name)} = VALUES({ident(c.name)})"
                                       for c in updates)
                    cursor.execute(f"INSERT INTO {target} ({names}) SELECT {names} {upserts} "
                                   f"ON DUPLICATE KEY UPDATE {assign}")
                    cursor.execute(f"DELETE t FROM {target} t JOIN {stage} s ON {join} "
                                   f"WHERE s.{ident(OP_COLUMN)} = 'delete'")
                else:
                    moment = _utc(delivery.created_at)
                    cursor.execute(f"UPDATE {target} t JOIN {stage} s ON {join} "
                                   f"SET t.{ident(VALID_TO)} = %s WHERE t.{ident(VALID_TO)} IS NULL",
                                   (moment,))
                    cursor.execute(f"INSERT INTO {target} ({names}, {ident(VALID_FROM)}, "
                                   f"{ident(VALID_TO)}) SELECT {names}, %s, NULL {upserts}",
                                   (moment,))
            return self._commit(delivery, written)
        finally:
            _rollback(connection)
            with contextlib.suppress(pymysql.Error), connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {stage}")  # else the next run does

    def _start_over(self, delivery: Delivery) -> None:
        """Before a reload (``Delivery.reload``), in its transaction (DML only, so InnoDB
        rolls it back with the load): empty a merge or append target; close the open rows
        of a history target (its past stays)."""
        target = qualified(self.database, delivery.table)
        with self._connect().cursor() as cursor:
            if delivery.mode in ("merge", "append"):
                cursor.execute(f"DELETE FROM {target}")
            elif delivery.mode == "history":
                cursor.execute(f"UPDATE {target} SET {ident(VALID_TO)} = %s "
                               f"WHERE {ident(VALID_TO)} IS NULL", (_utc(delivery.created_at),))

    def _locked_version(self, delivery: Delivery) -> int | None:
        """The applied version, its ``_ferry_loads`` row locked until this transaction ends."""
        with self._connect().cursor() as cursor:
            return loaded_version(cursor, self.database, delivery.dataset, delivery.table,
                                  lock=True)

    def _commit(self, delivery: Delivery, written: int) -> int:
        connection = self._connect()
        with connection.cursor() as cursor:
            record_load(cursor, self.database, delivery.dataset, delivery.table,
                        delivery.version, delivery.mode, written)
        connection.commit()
        return written


def _already(applied: int | None, delivery: Delivery) -> bool:
    """Whether the target already has this version (or, but for replace, a newer one);
    never for a reload, which applies whatever the target has."""
    if applied is None or delivery.reload:
        return False
    return applied == delivery.version or (applied > delivery.version
                                           and delivery.mode != "replace")


def _utc(moment: datetime) -> datetime:
    """A naive UTC datetime (what DATETIME(6) columns hold); naive input is taken as UTC."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _check_names(delivery: Delivery, label: str) -> None:
    try:
        for name in [delivery.table, *(n for n, _, _ in delivery.columns)]:
            ident(name)
    except ValueError as exc:
        raise SinkError(f"{label}: {exc}") from None


def _rollback(connection: pymysql.Connection) -> None:
    with contextlib.suppress(pymysql.Error):  # if the connection is gone, so is the transaction
        connection.rollback()
