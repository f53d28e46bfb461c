"""``replace`` deliveries: load a staging table, then swap it in, crash-safe.

MariaDB commits every DDL statement on its own, so the table swap (``RENAME TABLE``) and
the ``_ferry_loads`` update cannot share one transaction. Instead the staging table
carries a *pending marker* in its table comment (dataset, version, rows), and the marker
moves with the table in the swap, which is one atomic statement (MariaDB >= 10.6 makes
it crash-safe too):

1. ``DROP`` leftovers, ``CREATE TABLE <t>__ferry_new``, load every row, ``COMMIT``;
2. set the marker as the staging table's comment;
3. ``RENAME TABLE <t> TO <t>__ferry_old, <t>__ferry_new TO <t>`` (atomic);
4. upsert the ``_ferry_loads`` row, ``COMMIT``;
5. clear the marker, drop ``<t>__ferry_old``.

What a crash leaves, and what the next ``applied_version`` or delivery does about it
(``repair``, run before either):

- before 3: the target and its ``_ferry_loads`` row are untouched (old data, old
  version); a staging table may be left over, dropped by the next replace;
- after 3, before 4: the target holds the new rows and its comment the marker, while
  ``_ferry_loads`` still says the old version; ``repair`` sees the marker on the target
  and records its version (steps 4 and 5), so no one is ever *told* the old version
  while the new rows are in place. A reader of the table itself sees the new rows a
  moment before ``_ferry_loads`` does, never a mix of old and new rows;
- after 4: only clean-up is left; ``repair`` finishes it.

A replace rebuilds the table from the delivered columns: indexes, grants or columns a
user added to the target by hand are not kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
import pymysql

from dataferry.connectors.mysql.bulk import Column, Loader
from dataferry.connectors.mysql.connection import Server, qualified
from dataferry.connectors.mysql.tables import (
    TargetColumn,
    aux_name,
    create_table,
    record_load,
)
from dataferry.faults import crash_point

MARKER = "dataferry pending "



@dataclass(frozen=True)
class Pending:
    """The marker of a swapped-in table whose ``_ferry_loads`` row may lag behind."""

    dataset: str
    version: int
    rows: int

    def text(self) -> str:
        return MARKER + json.dumps({"dataset": self.dataset, "version": self.version,
                                    "rows": self.rows})

    @classmethod
    def parse(cls, comment: str) -> Pending | None:
        if not comment.startswith(MARKER):
            return None
        try:
            data = json.loads(comment[len(MARKER):])
            return cls(str(data["dataset"]), int(data["version"]), int(data["rows"]))
        except (ValueError, KeyError, TypeError):
            return None


def _comment(cursor: pymysql.cursors.Cursor, database: str, table: str) -> str | None:
    cursor.execute("SELECT TABLE_COMMENT FROM information_schema.TABLES "
                   "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
    row = cursor.fetchone()
    return None if row is None else str(row[0] or "")


def repair(connection: pymysql.Connection, database: str, dataset: str, table: str) -> None:
    """Finish a replace of ``table`` that stopped after its swap (module doc)."""
    with connection.cursor() as cursor:
        comment = _comment(cursor, database, table)
        pending = Pending.parse(comment) if comment else None
        if pending is None or pending.dataset != dataset:
            return
        record_load(cursor, database, dataset, table, pending.version, "replace", pending.rows)
        connection.commit()
        _clean(cursor, database, table)


def _clean(cursor: pymysql.cursors.Cursor, database: str, table: str) -> None:
    cursor.execute(f"ALTER TABLE {qualified(database, table)} COMMENT = ''")
    cursor.execute(f"DROP TABLE IF EXISTS {qualified(database, aux_name(table, 'old'))}")


def replace(connection: pymysql.Connection, server: Server, loader: Loader, database: str,
            dataset: str, table: str, version: int, columns: list[TargetColumn],
            primary_key: list[str], rows: pa.RecordBatchReader, label: str) -> int:
    """Apply a replace delivery of ``version`` (module doc); returns the rows loaded."""
    target = qualified(database, table)
    stage, old = aux_name(table, "new"), aux_name(table, "old")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {qualified(database, stage)}, "
                       f"{qualified(database, old)}")
        create_table(cursor, qualified(database, stage), columns, server,
                     primary_key=primary_key)
        written = loader.write(qualified(database, stage), label,
                               [Column(c.name, c.type) for c in columns], rows)
        connection.commit()
        crash_point("mysql-replace-loaded")
        pending = Pending(dataset, version, written)
        cursor.execute(f"ALTER TABLE {qualified(database, stage)} "
                       f"COMMENT = {connection.escape(pending.text())}")
        crash_point("mysql-replace-marked")
        exists = _comment(cursor, database, table) is not None
        swap = f"{target} TO {qualified(database, old)}, " if exists else ""
        cursor.execute(f"RENAME TABLE {swap}{qualified(database, stage)} TO {target}")
        crash_point("mysql-replace-swapped")
        record_load(cursor, database, dataset, table, version, "replace", written)
        connection.commit()
        crash_point("mysql-replace-recorded")
        _clean(cursor, database, table)
    return written
