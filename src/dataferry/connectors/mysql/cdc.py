"""``capture: cdc`` on a ``kind: mysql`` source: changes read from MariaDB's row-based binlog.

The first run (no position recorded, or ``ferry run --full``) is a consistent snapshot:
``START TRANSACTION WITH CONSISTENT SNAPSHOT``, then ``binlog_snapshot_file`` and
``binlog_snapshot_position`` (MariaDB's status variables) give the binlog position that
snapshot is consistent with, and ``BINLOG_GTID_POS`` its GTID; the table is read in that
transaction, by the same code and conversions as a snapshot ingest (``source.py``).

Every later run reads the committed row events after the recorded position, with
python-mysql-replication (a replica's binlog dump, over PyMySQL), up to the end of the
binlog as it was when the read began: inserts, updates (both keys when the key changes)
and deletes of the dataset's table, folded into one change per primary key
(``cdc_fold``). The read stops only after a transaction's end, so a transaction is
never split; the binlog holds committed work only, so rolled-back work never appears,
except XA transactions, written at ``XA PREPARE``: their rows are held until the
``XA COMMIT`` is read, in the position itself (``cdc_xa``).
The position recorded is the end of the last transaction read; the engine records it in
the signed manifest with the version, so a run killed anywhere re-reads from the head's
position, and nothing is lost or read twice. The binlog has no slot to confirm:
``acknowledge`` has nothing to do, and the server's ``binlog_expire_logs_seconds``
decides how long a position can be resumed from (a purged one fails with what to do).

The position state also carries the lag when the read ended: ``lag_bytes`` (binlog
bytes written after the position) and ``lag_seconds`` (0 when caught up, else the age of
the last transaction read), shown by ``ferry datasets``.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.mysql.cdc_check import binlog_files, purged_message, read_problems
from dataferry.connectors.mysql.cdc_fold import DELETE, UPSERT, ChangeFold
from dataferry.connectors.mysql.cdc_scans import IdleScans
from dataferry.connectors.mysql.cdc_values import normalize, to_arrow
from dataferry.connectors.mysql.cdc_xa import (
    XA_PREPARED_FLAG,
    PreparedXa,
    event_start,
    prepared_before,
    prepared_xid,
    read_prepared,
    recovered_xids,
    undecided_at,
    xa_decision,
)
from dataferry.connectors.mysql.connection import parse_dsn, qualified, secret_of
from dataferry.connectors.mysql.types import ResultColumn, arrow_type
from dataferry.errors import FerryError, SourceError
from dataferry.faults import crash_point

# python-mysql-replication opens its control connection with PyMySQL's old argument
# names ('db', 'passwd'); the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message=r"'(db|passwd)' is deprecated",
                        category=DeprecationWarning)

_ROW_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
_PLAIN = frozenset({int, float, Decimal, datetime, date})
"""Decoded values that are already as a snapshot reads them (``normalize`` skipped)."""
_PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: the file is gone


@dataclass(frozen=True)
class BinlogPosition:
    """A point in the binlog: the start of the next transaction to read."""

    file: str
    pos: int
    gtid: str | None = None
    held: tuple[PreparedXa, ...] = ()
    """Prepared XA transactions before this point whose decision is still to be read."""

    def order(self) -> tuple[int, int]:
        """Comparable across files (``binlog.000012`` after ``binlog.000009``)."""
        return _sequence(self.file), self.pos

    def state(self, lag_bytes: int | None, lag_seconds: float | None) -> dict[str, Any]:
        state: dict[str, Any] = {"binlog_file": self.file, "binlog_pos": self.pos,
                                 "gtid": self.gtid, "lag_bytes": lag_bytes,
                                 "lag_seconds": lag_seconds}
        if self.held:
            state["xa_prepared"] = [xa.state() for xa in self.held]
        return state

    @classmethod
    def of_state(cls, state: dict[str, Any] | None) -> BinlogPosition | None:
        """The position a previous version recorded; None when it recorded none (first run,
        or another capture)."""
        if not state or not isinstance(state.get("binlog_file"), str):
            return None
        pos = state.get("binlog_pos")
        if not isinstance(pos, int):
            return None
        gtid = state.get("gtid")
        return cls(state["binlog_file"], pos, gtid if isinstance(gtid, str) else None,
                   PreparedXa.of_states(state.get("xa_prepared")))


def _sequence(file: str) -> int:
    found = re.search(r"(\d+)$", file)
    return int(found.group(1)) if found else 0


@dataclass
class Table:
    """The dataset's table and how its declared columns read."""

    database: str
    name: str
    chosen: list[tuple[ResultColumn, str]]  # (live column, declared name)
    key: list[str]  # live names of the primary key columns
    natives: dict[str, str]  # live name -> COLUMN_TYPE (lower case)
    batch: int = 65_536  # rows per batch of the change set

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, arrow_type(f)) for f, name in self.chosen])

    @property
    def key_schema(self) -> pa.Schema:
        found = {f.name: (f, name) for f, name in self.chosen}
        return pa.schema([pa.field(found[k][1], arrow_type(found[k][0])) for k in self.key])


class BinlogCapture:
    """Reads one dataset's changes for ``MysqlSource.read_changes``."""

    def __init__(self, source: Any) -> None:
        self.source = source  # a MysqlSource (its connections, descriptions, snapshot path)

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        start = BinlogPosition.of_state(request.state)
        if start is None:
            return self._snapshot(request)
        return self._changes(request, start)

    # --- the first run: a consistent snapshot ----------------------------------------

    def _snapshot(self, request: ReadRequest) -> ChangeSet:
        from dataferry.connectors.mysql.source import _text, batch_rows

        source = self.source
        connection = source._connect()
        source._open.append(connection)
        try:
            table = self._table(connection, request)
            _refuse_settings(connection, request.dataset)
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cursor.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(k).lower(): str(v) for k, v in cursor.fetchall()}
                file = status.get("binlog_snapshot_file", "")
                if not file:
                    raise SourceError(
                        f"{request.dataset}: cdc capture needs the binlog, which is off on "
                        "this server (or it is not MariaDB: MySQL has no consistent binlog "
                        "snapshot position); start MariaDB with log_bin and "
                        "binlog_format=ROW (docs/connectors.md#mariadb-cdc)", public=True)
                pos = int(status["binlog_snapshot_position"])
                cursor.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
                found = cursor.fetchone()
            gtid = str(found[0]) if found is not None and found[0] is not None else None
            position = BinlogPosition(file, pos, gtid,
                                      self._prepared_at(connection, table, file, pos))
            schema = table.schema
            relation = qualified(table.database, table.name)
            full = replace(request, since=None)
            sql = source._select(full, relation, [f for f, _ in table.chosen], table.chosen,
                                 connection, _text)
            rows = batch_rows(connection, (table.database, table.name),
                              [f for f, _ in table.chosen], request.batch_rows)
            batches = source._batches(connection, full, sql, table.chosen, schema, rows)
        except pymysql.Error as exc:
            source._release(connection)
            raise source._fail(exc, f"cannot snapshot {request.dataset} on") from None
        except BaseException:
            source._release(connection)
            raise
        lag = self._lag(position, None)
        return ChangeSet(upserts=pa.RecordBatchReader.from_batches(schema, batches),
                         deleted_keys=None, position=position.state(*lag), snapshot=True)

    def _prepared_at(self, connection: pymysql.Connection, table: Table, file: str,
                     pos: int) -> tuple[PreparedXa, ...]:
        """The XA transactions with rows of the table that were prepared, not decided, at
        the snapshot's binlog position: the snapshot does not see their rows, and their
        XA COMMIT comes after it (cdc_xa.py)."""
        with connection.cursor() as cursor:
            cursor.execute("XA RECOVER")
            recovered = recovered_xids(list(cursor.fetchall()))
        end = _master_position(connection)
        settings = self._settings()
        undecided = undecided_at(settings, recovered, (file, pos), (end.file, end.pos),
                                 table.database, table.name)
        if not undecided:
            return ()
        found = prepared_before(settings, undecided, (file, pos),
                                list(binlog_files(connection)), table.database, table.name)
        return tuple(found[xid] for xid in sorted(found))

    # --- later runs: the binlog after the recorded position ---------------------------

    def _changes(self, request: ReadRequest, start: BinlogPosition) -> ChangeSet:
        from dataferry.connectors.mysql.source import batch_rows

        source = self.source
        connection = source._connect()
        try:
            table = self._table(connection, request)
            _refuse_settings(connection, request.dataset)
            scans = idle_scans(connection, source, table.database, table.name)
            # Batches of about BATCH_BYTES whatever the row width, as a snapshot read has.
            table.batch = batch_rows(connection, (table.database, table.name),
                                     [f for f, _ in table.chosen], request.batch_rows)
            resumed = scans.skip(start)
            files = binlog_files(connection)
            if resumed.file not in files:
                raise SourceError(purged_message(request.dataset, resumed.file, files),
                                  public=True)
            for xa in resumed.held:
                if xa.file not in files:
                    raise SourceError(purged_message(
                        request.dataset, xa.file, files,
                        what=f"the rows of the prepared XA transaction {xa.xid}"), public=True)
            end = _master_position(connection)
        except pymysql.Error as exc:
            raise source._fail(exc, f"cannot read the binlog for {request.dataset} on") from None
        finally:
            connection.close()
        fold = ChangeFold()
        try:
            reached, last_event, events = self._fold(request, table, resumed, end, fold)
        except BaseException:
            fold.close()
            raise
        lag = self._lag(reached, last_event)
        upserts = pa.RecordBatchReader.from_batches(
            table.schema, self._batches(fold, UPSERT, table, request))
        deleted = None
        if fold.count(DELETE):
            deleted = pa.RecordBatchReader.from_batches(
                table.key_schema, self._batches(fold, DELETE, table, request))

        def acknowledge() -> None:
            if events == 0:  # no event of the table from start to reached (cdc_scans.py)
                scans.note_empty(start, reached)

        return ChangeSet(upserts=upserts, deleted_keys=deleted, position=reached.state(*lag),
                         acknowledge=acknowledge, snapshot=False, close=fold.close)

    def _fold(self, request: ReadRequest, table: Table, start: BinlogPosition,
              end: BinlogPosition, fold: ChangeFold
              ) -> tuple[BinlogPosition, float | None, int]:
        """Fold the committed row events of ``table`` from ``start`` to (at least) ``end``;
        the position after the last whole transaction read, its event time and how many
        row events of the table were read."""
        reached, last_event = start, None
        if start.order() >= end.order():
            return reached, last_event, 0
        stream = BinLogStreamReader(
            connection_settings=self._settings(), server_id=random.randint(1 << 20, 1 << 31),
            resume_stream=True, log_file=start.file, log_pos=start.pos, blocking=False,
            only_events=[*_ROW_EVENTS, XidEvent, QueryEvent, MariadbGtidEvent, RotateEvent,
                         XAPrepareEvent],
            only_schemas=[table.database], only_tables=[table.name], enable_logging=False)
        gtid = start.gtid
        held = {xa.xid: xa for xa in start.held}
        folded: dict[str, str] = {}  # held XA prepared in this read -> its rows' fold group
        prepared: tuple[int, str] | None = None  # the XA PREPARE group being read: start, GTID
        prepared_rows = 0
        rows = 0
        try:
            for event in stream:
                if isinstance(event, MariadbGtidEvent):
                    gtid = str(event.gtid)
                    prepared = ((event_start(event), gtid)
                                if event.flags & XA_PREPARED_FLAG else None)
                    fold.group = None if prepared is None else gtid  # held (cdc_xa.py)
                    prepared_rows = 0
                    continue
                if isinstance(event, RotateEvent):
                    continue
                if isinstance(event, _ROW_EVENTS):
                    if event.schema == table.database and event.table == table.name:
                        if prepared is not None:
                            prepared_rows += self._apply(event, table, request, fold)
                        else:
                            rows += self._apply(event, table, request, fold)
                    continue
                if isinstance(event, QueryEvent):
                    text = event.query.strip().upper()
                    if text == "BEGIN" or (prepared is not None and text.startswith("XA END")):
                        continue
                    decision = xa_decision(event.query)
                    if decision is not None and decision[0] in held:
                        decided = held.pop(decision[0])
                        group = folded.pop(decided.xid, None)
                        if group is not None:  # prepared in this read: its rows are here
                            (fold.publish_held if decision[1] else fold.drop_held)(group)
                        elif decision[1]:  # prepared in an earlier read: read them again
                            rows += self._read_prepared(request, table, decided, fold)
                        rows += 1  # a decision of the table's: never noted as idle
                elif isinstance(event, XAPrepareEvent) and prepared is not None:
                    fold.group = None
                    xa = PreparedXa(prepared_xid(event), stream.log_file, *prepared)
                    if event.one_phase:  # MySQL's XA COMMIT ONE PHASE: committed here
                        fold.publish_held(prepared[1])
                    elif prepared_rows:
                        held[xa.xid] = xa
                        folded[xa.xid] = prepared[1]
                    rows += prepared_rows  # events of the table: no idle note
                    prepared = None
                # XID, COMMIT, XA PREPARE, XA COMMIT or a DDL statement: a group ended here.
                fold.commit()
                crash_point("mysql-cdc-mid-read")  # tests: a run killed while reading
                reached = BinlogPosition(stream.log_file, stream.log_pos, gtid,
                                         tuple(held.values()))
                last_event = float(event.timestamp)
                if reached.order() >= end.order():
                    break
        except pymysql.Error as exc:
            fold.rollback()
            if exc.args and exc.args[0] == _PURGED:
                raise SourceError(purged_message(request.dataset, start.file, []),
                                  public=True) from None
            raise self.source._fail(exc, f"reading the binlog for {request.dataset} from") from None
        except FerryError:
            fold.rollback()
            raise
        except Exception as exc:  # the library's own errors (a malformed or unknown event)
            fold.rollback()
            raise SourceError(f"{request.dataset}: cannot decode the binlog after "
                              f"{reached.file}:{reached.pos}: {type(exc).__name__}: {exc}; "
                              "run `ferry run --full` to start over from a snapshot if "
                              "it persists",
                              public=f"{request.dataset}: cannot decode the binlog after "
                                     f"{reached.file}:{reached.pos} ({type(exc).__name__})"
                              ) from None
        finally:
            fold.rollback()  # a transaction whose end was not read: never split
            stream.close()
        return reached, last_event, rows

    def _read_prepared(self, request: ReadRequest, table: Table, xa: PreparedXa,
                       fold: ChangeFold) -> int:
        """Fold the rows of a prepared XA transaction of an earlier read, read again where
        it was prepared, now that its XA COMMIT was read."""
        try:
            return read_prepared(self._settings(), xa, table.database, table.name,
                                 lambda event: self._apply(event, table, request,
                                                                        fold))
        except pymysql.Error as exc:
            if exc.args and exc.args[0] == _PURGED:
                raise SourceError(purged_message(request.dataset, xa.file, [], what=(
                    f"the rows of the prepared XA transaction {xa.xid}")), public=True) from None
            raise
        except LookupError as exc:
            raise SourceError(f"{request.dataset}: {exc} (the binlog changed under the "
                              f"recorded position); run `ferry run --full {request.dataset}` "
                              "to start over from a snapshot", public=True) from None

    def _apply(self, event: Any, table: Table, request: ReadRequest, fold: ChangeFold) -> int:
        columns = {c.name: c for c in event.columns}
        plan = [(field.name, name, columns.get(field.name), table.natives.get(field.name, ""))
                for field, name in table.chosen]
        for row in event.rows:
            if isinstance(event, UpdateRowsEvent):
                before = self._row(row["before_values"], row.get("before_none_sources", {}),
                                   plan, table, request)
                after = self._row(row["after_values"], row.get("after_none_sources", {}),
                                  plan, table, request)
                old_key, new_key = self._key(before, table), self._key(after, table)
                if old_key != new_key:
                    fold.delete(old_key)
                fold.upsert(new_key, tuple(after.values()))
                continue
            values = self._row(row["values"], row.get("none_sources", {}), plan, table,
                               request)
            if isinstance(event, DeleteRowsEvent):
                fold.delete(self._key(values, table))
            else:
                fold.upsert(self._key(values, table), tuple(values.values()))
        return len(event.rows)

    @staticmethod
    def _row(values: dict[str, Any], none_sources: dict[str, str],
             plan: list[tuple[str, str, Any, str]], table: Table,
             request: ReadRequest) -> dict[str, Any]:
        """The declared columns of one row image (in ``table.chosen`` order), normalized."""
        found: dict[str, Any] = {}
        for live, declared, column, native in plan:
            try:
                value = values[live]
            except KeyError:
                raise SourceError(
                    f"{request.dataset}: the binlog's rows of {table.database}.{table.name} "
                    f"have no column {live!r} (the table changed); update the model or the "
                    "table, then run again (ferry run --full to start over)",
                    public=True) from None
            if value is None or type(value) not in _PLAIN:
                value = normalize(value, column, none_sources.get(live), native,
                                  request.dataset, declared)
            found[live] = value
        return found

    @staticmethod
    def _key(row: dict[str, Any], table: Table) -> tuple[Any, ...]:
        return tuple(row[name] for name in table.key)

    def _batches(self, fold: ChangeFold, op: int, table: Table,
                 request: ReadRequest) -> Iterator[pa.RecordBatch]:
        by_name = {f.name: f for f, _ in table.chosen}
        fields = ([f for f, _ in table.chosen] if op == UPSERT
                  else [by_name[k] for k in table.key])
        schema = table.schema if op == UPSERT else table.key_schema
        for rows in fold.rows(op, table.batch):
            columns = list(zip(*rows, strict=True))
            arrays = [to_arrow(columns[i], field, schema.field(i).type, request.dataset)
                      for i, field in enumerate(fields)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    # --- helpers --------------------------------------------------------------------

    def _table(self, connection: pymysql.Connection, request: ReadRequest) -> Table:
        from dataferry.connectors.mysql.source import _choose

        source = self.source
        if request.spec.query or not request.spec.table:
            raise SourceError(f"{request.dataset}: cdc capture reads a table's changes: give "
                              "table: (a query: dataset cannot be captured)", public=True)
        relation, found = source._relation(request.dataset, request.spec)
        assert found is not None
        database, name = found
        fields = source._describe(connection, request.dataset, relation)
        chosen = _choose(fields, request.columns)
        live = {f.name.lower(): f.name for f, _ in chosen}
        missing = [c for c in request.columns if c.lower() not in live]
        if missing:  # as drift says it for every source, before anything is read
            raise SourceError(
                f"{request.dataset}: the source's schema changed: declared column(s) "
                f"{', '.join(repr(c) for c in missing)} missing at the source "
                f"({database}.{name}); update the model or the source, then run again",
                public=True)
        key = []
        for column in request.spec.primary_key:
            if column.lower() not in live:
                raise SourceError(f"{request.dataset}: primary key column {column!r} is not "
                                  f"in {database}.{name}", public=True)
            key.append(live[column.lower()])
        with connection.cursor() as cursor:
            cursor.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                           "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, name))
            natives = {str(c): str(t).lower() for c, t in cursor.fetchall()}
        return Table(database, name, chosen, key, natives)

    def _settings(self) -> dict[str, Any]:
        spec = self.source.mysql
        dsn = parse_dsn(spec.dsn, self.source.what, SourceError)
        secret = secret_of(spec, self.source.what)
        settings: dict[str, Any] = {
            "host": dsn.host, "port": dsn.port, "user": dsn.user,
            "password": secret.reveal() if secret is not None else "",
            "charset": "utf8mb4", "connect_timeout": 10,
        }
        if "unix_socket" in dsn.options:
            settings["unix_socket"] = dsn.options["unix_socket"]
        if "ssl_ca" in dsn.options:
            settings["ssl"] = {"ca": dsn.options["ssl_ca"]}
        return settings

    def _lag(self, reached: BinlogPosition, last_event: float | None
             ) -> tuple[int | None, float | None]:
        """(bytes written after ``reached``, seconds behind) now; None when unknown."""
        try:
            connection = self.source._connect()
        except FerryError:
            return None, None
        try:
            with contextlib.closing(connection):
                behind = _bytes_after(binlog_files(connection), reached)
        except pymysql.Error:
            return None, None
        if behind is None:
            return None, None
        if behind == 0:
            return 0, 0.0
        seconds = None if last_event is None else round(max(time.time() - last_event, 0.0), 3)
        return behind, seconds


def binlog_behind(connection: pymysql.Connection, position: BinlogPosition) -> int | None:
    """Binlog bytes the server has written after ``position``; None when its file is gone."""
    return _bytes_after(binlog_files(connection), position)


def _bytes_after(files: dict[str, int], position: BinlogPosition) -> int | None:
    if position.file not in files:
        return None
    later = sum(size for name, size in files.items()
                if _sequence(name) > _sequence(position.file))
    return max(files[position.file] - position.pos + later, 0)


def idle_scans(connection: pymysql.Connection, source: Any, database: str,
               table: str) -> IdleScans:
    """The notes of binlog ranges without events of ``database.table`` on this server."""
    dsn = parse_dsn(source.mysql.dsn, source.what, SourceError)
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@server_id, @@hostname")
        row = cursor.fetchone()
    identity = " ".join(str(v) for v in row) if row is not None else ""
    where = dsn.options.get("unix_socket") or f"{dsn.host}:{dsn.port}"
    return IdleScans(f"{where} {identity}", f"{database}.{table}")


def _master_position(connection: pymysql.Connection) -> BinlogPosition:
    with connection.cursor() as cursor:
        cursor.execute("SHOW MASTER STATUS")
        row = cursor.fetchone()
    if row is None:
        raise SourceError("the binlog is off on this server: cdc capture needs log_bin "
                          "(docs/connectors.md#mariadb-cdc)", public=True)
    return BinlogPosition(str(row[0]), int(row[1]))


def _refuse_settings(connection: pymysql.Connection, dataset: str) -> None:
    problems = read_problems(connection)
    if problems:
        raise SourceError(f"{dataset}: cdc capture cannot read this server's binlog: "
                          + "; ".join(problems) + " (docs/connectors.md#mariadb-cdc)",
                          public=True)
