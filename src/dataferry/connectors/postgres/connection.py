"""Connections to PostgreSQL, error classification and safe SQL text.

Both drivers get the same libpq connection string: the model's ``dsn`` plus the password
resolved from its secret reference at the last moment (``dataferry.secrets``), a connect
timeout and ``application_name=dataferry``. psycopg 3 describes tables and queries (it
exposes each result column's type modifier); ADBC moves the rows with binary COPY.
"""

from __future__ import annotations

import re
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import psycopg
from psycopg import sql

from dataferry.connectors import naming
from dataferry.errors import FerryError, SinkError, SourceError, TransientError
from dataferry.model.spec import PostgresSink, PostgresSource
from dataferry.secrets import Secret, redact, resolve

CONNECT_TIMEOUT = 10
"""Seconds to wait for a server before the attempt counts as failed (transient)."""

Spec = PostgresSource | PostgresSink

# Failures that retrying cannot fix, recognised in libpq's text (connection failures come
# without an SQLSTATE).
_TERMINAL_TEXT = re.compile(
    r"password authentication failed|authentication failed|no pg_hba\.conf entry|"
    r"password is required|does not exist|permission denied|invalid (?:connection|URI)|"
    r"server does not support SSL|certificate",
    re.IGNORECASE,
)
# SQLSTATEs worth a retry: connection exceptions, serialization failures and deadlocks,
# lock timeouts, insufficient resources, operator intervention (shutdown, recovery).
_TRANSIENT_STATES = re.compile(r"^(08|53|57P0|58|40001|40P01|55P03|55006)")
# A connection lost in the middle of a streamed read: ADBC's Arrow stream reports it as an
# OSError with libpq's text and no SQLSTATE (the server was restarted or failed over, an
# admin ran pg_terminate_backend, the network dropped).
_LOST_TEXT = re.compile(
    r"terminating connection|server closed the connection|connection to (?:the )?server|"
    r"could not receive data|no connection to the server|SSL SYSCALL|connection reset|"
    r"broken pipe|the database system is (?:shutting down|in recovery mode)",
    re.IGNORECASE,
)


def conninfo(spec: Spec, what: str) -> tuple[str, Secret | None]:
    """The libpq connection string for ``spec`` (password included) and the secret in it.

    ``what`` names the setting in errors, e.g. ``source crm.crmdb``. The string holds the
    password: pass it to a driver, never to a message (use ``describe`` for those).
    """
    secret = resolve(spec.password, f"{what}: password")
    extra: dict[str, Any] = {}
    try:
        given = psycopg.conninfo.conninfo_to_dict(spec.dsn)
    except psycopg.ProgrammingError as exc:
        raise _error_class(spec)(
            f"{what}: dsn is not a PostgreSQL connection string "
            f"({redact(str(exc), secret)}); write postgresql://user@host:5432/database"
        ) from None
    if "connect_timeout" not in given:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = "dataferry"
    if secret is not None:
        extra["password"] = secret.reveal()
    return psycopg.conninfo.make_conninfo(spec.dsn, **extra), secret


def describe(spec: Spec) -> str:
    """``user@host:port/database`` of ``spec``'s dsn, for messages (never a password)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(spec.dsn)
    except psycopg.ProgrammingError:
        return "(unparsable dsn)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    return f"{user}{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


def _error_class(spec: Spec) -> type[FerryError]:
    return SinkError if isinstance(spec, PostgresSink) else SourceError


class Server:
    """One source's or sink's server: its connection string (secret resolved once, when
    this is made) and how its errors read. ``what`` names it, e.g. ``source crm.crmdb``."""

    def __init__(self, spec: Spec, what: str) -> None:
        self.spec, self.what = spec, what
        self._info, self.secret = conninfo(spec, what)

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A psycopg connection; see ``connect`` for the errors."""
        try:
            return psycopg.connect(self._info, autocommit=autocommit)
        except psycopg.Error as exc:
            raise self.error(exc, "cannot connect to") from None

    def connect_replication(self) -> psycopg.Connection[Any]:
        """A logical replication connection (``replication=database``: the walsender's
        commands, such as ``CREATE_REPLICATION_SLOT``, through ``pgconn.exec_``)."""
        try:
            return psycopg.connect(self._info, autocommit=True, replication="database")
        except psycopg.Error as exc:
            raise self.error(exc, "cannot open a replication connection to") from None

    def connect_adbc(self, *, autocommit: bool) -> adbc.Connection:
        """An ADBC connection (binary COPY both ways); errors as ``connect``."""
        try:
            return adbc.connect(self._info, autocommit=autocommit)
        except adbc_driver_manager.Error as exc:
            raise self.error(exc, "cannot connect to") from None

    def error(self, exc: BaseException, doing: str) -> FerryError:
        """``classify`` for this server."""
        return classify(exc, self.spec, self.what, self.secret, doing)


def connect(spec: Spec, what: str = "postgres", *, autocommit: bool = True
            ) -> psycopg.Connection[Any]:
    """A psycopg connection to ``spec`` (source or sink) with its secret resolved.

    Raises ``TransientError`` when the server cannot be reached (retry later) and
    ``SourceError``/``SinkError`` when it refuses the login (fix the settings); messages
    name the server but never the password.
    """
    return Server(spec, what).connect(autocommit=autocommit)


def classify(exc: BaseException, spec: Spec, what: str, secret: Secret | None,
             doing: str) -> FerryError:
    """The dataferry error for a driver error: ``TransientError`` for what a retry may fix
    (unreachable server, dropped connection, deadlock, lock timeout), else ``SourceError``
    or ``SinkError``. The message says ``what``, ``doing`` and the server, without secrets.
    """
    if isinstance(exc, FerryError):
        return exc
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc).strip()
    text = re.sub(r"^(?:[A-Z_]+: )?(?:\[libpq\] )?", "", text)  # ADBC's status prefix
    text = re.sub(r"\s*Query was: .*", "", text, flags=re.DOTALL)
    text = re.sub(r"^Failed to (?:execute|prepare) [^:]*: (?:PGRES_\w+ )?(?:ERROR: +)?", "",
                  text)
    # ADBC ends its text with "\n. SQLSTATE: 23514" (after the server's own final period):
    # the state is said once, in parentheses.
    text = re.sub(r"\s*\.?\s*SQLSTATE: \w+\s*$", "", text)
    text = redact(" ".join(text.split()), secret)
    if state:
        text = f"{text} (SQLSTATE {state})"
    message = f"{what}: {doing} PostgreSQL at {describe(spec)}: {text}"
    connection_failure = not state and isinstance(
        exc, psycopg.OperationalError | adbc_driver_manager.OperationalError)
    # The server's text may quote rows ("Failing row contains (...)", "Key (id)=(5)"); the
    # public text says what failed from the SQLSTATE and the names the server reports.
    # A failure to connect happens before any row is sent: its text is the public one.
    public = message if connection_failure else \
        f"{what}: {doing} PostgreSQL at {describe(spec)}: {condition(exc)}"
    if not state and isinstance(exc, OSError) and _LOST_TEXT.search(text):
        # libpq's text names no row here; say it plainly and retry the whole read.
        public = f"{what}: {doing} PostgreSQL at {describe(spec)}: the connection was lost"
        return TransientError(f"{public} ({text})", public=public)
    if _TRANSIENT_STATES.match(state) or (
        connection_failure and not _TERMINAL_TEXT.search(text)
    ):
        return TransientError(message, public=public)
    return _error_class(spec)(message, public=public)


def condition(exc: BaseException) -> str:
    """A driver error as ``check violation (SQLSTATE 23514, constraint t_email_check, table
    t)``: its condition and the names the server reports, never a value of a row."""
    state = getattr(exc, "sqlstate", None) or ""
    names: dict[str, str] = {}
    diag = getattr(exc, "diag", None)  # psycopg
    adbc_details = {_text(field): _text(value)  # ADBC: (b"PG_DIAG_TABLE_NAME", b"t"), ...
                    for field, value in getattr(exc, "details", None) or []}
    for label in _DIAG_NAMES:
        found = getattr(diag, f"{label}_name", None) if diag is not None else None
        found = found or adbc_details.get(f"PG_DIAG_{label.upper()}_NAME")
        if found:
            names[label] = str(found)
    try:
        kind = re.sub(r"(?<!^)(?=[A-Z])", " ", psycopg.errors.lookup(state).__name__).lower()
    except KeyError:
        kind = type(exc).__name__
    parts = [f"SQLSTATE {state}"] if state else []
    parts += [f"{label} {name}" for label, name in names.items()]
    return f"{kind} ({', '.join(parts)})" if parts else kind


_DIAG_NAMES = ("constraint", "table", "column")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (exact case; quotes doubled)."""
    if "\0" in name:
        raise ValueError(f"an identifier cannot contain NUL: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(value: Any) -> str:
    """``value`` as an SQL literal (psycopg's adaptation: strings escaped, datetimes cast)."""
    return sql.Literal(value).as_string(None)


def split_table(text: str) -> tuple[str | None, str]:
    """``schema.table`` as (schema or None, table), read as PostgreSQL reads it: a bare
    name is folded to lower case, a double-quoted one is kept exactly."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', text.strip())
    names = [quoted.replace('""', '"') if quoted else bare.strip().lower()
             for quoted, bare in parts]
    if len(names) == 1:
        return None, names[0]
    if len(names) == 2:
        return names[0], names[1]
    raise ValueError(f"{text!r} is not a table name (write schema.table or table)")


def lineage_server(spec: Spec) -> tuple[str, str] | None:
    """OpenLineage's ``postgres://host:port`` of ``spec``'s dsn and its database (libpq's
    defaults: port 5432, the user's name as the database); None if it does not parse.
    The user and the password stay out."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(spec.dsn)
    except psycopg.ProgrammingError:
        return None
    host = parts.get("host") or parts.get("hostaddr")
    database = parts.get("dbname") or parts.get("user") or "postgres"
    return naming.server("postgres", str(host or ""), parts.get("port"), 5432), str(database)
