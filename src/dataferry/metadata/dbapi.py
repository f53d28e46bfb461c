"""The metadata database through its DB-API driver (``sqlite3``, psycopg): what a run writes.

``ferry run`` records each job's run before it reads the job's source, and SQLAlchemy's
import alone (0.2 s of CPU, its ORM and the tables 0.1 s more) was a third of the
command's fixed cost. So the run history's writes (``runs``, ``outbox``, ``freshness``)
are plain SQL here; the server's queries, users and tokens, and Alembic's migrations use
SQLAlchemy (``Metadata.engine``), which loads only when they run.

SQL is written once, with ``:name`` parameters (rewritten to ``%(name)s`` for psycopg) and
only what both databases understand. Values are stored as SQLAlchemy stores them, since
both read the same rows: timestamps in UTC (on SQLite as naive ``YYYY-MM-DD
HH:MM:SS.ffffff`` text, which sorts in time order), JSON as text on SQLite and ``json`` on
PostgreSQL.

    with database.transaction() as sql:
        sql.execute("UPDATE runs SET status = :status WHERE id = :id", status="failed", id=7)
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from dataferry.errors import MetadataError, TransientError

SQLITE_BUSY_SECONDS = 30
_POOL = 4
"""Idle connections kept for reuse (the scheduler's workers write from several threads)."""
SUPPORTED = "use sqlite:///path/to/ferry.db or postgresql://user@host/db"


@dataclass(frozen=True)
class DatabaseUrl:
    """A metadata database URL as SQLAlchemy spells it, parsed without SQLAlchemy.

    ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite://`` (in memory),
    ``postgresql[+driver]://user:password@host:port/db?options``.
    """

    text: str
    backend: str
    """``sqlite``, ``postgresql`` or whatever else was asked for (refused later)."""
    database: str | None
    """SQLite: the file (None or ``:memory:``: in memory); PostgreSQL: unused."""
    query: str

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        found = re.match(r"([A-Za-z][\w.]*)(?:\+[\w.]+)?://(.*)\Z", url, re.DOTALL)
        if found is None:
            # The message would echo the URL, password included: name only the problem.
            raise MetadataError(f"metadata: not a database URL; {SUPPORTED}")
        backend, rest = found.group(1).lower(), found.group(2)
        if backend != "sqlite":
            return cls(url, backend, None, "")
        path, _, query = rest.partition("?")
        if path and not path.startswith("/"):
            raise MetadataError(f"metadata: {url} is not a SQLite URL; {SUPPORTED}")
        return cls(url, backend, path[1:] or None, query)

    @property
    def is_file(self) -> bool:
        """SQLite only: a file on disk (not in memory, not a ``file:`` URI)."""
        return (self.database is not None and self.database != ":memory:"
                and not self.database.startswith("file:"))

    def with_database(self, database: str) -> str:
        """This SQLite URL naming another file."""
        scheme = self.text.split("://", 1)[0]
        return f"{scheme}:///{database}" + (f"?{self.query}" if self.query else "")

    def masked(self) -> str:
        """The URL with any password shown as ``***``: safe for logs and messages."""
        if self.backend == "sqlite":
            return self.text
        parts = urlsplit(self.text)
        user, at, host = parts.netloc.rpartition("@")
        if at and ":" in user:
            netloc = f"{user.split(':', 1)[0]}:***@{host}"
            return urlunsplit(parts._replace(netloc=netloc))
        return self.text

    def psycopg_conninfo(self) -> str:
        """The URL as libpq reads it (``postgresql://``, no SQLAlchemy driver name)."""
        return "postgresql://" + self.text.split("://", 1)[1]


class Cursor(Protocol):
    """What both drivers' cursors offer that this module uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction:
    """One transaction: ``execute`` its statements; ``time``/``json`` adapt values."""

    def __init__(self, connection: Any, postgres: bool) -> None:
        self._connection = connection
        self._postgres = postgres

    def execute(self, sql: str, **params: Any) -> Cursor:
        if self._postgres:
            return self._connection.execute(_pyformat(sql), params)  # type: ignore[no-any-return]
        return self._connection.execute(sql, params)  # type: ignore[no-any-return]

    def time(self, value: datetime | None) -> Any:
        """A timestamp as the ``UTCDateTime`` columns store it; naive ones are refused."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone (UTC)")
        value = value.astimezone(UTC)
        if self._postgres:
            return value
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_time(self, value: Any) -> datetime | None:
        """A ``UTCDateTime`` column's value as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):  # SQLite
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def read_stamp(self, value: Any) -> datetime:
        """``read_time`` of a column that is never NULL."""
        stamp = self.read_time(value)
        if stamp is None:
            raise MetadataError("the metadata database holds NULL where a time is required")
        return stamp

    def read_json(self, value: Any) -> Any:
        """A ``JSON`` column's value (psycopg has parsed it already)."""
        return json.loads(value) if isinstance(value, str | bytes) else value

    def json(self, value: Any) -> Any:
        """A value for a ``JSON`` column (``None`` is stored as JSON's null, as SQLAlchemy
        stores it)."""
        if self._postgres:
            from psycopg.types.json import Json

            return Json(value)
        return json.dumps(value)


class Database:
    """Connections to the metadata database, a few kept for reuse; thread-safe."""

    def __init__(self, url: DatabaseUrl) -> None:
        self.url = url
        self.postgres = url.backend == "postgresql"
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        self._closed = False

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Transaction]:
        """A transaction, committed when the block ends and rolled back if it raises.

        On SQLite a writing one starts with ``BEGIN IMMEDIATE`` (see ``configure_sqlite``),
        one that only reads with a plain ``BEGIN`` that neither waits for nor holds up the
        writers (WAL).
        """
        connection = self._take()
        healthy = True
        try:
            if not self.postgres:
                connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
            yield Transaction(connection, self.postgres)
            connection.commit()
        except BaseException as error:
            healthy = not _is_disconnect(error)
            if healthy:
                connection.rollback()
            raise
        finally:
            self._give_back(connection, healthy)

    def shared_connection(self) -> sqlite3.Connection:
        """In-memory SQLite: the one connection that holds the database (SQLAlchemy's
        engine uses it too, or it would see a database of its own)."""
        if self._memory is None:
            self._memory = self._connect()
        return self._memory

    def close(self) -> None:
        """Close the idle connections, and those in use when their transaction ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    def _take(self) -> Any:
        if not self.url.is_file and not self.postgres:
            return self.shared_connection()
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give_back(self, connection: Any, healthy: bool) -> None:
        if connection is self._memory:
            return
        with self._lock:
            if healthy and not self._closed and len(self._idle) < _POOL:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            try:
                return psycopg.connect(self.url.psycopg_conninfo())
            except psycopg.OperationalError as error:  # server down or restarting: retry
                raise TransientError(f"cannot open the metadata database "
                                     f"{self.url.masked()}: {error}") from None
        database = self.url.database or ":memory:"
        uri = database.startswith("file:")
        if uri and self.url.query:
            database += "?" + self.url.query
        connection = sqlite3.connect(database, timeout=SQLITE_BUSY_SECONDS, uri=uri,
                                     check_same_thread=False)
        configure_sqlite(connection, wal=self.url.is_file)
        return connection


def configure_sqlite(connection: sqlite3.Connection, *, wal: bool) -> None:
    """Set up a new SQLite connection (ours and SQLAlchemy's alike)."""
    # Take transactions over from the sqlite3 module (which would BEGIN lazily, before
    # the first write): each starts explicitly, BEGIN IMMEDIATE when it writes. That
    # takes the write lock up front, waiting up to busy_timeout for it; a deferred
    # transaction that reads and then writes can instead fail at once with "database is
    # locked" when another process wrote in between. Writing transactions are short, so
    # serializing them costs nothing noticeable.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA foreign_keys = ON")  # off by default: no cascading deletes
    if wal:
        # Readers (the UI, `ferry runs`) and the scheduler's writes do not block each other.
        _enable_wal(cursor)
    cursor.close()


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (persistent: later connections find it done already).

    The switch needs the file to itself, and SQLite reports "database is locked" at once
    instead of waiting out busy_timeout when another process is using a file that is
    not in WAL mode yet: that happens when two processes open a new database together.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def is_integrity_error(error: BaseException) -> bool:
    """A constraint failed (a foreign key, a unique key), on either driver."""
    if isinstance(error, sqlite3.IntegrityError):
        return True
    return type(error).__module__.startswith("psycopg") and _psycopg_error(error, "IntegrityError")


def _is_disconnect(error: BaseException) -> bool:
    """The connection is gone (the server restarted): drop it rather than reuse it."""
    return type(error).__module__.startswith("psycopg") and _psycopg_error(
        error, "OperationalError")


def _psycopg_error(error: BaseException, name: str) -> bool:
    import psycopg

    return isinstance(error, getattr(psycopg, name))


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (a literal ``%`` doubled)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql.replace("%", "%%"))
