"""Whether a MariaDB server and table can be captured from the binlog (``capture: cdc``).

``ferry check --connect`` reports each problem with what to do; an ingest meets the same
ones as errors. What CDC needs (docs/connectors.md#mariadb-cdc): the binlog on
(``log_bin``), ``binlog_format=ROW``, ``binlog_row_image=FULL`` (whole rows in every
event), ``binlog_row_metadata=FULL`` (column names, signedness, ENUM/SET values and
character sets in the events: MariaDB 10.5+), the grants ``REPLICATION SLAVE`` (read the
binlog) and ``REPLICATION CLIENT``/``BINLOG MONITOR`` (list it), and a primary key on
the table. A recorded position in a binlog file the server has purged cannot be resumed.
"""

from __future__ import annotations

import re
from typing import Any

import pymysql

from dataferry.connectors.changes import ChangeProblem
from dataferry.connectors.mysql.cdc_xa import PreparedXa

NEEDED_SETTINGS = (
    ("log_bin", "ON", "the binlog is off: start MariaDB with log_bin (e.g. --log-bin=binlog "
     "and a server_id)"),
    ("binlog_format", "ROW", "binlog_format is {value}; set binlog_format=ROW (SET GLOBAL "
     "binlog_format = 'ROW', and in the server's configuration)"),
    ("binlog_row_image", "FULL", "binlog_row_image is {value}; set binlog_row_image=FULL "
     "(updates and deletes must carry whole rows)"),
    ("binlog_row_metadata", "FULL", "binlog_row_metadata is {value}; set "
     "binlog_row_metadata=FULL (MariaDB 10.5+: the events then name their columns, "
     "signedness, ENUM/SET values and character sets)"),
)


def change_problems(connection: pymysql.Connection, database: str, table: str, *,
                    dataset: str, position: dict[str, Any] | None = None
                    ) -> list[ChangeProblem]:
    """Every reason the server or the table cannot be captured, each saying what to do
    and naming ``dataset``; ``position`` is the latest version's (its binlog file may have
    been purged since). A table without a primary key is ``missing-primary-key`` (an
    error); the rest ``unreachable`` (warnings: the change log cannot be read)."""
    where = f"{dataset}: cdc capture:"
    problems = [ChangeProblem("unreachable", f"{where} {message}")
                for message in read_problems(connection)]
    file = position.get("binlog_file") if position else None
    if isinstance(file, str):
        held = PreparedXa.of_states((position or {}).get("xa_prepared"))
        try:
            files = binlog_files(connection)
        except pymysql.Error:  # no grant to list them: reported above
            files = {file: 0, **{xa.file: 0 for xa in held}}
        if file not in files:
            problems.append(ChangeProblem(
                "unreachable", f"{where} {purged_message(dataset, file, files, named=False)}"))
        for xa in held:
            if xa.file not in files:
                problems.append(ChangeProblem("unreachable", f"{where} " + purged_message(
                    dataset, xa.file, files, named=False,
                    what=f"the rows of the prepared XA transaction {xa.xid}")))
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.KEY_COLUMN_USAGE "
                       "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                       "AND CONSTRAINT_NAME = 'PRIMARY'", (database, table))
        row = cursor.fetchone()
    if row is None or int(row[0]) == 0:
        problems.append(ChangeProblem(
            "missing-primary-key",
            f"{where} table {database}.{table} has no primary key: binlog rows of a table "
            "without one cannot be told apart; add a PRIMARY KEY on the declared "
            "primary_key columns", severity="error"))
    return problems


def read_problems(connection: pymysql.Connection) -> list[str]:
    """The server settings and grants CDC needs that are not as it needs them, each saying
    what to do (checked before every read, so a snapshot is never taken for nothing)."""
    problems = []
    with connection.cursor() as cursor:
        cursor.execute("SHOW GRANTS")
        grants = " ".join(str(g) for (g,) in cursor.fetchall()).upper()
    missing = _missing_grants(grants)
    if missing:
        problems.append(f"the user lacks {' and '.join(missing)} ON *.*: GRANT "
                        f"{', '.join(missing)} ON *.* TO the source's user (reading the "
                        "binlog needs them)")
    return setting_problems(connection) + problems


def setting_problems(connection: pymysql.Connection) -> list[str]:
    """The server settings CDC needs that are not as it needs them, each saying what to do."""
    problems = []
    with connection.cursor() as cursor:
        for name, wanted, message in NEEDED_SETTINGS:
            try:
                cursor.execute(f"SELECT @@GLOBAL.{name}")
                row = cursor.fetchone()
            except pymysql.Error:  # a server too old to have the setting
                row = None
            value = _setting(row[0] if row is not None else None)
            if value != wanted:
                problems.append(message.format(value=value or "unset"))
                if name == "log_bin":
                    break  # the other settings do not matter without a binlog
    return problems


def _setting(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).upper() if value is not None else ""
    return {"1": "ON", "0": "OFF"}.get(text, text)


def _missing_grants(grants: str) -> list[str]:
    """The replication grants ``SHOW GRANTS`` lacks; none when a role is granted (its
    privileges may be elsewhere: the read itself then says what is missing)."""
    if "ALL PRIVILEGES ON *.*" in grants or re.search(r"GRANT `[^`]+` TO ", grants):
        return []
    missing = []
    if "REPLICATION SLAVE" not in grants:
        missing.append("REPLICATION SLAVE")
    if "REPLICATION CLIENT" not in grants and "BINLOG MONITOR" not in grants:
        missing.append("REPLICATION CLIENT")
    return missing


def binlog_files(connection: pymysql.Connection) -> dict[str, int]:
    """The binlog files the server still has, with their sizes (``SHOW BINARY LOGS``)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW BINARY LOGS")
        return {str(row[0]): int(row[1]) for row in cursor.fetchall()}


def purged_message(dataset: str, file: str, files: dict[str, int] | list[str], *,
                   named: bool = True, what: str = "the position of the latest version"
                   ) -> str:
    """What to do when ``file`` (holding ``what``: the latest version's position, or a
    prepared XA transaction it holds) is gone; ``named``: the message starts with
    ``dataset``."""
    kept = sorted(files)
    oldest = f" (its oldest binlog now is {kept[0]})" if kept else ""
    return (f"{dataset + ': ' if named else ''}the binlog file {file} holding {what} "
            f"was purged by the server{oldest}, so the changes since cannot be read; a full "
            f"re-snapshot is needed: run `ferry run --full {dataset}`, and keep binlogs "
            "longer than the time between runs (binlog_expire_logs_seconds)")
