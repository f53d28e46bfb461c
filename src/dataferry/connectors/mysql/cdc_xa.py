"""XA transactions in MariaDB's binlog: their rows held from ``XA PREPARE`` to the decision.

MariaDB (10.5 and later) writes an XA transaction's row events when it is *prepared*, not
when it commits: a GTID event flagged ``FL_PREPARED_XA``, the rows, an ``XA END`` query and
an ``XA_PREPARE_LOG_EVENT``. ``XA COMMIT 'xid'`` or ``XA ROLLBACK 'xid'`` comes later, any
number of transactions further on (possibly in a later run), as a group of its own: a GTID
event flagged ``FL_COMPLETED_XA`` and the query. ``XA COMMIT ... ONE PHASE`` is written as an
ordinary transaction (``BEGIN``, rows, ``XID``). python-mysql-replication reads all of these
(``XAPrepareEvent`` carries the xid; the GTID event's ``flags`` the XA flag), it only does not
tie a decision to the rows it decides.

A read therefore folds the rows of a prepared transaction aside (``ChangeFold.group``) and
notes where its group starts (``PreparedXa``); the note travels in the position the
version records (``xa_prepared`` in the signed manifest), so a restart or a SIGKILL loses
nothing, and the position may move past the group. When the ``XA COMMIT`` is read, the
rows take effect at the commit's place in the order of transactions: those folded aside
in the same read, or, for a transaction prepared in an earlier read, the rows read again
from the binlog at the noted place. An ``XA ROLLBACK`` drops them and the note. The binlog is the durable copy of the
rows: a held transaction whose binlog file the server purged fails the read with what to
do, as a purged position does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import MariadbGtidEvent, QueryEvent, RotateEvent, XAPrepareEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

ROW_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
XA_PREPARED_FLAG = 0x40
"""``FL_PREPARED_XA`` in a MariaDB GTID event's flags: the group is an XA PREPARE."""

_DECISION = re.compile(
    r"^\s*XA\s+(COMMIT|ROLLBACK)\s+X'([0-9A-Fa-f]*)'\s*,\s*X'([0-9A-Fa-f]*)'\s*,\s*(\d+)",
    re.IGNORECASE)


@dataclass(frozen=True)
class PreparedXa:
    """A prepared XA transaction with rows of the table, not decided yet: where its
    binlog group starts (its GTID event) and the GTID it has."""

    xid: str
    file: str
    pos: int
    gtid: str | None

    def state(self) -> dict[str, Any]:
        return {"xid": self.xid, "binlog_file": self.file, "binlog_pos": self.pos,
                "gtid": self.gtid}

    @classmethod
    def of_states(cls, states: Any) -> tuple[PreparedXa, ...]:
        """The held transactions a position recorded (none when it recorded none)."""
        if not isinstance(states, list):
            return ()
        found = []
        for item in states:
            if not isinstance(item, dict):
                continue
            xid, file, pos, gtid = (item.get("xid"), item.get("binlog_file"),
                                    item.get("binlog_pos"), item.get("gtid"))
            if isinstance(xid, str) and isinstance(file, str) and isinstance(pos, int):
                found.append(cls(xid, file, pos, gtid if isinstance(gtid, str) else None))
        return tuple(found)


def xid_text(gtrid: bytes, bqual: bytes, format_id: int) -> str:
    """An xid as MariaDB writes it in the binlog (``X'7831',X'',1``), hex in lower case."""
    return f"X'{gtrid.hex()}',X'{bqual.hex()}',{format_id}"


def prepared_xid(event: XAPrepareEvent) -> str:
    return xid_text(event.xid_gtrid, event.xid_bqual, int(event.xid_format_id))


def xa_decision(query: str) -> tuple[str, bool] | None:
    """``(xid, committed)`` for an ``XA COMMIT``/``XA ROLLBACK`` query event, else None."""
    found = _DECISION.match(query)
    if found is None:
        return None
    verb, gtrid, bqual, format_id = found.groups()
    return (xid_text(bytes.fromhex(gtrid), bytes.fromhex(bqual), int(format_id)),
            verb.upper() == "COMMIT")


def event_start(event: Any) -> int:
    """Where ``event`` starts in its binlog file (its header's end position less its size)."""
    return int(event.packet.log_pos) - int(event.packet.event_size)


def _stream(settings: dict[str, Any], file: str, pos: int, database: str, table: str) -> BinLogStreamReader:
    return BinLogStreamReader(
        connection_settings=settings, server_id=random.randint(1 << 20, 1 << 31),
        resume_stream=True, log_file=file, log_pos=pos, blocking=False,
        only_events=[*ROW_EVENTS, MariadbGtidEvent, QueryEvent, XAPrepareEvent, RotateEvent],
        only_schemas=[database], only_tables=[table], enable_logging=False)


def read_prepared(settings: dict[str, Any], held: PreparedXa, database: str, table: str,
                  apply: Callable[[Any], int]) -> int:
    """Read the rows of the held transaction again from its binlog group and ``apply``
    each row event of ``database.table``; the rows applied. Raises ``LookupError`` when
    the group at the noted place is not that transaction's (a different binlog)."""
    stream = _stream(settings, held.file, held.pos, database, table)
    rows = 0
    try:
        first = True
        for event in stream:
            if isinstance(event, RotateEvent):
                if stream.log_file != held.file:
                    break
                continue
            if first:
                if not (isinstance(event, MariadbGtidEvent) and event_start(event) == held.pos
                        and (held.gtid is None or str(event.gtid) == held.gtid)):
                    break
                first = False
                continue
            if isinstance(event, ROW_EVENTS):
                if event.schema == database and event.table == table:
                    rows += apply(event)
                continue
            if isinstance(event, XAPrepareEvent):
                if prepared_xid(event) == held.xid:
                    return rows
                break
            if isinstance(event, QueryEvent) and event.query.strip().upper().startswith("XA END"):
                continue
            break  # anything else ends the group: not the transaction noted
    finally:
        stream.close()
    raise LookupError(f"the binlog at {held.file}:{held.pos} does not hold the prepared XA "
                      f"transaction {held.xid}")


def prepared_before(settings: dict[str, Any], xids: set[str], end: tuple[str, int],
                    files: list[str], database: str, table: str) -> dict[str, PreparedXa]:
    """Where the last ``XA PREPARE`` of each of ``xids`` before ``end`` (file, pos) starts,
    for those whose rows touch ``database.table``: the binlog ``files`` up to ``end``'s
    are read newest first, until every xid is found. For a snapshot taken while XA
    transactions were prepared (``XA RECOVER``)."""
    found: dict[str, PreparedXa] = {}
    located: set[str] = set()  # found in a newer file (with rows of the table or not)
    candidates = [f for f in files if _sequence(f) <= _sequence(end[0])]
    for file in sorted(candidates, key=_sequence, reverse=True):
        stream = _stream(settings, file, 4, database, table)
        in_file: dict[str, PreparedXa | None] = {}
        group: tuple[int, str] | None = None
        rows = 0
        try:
            for event in stream:
                if stream.log_file != file or (file == end[0] and stream.log_pos > end[1]):
                    break
                if isinstance(event, MariadbGtidEvent):
                    group = ((event_start(event), str(event.gtid))
                             if event.flags & XA_PREPARED_FLAG else None)
                    rows = 0
                elif isinstance(event, ROW_EVENTS):
                    if event.schema == database and event.table == table:
                        rows += len(event.rows)
                elif isinstance(event, XAPrepareEvent) and group is not None:
                    xid = prepared_xid(event)
                    if xid in xids and xid not in located:  # the last one in the file wins
                        in_file[xid] = PreparedXa(xid, file, *group) if rows else None
                    group = None
        finally:
            stream.close()
        for xid, held in in_file.items():
            located.add(xid)
            if held is not None:
                found[xid] = held
        if xids <= located:
            break
    return found


def _sequence(file: str) -> int:
    number = re.search(r"(\d+)$", file)
    return int(number.group(1)) if number else 0


def undecided_at(settings: dict[str, Any], recovered: set[str], start: tuple[str, int],
                 end: tuple[str, int], database: str, table: str) -> set[str]:
    """The XA transactions prepared before ``start`` and not decided there: those that
    ``XA RECOVER`` listed after ``start`` (``recovered``), and those decided between
    ``start`` and ``end`` (the binlog's end after ``XA RECOVER``), less those whose first
    event after ``start`` is their ``XA PREPARE`` (a read from ``start`` sees it)."""
    first: dict[str, bool] = {}  # xid -> its first event after start is a decision
    stream = _stream(settings, start[0], start[1], database, table)
    try:
        for event in stream:
            if (_sequence(stream.log_file), stream.log_pos) > (_sequence(end[0]), end[1]):
                break
            if isinstance(event, XAPrepareEvent):
                first.setdefault(prepared_xid(event), False)
            elif isinstance(event, QueryEvent):
                decision = xa_decision(event.query)
                if decision is not None:
                    first.setdefault(decision[0], True)
    finally:
        stream.close()
    return {xid for xid in recovered if xid not in first} | {
        xid for xid, decided in first.items() if decided}


def recovered_xids(rows: list[tuple[Any, ...]]) -> set[str]:
    """The xids of ``XA RECOVER``'s rows (formatID, gtrid_length, bqual_length, data)."""
    found = set()
    for format_id, gtrid_length, bqual_length, data in rows:
        raw = data if isinstance(data, bytes) else str(data).encode()
        gtrid, bqual = int(gtrid_length), int(bqual_length)
        found.add(xid_text(raw[:gtrid], raw[gtrid:gtrid + bqual], int(format_id)))
    return found
