"""Read a MariaDB/MySQL result straight into Arrow batches with ConnectorX (Rust).

PyMySQL parses every row of the wire protocol in Python; ConnectorX reads the binary
protocol in Rust and hands over Arrow record batches, about as fast as the ``mysql``
client prints the rows (``bench/mariadb_flow.py``). Its conversions are exact for most
types, and the select list works around the rest, so the result is the same Arrow data
``types.py`` promises:

- integers, YEAR, FLOAT/DOUBLE (the binary protocol carries floats exactly), strings,
  binary, DATE, DATETIME and TIMESTAMP (UTC session) are read natively, then cast;
- DECIMAL(p,s) natively when ConnectorX's decimal128(38,10) holds it (p <= 28, s <= 10),
  else as text parsed by Arrow; TIME and MySQL's JSON type as text;
- BIT arrives as big-endian bytes.

A value ConnectorX cannot convert (a zero date, a TIME beyond a day) makes it panic; the
source then reads the same statement with PyMySQL to name the column and the value.
Columns of other types (GEOMETRY, the NULL type) and dsn options ConnectorX's URL cannot
say (``ssl_ca``) keep the whole read on PyMySQL (``supports``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa

from dataferry.connectors.mysql.connection import Dsn, ident
from dataferry.connectors.mysql.decode import bits, decode_text
from dataferry.connectors.mysql.types import (
    BIT,
    DATE,
    DATETIME,
    DECIMAL,
    DOUBLE,
    FLOAT,
    INTEGERS,
    JSON,
    NEWDATE,
    NEWDECIMAL,
    TIME,
    TIMESTAMP,
    YEAR,
    ResultColumn,
)
from dataferry.errors import SourceError

_NATIVE = {*INTEGERS, YEAR, FLOAT, DOUBLE, DATE, NEWDATE, DATETIME, TIMESTAMP, BIT}
_STRINGS = {15, 247, 248, 249, 250, 251, 252, 253, 254}  # VARCHAR, ENUM, SET, BLOBs, CHARs
_AS_TEXT = {DECIMAL, NEWDECIMAL, TIME, JSON}
_EXACT_DECIMAL = (28, 10)  # ConnectorX reads DECIMAL as rust_decimal into decimal128(38,10)


class ConversionPanic(Exception):
    """ConnectorX could not convert a value (its Rust code panicked)."""


class ReadFailed(Exception):
    """ConnectorX's error, its text without the URL or the password; ``args`` are
    (server error number, text) when the text names one, as PyMySQL's errors have them,
    so ``connection.classify`` can tell a lost connection from a bad query."""


def supports(dsn: Dsn, columns: list[ResultColumn]) -> bool:
    """Whether ConnectorX is installed and can read this server and these columns."""
    if "ssl_ca" in dsn.options:
        return False
    if not all(c.type_code in _NATIVE | _STRINGS | _AS_TEXT for c in columns):
        return False
    try:
        import connectorx  # noqa: F401
    except ImportError:
        return False
    return True


def expression(column: ResultColumn) -> str:
    """The select-list expression that reads ``column`` exactly (module doc)."""
    name = ident(column.name)
    if column.type_code in (DECIMAL, NEWDECIMAL) and _native_decimal(column):
        return name
    if column.type_code in _AS_TEXT:
        return f"CAST({name} AS CHAR)"
    return name


def _native_decimal(column: ResultColumn) -> bool:
    digits, scale = _EXACT_DECIMAL
    return column.precision <= digits and column.scale <= scale


def url_of(dsn: Dsn, password: str | None) -> str:
    """ConnectorX's URL for ``dsn`` (it holds the password: never shown)."""
    secret = f":{quote(password, safe='')}" if password else ""
    where = f"{dsn.host}:{dsn.port}"
    database = quote(dsn.database or "", safe="")
    options = []
    if "connect_timeout" in dsn.options:
        options.append(f"tcp_connect_timeout_ms={int(dsn.options['connect_timeout']) * 1000}")
    if "unix_socket" in dsn.options:
        options.append(f"socket={quote(dsn.options['unix_socket'], safe='/')}")
    query = "?" + "&".join(options) if options else ""
    return f"mysql://{quote(dsn.user, safe='')}{secret}@{where}/{database}{query}"


def stream(url: str, sql: str, session: tuple[str, ...], columns: list[ResultColumn],
           schema: pa.Schema, batch_rows: int, where: str) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` (built with ``expression`` for ``columns``) as batches of
    ``schema``, at most ``batch_rows`` rows each. Raises ``ConversionPanic`` for a value
    ConnectorX cannot convert and ``ReadFailed`` for its other errors."""
    import connectorx

    try:
        reader = connectorx.read_sql(url, sql, return_type="arrow_stream",
                                     batch_size=batch_rows,
                                     pre_execution_query=["SET NAMES utf8mb4", *session])
        for batch in reader:
            if batch.num_rows:
                yield _conform(batch, columns, schema, where)
    except BaseException as exc:  # PanicException derives from BaseException
        if type(exc).__name__ == "PanicException":
            raise ConversionPanic(str(exc)) from None
        if isinstance(exc, Exception):
            text = _scrub(str(exc) or type(exc).__name__, url)
            number = re.search(r"ERROR (\d+)", text)
            if number is not None:
                raise ReadFailed(int(number[1]), text) from None
            if "timed out" in text:  # no connection in the pool's time: the server is away
                raise TimeoutError(text) from None
            raise ReadFailed(text) from None
        raise


def _scrub(text: str, url: str) -> str:
    """``text`` without ``url`` or its password, encoded or not."""
    password = urlsplit(url).password
    for secret in (url, password, unquote(password or "")):
        if secret:
            text = text.replace(secret, "***")
    return text


def _conform(batch: pa.RecordBatch, columns: list[ResultColumn], schema: pa.Schema,
             where: str) -> pa.RecordBatch:
    arrays = []
    for i, (column, field) in enumerate(zip(columns, schema, strict=True)):
        values = batch.column(i)
        if column.type_code == BIT:
            arrays.append(bits(values.to_pylist(), field.type))
        elif column.type_code in _AS_TEXT and not pa.types.is_decimal(values.type):
            arrays.append(decode_text(values.cast(pa.string()), column, field.type, where))
        elif pa.types.is_timestamp(field.type) and field.type.tz is not None:
            arrays.append(values.cast(pa.timestamp("us")).cast(field.type))
        else:
            arrays.append(_cast(values, column, field.type, where))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _cast(values: pa.Array, column: ResultColumn, arrow: pa.DataType, where: str) -> pa.Array:
    if values.type == arrow:
        return values
    try:
        return values.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(f"{where}: column {column.name!r} cannot be read as {arrow} "
                          f"({exc})") from None

