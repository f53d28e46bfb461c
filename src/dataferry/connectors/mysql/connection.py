"""Connections to MariaDB/MySQL, error classification and safe SQL text.

The model gives ``dsn: mysql://user@host:3306/database`` (``mariadb://`` also works;
options as query parameters: ``connect_timeout``, ``unix_socket``, ``ssl_ca``) and the
password as a secret reference, resolved here at the last moment. Every session uses
``utf8mb4`` and the time zone ``+00:00``, so ``TIMESTAMP`` values are read and written
in UTC whatever the server's default zone is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.converters

from dataferry.connectors import naming
from dataferry.errors import FerryError, SinkError, SourceError, TransientError
from dataferry.model.spec import MysqlSink, MysqlSource
from dataferry.secrets import Secret, redact, resolve

CONNECT_TIMEOUT = 10
"""Seconds to wait for a server before the attempt counts as failed (transient)."""
DEFAULT_PORT = 3306
MAX_IDENTIFIER = 64

Spec = MysqlSource | MysqlSink

# Server error numbers a retry may fix: unreachable or lost server, too many connections,
# shutdown, killed connection, lock wait timeout, deadlock, read-only failover.
_TRANSIENT_CODES = frozenset({
    1040, 1053, 1205, 1213, 1290, 1317, 1927, 1969, 2002, 2003, 2005, 2006, 2013, 2055, 4031,
})
_OPTIONS = {"connect_timeout", "unix_socket", "ssl_ca"}
_ENCODERS_ONLY = dict(pymysql.converters.encoders)
"""Converters without decoders: values arrive as text (bytes for binary columns)."""


@dataclass(frozen=True)
class Dsn:
    """The parts of a ``mysql://`` DSN (its password, if any, is kept as a ``Secret``)."""

    host: str
    port: int
    user: str
    database: str | None
    password: Secret | None
    options: dict[str, str]

    def describe(self) -> str:
        """``user@host:port/database``, for messages (never a password)."""
        where = self.options.get("unix_socket") or f"{self.host}:{self.port}"
        return f"{self.user}@{where}/{self.database or ''}"


def parse_dsn(text: str, what: str, error: type[FerryError]) -> Dsn:
    """Parse ``mysql://user[:password]@host[:port]/database[?option=value]``.

    Raises ``error`` (``SourceError``/``SinkError``) naming ``what`` for anything else.
    """
    usage = "write mysql://user@host:3306/database"
    try:
        parts = urlsplit(text.strip())
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise error(f"{what}: dsn is not a MySQL URL ({exc}); {usage}") from None
    password = Secret(unquote(parts.password), "dsn") if parts.password else None
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
        shown = redact(text, password)
        raise error(f"{what}: dsn {shown!r} is not a MySQL URL; {usage}")
    options = dict(parse_qsl(parts.query))
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise error(f"{what}: unknown dsn option(s) {', '.join(unknown)}; "
                    f"known: {', '.join(sorted(_OPTIONS))}")
    database = unquote(parts.path.lstrip("/")) or None
    return Dsn(host=parts.hostname or "127.0.0.1", port=port,
               user=unquote(parts.username or "root"), database=database,
               password=password, options=options)


def error_class(spec: Spec) -> type[FerryError]:
    return SinkError if isinstance(spec, MysqlSink) else SourceError


def connect(spec: Spec, what: str, *, raw: bool = False, local_infile: bool = False,
            database: str | None = None, init: tuple[str, ...] = ()) -> pymysql.Connection:
    """A PyMySQL connection to ``spec`` (autocommit off, utf8mb4, time zone ``+00:00``).

    ``raw`` leaves values undecoded (text, bytes for binary columns) for the source's
    column-wise conversion; ``init`` are further session statements. Raises
    ``TransientError`` when the server cannot be reached (retry later) and
    ``SourceError``/``SinkError`` when it refuses the login; messages name the server,
    never the password.
    """
    dsn = parse_dsn(spec.dsn, what, error_class(spec))
    secret = secret_of(spec, what)
    statements = ("SET time_zone = '+00:00'", *init)
    options: dict[str, Any] = {
        "host": dsn.host, "port": dsn.port, "user": dsn.user,
        "password": secret.reveal() if secret is not None else "",
        "database": database if database is not None else dsn.database,
        "charset": "utf8mb4", "autocommit": False, "local_infile": local_infile,
        "connect_timeout": int(dsn.options.get("connect_timeout", CONNECT_TIMEOUT)),
    }
    if "unix_socket" in dsn.options:
        options["unix_socket"] = dsn.options["unix_socket"]
    if "ssl_ca" in dsn.options:
        options["ssl"] = {"ca": dsn.options["ssl_ca"]}
    if raw:
        options["conv"] = _ENCODERS_ONLY
    try:
        connection = pymysql.connect(**options)
    except pymysql.Error as exc:
        raise classify(exc, spec, what, secret, "cannot connect to") from None
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    except pymysql.Error as exc:
        connection.close()
        raise classify(exc, spec, what, secret, "cannot set up a session on") from None
    return connection


def secret_of(spec: Spec, what: str) -> Secret | None:
    """The password: the spec's secret reference, else one written in the dsn."""
    secret = resolve(spec.password, f"{what}: password")
    return secret if secret is not None else parse_dsn(spec.dsn, what, error_class(spec)).password


def classify(exc: BaseException, spec: Spec, what: str, secret: Secret | None,
             doing: str) -> FerryError:
    """The dataferry error for a driver error: ``TransientError`` for what a retry may fix
    (unreachable server, lost connection, deadlock, lock timeout), else ``SourceError`` or
    ``SinkError``. The message says ``what``, ``doing`` and the server, without secrets.
    """
    if isinstance(exc, FerryError):
        return exc
    code, text = _code_and_text(exc)
    try:
        server = parse_dsn(spec.dsn, what, error_class(spec))
        shown, dsn_secret = server.describe(), server.password
    except FerryError:
        shown, dsn_secret = "(unparsable dsn)", None
    detail = redact(" ".join(text.split()), secret, dsn_secret)
    number = f" (error {code})" if code else ""
    message = f"{what}: {doing} MariaDB/MySQL at {shown}: {detail}{number}"
    # The server's text may quote a row ("Duplicate entry '5' for key ..."): the public
    # text names the error number and class only.
    public = f"{what}: {doing} MariaDB/MySQL at {shown}: {type(exc).__name__}{number}"
    if code in _TRANSIENT_CODES or isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(message, public=public)
    return error_class(spec)(message, public=public)


def _code_and_text(exc: BaseException) -> tuple[int | None, str]:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return args[0], str(args[1])
    return None, str(exc) or type(exc).__name__


def ident(name: str) -> str:
    """``name`` as a backtick-quoted identifier (exact; backticks doubled)."""
    if not name or "\0" in name or len(name) > MAX_IDENTIFIER or name != name.rstrip(" "):
        raise ValueError(f"{name!r} is not a valid MariaDB identifier (1..64 characters, "
                         "no NUL, no trailing space)")
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, name: str) -> str:
    return f"{ident(database)}.{ident(name)}"


def split_table(text: str) -> tuple[str | None, str]:
    """``database.table`` (either part may be backtick-quoted) as (database or None, table)."""
    parts = re.findall(r"`((?:[^`]|``)*)`|([^.`]+)", text.strip())
    names = [quoted.replace("``", "`") if quoted else bare.strip() for quoted, bare in parts]
    if len(names) == 1:
        return None, names[0]
    if len(names) == 2:
        return names[0], names[1]
    raise ValueError(f"{text!r} is not a table name (write database.table or table)")


@dataclass(frozen=True)
class Server:
    """What the connected server is and can do."""

    version: tuple[int, int, int]
    mariadb: bool
    local_infile: bool
    max_packet: int = 16 << 20


def server_of(connection: pymysql.Connection) -> Server:
    """What the server is (``VERSION()``: the handshake says 5.5.5-.. for MariaDB)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION(), @@local_infile, @@max_allowed_packet")
        row = cursor.fetchone()
    info, local, packet = (str(v) for v in row) if row is not None else ("", "0", "16777216")
    numbers = [int(n) for n in re.findall(r"\d+", info)[:3]] + [0, 0, 0]
    return Server((numbers[0], numbers[1], numbers[2]), "mariadb" in info.lower(),
                  local in ("1", "ON"), int(packet))


def lineage_server(spec: Spec) -> tuple[str, str | None] | None:
    """OpenLineage's ``mysql://host:port`` of ``spec``'s dsn and its database; None if it
    does not parse. The user and the password stay out."""
    try:
        dsn = parse_dsn(spec.dsn, "dsn", FerryError)
    except FerryError:
        return None
    return naming.server("mysql", dsn.host, dsn.port, DEFAULT_PORT), dsn.database
