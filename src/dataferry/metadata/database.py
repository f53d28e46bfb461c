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
import zlib
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dataferry.errors import MetadataError, TransientError
from dataferry.metadata.dbapi import (
    SQLITE_BUSY_SECONDS,
    SUPPORTED,
    Database,
    DatabaseUrl,
    configure_sqlite,
)

if TYPE_CHECKING:  # SQLAlchemy loads when something uses the engine, not for a run
    from alembic.config import Config
    from sqlalchemy import Connection, Engine
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("dataferry.metadata")

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_FILE = "ferry.db"
# pg_advisory_xact_lock key: a fixed number, the same in every dataferry process.
_MIGRATION_LOCK = zlib.crc32(b"dataferry.metadata.migrate")


class Metadata:
    """An open metadata database.

    Hand it to ``RunHistory``, ``Leases`` or ``PlanHistory``; ``close()`` (or a ``with``
    block) returns its connections. ``sql`` is the database through its driver (what a
    run writes, ``dbapi``); ``engine`` the SQLAlchemy Engine, created on first use, with
    ``sessions`` for transactions that write and ``reads`` for those that only read.
    """

    def __init__(self, url: DatabaseUrl) -> None:
        self.sql = Database(url)
        self._url = url

    @cached_property
    def engine(self) -> Engine:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import StaticPool

        if self.dialect == "postgresql":
            return create_engine(f"postgresql+psycopg://{self._url.text.split('://', 1)[1]}",
                                 pool_pre_ping=True)
        if self._url.is_file:
            return _sqlite_engine(self._url.text, wal=True)
        # In memory: one connection holds the database, shared with ``sql``.
        return _sqlite_engine(self._url.text, wal=False, creator=self.sql.shared_connection,
                              poolclass=StaticPool)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def reads(self) -> sessionmaker[Session]:
        """For transactions that only read: on SQLite they start with a plain BEGIN and so
        neither wait for nor hold up the writers (WAL)."""
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine.execution_options(dataferry_read_only=True),
                            expire_on_commit=False)

    @property
    def url(self) -> str:
        """The database URL with any password masked: safe for logs and messages."""
        return self._url.masked()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._url.backend

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.__dict__.pop("engine").dispose()
        self.sql.close()

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
        return f"sqlite:///{home.resolve() / DEFAULT_FILE}"
    url = DatabaseUrl.parse(configured)
    if url.backend != "sqlite" or not url.is_file:
        return configured
    assert url.database is not None
    path = Path(url.database)
    if path.is_absolute():
        return configured
    base = root if root is not None else home.parent
    return url.with_database(str((base / path).resolve()))


def open_metadata(url: str) -> Metadata:
    """Connect to the metadata database and upgrade its schema to the newest revision.

    Creates a SQLite file's directory if needed; ``postgresql://`` URLs use psycopg 3.
    Raises ``TransientError`` when the server cannot be reached (worth retrying) and
    ``MetadataError`` for a URL that cannot work.
    """
    parsed = DatabaseUrl.parse(url)
    if parsed.backend not in ("sqlite", "postgresql"):
        raise MetadataError(f"metadata: {parsed.masked()} is not supported; {SUPPORTED}")
    if parsed.is_file:
        assert parsed.database is not None
        _private_file(Path(parsed.database))
    db = Metadata(parsed)
    try:
        if not _schema_is_current(db.sql):
            upgrade(db.engine)
    except BaseException as error:
        db.close()
        if isinstance(error, TransientError) or not _cannot_open(error):
            raise
        message = (f"cannot open the metadata database {parsed.masked()}: "
                   f"{getattr(error, 'orig', None) or error}")
        if db.dialect == "postgresql":  # server down or restarting: worth retrying
            raise TransientError(message) from error
        raise MetadataError(message) from error  # a file we may not create or open
    return db


def _cannot_open(error: BaseException) -> bool:
    """sqlite3's, psycopg's or SQLAlchemy's ``OperationalError``: the file or the server
    cannot be used."""
    return isinstance(error, sqlite3.OperationalError) or (
        type(error).__name__ == "OperationalError"
        and type(error).__module__.split(".")[0] in ("psycopg", "sqlalchemy"))


def _schema_is_current(sql: Database) -> bool:
    """Whether the database is at the newest migration already (the common case: then
    neither SQLAlchemy nor Alembic and its migrations need loading)."""
    head = head_revision()
    if head is None:
        return False
    exists = ("SELECT to_regclass('alembic_version') IS NOT NULL" if sql.postgres else
              "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
              "AND name = 'alembic_version'")
    with sql.transaction(read_only=True) as read:
        if not read.execute(exists).fetchone()[0]:
            return False
        rows = read.execute("SELECT version_num FROM alembic_version").fetchall()
    return len(rows) == 1 and str(rows[0][0]) == head


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
    from sqlalchemy import text

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
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def _sqlite_engine(url: str, *, wal: bool, **options: object) -> Engine:
    from sqlalchemy import create_engine, event

    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS}, **options)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        configure_sqlite(dbapi_connection, wal=wal)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # As ``dbapi.Database.transaction`` does: IMMEDIATE when the transaction writes.
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
