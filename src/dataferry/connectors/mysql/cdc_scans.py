"""Binlog ranges known to hold no change of a table, so an idle table's reads move on.

A run that finds no change publishes no version, so the head's position stays where the
table last changed: without more, every later run would read the whole binlog written
since (on a busy server, ever more of it), and once the server purges that binlog the
dataset would need a full re-snapshot although nothing was lost. So when a read of the
binlog from P to Q found no event of the table, its acknowledgement notes "P..Q: nothing"
in a small file on this machine; a later read from P starts at Q.

That note is a fact about the server's binlog, not a position of the store: it is keyed
by the server (its address, ``server_id`` and host name), the table and P, and is only
written for a read that found no event of the table at all, so following it can never
skip a change. Losing the notes (another machine, a cleaned temporary directory) only
means reading from P again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataferry.connectors.mysql.cdc import BinlogPosition

DIRECTORY = "ferry-mysql-cdc-scans"
MAX_HOPS = 1000
"""How many notes one read follows (each a run that found nothing)."""


class IdleScans:
    """The notes of one server and table."""

    def __init__(self, server: str, table: str, root: Path | None = None) -> None:
        self.server = server  # "host:port server_id hostname"
        self.table = table  # "database.table"
        self.root = root or Path(tempfile.gettempdir()) / DIRECTORY

    def skip(self, start: BinlogPosition) -> BinlogPosition:
        """The furthest position reachable from ``start`` over ranges known to be empty."""
        position = start
        for _ in range(MAX_HOPS):
            try:
                note = json.loads(self._path(position).read_text(encoding="utf-8"))
                # the held XA transactions stay: nothing of the table was read on the way
                following = replace(start, file=str(note["file"]), pos=int(note["pos"]),
                                    gtid=note.get("gtid"))
            except (OSError, ValueError, KeyError, TypeError):
                return position
            if following.order() <= position.order():
                return position
            position = following
        return position

    def note_empty(self, start: BinlogPosition, end: BinlogPosition) -> None:
        """Record that the binlog from ``start`` to ``end`` holds no event of the table."""
        if end.order() <= start.order():
            return
        path = self._path(start)
        with contextlib.suppress(OSError):  # an optimisation: never fails a run
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps({"file": end.file, "pos": end.pos, "gtid": end.gtid}),
                               encoding="utf-8")
            partial.replace(path)

    def _path(self, position: BinlogPosition) -> Path:
        key = "\0".join((self.server, self.table, position.file, str(position.pos)))
        return self.root / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
