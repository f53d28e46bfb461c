"""Opening the metadata database: where it is, connection settings, schema upgrades.

``open_metadata`` is the one way in. It upgrades the schema to the newest Alembic
revision every time (a no-op when already there), so a new dataferry release migrates
the database the first time any of its processes starts — and when several start at
once against PostgreSQL, an advisory lock makes them take turns.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dataferry.errors import MetadataError, TransientError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("dataferry.metadata")

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_FILE = "ferry.db"
# pg_advisory_xact_lock key: a fixed number, the same in every dataferry process.
_MIGRATION_LOCK = zlib.crc32(b"dataferry.metadata.migrate")
_SQLITE_BUSY_SECONDS = 30


class Metadata:
    """An open metadata database: the Engine and a sessionmaker bound to it.

    Hand it to ``RunHistory``, ``Leases`` or ``PlanHistory``; ``close()`` (or a ``with``
    block) returns its connections. ``sessions`` is for transactions that write,
    ``reads`` for those that only read.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        # For transactions that only read: on SQLite they start with a plain BEGIN and so
        # neither wait for nor hold up the writers (WAL).
        self.reads: sessionmaker[Session] = sessionmaker(
            engine.execution_options(dataferry_read_only=True), expire_on_commit=False
        )

    @property
    def url(self) -> str:
        """The database URL with any password masked: safe for logs and messages."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Metadata:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Metadata({self.url!r})"


def metadata_url(home: Path, configured: str | None, *, root: Path | None = None) -> str:
    """The SQLAlchemy URL of the metadata DB, with a relative SQLite path made absolute.

    ``home`` is the resolved home directory (``<model root>/.ferry`` by default);
    without ``metadata:`` in ferry.yaml the database is ``<home>/ferry.db``. A relative
    SQLite path such as ``sqlite:///.ferry/ferry.db`` is relative to the directory
    holding ferry.yaml (``root``; by default the parent of ``home``, which is right for
    the default home), never to the current directory, so every command finds the same
    file wherever it is started.
    """
    if configured is None:
        return URL.create("sqlite", database=str(home.resolve() / DEFAULT_FILE)).render_as_string(
            hide_password=False
        )
    url = _parse(configured)
    database = url.database
    if url.get_backend_name() != "sqlite" or not _is_file(database):
        return configured
    assert database is not None
    path = Path(database)
    if path.is_absolute():
        return configured
    base = root if root is not None else home.parent
    return url.set(database=str((base / path).resolve())).render_as_string(hide_password=False)


def open_metadata(url: str) -> Metadata:
    """Connect to the metadata database and upgrade its schema to the newest revision.

    Creates a SQLite file's directory if needed; ``postgresql://`` URLs use psycopg 3.
    Raises ``TransientError`` when the server cannot be reached (worth retrying) and
    ``MetadataError`` for a URL that cannot work.
    """
    parsed = _parse(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise MetadataError(
            f"metadata: {parsed.render_as_string(hide_password=True)} is not supported; "
            "use sqlite:///path/to/ferry.db or postgresql://user@host/db"
        )
    if backend == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
    try:
        upgrade(engine)
    except OperationalError as error:
        engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        message = f"cannot open the metadata database {shown}: {error.orig}"
        if backend == "postgresql":  # server down or restarting: worth retrying
            raise TransientError(message) from error
        raise MetadataError(message) from error  # a file we may not create or open
    except BaseException:
        engine.dispose()
        raise
    return Metadata(engine)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the migrations shipped in this package (no .ini file).

    ``env.py`` runs the migrations on ``connection``; developers can also pass this config
    to ``alembic.command.revision`` to write a new migration.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; idempotent and safe to run concurrently.

    Everything happens in one transaction. On PostgreSQL it first takes a
    transaction-scoped advisory lock, so a second process waits, then finds the schema
    current; on SQLite the ``BEGIN IMMEDIATE`` every transaction starts with does the same.
    """
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _MIGRATION_LOCK})
        head = head_revision()
        if head is not None and _current_revision(connection) == head:
            return  # the common case: no need to load Alembic and its migrations
        from alembic import command

        command.upgrade(alembic_config(connection), "head")


_REVISION = re.compile(r'^(down_)?revision: str(?: \| None)? = "(\w+)"', re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration's revision, read from the files in ``migrations/versions``
    (the one no other names as its ``down_revision``); None if that is not one."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for down, revision in _REVISION.findall(path.read_text(encoding="utf-8")):
            (parents if down else revisions).add(revision)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current_revision(connection: Connection) -> str | None:
    """The revision the database is at (Alembic's ``alembic_version``), None if none."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as error:
        # The message would echo the URL, password included: name only the problem.
        raise MetadataError(
            "metadata: not a database URL; use sqlite:///path/to/ferry.db or "
            "postgresql://user@host/db"
        ) from error


def _is_file(database: str | None) -> bool:
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if _is_file(database):
        assert database is not None
        _private_file(Path(database))
    engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_SECONDS})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transactions over from the sqlite3 module (which would BEGIN lazily,
        # before the first write) so "begin" below decides how they start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys = ON")  # off by default: no cascading deletes
        if _is_file(database):
            # Readers (the UI, `ferry runs`) and the scheduler's writes do not block each other.
            _enable_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front, waiting up to busy_timeout for it. A
        # deferred transaction that reads and then writes can instead fail at once with
        # "database is locked" when another process wrote in between. Writing
        # transactions are short, so serializing them costs nothing noticeable.
        if connection.get_execution_options().get("dataferry_read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _private_file(path: Path) -> None:
    """Make the SQLite file readable by its owner only (0600), before SQLite opens it.

    It holds password hashes, token hashes, encrypted TOTP seeds and the audit log. SQLite
    gives its ``-wal`` and ``-shm`` files the database file's mode, so they follow. A new
    directory for it is 0700; a file found with wider permissions is narrowed, with a
    warning, since a server that starts is better than one that refuses over a mode.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("the metadata database %s was readable by others (mode %o): "
                    "narrowing it to 0600", path, mode)
        for file in (path, path.with_name(path.name + "-wal"),
                     path.with_name(path.name + "-shm")):
            if file.exists():
                os.chmod(file, 0o600)


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (persistent: later connections find it done already).

    The switch needs the file to itself, and SQLite reports "database is locked" at once
    instead of waiting out busy_timeout when another process is using a file that is
    not in WAL mode yet: that happens when two processes open a new database together.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
