"""What ``ferry discover DSN|GLOB`` names: which kind of source, how to connect to it
now, and how the team file should name it (never with a password).

A password in the DSN is used to connect, then left out of the team file: the source
gets ``password: ${env:<SOURCE>_PASSWORD}`` and the command says which variable to set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from dataferry.errors import UsageError
from dataferry.model.spec import (
    AnySource,
    DuckdbSource,
    FilesSource,
    MysqlSource,
    PostgresSource,
    SqliteSource,
)

_GLOB = re.compile(r"[*?[]")
_FILE_EXTENSIONS = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
_SQLITE_EXTENSIONS = (".db", ".sqlite", ".sqlite3", ".db3")
_USAGE = ("give a PostgreSQL or MySQL URL (postgresql://user@host/db, mysql://user@host/db), "
          "a SQLite or DuckDB file (shop.db, sqlite:///shop.db, duckdb:///wh.duckdb) or a glob "
          "of files ('data/*.parquet', csv or jsonl)")


@dataclass(frozen=True)
class Target:
    """A database or set of files to discover."""

    kind: str  # postgres | mysql | sqlite | duckdb | files
    spec: AnySource  # to connect now: may hold the password (as a literal)
    keys: dict[str, str]  # the source's keys in the team file (no password)
    described: str  # for the header comment and messages (no password)
    database: str  # the database's (or file's, folder's) name: the default team name
    has_password: bool = False


def name_of(text: str, fallback: str) -> str:
    """``text`` made a model name: ``[a-z][a-z0-9_]*``, at most 63 characters."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not name:
        return fallback
    if not name[0].isalpha():
        name = f"{fallback}_{name}"
    return name[:63].rstrip("_")


def parse_target(text: str, model_root: Path | None) -> Target:
    """The target ``text`` names; raises ``UsageError`` when it names none."""
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in ("postgres", "postgresql") or (not scheme and "dbname=" in text):
        return _postgres(text)
    if scheme in ("mysql", "mariadb", "mysql+pymysql"):
        return _mysql(text)
    if scheme in ("sqlite", "duckdb"):
        return _file_database(scheme, text.partition("://")[2].removeprefix("/") or "",
                              model_root, text)
    if scheme:
        raise UsageError(f"cannot discover {scheme}:// targets; {_USAGE}")
    path = Path(text).expanduser()
    if _GLOB.search(text) or path.is_dir() or path.suffix.lower() in _FILE_EXTENSIONS or \
            path.name.lower().endswith(tuple(e + ".gz" for e in _FILE_EXTENSIONS)):
        return _files(text, model_root)
    if path.is_file():
        kind = _database_kind(path)
        if kind is not None:
            return _file_database(kind, text, model_root, text)
    if path.suffix.lower() in (*_SQLITE_EXTENSIONS, ".duckdb"):
        raise UsageError(f"{text}: no such file")
    raise UsageError(f"cannot tell what {text!r} is; {_USAGE}")


def _database_kind(path: Path) -> str | None:
    """sqlite or duckdb by the file's header (its extension if it is empty)."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(b"SQLite format 3\0"):
        return "sqlite"
    if head[8:12] == b"DUCK":
        return "duckdb"
    if not head:
        return "duckdb" if path.suffix.lower() == ".duckdb" else "sqlite"
    return None


def model_path(path: Path, model_root: Path | None) -> str:
    """``path`` as a model file writes it: relative to the model directory when inside it,
    else (or without a model) absolute."""
    absolute = Path(os.path.abspath(path.expanduser()))
    if model_root is None:
        return absolute.as_posix()
    try:
        return absolute.relative_to(os.path.abspath(model_root)).as_posix()
    except ValueError:
        return absolute.as_posix()


def _file_database(kind: str, given: str, model_root: Path | None, shown: str) -> Target:
    path = Path(given).expanduser()
    if not path.is_file():
        raise UsageError(f"{shown}: no such file")
    written = model_path(path, model_root)
    absolute = os.path.abspath(path)
    spec: AnySource = (SqliteSource(kind="sqlite", path=absolute) if kind == "sqlite"
                       else DuckdbSource(kind="duckdb", path=absolute))
    return Target(kind, spec, {"path": written}, written, path.stem)


def _files(glob: str, model_root: Path | None) -> Target:
    path = Path(glob).expanduser()
    if path.is_dir():
        raise UsageError(f"{glob} is a folder; give a glob of its files, e.g. "
                         f"'{path.as_posix().rstrip('/')}/*.parquet'")
    written = model_path(path, model_root)
    spec = FilesSource(kind="files", path=os.path.abspath(path))
    parts = [p for p in path.parts if not _GLOB.search(p)]
    folder = path.parent.name if not _GLOB.search(path.parent.name) else ""
    database = folder or (parts[-1].split(".")[0] if parts else "") or "files"
    return Target("files", spec, {"path": written}, written, database)


def _postgres(text: str) -> Target:
    import psycopg

    try:
        given = psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        raise UsageError("the DSN is not a PostgreSQL connection string; write "
                         "postgresql://user@host:5432/database") from None
    password = given.get("password")
    if "://" in text:
        dsn = _without_password(text)
    else:
        dsn = psycopg.conninfo.make_conninfo(
            **{k: str(v) for k, v in given.items() if k != "password" and v is not None})
    password = str(password) if password else None
    spec = PostgresSource(kind="postgres", dsn=dsn, password=password)
    user = f"{given['user']}@" if given.get("user") else ""
    host = given.get("host") or "localhost"
    database = str(given.get("dbname") or given.get("user") or os.environ.get("USER") or "db")
    described = f"postgresql://{user}{host}:{given.get('port') or 5432}/{database}"
    return Target("postgres", spec, {"dsn": dsn}, described, database, password is not None)


def _mysql(text: str) -> Target:
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise UsageError("the DSN is not a MySQL URL; write mysql://user@host:3306/database"
                         ) from None
    password = unquote(parts.password) if parts.password else None
    dsn = _without_password(text)
    spec = MysqlSource(kind="mysql", dsn=dsn, password=password)
    database = unquote(parts.path.lstrip("/"))
    return Target("mysql", spec, {"dsn": dsn}, dsn.partition("?")[0], database or "db",
                  password is not None)


def _without_password(url: str) -> str:
    """``url`` without the password in its user part or its query."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.partition(":")[0]
        netloc = f"{quote(unquote(name), safe='')}@{host}" if name else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
