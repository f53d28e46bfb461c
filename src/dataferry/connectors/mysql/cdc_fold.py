"""Fold binlog row events into one change per primary key, on disk.

A CDC read may cover millions of row events; the last value of each key is kept in a
SQLite file in a temporary directory (not in memory), one SQLite transaction per binlog
transaction: a transaction the read stops inside of is rolled back, so it is never split.
Values are kept pickled exactly as normalized (``cdc_values.normalize``); the file is
private to this process and removed by ``close``.

The rows of a prepared XA transaction (``cdc_xa``) are folded aside, under the group
(GTID) that wrote them, until its decision is read: ``publish_held`` moves them to the
changes in their order, ``drop_held`` forgets them.
"""

from __future__ import annotations

import pickle
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

UPSERT, DELETE = 1, 0
PENDING = 5_000
"""Changes held in memory before they are written to the file (bounded memory)."""


class ChangeFold:
    """The changes of one read, by primary key: the key's last row, or its deletion."""

    def __init__(self) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="ferry-binlog-"))
        # The engine may drain the readers on another thread than the one that folded.
        self._db = sqlite3.connect(self._directory / "changes.sqlite", isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE changes (key TEXT PRIMARY KEY, op INTEGER NOT NULL, "
                         "row BLOB NOT NULL)")
        self._db.execute("CREATE TABLE held (seq INTEGER PRIMARY KEY, grp TEXT NOT NULL, "
                         "key TEXT NOT NULL, op INTEGER NOT NULL, row BLOB NOT NULL)")
        self._open = False
        self._pending: list[tuple[str, int, bytes]] = []
        self._held: list[tuple[str, str, int, bytes]] = []
        self.group: str | None = None
        """While set, changes are held under this group (an XA PREPARE's GTID)."""

    def upsert(self, key: tuple[Any, ...], row: tuple[Any, ...]) -> None:
        """``key`` now has ``row`` (its last value so far)."""
        self._write(key, UPSERT, row)

    def delete(self, key: tuple[Any, ...]) -> None:
        """``key`` was deleted (a later upsert of the same key replaces this)."""
        self._write(key, DELETE, key)

    def commit(self) -> None:
        """The binlog transaction whose events were folded since the last commit ended."""
        self._flush()
        if self._open:
            self._db.execute("COMMIT")
            self._open = False

    def publish_held(self, group: str) -> None:
        """The held changes of ``group`` become changes (its XA COMMIT was read)."""
        self._flush()
        self._begin()
        self._db.execute("INSERT OR REPLACE INTO changes (key, op, row) SELECT key, op, row "
                         "FROM held WHERE grp = ? ORDER BY seq", (group,))
        self._db.execute("DELETE FROM held WHERE grp = ?", (group,))

    def drop_held(self, group: str) -> None:
        """Forget the held changes of ``group`` (its XA ROLLBACK was read)."""
        self._flush()
        self._begin()
        self._db.execute("DELETE FROM held WHERE grp = ?", (group,))

    def rollback(self) -> None:
        """Forget the events of a transaction whose end was not read."""
        self._pending.clear()
        self._held.clear()
        self.group = None
        if self._open:
            self._db.execute("ROLLBACK")
            self._open = False

    def count(self, op: int) -> int:
        """Committed changes of kind ``op`` (``UPSERT`` or ``DELETE``)."""
        row = self._db.execute("SELECT count(*) FROM changes WHERE op = ?", (op,)).fetchone()
        return int(row[0])

    def rows(self, op: int, batch: int) -> Iterator[list[tuple[Any, ...]]]:
        """The committed upserts (their rows) or deletes (their keys), ``batch`` at a time."""
        cursor = self._db.execute("SELECT row FROM changes WHERE op = ? ORDER BY key", (op,))
        while True:
            found = cursor.fetchmany(batch)
            if not found:
                return
            yield [pickle.loads(blob) for (blob,) in found]

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _write(self, key: tuple[Any, ...], op: int, row: tuple[Any, ...]) -> None:
        blob = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        if self.group is not None:
            self._held.append((self.group, repr(key), op, blob))
        else:
            self._pending.append((repr(key), op, blob))
        if len(self._pending) + len(self._held) >= PENDING:
            self._flush()

    def _begin(self) -> None:
        if not self._open:
            self._db.execute("BEGIN")
            self._open = True

    def _flush(self) -> None:
        """Write the pending changes (in order: a later one of a key replaces an earlier)."""
        if self._pending:
            self._begin()
            self._db.executemany("INSERT OR REPLACE INTO changes (key, op, row) "
                                 "VALUES (?, ?, ?)", self._pending)
            self._pending.clear()
        if self._held:
            self._begin()
            self._db.executemany("INSERT INTO held (grp, key, op, row) VALUES (?, ?, ?, ?)",
                                 self._held)
            self._held.clear()
